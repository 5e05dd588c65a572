//! Budgets on the real `.wasm` (issue 9, the local tier): reserve before a
//! request leaves, settle when its stream ends, exact across workers, with
//! 429 and `retry-after` when a budget is spent.

use std::time::Duration;

use serde_json::{json, Value};
use tollgate_harness::mock::MockCredentialService;
use tollgate_harness::{Gateway, HostFault, Outcome, Status, StreamId};
use tollgate_tests::budget_fixture::*;
use tollgate_tests::*;

const OTHER_BOT: &str = "spiffe://cluster.local/ns/support/sa/other";

/// The fixture policy with `budgets` defined and `rule` (fields merged
/// into `support-chat`).
fn with_budgets(budgets: Value, rule: Value) -> Value {
    let mut c = config();
    c["budgets"] = budgets;
    merge_into_first_rule(&mut c, &rule);
    c
}

/// A gateway whose cache holds the OpenAI key, warmed through the rule
/// without budgets (`batch-embeddings`), so no budget has moved.
fn warm_gateway_with(cfg: &Value, workers: usize, creds: &MockCredentialService) -> Gateway {
    let mut gw = gateway(cfg, workers, creds);
    warm_through_batch(&mut gw);
    gw
}

/// (used, held) of a budget record's single account.
fn balance(gw: &Gateway, key: &str) -> (u64, u64) {
    let bytes = gw.shared_data(key).unwrap_or_default();
    let mut sum = (0, 0);
    // 1 byte version, 8 bytes window, then (subject, used, held) × n.
    for account in bytes.get(9..).unwrap_or_default().chunks_exact(24) {
        let word = |at: usize| u64::from_le_bytes(account[at..at + 8].try_into().unwrap());
        sum.0 += word(8);
        sum.1 += word(16);
    }
    sum
}

#[test]
fn a_request_budget_admits_its_limit_per_workload_then_429_until_the_window_resets() {
    let cfg = with_budgets(
        json!([{"name": "chat-rpm", "requests": 3, "window": "minute"}]),
        json!({"budgets": ["chat-rpm"]}),
    );
    let creds = credential_service();
    let mut gw = gateway(&cfg, 1, &creds);
    for _ in 0..3 {
        let id = chat(&mut gw, 0, SUPPORT_BOT, "{}");
        gw.settle();
        gw.outcome(id).expect_forwarded();
        gw.respond(id, 200, JSON, b"{}");
    }
    gw.advance(Duration::from_secs(20));
    let before = Counters::snapshot(&gw);
    let refused = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    let reply = assert_denied(&gw, &before, refused, 429, "rate_limited");
    // The harness clock starts on a minute boundary; 20 s have passed.
    assert_eq!(reply.header_str("retry-after").as_deref(), Some("40"));
    // Another workload of the same rule has its own budget.
    let other = chat(&mut gw, 0, OTHER_BOT, "{}");
    gw.settle();
    gw.outcome(other).expect_forwarded();
    // The next window admits again.
    gw.advance(Duration::from_secs(40));
    let again = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    gw.outcome(again).expect_forwarded();
    end_open_streams(&mut gw);
    let a = audit_of(&gw, again);
    assert_eq!(a["budgets"], json!(["chat-rpm"]), "{a}");
    assert_eq!(gw.trap(), None);
}

