//! Guest cost per request on the cached path, measured in the harness: the
//! full stream lifecycle (context create, request headers with stripping,
//! identity, policy, cache read and injection, audit line, response, done,
//! log, delete) of the real tollgate.wasm. Target: under 10 µs per cached
//! request.
//!
//! The body path (issue 8), split into its parts: a 2 KB chat request under
//! a rule with a model list and a clamped cap (read, checked, spliced,
//! Content-Length fixed), answered with no body, then with 4 KB of JSON
//! (usage read, key echoes looked for); then the same with a request and
//! a token budget on the rule (reserved at admission and at the body,
//! settled at the end: issue 9's local tier).

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_tests::scenario::Policy;
use tollgate_tests::*;

/// A 2 KB chat request asking for more output tokens than the cap.
fn chat_2k() -> String {
    let mut content = String::new();
    while content.len() < 1900 {
        content.push_str("Summarise the ticket history and propose a reply. ");
    }
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":5000,"messages":[{{"role":"system","content":"You are a support assistant."}},{{"role":"user","content":"{content}"}}]}}"#
    )
}

/// A 4 KB chat completion with usage.
fn answer_4k() -> Vec<u8> {
    let mut text = String::new();
    while text.len() < 3800 {
        text.push_str("Thank you for your patience; here is what we found. ");
    }
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":512,"completion_tokens":700,"total_tokens":1212}}}}"#
    )
    .into_bytes()
}

/// [`Policy::Bodies`] with, on the chat rule, a per-workload request budget
/// and a per-workload token budget that never run out.
fn bodies_with_budgets() -> serde_json::Value {
    let mut c = Policy::Bodies.config();
    c["budgets"] = serde_json::json!([
        {"name": "rpm", "requests": 1_000_000_000_000u64, "window": "minute"},
        {"name": "tokens", "tokens": 1_000_000_000_000_000u64, "window": "minute"}
    ]);
    if let Some(rules) = c["rules"].as_array_mut() {
        for r in rules.iter_mut().filter(|r| r["name"] == "chatbot-clamp") {
            r["budgets"] = serde_json::json!(["rpm", "tokens"]);
        }
    }
    c
}

fn body_path(c: &mut Criterion) {
    body_path_with(c, "harness_body_path", Policy::Bodies.config());
    body_path_with(c, "harness_body_path_budgets", bodies_with_budgets());
}

fn body_path_with(c: &mut Criterion, group: &str, config: serde_json::Value) {
    let creds = credential_service();
    let mut gw = gateway(&config, 1, &creds);
    let body = chat_2k();
    let answer = answer_4k();
    let json: &[(&str, &[u8])] = &[("content-type", b"application/json")];
    let mut send = |gw: &mut tollgate_harness::Gateway| {
        let id = gw
            .request(0)
            .mtls(true)
            .peer_uri_san(CHATBOT)
            .method("POST")
            .authority("api.openai.com")
            .path("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("content-length", &body.len().to_string())
            .body(body.as_str())
            .send();
        gw.settle();
        id
    };
    let warm = send(&mut gw);
    let sent = gw.outcome(warm).expect_forwarded().body_str();
    assert!(sent.contains(r#""max_tokens":2000"#), "clamped: {sent}");
    gw.respond(warm, 200, json, &answer);

    let mut g = c.benchmark_group(group);
    g.bench_function("chat_2k_clamped_empty_answer", |b| {
        b.iter(|| {
            let id = send(&mut gw);
            gw.respond(id, 200, json, b"");
        })
    });
    g.bench_function("chat_2k_clamped_4k_json_answer", |b| {
        b.iter(|| {
            let id = send(&mut gw);
            gw.respond(id, 200, json, &answer);
        })
    });
    g.finish();
    assert_eq!(creds.requests(), 1, "the cached path never fetched");
    assert_eq!(gw.trap(), None);
}

fn bench(c: &mut Criterion) {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let warm = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    gw.outcome(warm).expect_forwarded();
    gw.respond(warm, 200, &[], b"");

    let mut g = c.benchmark_group("harness_request");
    g.bench_function("cached_allow", |b| {
        b.iter(|| {
            let id = gw
                .request(0)
                .mtls(true)
                .peer_uri_san(SUPPORT_BOT)
                .method("POST")
                .authority("api.openai.com")
                .path("/v1/chat/completions")
                .header("authorization", "Bearer placeholder")
                .header("content-type", "application/json")
                .send();
            gw.respond(id, 200, &[], b"");
        })
    });
    g.bench_function("deny_unknown_workload", |b| {
        b.iter(|| {
            let id = gw
                .request(0)
                .mtls(true)
                .peer_uri_san(STRANGER)
                .method("POST")
                .authority("api.openai.com")
                .path("/v1/chat/completions")
                .send();
            gw.cancel(id);
        })
    });
    g.finish();
    assert_eq!(creds.requests(), 1, "the cached path never fetched");
    assert_eq!(gw.trap(), None);
}

criterion_group!(benches, bench, body_path);
criterion_main!(benches);
