//! Request/response flow, pause semantics, local replies, effective contexts.

mod common;
use common::*;
use std::time::Duration;
use tollgate_harness::CallResponse;

#[test]
fn forwards_request_with_header_edits_and_binary_values() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "add:x-a=1;add:X-A=2;replace:x-b=new;remove:x-c")
        .header("x-b", "old")
        .header("x-b", "older")
        .header("x-c", "gone")
        .header("x-bin", [0xff, 0xfe, 0x00])
        .send();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.header_all("x-a"), vec![&b"1"[..], b"2"]);
    assert_eq!(f.header_all("x-b"), vec![&b"new"[..]]);
    assert_eq!(f.header("x-c"), None);
    assert_eq!(f.header("x-bin"), Some(&[0xff, 0xfe, 0x00][..]));
    assert_eq!(f.header_str(":path").as_deref(), Some("/"));
    assert!(f.header("x-request-id").is_some());
    assert_no_trap(&gw);
}

#[test]
fn local_reply_is_deferred_and_ends_the_stream() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "reply:403;add:x-after=1;reply:500")
        .body("payload")
        .send();
    let out = gw.outcome(id);
    let r = out.expect_reply();
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "denied by probe");
    assert_eq!(r.details, "probe_reply");
    assert_eq!(r.header_str("x-probe-reply").as_deref(), Some("1"));
    // Deferred: headers were still editable after the call in the same callback.
    assert_logged(&gw, "probe add x-after: Ok");
    // No body callback after a local reply; the reply passes the response callbacks.
    assert_not_logged(&gw, "probe body:");
    assert_logged(&gw, "status=403");
    assert_logged(&gw, &format!("probe done {}", id.context_id()));
    assert!(!gw.is_live(id));
    assert_no_trap(&gw);
}

#[test]
fn pause_holds_the_body_until_resume() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("tok"))
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .method("POST")
        .header("x-probe", "call:vault")
        .body("hello")
        .send();
    gw.outcome(id).expect_pending();
    assert_not_logged(&gw, "probe body:");
    gw.settle();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.header_str("x-probe-call-status").as_deref(), Some("200"));
    assert_eq!(f.header_str("x-probe-call-body").as_deref(), Some("tok"));
    assert_eq!(f.body, b"hello");
    assert_logged(&gw, "probe body: size=5 eos=true text=hello");
    let calls = gw.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request.path().as_deref(), Some("/probe"));
    assert_eq!(calls[0].request.body, b"probe-call");
    assert_eq!(
        calls[0].request.header_str("content-length").as_deref(),
        Some("10")
    );
    assert_eq!(calls[0].context_id, id.context_id());
    assert_no_trap(&gw);
}

#[test]
fn headers_are_frozen_once_the_stream_continues() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("tok"))
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "call:vault;late-add")
        .body("b")
        .send();
    gw.settle();
    assert_logged(&gw, "probe add x-late: BadArgument");
    assert_eq!(gw.outcome(id).expect_forwarded().header("x-late"), None);
    // Without a pause too: headers continued at once, so the body phase cannot edit them.
    let id2 = gw.request(0).header("x-probe", "late-add").body("b").send();
    assert_eq!(gw.outcome(id2).expect_forwarded().header("x-late"), None);
    assert_no_trap(&gw);
}

#[test]
fn body_can_be_rewritten_in_the_body_callback() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "body-replace:REDACTED")
        .body("secret")
        .send();
    assert_eq!(gw.outcome(id).expect_forwarded().body, b"REDACTED");
}

#[test]
fn body_pause_waits_for_a_resume_from_another_context() {
    let mut gw = gw("").build().unwrap();
    let a = gw
        .request(0)
        .header("x-probe", "body-pause")
        .body("x")
        .send();
    gw.outcome(a).expect_pending();
    gw.set_shared_data("park:a", a.context_id().to_string());
    let b = gw.request(0).header("x-probe", "wake:a").send();
    gw.outcome(b).expect_forwarded();
    // Headers had already continued: the wake's header edit fails, the resume works.
    assert_logged(&gw, "probe replace x-woken-by: BadArgument");
    let out = gw.outcome(a);
    assert_eq!(out.expect_forwarded().body, b"x");
}

#[test]
fn effective_context_resumes_a_paused_stream() {
    let mut gw = gw("").build().unwrap();
    let a = gw
        .request(0)
        .header("x-probe", "park:a")
        .body("held")
        .send();
    gw.outcome(a).expect_pending();
    let b = gw.request(0).header("x-probe", "wake:a").send();
    gw.outcome(b).expect_forwarded();
    let out = gw.outcome(a);
    let f = out.expect_forwarded();
    assert_eq!(f.header_str("x-woken-by"), Some(b.context_id().to_string()));
    assert_eq!(f.body, b"held");
    assert_logged(&gw, "probe resume");
    assert_no_trap(&gw);
}

