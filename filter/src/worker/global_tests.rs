//! The worker's global tier against [`FakeHost`]: the request waits for
//! the rate-limit service, the answer admits or refuses it, a missing
//! answer fails closed (or open, counted), and settlements are sent from
//! the root context with the hold ids the admission returned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fake_host::FakeHost;
use super::*;
use crate::budget::global::{RESERVATION_HEADER, SERVICE};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ROOT: u32 = 1;
const APP: &[u8] = b"spiffe://cluster.local/ns/app/sa/web";

fn config(failure_mode: &str, mode: &str) -> String {
    format!(
        r#"{{
  "mode": "{mode}",
  "trust_domains": ["cluster.local"],
  "credential_service": {{"cluster": "creds", "authority": "creds.local", "protocol": "tollgate_v1"}},
  "rate_limit_service": {{"cluster": "ratelimit", "timeout": "100ms", "failure_mode": "{failure_mode}"}},
  "providers": [
    {{"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {{"name": "openai"}}}}
  ],
  "budgets": [{{"name": "fleet", "requests": 2, "window": "minute", "scope": "shared", "tier": "global"}}],
  "rules": [
    {{"name": "chat", "workloads": ["spiffe://cluster.local/ns/app/*"], "providers": ["openai"],
     "endpoints": ["POST /v1/chat/completions"], "budgets": ["fleet"]}}
  ]
}}"#
    )
}

fn worker<'h>(host: &'h FakeHost, failure_mode: &str, mode: &str) -> Worker<&'h FakeHost> {
    host.add_context(ROOT);
    let w = Worker::new(host, ROOT);
    host.enter(ROOT);
    assert!(w.on_configure(config(failure_mode, mode).as_bytes()));
    w
}

fn send(w: &Worker<&FakeHost>, host: &FakeHost, ctx: u32) -> Action {
    host.add_stream(
        ctx,
        &[
            (":method", b"POST"),
            (":authority", b"api.openai.com"),
            (":path", b"/v1/chat/completions"),
        ],
        Some(APP),
    );
    host.enter(ctx);
    w.on_request_headers(ctx, true)
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A `RateLimitResponse`: `code` 1 OK, 2 OVER_LIMIT, with hold `ids`.
fn answer(code: u64, ids: &[&str]) -> Vec<u8> {
    let mut out = vec![0x08];
    varint(&mut out, code);
    for id in ids {
        let mut h = Vec::new();
        bytes_field(&mut h, 1, RESERVATION_HEADER.as_bytes());
        bytes_field(&mut h, 2, id.as_bytes());
        bytes_field(&mut out, 3, &h);
    }
    out
}

fn deliver(w: &Worker<&FakeHost>, host: &FakeHost, token: u32, message: &[u8]) {
    host.set_grpc_message(message);
    host.enter(ROOT);
    w.on_grpc_receive(token, message.len());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_request_waits_for_the_service_and_its_hold_is_committed_from_the_root() {
    let host = FakeHost::new();
    let w = worker(&host, "fail_closed", "enforce");
    assert_eq!(send(&w, &host, 10), Action::Pause);
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].owner, ROOT, "the call belongs to the worker");
    assert_eq!(
        (calls[0].service.as_str(), calls[0].method.as_str()),
        (SERVICE, "ShouldRateLimit")
    );
    assert_eq!(calls[0].timeout_ms, 100);
    assert!(contains(&calls[0].message, b"fleet") && contains(&calls[0].message, b"shared"));
    assert!(
        host.calls().is_empty(),
        "no credential fetch before the answer"
    );
    deliver(&w, &host, calls[0].token, &answer(1, &["hold-1"]));
    assert_eq!(host.calls().len(), 1, "admitted: on to the credential");
    assert_eq!(host.counter("tollgate.budget.reservations_outstanding"), 1);
    // The stream ends: the settlement is batched for the tick, which comes
    // soon; it names the hold and is sent from the root.
    host.enter(10);
    w.on_log(10);
    assert_eq!(host.grpc_calls().len(), 1, "batched until the tick");
    assert_eq!(host.tick_ms(), TICK_FAST_MS);
    host.enter(ROOT);
    w.on_tick();
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].owner, ROOT, "a settlement outlives its stream");
    assert!(contains(&calls[1].message, b"reservation") && contains(&calls[1].message, b"hold-1"));
    assert_eq!(host.counter("tollgate.budget.reservations_outstanding"), 0);
    deliver(&w, &host, calls[1].token, &answer(1, &[]));
    assert_eq!(host.counter("tollgate.budget.global_settle_failed"), 0);
}

#[test]
fn over_limit_is_429_with_retry_after_and_nothing_is_settled() {
    let host = FakeHost::new();
    let w = worker(&host, "fail_closed", "enforce");
    assert_eq!(send(&w, &host, 10), Action::Pause);
    let token = host.grpc_calls()[0].token;
    deliver(&w, &host, token, &answer(2, &[]));
    let r = host.replies(10);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 429);
    assert!(r[0].details.contains("rate_limited"), "{}", r[0].details);
    assert_eq!(host.counter("tollgate.decision.deny.rate_limited"), 1);
    host.enter(10);
    w.on_log(10);
    assert_eq!(
        host.grpc_calls().len(),
        1,
        "a refused request holds nothing"
    );
}

