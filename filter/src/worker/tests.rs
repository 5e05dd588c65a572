//! The worker against [`FakeHost`]: single flight, deadlines, wake-ups,
//! refresh-ahead, dispatch failure and every fail-closed branch, without
//! wasmtime or Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fake_host::FakeHost;
use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ROOT: u32 = 1;
const APP: &[u8] = b"spiffe://cluster.local/ns/app/sa/web";
const CONFIG: &str = r#"{
  "trust_domains": ["cluster.local"],
  "credential_service": {"cluster": "creds", "authority": "creds.local", "protocol": "tollgate_v1",
                         "timeout": "2s", "ttl": "60s", "refresh_ahead": "10s"},
  "providers": [
    {"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}}
  ],
  "rules": [
    {"name": "chat", "workloads": ["spiffe://cluster.local/ns/app/*"], "providers": ["openai"],
     "endpoints": ["POST /v1/chat/completions"]}
  ]
}"#;

fn worker(host: &FakeHost) -> Worker<&FakeHost> {
    host.add_context(ROOT);
    let w = Worker::new(host, ROOT);
    host.enter(ROOT);
    assert!(w.on_configure(CONFIG.as_bytes()));
    w
}

fn request(host: &FakeHost, ctx: u32) {
    host.add_stream(
        ctx,
        &[
            (":method", b"POST"),
            (":authority", b"api.openai.com"),
            (":path", b"/v1/chat/completions"),
            ("authorization", b"Bearer placeholder"),
        ],
        Some(APP),
    );
}

/// Stream `ctx` for `authority`, without a client credential, entered.
fn request_to(host: &FakeHost, ctx: u32, authority: &[u8]) {
    host.add_stream(
        ctx,
        &[
            (":method", b"POST"),
            (":authority", authority),
            (":path", b"/v1/chat/completions"),
        ],
        Some(APP),
    );
    host.enter(ctx);
}

fn send(w: &Worker<&FakeHost>, host: &FakeHost, ctx: u32) -> Action {
    request(host, ctx);
    host.enter(ctx);
    w.on_request_headers(ctx, true)
}

fn answer(w: &Worker<&FakeHost>, host: &FakeHost, token: u32, status: u16, body: &str) {
    host.set_call_response(Some(status), body.as_bytes());
    host.enter(ROOT);
    w.on_http_call_response(token, 1, body.len());
}

/// Answers dispatched call number `call` with `value` (id `k1`, 60 s).
fn answer_key(w: &Worker<&FakeHost>, host: &FakeHost, call: usize, value: &str) {
    let token = host.calls()[call].token;
    answer(w, host, token, 200, &key(value, "k1", 60));
}