#[test]
fn effective_context_can_send_a_local_reply_for_another_stream() {
    let mut gw = gw("").build().unwrap();
    let a = gw.request(0).header("x-probe", "park:a").send();
    let b = gw.request(0).header("x-probe", "wake-reply:a").send();
    gw.outcome(b).expect_forwarded();
    let out = gw.outcome(a);
    assert_eq!(out.expect_reply().status, 429);
    assert_eq!(out.expect_reply().details, "woken_with_reply");
}

#[test]
fn unknown_effective_context_is_bad_argument() {
    let mut gw = gw("").build().unwrap();
    gw.set_shared_data("park:x", "999");
    let b = gw.request(0).header("x-probe", "wake:x").send();
    gw.outcome(b).expect_forwarded();
    assert_logged(&gw, "probe wake x (999): BadArgument");
}

#[test]
fn response_callbacks_see_and_edit_the_upstream_response() {
    let mut gw = gw("").build().unwrap();
    let id = gw.request(0).header("x-probe", "resp-add:x-r=1").send();
    gw.outcome(id).expect_forwarded();
    gw.respond(id, 201, &[("content-type", b"application/json")], b"{}");
    let r = gw.response(id).expect("response recorded");
    assert_eq!(r.status, 201);
    assert_eq!(r.header_str("x-r").as_deref(), Some("1"));
    assert_eq!(r.body, b"{}");
    assert_logged(&gw, "probe response body: size=2 eos=true text={}");
    assert!(!gw.is_live(id));
}

#[test]
fn downstream_cancel_drops_pending_calls_silently() {
    let mut gw = gw("")
        .cluster_handler(
            "vault",
            common::handler(|_| CallResponse::json(200, "x").with_delay(Duration::from_secs(1))),
        )
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "call:vault")
        .header("x-probe-timeout", "5000")
        .send();
    assert_eq!(gw.pending_calls().len(), 1);
    gw.cancel(id);
    assert!(gw.pending_calls().is_empty());
    gw.advance(Duration::from_secs(2));
    assert_not_logged(&gw, "probe call response");
    assert_logged(&gw, &format!("probe done {}", id.context_id()));
    gw.outcome(id).expect_pending();
    assert_no_trap(&gw);
}

#[test]
fn a_call_dispatched_under_the_root_context_outlives_the_stream() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("r"))
        .build()
        .unwrap();
    let id = gw.request(0).header("x-probe", "call-root:vault").send();
    gw.outcome(id).expect_forwarded();
    gw.cancel(id);
    // The host owns the call by the effective (root) context, so the stream's
    // end does not cancel it...
    assert_eq!(gw.calls()[0].context_id, 1);
    assert_eq!(gw.pending_calls(), vec![(0, 1, 4)]);
    gw.settle();
    assert!(gw.pending_calls().is_empty());
    // ...but the Rust SDK routes responses by the context that was active when
    // it dispatched (the deleted stream), so the guest ignores it, as in Envoy.
    assert_not_logged(&gw, "call response");
    assert_no_trap(&gw);
}

#[test]
fn http_call_tokens_are_envoys_4_8_12() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("t"))
        .build()
        .unwrap();
    for _ in 0..3 {
        gw.request(0).header("x-probe", "call:vault").send();
    }
    let tokens: Vec<u32> = gw.calls().iter().map(|c| c.token).collect();
    // Envoy's `nextHttpCallId`: the low two bits 0 mark an HTTP call.
    assert_eq!(tokens, vec![4, 8, 12]);
    gw.settle();
    assert_no_trap(&gw);
}

#[test]
fn request_headers_are_gone_once_the_stream_continued() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "body-get:x-probe")
        .body("b")
        .send();
    gw.outcome(id).expect_forwarded();
    // Envoy clears request_headers_ when the headers continue: a value read is
    // BadArgument (the SDK's get_http_request_header would panic) and the
    // pairs read is empty.
    assert_logged(&gw, "probe body-get x-probe: BadArgument");
    assert_logged(&gw, "probe body-get all: 0 headers");
    assert_no_trap(&gw);
}

#[test]
fn the_gateway_can_move_between_threads() {
    fn is_send<T: Send>() {}
    is_send::<tollgate_harness::Gateway>();
}
