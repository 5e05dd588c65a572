//! Every fail-closed path, proven on the real tollgate.wasm: a host call on
//! the request path that fails makes the request fail with a reason (never
//! forwarded, never hanging, no key in sight), and the VM survives to serve
//! the next request normally.

use tollgate_harness::{Gateway, HostFault, Outcome, Status, StreamId};
use tollgate_tests::*;

fn chat(gw: &mut Gateway) -> StreamId {
    gw.request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header("authorization", "Bearer placeholder")
        .send()
}

/// A gateway whose cache already holds the OpenAI key.
fn warm() -> (Gateway, tollgate_harness::mock::MockCredentialService) {
    let creds = credential_service();
    let gw = warm_gateway(&config(), &creds);
    (gw, creds)
}

fn cold() -> (Gateway, tollgate_harness::mock::MockCredentialService) {
    let creds = credential_service();
    let gw = gateway(&config(), 1, &creds);
    (gw, creds)
}

/// Faults `import`, sends one request, and checks it is refused with
/// `status`/`reason`; then clears the fault and checks the VM still serves.
fn refused_with(
    (mut gw, creds): (Gateway, tollgate_harness::mock::MockCredentialService),
    import: &str,
    status: u16,
    reason: &str,
) {
    let deny_metric = format!("tollgate.decision.deny.{reason}");
    let counters = Counters::snapshot(&gw);
    gw.fault(import, HostFault::new(Status::InternalFailure));
    let id = chat(&mut gw);
    gw.settle();
    let fired = gw.fault_fired(import);
    gw.clear_faults();
    assert!(fired > 0, "{import}: the fault was never reached");
    let reply = match gw.outcome(id) {
        Outcome::LocalReply(r) => r,
        other => panic!("{import}: expected a refusal, got {other:?}"),
    };
    assert_eq!(reply.status, status, "{import}: {reply:?}");
    assert_eq!(
        reply.header_str("x-tollgate-reason").as_deref(),
        Some(reason),
        "{import}"
    );
    // Exactly one verdict for this request: this deny, nothing else.
    if let Err(e) = counters.check_decisions(&Counters::snapshot(&gw), &[(&deny_metric, 1)]) {
        panic!("{import}: {e}");
    }
    assert_eq!(gw.trap(), None, "{import}: the VM trapped");
    // The VM is alive and serves the next request (a moment later: a request
    // arriving in the same millisecond as a failed fetch shares its fate).
    gw.advance(std::time::Duration::from_millis(1));
    let next = chat(&mut gw);
    gw.settle();
    assert_eq!(
        gw.outcome(next)
            .expect_forwarded()
            .header_str("authorization"),
        Some(format!("Bearer {OPENAI_KEY}")),
        "{import}: the next request"
    );
    assert_no_leak(&gw, &[id, next], &[CLIENT_OPENAI_KEY]);
    drop(creds);
}

#[test]
fn an_unreadable_clock_fails_closed() {
    refused_with(
        warm(),
        "proxy_get_current_time_nanoseconds",
        500,
        "internal_error",
    );
}

#[test]
fn unreadable_request_headers_fail_closed() {
    refused_with(warm(), "proxy_get_header_map_pairs", 500, "internal_error");
}

#[test]
fn a_client_credential_that_cannot_be_removed_fails_closed() {
    refused_with(
        warm(),
        "proxy_remove_header_map_value",
        500,
        "internal_error",
    );
}

#[test]
fn an_unreadable_identity_fails_closed() {
    refused_with(warm(), "proxy_get_property", 500, "internal_error");
}

#[test]
fn unreadable_shared_data_fails_closed() {
    refused_with(warm(), "proxy_get_shared_data", 500, "internal_error");
}

#[test]
fn a_lease_that_cannot_be_written_fails_closed() {
    refused_with(cold(), "proxy_set_shared_data", 500, "internal_error");
}

#[test]
fn a_credential_that_cannot_be_written_fails_closed() {
    refused_with(
        warm(),
        "proxy_replace_header_map_value",
        500,
        "internal_error",
    );
}

#[test]
fn a_fetch_that_cannot_be_dispatched_answers_503_at_once() {
    refused_with(cold(), "proxy_http_call", 503, "credential_unavailable");
}

#[test]
fn a_refused_local_reply_resets_the_stream_instead_of_hanging() {
    let (mut gw, _creds) = warm();
    gw.fault(
        "proxy_send_local_response",
        HostFault::new(Status::InternalFailure),
    );
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(STRANGER)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .send();
    gw.settle();
    assert!(gw.fault_fired("proxy_send_local_response") > 0);
    assert!(gw.was_reset(id), "{:?}", gw.outcome(id));
    assert!(!matches!(gw.outcome(id), Outcome::Forwarded(_)));
    assert_eq!(gw.trap(), None);
}

#[test]
fn an_audit_record_that_cannot_be_stored_does_not_block_the_request() {
    let (mut gw, _creds) = warm();
    gw.fault(
        "proxy_set_property",
        HostFault::new(Status::InternalFailure),
    );
    let id = chat(&mut gw);
    gw.settle();
    gw.outcome(id).expect_forwarded();
    // A forwarded request's record is written at its end.
    end_stream(&mut gw, id);
    assert!(gw.fault_fired("proxy_set_property") > 0);
    assert!(
        gw.log_text()
            .contains("tollgate: could not store the audit record"),
        "the failure is logged"
    );
}

/// One filter-state write per request: a forwarded request's record at its
/// end (its response changes it), a refused request's at its verdict; the
/// access log sees the final record either way.
#[test]
fn each_request_writes_its_audit_record_once() {
    let (mut gw, _creds) = warm();
    // A fault that never fires counts the calls.
    gw.fault("proxy_set_property", HostFault::new(Status::Ok).times(0));
    let id = chat(&mut gw);
    gw.settle();
    gw.outcome(id).expect_forwarded();
    assert_eq!(
        gw.fault_seen("proxy_set_property"),
        0,
        "nothing at the verdict"
    );
    gw.respond(
        id,
        200,
        &[("content-type", b"application/json")],
        br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
    );
    assert_eq!(gw.fault_seen("proxy_set_property"), 1);
    let logged: serde_json::Value =
        serde_json::from_slice(&gw.access_log_filter_state(id, AUDIT_KEY).unwrap()).unwrap();
    assert_eq!(logged["decision"], "allow");
    assert_eq!(logged["usage"]["total"], 7);

    let refused = request_on(
        &mut gw,
        0,
        STRANGER,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    )
    .send();
    gw.settle();
    assert_eq!(gw.fault_seen("proxy_set_property"), 2, "at the verdict");
    end_stream(&mut gw, refused);
    assert_eq!(
        gw.fault_seen("proxy_set_property"),
        2,
        "not again at the end"
    );
    let logged: serde_json::Value =
        serde_json::from_slice(&gw.access_log_filter_state(refused, AUDIT_KEY).unwrap()).unwrap();
    assert_eq!(logged["reason"], "workload_not_permitted");
}