fn key(value: &str, id: &str, expires_in_s: u64) -> String {
    format!(r#"{{"value":"{value}","id":"{id}","expires_in_s":{expires_in_s}}}"#)
}

fn end(w: &Worker<&FakeHost>, host: &FakeHost, ctx: u32) {
    host.enter(ctx);
    w.on_log(ctx);
    w.on_delete(ctx);
}

fn authorization(host: &FakeHost, ctx: u32) -> Vec<Vec<u8>> {
    host.header(ctx, "authorization")
}

fn reply_reason(host: &FakeHost, ctx: u32) -> Option<(u32, String)> {
    host.replies(ctx)
        .last()
        .map(|r| (r.status, r.details.clone()))
}

#[test]
fn single_flight_one_fetch_from_the_root_wakes_every_waiter() {
    let host = FakeHost::new();
    let w = worker(&host);
    for ctx in 10..15 {
        assert_eq!(send(&w, &host, ctx), Action::Pause);
    }
    let calls = host.calls();
    assert_eq!(calls.len(), 1, "one fetch for five requests");
    assert_eq!(calls[0].owner, ROOT, "the fetch belongs to the worker");
    assert_eq!(host.tick_ms(), TICK_FAST_MS, "fast tick while waiting");
    answer(&w, &host, calls[0].token, 200, &key("sk-real", "k1", 60));
    for ctx in 10..15 {
        assert_eq!(authorization(&host, ctx), vec![b"Bearer sk-real".to_vec()]);
        assert_eq!(host.resumed(ctx), 1);
    }
    // A warm request is forwarded in its own callback.
    assert_eq!(send(&w, &host, 20), Action::Continue);
    assert_eq!(host.resumed(20), 0);
    assert_eq!(host.counter("tollgate.cache.hit"), 1);
    assert_eq!(host.counter("tollgate.decision.allow"), 6);
    host.enter(ROOT);
    w.on_tick();
    assert_eq!(host.tick_ms(), TICK_IDLE_MS, "idle tick once nothing waits");
    assert_eq!(
        host.shared_keys(),
        ["tollgate/v1/cred/openai"],
        "one shared-data key per credential, lease included"
    );
}

#[test]
fn a_reset_holder_cancels_nothing_and_refresh_still_happens() {
    let host = FakeHost::new();
    let w = worker(&host);
    assert_eq!(send(&w, &host, 10), Action::Pause);
    assert_eq!(send(&w, &host, 11), Action::Pause);
    // The request that caused the fetch goes away.
    end(&w, &host, 10);
    host.remove_context(10);
    assert_eq!(host.counter("tollgate.decision.abandoned"), 1);
    let token = host.calls()[0].token;
    answer(&w, &host, token, 200, &key("sk-1", "k1", 60));
    assert_eq!(authorization(&host, 11), vec![b"Bearer sk-1".to_vec()]);
    assert_eq!(w.fetches_in_flight(), 0);
    assert_eq!(w.live_streams(), 1);
    // Refresh-ahead still runs for the key: 10s before expiry.
    host.advance(51_000);
    host.enter(ROOT);
    w.on_tick();
    let calls = host.calls();
    assert_eq!(calls.len(), 2, "refresh dispatched");
    assert_eq!(calls[1].owner, ROOT);
    // Requests keep the old value while the refresh is in flight.
    assert_eq!(send(&w, &host, 12), Action::Continue);
    assert_eq!(authorization(&host, 12), vec![b"Bearer sk-1".to_vec()]);
    answer(&w, &host, calls[1].token, 200, &key("sk-2", "k2", 60));
    assert_eq!(send(&w, &host, 13), Action::Continue);
    assert_eq!(authorization(&host, 13), vec![b"Bearer sk-2".to_vec()]);
}

#[test]
fn waiters_on_another_worker_are_woken_by_the_tick() {
    let host = FakeHost::new();
    let a = worker(&host);
    host.add_context(2);
    let b = Worker::new(&host, 2);
    host.enter(2);
    assert!(b.on_configure(CONFIG.as_bytes()));
    assert_eq!(send(&a, &host, 10), Action::Pause);
    assert_eq!(send(&b, &host, 20), Action::Pause);
    assert_eq!(host.calls().len(), 1, "one fetch across workers");
    answer_key(&a, &host, 0, "sk-1");
    assert!(authorization(&host, 20).is_empty(), "b has not looked yet");
    host.advance(20);
    host.enter(2);
    b.on_tick();
    assert_eq!(authorization(&host, 20), vec![b"Bearer sk-1".to_vec()]);
    assert_eq!(host.resumed(20), 1);
}

#[test]
fn a_waiter_past_its_deadline_gets_503() {
    let host = FakeHost::new();
    let w = worker(&host);
    assert_eq!(send(&w, &host, 10), Action::Pause);
    let limit = w.config().unwrap().credential_service.wait_limit_ms();
    host.advance(limit - 1);
    host.enter(ROOT);
    w.on_tick();
    assert!(host.replies(10).is_empty());
    host.advance(1);
    w.on_tick();
    assert_eq!(
        reply_reason(&host, 10),
        Some((503, "tollgate_credential_unavailable".into()))
    );
    assert_eq!(
        host.counter("tollgate.decision.deny.credential_unavailable"),
        1
    );
}

#[test]
fn a_failed_dispatch_answers_at_once() {
    let host = FakeHost::new();
    let w = worker(&host);
    host.fault("dispatch", HostError::BAD_ARGUMENT);
    assert_eq!(send(&w, &host, 10), Action::Pause);
    assert_eq!(
        reply_reason(&host, 10),
        Some((503, "tollgate_credential_unavailable".into()))
    );
    assert_eq!(host.counter("tollgate.fetch.dispatch_failed"), 1);
    // The lease was released: the next request may fetch.
    host.clear_faults();
    host.advance(1);
    assert_eq!(send(&w, &host, 11), Action::Pause);
    assert_eq!(host.calls().len(), 1);
}

#[test]
fn a_late_answer_whose_lease_was_taken_over_is_discarded() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 10);
    let first = host.calls()[0].token;
    let lease_ms = w.config().unwrap().credential_service.lease_ms();
    host.advance(lease_ms);
    host.enter(ROOT);
    w.on_tick(); // the waiter takes over the dead lease
    let calls = host.calls();
    assert_eq!(calls.len(), 2);
    answer(&w, &host, calls[1].token, 403, "");
    assert_eq!(
        reply_reason(&host, 10),
        Some((403, "tollgate_credential_denied".into()))
    );
    answer(&w, &host, first, 200, &key("sk-revoked", "k0", 60));
    assert_eq!(host.counter("tollgate.fetch.superseded"), 1);
    host.advance(1);
    assert_eq!(send(&w, &host, 11), Action::Pause, "no value came back");
    assert!(authorization(&host, 11).is_empty());
}