#[test]
fn tokens_are_held_at_admission_and_settled_to_the_usage() {
    let cfg = with_budgets(
        json!([{"name": "team-tokens", "tokens": 1000, "window": "hour", "scope": "shared"}]),
        json!({"max_output_tokens": 200, "budgets": ["team-tokens"]}),
    );
    let creds = credential_service();
    let mut gw = gateway(&cfg, 1, &creds);
    let key = "tollgate/v1/budget/team-tokens";
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    // The reservation: the forwarded body's bytes (the cap written in)
    // plus the cap.
    let first = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    let sent = gw.outcome(first).expect_forwarded().body.len() as u64;
    assert!(sent > body.len() as u64, "max_tokens written in");
    let hold = sent + 200;
    assert_eq!(balance(&gw, key), (0, hold));
    // Held, not yet settled: the next requests fit while the sum does.
    let fits = (1000 / hold) as usize;
    let mut live = vec![first];
    for _ in 1..fits {
        let id = chat(&mut gw, 0, SUPPORT_BOT, body);
        gw.settle();
        gw.outcome(id).expect_forwarded();
        live.push(id);
    }
    let before = Counters::snapshot(&gw);
    let refused = chat(&mut gw, 0, OTHER_BOT, body);
    gw.settle();
    let reply = assert_denied(&gw, &before, refused, 429, "token_budget_exhausted");
    assert_eq!(reply.header_str("retry-after").as_deref(), Some("3600"));
    assert_eq!(
        balance(&gw, key),
        (0, hold * fits as u64),
        "the refusal holds nothing"
    );
    assert_eq!(
        gw.metric("tollgate.budget.reservations_outstanding"),
        Some(fits as u64)
    );
    // Settled to the usage: 12 + 30 tokens each; the rest is released.
    for id in &live {
        gw.respond(*id, 200, JSON, &usage_answer(12, 30));
    }
    assert_eq!(balance(&gw, key), (42 * fits as u64, 0));
    assert_eq!(
        gw.metric("tollgate.budget.reservations_outstanding"),
        Some(0)
    );
    let a = audit_of(&gw, first);
    assert_eq!(
        (a["tokens_reserved"].as_u64(), a["tokens_charged"].as_u64()),
        (Some(hold), Some(42)),
        "{a}"
    );
    let admitted = chat(&mut gw, 0, OTHER_BOT, body);
    gw.settle();
    gw.outcome(admitted).expect_forwarded();
}

