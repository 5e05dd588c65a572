//! How many host calls a request costs Tollgate, counted on the real
//! tollgate.wasm: a budget for the hot path.
//!
//! In Envoy's v8 each call that returns data or edits a header costs about
//! 1 to 1.4 µs of gateway CPU, a stream's first property read several
//! times that, while the clock and counters cost almost nothing
//! (BENCHMARKS.md, "Host calls, one at a time"; `make bench-envoy` with
//! `--probes`). So the costly calls are counted exactly: a change that adds
//! one to the cached path fails here, and must say in the budget why it is
//! worth a microsecond per request. The cheap ones have a ceiling.

use tollgate_harness::{Gateway, HostFault, Status};
use tollgate_tests::*;

/// Every import's calls during `f`, by name (without the `env.` module).
fn calls(gw: &mut Gateway, f: impl FnOnce(&mut Gateway)) -> Vec<(String, u64)> {
    let imports: Vec<String> = module()
        .imports()
        .iter()
        .filter_map(|i| i.strip_prefix("env.").map(str::to_string))
        .collect();
    for import in &imports {
        // A fault that never fires counts the calls.
        gw.fault(import, HostFault::new(Status::Ok).times(0));
    }
    f(gw);
    let counted = imports
        .iter()
        .map(|i| (i.clone(), gw.fault_seen(i)))
        .collect();
    gw.clear_faults();
    counted
}

fn count(counted: &[(String, u64)], import: &str) -> u64 {
    counted
        .iter()
        .find(|(i, _)| i == import)
        .map_or(0, |(_, n)| *n)
}

/// A chat request with a small JSON body and its JSON answer, on a cache
/// warmed under the shared fixture `config()`, then under `config`.
fn chat_exchange(config: &serde_json::Value, model: &str) -> Vec<(String, u64)> {
    let creds = credential_service();
    let mut gw = warm_gateway(&tollgate_tests::config(), &creds);
    assert!(
        gw.reconfigure(0, config.to_string()),
        "the budget's policy loads"
    );
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    calls(&mut gw, |gw| {
        let id = request_on(
            gw,
            0,
            SUPPORT_BOT,
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
        )
        .header("authorization", "Bearer placeholder")
        .header("content-type", "application/json")
        .body(body.into_bytes())
        .send();
        gw.settle();
        gw.outcome(id).expect_forwarded();
        gw.respond(
            id,
            200,
            &[("content-type", b"application/json")],
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        );
    })
}

/// The budget: (import, exact count) for the costly calls, then (import,
/// ceiling) for the cheap ones; every other import must not be called.
fn check(counted: &[(String, u64)], exact: &[(&str, u64)], at_most: &[(&str, u64)]) {
    for (import, n) in counted {
        if *n == 0 {
            continue;
        }
        let known = exact.iter().chain(at_most).any(|(i, _)| i == import);
        assert!(
            known,
            "{import} is called {n} times and is not in the budget: {counted:?}"
        );
    }
    for (import, n) in exact {
        assert_eq!(count(counted, import), *n, "{import}: {counted:?}");
    }
    for (import, n) in at_most {
        assert!(count(counted, import) <= *n, "{import}: {counted:?}");
    }
}

/// The costly calls of a forwarded chat request on a warm cache, whether
/// or not its rule names models: an OpenAI chat body is read anyway (for
/// `stream_options.include_usage`), so both are held for their body.
const FORWARDED: [(&str, u64); 8] = [
    // Request and response headers, each read once, whole.
    ("proxy_get_header_map_pairs", 2),
    // The caller's SPIFFE ID (a URI SAN): the one property read.
    ("proxy_get_property", 1),
    // The credential, read once: a held body that passes within
    // HELD_READ_REUSE_MS uses the read made at the headers.
    ("proxy_get_shared_data", 1),
    // The client's `authorization` placeholder.
    ("proxy_remove_header_map_value", 1),
    // The credential header and `accept-encoding: identity`.
    ("proxy_replace_header_map_value", 2),
    // The request body, and the response body (usage, key echoes).
    ("proxy_get_buffer_bytes", 2),
    // The audit record, once, at the stream's end.
    ("proxy_set_property", 1),
    // Nothing is rewritten in these bodies.
    ("proxy_set_buffer_bytes", 0),
];

/// Cheap calls: the clock (read per callback that needs it) and counters
/// (cache hit, decision).
const CHEAP: [(&str, u64); 2] = [
    ("proxy_get_current_time_nanoseconds", 5),
    ("proxy_increment_metric", 2),
];

#[test]
fn a_cached_header_rule_request_stays_within_its_host_call_budget() {
    let counted = chat_exchange(&config(), "gpt-4o-mini");
    check(&counted, &FORWARDED, &CHEAP);
}

#[test]
fn a_cached_model_rule_request_stays_within_its_host_call_budget() {
    let mut config = config();
    // The support bot's chat rule, with a model list.
    let rules = config["rules"].as_array_mut().unwrap();
    let chat = rules
        .iter_mut()
        .find(|r| r["name"] == "support-chat")
        .expect("the fixture's support-chat rule");
    chat["models"] = serde_json::json!(["gpt-4o-mini"]);
    let counted = chat_exchange(&config, "gpt-4o-mini");
    check(&counted, &FORWARDED, &CHEAP);
}