/// Every host call on the request path fails closed with `internal_error`.
#[test]
fn every_host_failure_on_the_request_path_fails_closed() {
    for method in [
        "now_ms",
        "header_map",
        "remove_header",
        "property",
        "shared_get",
        "replace_header",
    ] {
        let host = FakeHost::new();
        let w = worker(&host);
        host.fault(method, HostError::INTERNAL_FAILURE);
        // Warm path for replace_header (the credential write).
        if method == "replace_header" {
            host.clear_faults();
            send(&w, &host, 5);
            answer_key(&w, &host, 0, "sk-1");
            host.fault(method, HostError::INTERNAL_FAILURE);
        }
        let action = send(&w, &host, 10);
        assert_eq!(action, Action::Pause, "{method}");
        assert!(host.fault_hits(method) > 0, "{method} was reached");
        host.clear_faults();
        assert_eq!(
            reply_reason(&host, 10),
            Some((500, "tollgate_internal_error".into())),
            "{method}"
        );
        assert_eq!(host.resumed(10), 0, "{method}: never forwarded");
        assert!(
            !authorization(&host, 10).contains(&b"Bearer sk-1".to_vec()),
            "{method}: the key was not written"
        );
        assert_eq!(host.counter("tollgate.decision.deny.internal_error"), 1);
    }
}

#[test]
fn a_clock_failure_on_the_tick_fails_waiters_closed() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 10);
    host.fault("now_ms", HostError::INTERNAL_FAILURE);
    host.enter(ROOT);
    w.on_tick();
    host.clear_faults();
    assert_eq!(
        reply_reason(&host, 10),
        Some((500, "tollgate_internal_error".into()))
    );
}

#[test]
fn a_clock_failure_at_the_answer_releases_the_lease_and_fails_waiters() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 10);
    host.fault("now_ms", HostError::INTERNAL_FAILURE);
    answer_key(&w, &host, 0, "sk-1");
    host.clear_faults();
    assert_eq!(
        reply_reason(&host, 10),
        Some((500, "tollgate_internal_error".into()))
    );
    // Not stored with a bogus date, and the lease is free.
    assert_eq!(send(&w, &host, 11), Action::Pause);
    assert_eq!(host.calls().len(), 2);
}