#[test]
fn without_usage_an_error_releases_and_a_broken_exchange_is_charged_its_hold() {
    let cfg = with_budgets(
        json!([{"name": "t", "tokens": 100000, "window": "day", "scope": "shared"}]),
        json!({"max_output_tokens": 100, "budgets": ["t"]}),
    );
    let creds = credential_service();
    let mut gw = gateway(&cfg, 1, &creds);
    let key = "tollgate/v1/budget/t";
    let body = r#"{"model":"gpt-4o-mini","max_tokens":50}"#;
    // The provider's error, no usage: nothing charged.
    let failed = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    gw.respond(failed, 429, JSON, br#"{"error":{"message":"slow down"}}"#);
    assert_eq!(balance(&gw, key), (0, 0));
    // The client leaves mid-answer: the hold is charged.
    let left = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    let hold = body.len() as u64 + 50;
    assert_eq!(balance(&gw, key), (0, hold));
    gw.respond_partial(left, 200, JSON, vec![b"{\"choices\":[".to_vec()]);
    gw.cancel(left);
    assert_eq!(balance(&gw, key), (hold, 0));
    assert_eq!(audit_of(&gw, left)["tokens_charged"], hold);
    // A refusal after admission (another rule's check) holds nothing either.
    let off = chat(&mut gw, 0, SUPPORT_BOT, "not json");
    gw.settle();
    assert!(matches!(gw.outcome(off), Outcome::LocalReply(_)));
    assert_eq!(balance(&gw, key), (hold, 0));
}

/// 500 requests at once over two workers against a token budget that
/// holds a tenth of them: the holds never pass the budget, and once every
/// admitted request is answered, what was charged is exactly their usage.
#[test]
fn five_hundred_concurrent_requests_on_two_workers_never_overshoot() {
    let cfg = with_budgets(
        json!([{"name": "burst", "tokens": 1, "window": "hour", "scope": "shared"}]),
        json!({"max_output_tokens": 100, "budgets": ["burst"]}),
    );
    let body = r#"{"model":"gpt-4o-mini","max_tokens":100}"#;
    let hold = body.len() as u64 + 100;
    let mut cfg = cfg;
    cfg["budgets"][0]["tokens"] = json!(hold * 50);
    let creds = credential_service();
    let mut gw = warm_gateway_with(&cfg, 2, &creds);
    let key = "tollgate/v1/budget/burst";
    let ids: Vec<StreamId> = (0..500)
        .map(|i| {
            let workload = format!("spiffe://cluster.local/ns/support/sa/w{i}");
            chat(&mut gw, i % 2, &workload, body)
        })
        .collect();
    gw.settle();
    let admitted: Vec<StreamId> = ids
        .iter()
        .copied()
        .filter(|id| matches!(gw.outcome(*id), Outcome::Forwarded(_)))
        .collect();
    assert_eq!(admitted.len(), 50, "exactly the budget's worth");
    assert_eq!(balance(&gw, key), (0, hold * 50));
    assert_eq!(
        gw.metric("tollgate.decision.deny.token_budget_exhausted"),
        Some(450)
    );
    for (n, id) in admitted.iter().enumerate() {
        gw.respond(*id, 200, JSON, &usage_answer(10, n as u64));
    }
    let usage: u64 = (0..50).map(|n| 10 + n).sum();
    assert_eq!(balance(&gw, key), (usage, 0));
    assert_no_leak(&gw, &ids, &all_keys());
}

#[test]
fn dry_run_counts_records_the_shadow_and_forwards() {
    let mut cfg = with_budgets(
        json!([{"name": "chat-rpm", "requests": 1, "window": "minute"}]),
        json!({"budgets": ["chat-rpm"]}),
    );
    cfg["mode"] = json!("dry_run");
    let creds = credential_service();
    let mut gw = gateway(&cfg, 1, &creds);
    let first = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    let second = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    gw.outcome(second).expect_forwarded();
    end_open_streams(&mut gw);
    assert_eq!(audit_of(&gw, first)["decision"], "allow");
    let a = audit_of(&gw, second);
    assert_eq!(
        (a["decision"].as_str(), a["reason"].as_str()),
        (Some("shadow_deny"), Some("rate_limited")),
        "{a}"
    );
    assert_eq!(
        gw.metric("tollgate.decision.shadow_deny.rate_limited"),
        Some(1)
    );
}

#[test]
fn a_budget_that_cannot_be_written_refuses_and_the_vm_lives_on() {
    let cfg = with_budgets(
        json!([{"name": "chat-rpm", "requests": 100, "window": "minute"}]),
        json!({"budgets": ["chat-rpm"]}),
    );
    let creds = credential_service();
    let mut gw = warm_gateway_with(&cfg, 1, &creds);
    // The credential is cached: only the budget writes shared data now.
    gw.fault(
        "proxy_set_shared_data",
        HostFault::new(Status::InternalFailure),
    );
    let before = Counters::snapshot(&gw);
    let id = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    let reply = assert_denied(&gw, &before, id, 503, "budget_unavailable");
    assert_eq!(reply.header_str("retry-after"), None);
    gw.clear_faults();
    let ok = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    gw.outcome(ok).expect_forwarded();
    assert_eq!(gw.trap(), None);
}

/// 100,000 distinct SPIFFE IDs against a per-workload budget: the
/// shared-data keys are the policy's (8 slots), not one per workload; IDs
/// outside the policy write nothing.
#[test]
fn per_workload_budgets_keep_a_bounded_key_set() {
    let cfg = with_budgets(
        json!([{"name": "per-wl", "requests": 5, "window": "minute", "slots": 8}]),
        json!({"budgets": ["per-wl"]}),
    );
    let creds = credential_service();
    let mut gw = warm_gateway_with(&cfg, 1, &creds);
    let keys = |gw: &Gateway| gw.shared_data_keys();
    let before = keys(&gw);
    assert_eq!(
        before
            .iter()
            .filter(|k| k.starts_with("tollgate/v1/budget/"))
            .count(),
        8,
        "created at configuration"
    );
    let records = |gw: &Gateway| -> Vec<Vec<u8>> {
        before.iter().filter_map(|k| gw.shared_data(k)).collect()
    };
    // Outside the policy: refused, and no record changes.
    let untouched = records(&gw);
    for i in 0..1_000 {
        let b = chat(
            &mut gw,
            0,
            &format!("spiffe://cluster.local/ns/elsewhere/sa/w{i}"),
            "{}",
        );
        gw.settle();
        assert!(matches!(gw.outcome(b), Outcome::LocalReply(_)));
    }
    assert_eq!(records(&gw), untouched);
    // Inside: 16 live accounts per slot, so beyond 128 workloads in one
    // window the slots are full and refuse (budget_unavailable).
    let mut forwarded = 0;
    for i in 0..100_000 {
        let a = chat(
            &mut gw,
            0,
            &format!("spiffe://cluster.local/ns/support/sa/w{i}"),
            "{}",
        );
        gw.settle();
        if matches!(gw.outcome(a), Outcome::Forwarded(_)) {
            forwarded += 1;
            gw.cancel(a);
        }
    }
    assert!((64..=128).contains(&forwarded), "{forwarded}");
    assert_eq!(keys(&gw), before, "no key per workload");
}

const SSE: &[(&str, &[u8])] = &[("content-type", b"text/event-stream")];

/// Streams settle to the usage the provider reported, read from the stream
/// itself: an OpenAI stream whose client did not ask for usage (Tollgate
/// asked), Anthropic's and Gemini's cumulative counts taken once (the last
/// value), not summed.
#[test]
fn streams_are_charged_their_real_usage_once() {
    let cfg = with_budgets(
        json!([{"name": "t", "tokens": 1000000, "window": "day", "scope": "shared"}]),
        json!({"max_output_tokens": 500, "budgets": ["t"]}),
    );
    let key = "tollgate/v1/budget/t";
    let cases: [(&str, &str, &str, String, u64); 3] = [
        (
            "api.openai.com",
            CHAT,
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
             data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n\
             data: [DONE]\n\n"
                .replace("             ", ""),
            21,
        ),
        (
            "api.anthropic.com",
            "/v1/messages",
            r#"{"model":"claude-3-5-haiku-latest","max_tokens":100,"stream":true,"messages":[]}"#,
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
             event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":10}}\n\n\
             event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
             event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
                .replace("             ", ""),
            35,
        ),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            r#"{"contents":[]}"#,
            "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":3,\"totalTokenCount\":11}}\n\n\
             data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":9,\"totalTokenCount\":17}}\n\n"
                .replace("             ", ""),
            17,
        ),
    ];
    for (authority, path, body, stream, usage) in cases {
        let creds = credential_service();
        let mut gw = gateway(&cfg, 1, &creds);
        let id = request_on(&mut gw, 0, SUPPORT_BOT, "POST", authority, path)
            .header("content-type", "application/json")
            .body(body)
            .send();
        gw.settle();
        gw.outcome(id).expect_forwarded();
        let (_, held) = balance(&gw, key);
        assert!(held > usage, "{authority}: held {held}");
        gw.respond_chunks(
            id,
            200,
            SSE,
            stream.as_bytes().chunks(7).map(|c| c.to_vec()).collect(),
        );
        assert_eq!(balance(&gw, key), (usage, 0), "{authority}");
        assert_eq!(audit_of(&gw, id)["tokens_charged"], usage, "{authority}");
    }
}