#[test]
fn no_answer_fails_closed_by_default_and_open_when_asked_counted() {
    for (mode, status) in [("fail_closed", Some(503)), ("fail_open", None)] {
        let host = FakeHost::new();
        let w = worker(&host, mode, "enforce");
        // A gRPC error status.
        assert_eq!(send(&w, &host, 10), Action::Pause);
        host.enter(ROOT);
        w.on_grpc_close(host.grpc_calls()[0].token, 14);
        // A call that cannot be dispatched.
        host.fault("dispatch_grpc", HostError::BAD_ARGUMENT);
        let own = send(&w, &host, 11);
        host.clear_faults();
        // An unreadable answer.
        assert_eq!(send(&w, &host, 12), Action::Pause);
        let token = host.grpc_calls().last().unwrap().token;
        deliver(&w, &host, token, b"\xff\xff");
        for ctx in [10, 11, 12] {
            match status {
                Some(s) => {
                    assert_eq!(host.replies(ctx).len(), 1, "{mode} {ctx}");
                    assert_eq!(host.replies(ctx)[0].status, s);
                }
                None => assert!(host.replies(ctx).is_empty(), "{mode} {ctx}"),
            }
        }
        assert_eq!(
            own,
            Action::Pause,
            "{mode}: refused, or waiting for its credential"
        );
        let (open, denied) = (
            host.counter("tollgate.budget.global_fail_open"),
            host.counter("tollgate.decision.deny.budget_unavailable"),
        );
        match status {
            Some(_) => assert_eq!((open, denied), (0, 3)),
            None => {
                assert_eq!((open, denied), (3, 0));
                assert_eq!(host.calls().len(), 1, "admitted: one credential fetch");
            }
        }
    }
}

#[test]
fn holds_granted_to_a_stream_that_left_are_released() {
    let host = FakeHost::new();
    let w = worker(&host, "fail_closed", "enforce");
    assert_eq!(send(&w, &host, 10), Action::Pause);
    host.enter(10);
    w.on_log(10);
    w.on_delete(10);
    let token = host.grpc_calls()[0].token;
    deliver(&w, &host, token, &answer(1, &["hold-9"]));
    w.on_tick();
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 2, "the late hold is settled");
    assert!(contains(&calls[1].message, b"hold-9"));
    assert!(
        host.calls().is_empty(),
        "nothing forwarded for a gone stream"
    );
}

#[test]
fn failed_settlements_are_retried_from_the_tick_then_counted() {
    let host = FakeHost::new();
    let w = worker(&host, "fail_closed", "enforce");
    assert_eq!(send(&w, &host, 10), Action::Pause);
    deliver(&w, &host, host.grpc_calls()[0].token, &answer(1, &["h"]));
    host.enter(10);
    w.on_log(10);
    host.enter(ROOT);
    w.on_tick();
    for attempt in 1..=3 {
        let call = host.grpc_calls().last().unwrap().clone();
        assert!(contains(&call.message, b"h"));
        host.enter(ROOT);
        w.on_grpc_close(call.token, 14);
        host.advance(1_000);
        w.on_tick();
        let expected = if attempt < 3 { attempt + 2 } else { 4 };
        assert_eq!(host.grpc_calls().len(), expected, "attempt {attempt}");
    }
    assert_eq!(host.counter("tollgate.budget.global_settle_failed"), 1);
}

#[test]
fn dry_run_forwards_a_global_refusal_as_a_shadow() {
    let host = FakeHost::new();
    let w = worker(&host, "fail_closed", "dry_run");
    assert_eq!(send(&w, &host, 10), Action::Pause);
    deliver(&w, &host, host.grpc_calls()[0].token, &answer(2, &[]));
    assert!(host.replies(10).is_empty());
    assert_eq!(
        host.calls().len(),
        1,
        "forwarded: its credential is fetched"
    );
}

#[test]
fn the_settlements_of_many_streams_travel_in_one_call() {
    let host = FakeHost::new();
    let w = worker(&host, "fail_closed", "enforce");
    for ctx in 10..13 {
        assert_eq!(send(&w, &host, ctx), Action::Pause);
        let token = host.grpc_calls().last().unwrap().token;
        deliver(&w, &host, token, &answer(1, &[&format!("hold-{ctx}")]));
    }
    for ctx in 10..13 {
        host.enter(ctx);
        w.on_log(ctx);
    }
    host.enter(ROOT);
    w.on_tick();
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 4, "three admissions, one settlement");
    for ctx in 10..13 {
        assert!(contains(
            &calls[3].message,
            format!("hold-{ctx}").as_bytes()
        ));
    }
    w.on_tick();
    assert_eq!(host.grpc_calls().len(), 4, "nothing left to send");
}