#[test]
fn trailers_are_stripped_and_trip_the_tripwire() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 5);
    answer_key(&w, &host, 0, "sk-1");
    assert_eq!(send(&w, &host, 10), Action::Continue);
    host.set_trailers(
        10,
        &[
            ("x-api-key", b"sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
            ("authorization", b"Bearer x"),
            ("x-checksum", b"abc"),
        ],
    );
    assert_eq!(w.on_request_trailers(10), Action::Continue);
    assert_eq!(host.trailer_names(10), vec!["x-checksum".to_string()]);
    assert_eq!(host.counter("tollgate.client_key_seen"), 1);
    end(&w, &host, 10);
    let audit = host.filter_state(10, AUDIT_PROPERTY).unwrap();
    assert!(
        String::from_utf8(audit)
            .unwrap()
            .contains(r#""client_key_seen":true"#),
        "the final record notes the trailer key"
    );
}

#[test]
fn the_audit_record_goes_to_filter_state_once_and_never_holds_the_key() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 10);
    answer_key(&w, &host, 0, "sk-secret-value");
    // Forwarded: its response will change the record, so nothing is written
    // at the verdict; the record is written once, at the stream's end.
    assert_eq!(host.filter_state(10, AUDIT_PROPERTY), None);
    end(&w, &host, 10);
    assert_eq!(host.filter_state_writes(10), 1);
    let text = String::from_utf8(host.filter_state(10, AUDIT_PROPERTY).unwrap()).unwrap();
    assert!(text.contains(r#""decision":"allow""#), "{text}");
    assert!(text.contains(r#""host":"api.openai.com""#), "{text}");
    assert!(!text.contains("sk-secret-value"));
    // Refused: written at the verdict, and not again at the end.
    host.add_stream(
        12,
        &[
            (":method", b"POST"),
            (":authority", b"api.openai.com"),
            (":path", b"/v1/chat/completions"),
        ],
        Some(b"spiffe://cluster.local/ns/other/sa/intruder"),
    );
    host.enter(12);
    assert_eq!(w.on_request_headers(12, true), Action::Pause);
    let at_verdict = host.filter_state(12, AUDIT_PROPERTY).unwrap();
    assert!(String::from_utf8_lossy(&at_verdict).contains(r#""decision":"deny""#));
    end(&w, &host, 12);
    assert_eq!(host.filter_state(12, AUDIT_PROPERTY).unwrap(), at_verdict);
    assert_eq!(host.filter_state_writes(12), 1);
    assert!(
        host.logs()
            .iter()
            .all(|(_, l)| !l.contains("tollgate.request")),
        "not on the logger by default"
    );
    // An abandoned request is recorded at its end.
    send(&w, &host, 11);
    host.fault("dispatch", HostError::BAD_ARGUMENT);
    let host2 = FakeHost::new();
    let w2 = worker(&host2);
    send(&w2, &host2, 20);
    end(&w2, &host2, 20);
    let abandoned = String::from_utf8(host2.filter_state(20, AUDIT_PROPERTY).unwrap()).unwrap();
    assert!(
        abandoned.contains(r#""decision":"abandoned""#),
        "{abandoned}"
    );
}

#[test]
fn unconfigured_workers_fail_closed() {
    let host = FakeHost::new();
    host.add_context(ROOT);
    let w = Worker::new(&host, ROOT);
    assert_eq!(send(&w, &host, 10), Action::Pause);
    assert_eq!(
        reply_reason(&host, 10),
        Some((500, "tollgate_internal_error".into()))
    );
    host.enter(ROOT);
    assert!(!w.on_configure(b"{\"mode\": 1}"));
}

#[test]
fn the_routed_host_is_the_canonical_host_that_was_approved() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 5);
    answer_key(&w, &host, 0, "sk-1");
    request_to(&host, 10, b"API.OpenAI.com:443");
    assert_eq!(w.on_request_headers(10, true), Action::Continue);
    assert_eq!(
        host.header(10, ":authority"),
        vec![b"api.openai.com".to_vec()]
    );
    // Already canonical: no rewrite (no extra host call).
    assert_eq!(
        host.header(5, ":authority"),
        vec![b"api.openai.com".to_vec()]
    );
}

#[test]
fn a_reply_the_host_refuses_resets_the_stream_instead_of_hanging() {
    let host = FakeHost::new();
    let w = worker(&host);
    host.fault("send_reply", HostError::INTERNAL_FAILURE);
    request_to(&host, 10, b"evil.example");
    assert_eq!(w.on_request_headers(10, true), Action::Pause);
    assert!(host.closed(10));
}

#[test]
fn a_resume_the_host_refuses_becomes_a_reply_not_a_hang() {
    let host = FakeHost::new();
    let w = worker(&host);
    send(&w, &host, 10);
    host.fault("resume_request", HostError::BAD_ARGUMENT);
    answer_key(&w, &host, 0, "sk-1");
    host.clear_faults();
    assert_eq!(
        reply_reason(&host, 10),
        Some((500, "tollgate_internal_error".into()))
    );
}

#[test]
fn a_fetch_that_could_not_be_owned_by_the_root_never_blocks_refreshes() {
    let host = FakeHost::new();
    let w = worker(&host);
    // The root cannot be made effective: the fetch is dispatched from the
    // stream, and the stream's reset cancels it (no answer ever comes).
    host.fault("set_effective_context", HostError::BAD_ARGUMENT);
    send(&w, &host, 10);
    host.clear_faults();
    assert_eq!(host.calls()[0].owner, 10);
    end(&w, &host, 10);
    host.remove_context(10);
    assert_eq!(w.fetches_in_flight(), 1);
    // The next request takes over the dead lease and gets the key.
    let lease_ms = w.config().unwrap().credential_service.lease_ms();
    host.advance(lease_ms + 1);
    send(&w, &host, 11);
    let calls = host.calls();
    assert_eq!(calls.len(), 2);
    answer(&w, &host, calls[1].token, 200, &key("sk-1", "k1", 60));
    assert_eq!(authorization(&host, 11), vec![b"Bearer sk-1".to_vec()]);
    // The cancelled call is forgotten, so refresh-ahead still runs.
    host.advance(51_000);
    host.enter(ROOT);
    w.on_tick();
    assert_eq!(w.fetches_in_flight(), 1, "only the refresh is in flight");
    assert_eq!(host.calls().len(), 3, "refresh dispatched");
}

/// A held request (its rule reads the body) whose body passes within
/// `HELD_READ_REUSE_MS` of its credential read uses that read; a slower one
/// reads the cache again, and so writes a key rotated in between.
#[test]
fn a_held_request_reuses_its_credential_read_only_while_it_is_recent() {
    use crate::credential::entry::Entry;
    use crate::flow::HELD_READ_REUSE_MS;
    let host = FakeHost::new();
    host.add_context(ROOT);
    let w = Worker::new(&host, ROOT);
    host.enter(ROOT);
    let config = CONFIG.replace(
        r#""endpoints": ["POST /v1/chat/completions"]}"#,
        r#""endpoints": ["POST /v1/chat/completions"], "models": ["gpt-4o-mini"]}"#,
    );
    assert!(w.on_configure(config.as_bytes()));
    let body = br#"{"model":"gpt-4o-mini","messages":[]}"#;
    let headers = |ctx| {
        host.add_stream(
            ctx,
            &[
                (":method", b"POST"),
                (":authority", b"api.openai.com"),
                (":path", b"/v1/chat/completions"),
                ("content-type", b"application/json"),
            ],
            Some(APP),
        );
        host.enter(ctx);
        w.on_request_headers(ctx, false)
    };
    let body_ends = |ctx| {
        host.set_body(ctx, BodyBuffer::Request, body);
        host.enter(ctx);
        w.on_request_body(ctx, body.len(), true)
    };
    // Cold: the fetch, then the body.
    assert_eq!(headers(10), Action::Pause);
    answer_key(&w, &host, 0, "sk-first-0123456789");
    assert_eq!(body_ends(10), Action::Continue);
    assert_eq!(
        authorization(&host, 10),
        vec![b"Bearer sk-first-0123456789".to_vec()]
    );

    // Warm, body at once: one read, at the headers.
    let before = host.shared_reads();
    assert_eq!(headers(11), Action::Pause, "held for its body");
    host.advance(HELD_READ_REUSE_MS);
    assert_eq!(body_ends(11), Action::Continue);
    assert_eq!(host.shared_reads() - before, 1);
    assert_eq!(
        authorization(&host, 11),
        vec![b"Bearer sk-first-0123456789".to_vec()]
    );

    // Warm, slow body, the key rotated meanwhile: read again, new key.
    let before = host.shared_reads();
    assert_eq!(headers(12), Action::Pause);
    let cache_key = host
        .shared_keys()
        .into_iter()
        .find(|k| k.contains("openai"))
        .unwrap();
    let (bytes, cas) = host.shared_get(&cache_key).unwrap().unwrap();
    let mut entry = Entry::decode(&bytes).unwrap();
    entry.value = Some("sk-second-0123456789".into());
    host.shared_set(&cache_key, &entry.encode(), cas).unwrap();
    host.advance(HELD_READ_REUSE_MS + 1);
    assert_eq!(body_ends(12), Action::Continue);
    assert_eq!(
        host.shared_reads() - before,
        3,
        "headers, the test's own, body"
    );
    assert_eq!(
        authorization(&host, 12),
        vec![b"Bearer sk-second-0123456789".to_vec()]
    );
}