/// A spend budget in micro-dollars: the hold prices the body's bytes as
/// input and the cap as output; the charge prices the usage, cache reads
/// at their own price, rounded up; a model without a price is refused.
#[test]
fn cost_budgets_price_the_hold_and_the_usage_and_refuse_unpriced_models() {
    let mut cfg = with_budgets(
        json!([{"name": "spend", "cost": "0.0005", "window": "month", "scope": "shared"}]),
        json!({"max_output_tokens": 200, "budgets": ["spend"]}),
    );
    cfg["prices"] = json!([
        {"model": "gpt-4o-mini", "input": "0.15", "cached_input": "0.075", "output": "0.60"}
    ]);
    let creds = credential_service();
    let mut gw = gateway(&cfg, 1, &creds);
    let key = "tollgate/v1/budget/spend";
    let body = r#"{"model":"gpt-4o-mini","max_tokens":200,"messages":[]}"#;
    let price_of = |input: u64, cached: u64, output: u64| -> u64 {
        ((input - cached) * 150_000 + cached * 75_000 + output * 600_000).div_ceil(1_000_000)
    };
    let hold = price_of(body.len() as u64, 0, 200);
    let id = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    gw.outcome(id).expect_forwarded();
    assert_eq!(balance(&gw, key), (0, hold));
    // 500 micro-dollars hold 3 such requests, not 4.
    assert_eq!(500 / hold, 3, "hold {hold}");
    let two: Vec<StreamId> = (0..2)
        .map(|_| {
            let id = chat(&mut gw, 0, SUPPORT_BOT, body);
            gw.settle();
            id
        })
        .collect();
    let before = Counters::snapshot(&gw);
    let refused = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    let reply = assert_denied(&gw, &before, refused, 429, "cost_budget_exhausted");
    assert!(reply.header_str("retry-after").is_some());
    // Settled to the usage: 12 in (4 cached), 30 out.
    let answer = br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":4}}}"#;
    for id in std::iter::once(id).chain(two) {
        gw.respond(id, 200, JSON, answer);
    }
    let charge = price_of(12, 4, 30);
    assert_eq!(balance(&gw, key), (3 * charge, 0));
    let a = audit_of(&gw, id);
    assert_eq!(
        (
            a["cost_reserved_micros"].as_u64(),
            a["cost_charged_micros"].as_u64()
        ),
        (Some(hold), Some(charge)),
        "{a}"
    );
    // A model without a price: nothing could be reserved, so refused.
    let before = Counters::snapshot(&gw);
    let unpriced = chat(
        &mut gw,
        0,
        SUPPORT_BOT,
        r#"{"model":"gpt-4o","messages":[]}"#,
    );
    gw.settle();
    assert_denied(&gw, &before, unpriced, 403, "price_unknown");
    assert_eq!(balance(&gw, key), (3 * charge, 0));
}

