//! The global tier on the real `.wasm` (issue 9): budgets kept by a
//! rate-limit service on Redis, shared by gateway replicas. Two gateways
//! (two workers each), each with its own rate-limit service, share one
//! `redis-server`; the balances are read back through the protocol itself.
//! Needs `redis-server` (`make redis`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_harness::mock::MockCredentialService;
use tollgate_harness::ratelimit::RedisServer;
use tollgate_harness::{Gateway, Outcome, StreamId};
use tollgate_tests::budget_fixture::*;
use tollgate_tests::global_tier::{Tier, HOUR_0};
use tollgate_tests::*;

const RLS: &str = "ratelimit";
const BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":100}"#;
const CAP: u64 = 100;

fn global_config(budgets: Value, rule: Value, failure_mode: &str) -> Value {
    let mut c = config();
    c["rate_limit_service"] =
        json!({"cluster": RLS, "timeout": "3s", "failure_mode": failure_mode});
    c["budgets"] = budgets;
    merge_into_first_rule(&mut c, &rule);
    c
}

/// A gateway replica whose cache holds the OpenAI key (warmed through the
/// rule without budgets), calling rate-limit service `rls`.
fn replica(cfg: &Value, workers: usize, creds: &MockCredentialService, rls: SocketAddr) -> Gateway {
    let mut gw = Gateway::builder(module())
        .allow_on_headers_stop_iteration(true)
        .workers(workers)
        .plugin_config(cfg.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .cluster_grpc(RLS, rls)
        .build()
        .unwrap();
    warm_through_batch(&mut gw);
    gw
}

/// 500 requests at once, over two gateways of two workers each, against a
/// global token budget that holds a tenth of them: exactly 50 are admitted
/// (the holds never pass the budget), every other is a 429 with
/// `retry-after`, and once the admitted ones are answered, what the service
/// charged is exactly their usage.
#[test]
fn two_replicas_sharing_redis_admit_exactly_what_fits_and_charge_the_usage() {
    let tier = Tier::start(2);
    let hold = BODY.len() as u64 + CAP;
    let limit = hold * 50;
    let cfg = global_config(
        json!([{"name": "fleet", "tokens": limit, "window": "hour", "scope": "shared", "tier": "global"}]),
        json!({"max_output_tokens": CAP, "budgets": ["fleet"]}),
        "fail_closed",
    );
    let creds = credential_service();
    let mut replicas: Vec<Gateway> = tier
        .services
        .iter()
        .map(|s| replica(&cfg, 2, &creds, s.addr()))
        .collect();
    let mut ids: Vec<(usize, StreamId)> = Vec::new();
    for i in 0..500 {
        let r = i % 2;
        let workload = format!("spiffe://cluster.local/ns/support/sa/w{i}");
        ids.push((r, chat(&mut replicas[r], (i / 2) % 2, &workload, BODY)));
    }
    for gw in replicas.iter_mut() {
        gw.settle();
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for (r, id) in &ids {
        match replicas[*r].outcome(*id) {
            Outcome::Forwarded(_) => admitted.push((*r, *id)),
            Outcome::LocalReply(reply) => {
                if reply.status != 429 {
                    let log = replicas[*r].log_text();
                    let lines: Vec<&str> = log
                        .lines()
                        .filter(|l| l.contains("rate-limit"))
                        .take(5)
                        .collect();
                    panic!("{}: {lines:#?}", String::from_utf8_lossy(&reply.body));
                }
                assert_eq!(reply.header_str("retry-after").as_deref(), Some("3600"));
                assert!(String::from_utf8_lossy(&reply.body).contains("token_budget_exhausted"));
                refused += 1;
            }
            other => panic!("request {id:?} on replica {r}: {other:?}"),
        }
    }
    assert_eq!((admitted.len(), refused), (50, 450));
    assert!(
        !tier.fits("fleet", HOUR_0, limit as u32, 1),
        "the holds fill the budget"
    );
    // Answered with a usage of 12 + 30: the service charges exactly that.
    for (r, id) in &admitted {
        replicas[*r].respond(*id, 200, JSON, &usage_answer(12, 30));
    }
    for gw in replicas.iter_mut() {
        // Settlements are batched per worker until the next tick.
        gw.advance(Duration::from_millis(50));
        gw.settle();
        assert_eq!(gw.metric("tollgate.budget.global_settle_failed"), Some(0));
        assert_eq!(
            gw.metric("tollgate.budget.reservations_outstanding"),
            Some(0)
        );
        assert_eq!(gw.trap(), None);
    }
    let left = limit - 50 * 42;
    assert!(
        tier.fits("fleet", HOUR_0, limit as u32, left),
        "charged exactly the usage"
    );
    assert!(
        !tier.fits("fleet", HOUR_0, limit as u32, left + 1),
        "and not less"
    );
    for (r, gw) in replicas.iter().enumerate() {
        let mine: Vec<StreamId> = ids
            .iter()
            .filter(|(g, _)| *g == r)
            .map(|(_, id)| *id)
            .collect();
        assert_no_leak(gw, &mine, &all_keys());
    }
    let a = audit_of(&replicas[admitted[0].0], admitted[0].1);
    assert_eq!(a["budgets"], json!(["fleet"]), "{a}");
    assert_eq!(
        (a["tokens_reserved"].as_u64(), a["tokens_charged"].as_u64()),
        (Some(hold), Some(42)),
        "{a}"
    );
}

/// Redis killed mid-run: with `fail_closed` (the default) requests are
/// refused with 503 `budget_unavailable` and counted; with `fail_open` they
/// are admitted and counted; none hangs; once Redis is back on its port,
/// budgets are enforced again.
#[test]
fn redis_killed_mid_run_fails_closed_or_open_counted_and_nothing_hangs() {
    let mut tier = Tier::start(1);
    let budgets = json!([{"name": "rpm", "requests": 100, "window": "minute", "scope": "shared", "tier": "global"}]);
    let rule = json!({"budgets": ["rpm"]});
    let creds = credential_service();
    let rls = tier.services[0].addr();
    let mut closed = replica(
        &global_config(budgets.clone(), rule.clone(), "fail_closed"),
        1,
        &creds,
        rls,
    );
    let mut open = replica(&global_config(budgets, rule, "fail_open"), 1, &creds, rls);
    for gw in [&mut closed, &mut open] {
        let id = chat(gw, 0, SUPPORT_BOT, "{}");
        gw.settle();
        gw.outcome(id).expect_forwarded();
        gw.respond(id, 200, JSON, b"{}");
    }
    let port = tier.redis.addr();
    tier.redis.kill();
    let started = Instant::now();
    let before = Counters::snapshot(&closed);
    let refused = chat(&mut closed, 0, SUPPORT_BOT, "{}");
    closed.settle();
    assert_denied(&closed, &before, refused, 503, "budget_unavailable");
    let admitted = chat(&mut open, 0, SUPPORT_BOT, "{}");
    open.settle();
    open.outcome(admitted).expect_forwarded();
    assert_eq!(open.metric("tollgate.budget.global_fail_open"), Some(1));
    assert_eq!(closed.metric("tollgate.budget.global_fail_open"), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no request hangs"
    );
    open.respond(admitted, 200, JSON, b"{}");
    // Redis back on its port: enforced again.
    tier.redis = RedisServer::start_on(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let id = chat(&mut closed, 0, SUPPORT_BOT, "{}");
        closed.settle();
        if matches!(closed.outcome(id), Outcome::Forwarded(_)) {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    end_open_streams(&mut closed);
    end_open_streams(&mut open);
    assert_eq!(closed.trap(), None);
}

/// A global request budget per workload: its limit, then 429 with
/// `retry-after` to the end of the UTC minute, then admitted again in the
/// next minute (a new window id, a new count); another workload has its
/// own; and the global tier writes nothing to Envoy's shared data.
#[test]
fn a_global_window_resets_and_retry_after_is_the_rest_of_it() {
    let tier = Tier::start(1);
    let cfg = global_config(
        json!([{"name": "rpm", "requests": 2, "window": "minute", "tier": "global"}]),
        json!({"budgets": ["rpm"]}),
        "fail_closed",
    );
    let creds = credential_service();
    let mut gw = replica(&cfg, 1, &creds, tier.services[0].addr());
    let keys_before = gw.shared_data_keys();
    for _ in 0..2 {
        let id = chat(&mut gw, 0, SUPPORT_BOT, "{}");
        gw.settle();
        gw.outcome(id).expect_forwarded();
        gw.respond(id, 200, JSON, b"{}");
    }
    gw.advance(Duration::from_secs(15));
    gw.settle();
    let before = Counters::snapshot(&gw);
    let refused = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    let reply = assert_denied(&gw, &before, refused, 429, "rate_limited");
    // The clock started on a minute boundary; 15 s have passed.
    assert_eq!(reply.header_str("retry-after").as_deref(), Some("45"));
    let other = chat(
        &mut gw,
        0,
        "spiffe://cluster.local/ns/support/sa/other",
        "{}",
    );
    gw.settle();
    gw.outcome(other).expect_forwarded();
    gw.advance(Duration::from_secs(45));
    gw.settle();
    let again = chat(&mut gw, 0, SUPPORT_BOT, "{}");
    gw.settle();
    gw.outcome(again).expect_forwarded();
    end_open_streams(&mut gw);
    gw.advance(Duration::from_millis(50));
    gw.settle();
    assert_eq!(
        gw.shared_data_keys(),
        keys_before,
        "no shared data for global budgets"
    );
    assert_eq!(gw.trap(), None);
}

/// Streamed body mode: the headers leave first, so the global hold is asked
/// for at the body's end while the body waits; admitted, the body follows
/// the headers; refused, the client gets the 429 (Envoy resets upstream).
#[test]
fn in_streamed_mode_the_body_waits_for_the_service() {
    let tier = Tier::start(1);
    let hold = BODY.len() as u64 + CAP;
    let mut cfg = global_config(
        json!([{"name": "fleet", "tokens": hold, "window": "hour", "scope": "shared", "tier": "global"}]),
        json!({"max_output_tokens": CAP, "budgets": ["fleet"]}),
        "fail_closed",
    );
    cfg["body_mode"] = json!("streamed");
    let creds = credential_service();
    let mut gw = Gateway::builder(module())
        .workers(1)
        .plugin_config(cfg.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .cluster_grpc(RLS, tier.services[0].addr())
        .build()
        .unwrap();
    let first = chat(&mut gw, 0, SUPPORT_BOT, BODY);
    gw.settle();
    let sent = gw.outcome(first).expect_forwarded().body.clone();
    assert_eq!(
        sent,
        BODY.as_bytes(),
        "the body followed once the hold was granted"
    );
    assert!(!tier.fits("fleet", HOUR_0, hold as u32, 1), "held");
    let before = Counters::snapshot(&gw);
    let second = chat(&mut gw, 0, SUPPORT_BOT, BODY);
    gw.settle();
    assert_denied(&gw, &before, second, 429, "token_budget_exhausted");
    gw.respond(first, 200, JSON, &usage_answer(3, 4));
    gw.advance(Duration::from_millis(50));
    gw.settle();
    assert!(
        tier.fits("fleet", HOUR_0, hold as u32, hold - 7),
        "settled to 7 tokens"
    );
    assert!(!tier.fits("fleet", HOUR_0, hold as u32, hold - 6));
    assert_eq!(gw.trap(), None);
}
