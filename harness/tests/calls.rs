//! Outgoing calls: validation, virtual delays and timeouts, resets, real HTTP.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;
use tollgate_harness::CallResponse;

#[test]
fn unknown_cluster_or_missing_pseudo_headers_is_bad_argument() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("t"))
        .build()
        .unwrap();
    let a = gw.request(0).header("x-probe", "call:nowhere").send();
    assert_logged(&gw, "probe call nowhere: BadArgument");
    gw.outcome(a).expect_forwarded();
    let b = gw.request(0).header("x-probe", "call-bad:vault").send();
    assert_logged(&gw, "probe call vault: BadArgument");
    gw.outcome(b).expect_forwarded();
    assert!(gw.calls().is_empty());
}

#[test]
fn delayed_response_arrives_at_its_virtual_time() {
    let mut gw = gw("")
        .cluster_handler(
            "vault",
            handler(|_| CallResponse::json(200, "late").with_delay(Duration::from_millis(500))),
        )
        .build()
        .unwrap();
    let id = gw.request(0).header("x-probe", "call:vault").send();
    gw.settle();
    gw.outcome(id).expect_pending();
    gw.advance(Duration::from_millis(499));
    gw.outcome(id).expect_pending();
    gw.advance(Duration::from_millis(1));
    assert_eq!(
        gw.outcome(id)
            .expect_forwarded()
            .header_str("x-probe-call-body")
            .as_deref(),
        Some("late")
    );
}

#[test]
fn a_delay_beyond_the_timeout_becomes_a_504_at_the_timeout() {
    let mut gw = gw("")
        .cluster_handler(
            "vault",
            handler(|_| CallResponse::json(200, "late").with_delay(Duration::from_secs(5))),
        )
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "call:vault")
        .header("x-probe-timeout", "1000")
        .send();
    gw.advance(Duration::from_millis(999));
    gw.outcome(id).expect_pending();
    gw.advance(Duration::from_millis(1));
    let out = gw.outcome(id);
    let r = out.expect_reply();
    assert_eq!(r.status, 502);
    assert_eq!(r.header_str("x-upstream-status").as_deref(), Some("504"));
    assert_eq!(r.body_str(), "upstream request timeout");
    assert_logged(&gw, "status=504");
    assert_no_trap(&gw);
}

#[test]
fn a_reset_call_is_delivered_with_no_headers() {
    let mut gw = gw("")
        .cluster_handler("vault", handler(|_| CallResponse::reset()))
        .build()
        .unwrap();
    let id = gw.request(0).header("x-probe", "call:vault").send();
    gw.settle();
    assert_logged(&gw, "headers=0 body=");
    assert_eq!(gw.outcome(id).expect_reply().status, 503);
    assert_no_trap(&gw);
}

/// A one-shot HTTP server answering with `response`, or never answering.
fn server(response: Option<&'static str>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            match response {
                Some(r) => {
                    let _ = s.write_all(r.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    addr
}

#[test]
fn real_http_cluster_answers() {
    let addr = server(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-up: 1\r\n\r\nreal",
    ));
    let mut gw = gw("").cluster_http("real", addr).build().unwrap();
    let id = gw.request(0).header("x-probe", "call:real").send();
    gw.settle();
    assert_eq!(
        gw.outcome(id)
            .expect_forwarded()
            .header_str("x-probe-call-body")
            .as_deref(),
        Some("real")
    );
    assert_no_trap(&gw);
}

#[test]
fn real_http_connect_failure_is_a_503() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut gw = gw("").cluster_http("real", addr).build().unwrap();
    let id = gw.request(0).header("x-probe", "call:real").send();
    gw.settle();
    let out = gw.outcome(id);
    let r = out.expect_reply();
    assert_eq!(r.header_str("x-upstream-status").as_deref(), Some("503"));
    assert_eq!(
        r.body_str(),
        "upstream connect error or disconnect/reset before headers"
    );
}

#[test]
fn real_http_timeout_is_a_504() {
    let addr = server(None);
    let mut gw = gw("").cluster_http("real", addr).build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "call:real")
        .header("x-probe-timeout", "200")
        .send();
    gw.settle();
    let out = gw.outcome(id);
    assert_eq!(
        out.expect_reply()
            .header_str("x-upstream-status")
            .as_deref(),
        Some("504")
    );
}