/// The anomaly guard: a workload that steadily sends ~100-byte prompts,
/// then a 1,000× prompt: refused with `prompt_anomaly`, however often it
/// is tried (refusals do not train the baseline); a usual prompt still
/// passes; a workload still warming up is not judged; `record` forwards
/// and counts.
#[test]
fn a_thousandfold_prompt_after_a_steady_baseline_is_refused() {
    let mut cfg = with_budgets(json!([]), json!({"prompt_guard": "steady"}));
    cfg["prompt_guards"] =
        json!([{"name": "steady", "factor": 20, "min_bytes": 4096, "warmup": 5}]);
    let creds = credential_service();
    let mut gw = warm_gateway_with(&cfg, 1, &creds);
    let usual = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"How do I reset my password, please?"}]}"#;
    let huge = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(usual.len() * 1000)
    );
    for _ in 0..5 {
        let id = chat(&mut gw, 0, SUPPORT_BOT, usual);
        gw.settle();
        gw.outcome(id).expect_forwarded();
        gw.respond(id, 200, JSON, b"{}");
    }
    for _ in 0..20 {
        let before = Counters::snapshot(&gw);
        let id = chat(&mut gw, 0, SUPPORT_BOT, &huge);
        gw.settle();
        assert_denied(&gw, &before, id, 403, "prompt_anomaly");
        assert_eq!(audit_of(&gw, id)["prompt_anomaly_baseline"], usual.len());
    }
    let id = chat(&mut gw, 0, SUPPORT_BOT, usual);
    gw.settle();
    gw.outcome(id).expect_forwarded();
    // Another workload has no baseline yet: not judged while warming up.
    let id = chat(&mut gw, 0, OTHER_BOT, &huge);
    gw.settle();
    gw.outcome(id).expect_forwarded();

    cfg["prompt_guards"][0]["action"] = json!("record");
    assert!(gw.reconfigure(0, cfg.to_string()));
    let id = chat(&mut gw, 0, SUPPORT_BOT, &huge);
    gw.settle();
    gw.outcome(id).expect_forwarded();
    assert_eq!(gw.metric("tollgate.prompt_anomaly.recorded"), Some(1));
    end_stream(&mut gw, id);
    assert_eq!(audit_of(&gw, id)["prompt_anomaly_baseline"], usual.len());
    assert_no_leak(&gw, &gw.stream_ids(), &all_keys());
}

/// Streamed body mode (a stock Istio WasmPlugin): the headers leave before
/// the body is read, so a token budget is reserved at the body's end; a
/// refusal is then the client's answer (Envoy resets the upstream stream,
/// which never got the body) and holds nothing.
#[test]
fn in_streamed_mode_a_refusal_at_the_body_resets_upstream_and_holds_nothing() {
    let mut cfg = with_budgets(
        json!([{"name": "t", "tokens": 1, "window": "hour", "scope": "shared"}]),
        json!({"max_output_tokens": 100, "budgets": ["t"]}),
    );
    cfg["body_mode"] = json!("streamed");
    let body = r#"{"model":"gpt-4o-mini","max_tokens":100}"#;
    let hold = body.len() as u64 + 100;
    cfg["budgets"][0]["tokens"] = json!(hold);
    let creds = credential_service();
    let mut gw = warm_gateway_with(&cfg, 1, &creds);
    let key = "tollgate/v1/budget/t";
    let first = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    gw.outcome(first).expect_forwarded();
    assert_eq!(balance(&gw, key), (0, hold));
    let before = Counters::snapshot(&gw);
    let second = chat(&mut gw, 0, SUPPORT_BOT, body);
    gw.settle();
    // Its headers had left; the refusal is the client's answer.
    assert_denied(&gw, &before, second, 429, "token_budget_exhausted");
    assert_eq!(
        balance(&gw, key),
        (0, hold),
        "the refused request holds nothing"
    );
    gw.respond(first, 200, JSON, &usage_answer(3, 4));
    assert_eq!(balance(&gw, key), (7, 0));
}
