//! Unary gRPC calls (`proxy_grpc_call`): in-process handlers with virtual
//! time, real h2c servers, statuses, timeouts, cancellation, tokens, and
//! answers for contexts that are gone.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_harness::call::{grpc_status, GrpcHandler, GrpcRequest, GrpcResponse};
use tollgate_harness::{HostFault, Status};

fn grpc_handler(f: impl Fn(&GrpcRequest) -> GrpcResponse + Send + Sync + 'static) -> GrpcHandler {
    Arc::new(f)
}

fn header(gw: &tollgate_harness::Gateway, id: tollgate_harness::StreamId, name: &str) -> String {
    gw.outcome(id)
        .expect_forwarded()
        .header_str(name)
        .unwrap_or_else(|| panic!("no {name} header; log:\n{}", gw.log_text()))
}

#[test]
fn an_ok_answer_reaches_on_grpc_receive_with_the_message() {
    let mut gw = gw("")
        .cluster_grpc_handler(
            "limits",
            grpc_handler(|r| {
                GrpcResponse::ok(format!("pong:{}", String::from_utf8_lossy(&r.message)))
            }),
        )
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:ping")
        .header("x-probe-grpc-metadata", "X-Tenant=a,x-trace=t1")
        .header("x-probe-timeout", "1500")
        .send();
    // Never inside the hostcall: the request waits for `settle`.
    gw.outcome(id).expect_pending();
    assert_eq!(gw.pending_calls(), vec![(0, id.context_id(), 5)]);
    gw.settle();
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "0");
    assert_eq!(header(&gw, id, "x-probe-grpc-message"), "pong:ping");
    assert_logged(
        &gw,
        "probe grpc response: token=5 status=0 size=9 message=pong:ping get_status=0:",
    );
    let calls = gw.grpc_calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!((c.worker, c.context_id, c.token), (0, id.context_id(), 5));
    assert_eq!(c.request.cluster, "limits");
    assert_eq!(c.request.service, "pkg.Limits");
    assert_eq!(c.request.method, "Check");
    assert_eq!(c.request.path(), "/pkg.Limits/Check");
    assert_eq!(c.request.message, b"ping");
    assert_eq!(c.request.timeout, Duration::from_millis(1500));
    assert_eq!(c.request.metadata("x-tenant"), Some(&b"a"[..]));
    assert_eq!(c.request.metadata("x-trace"), Some(&b"t1"[..]));
    assert!(gw.calls().is_empty(), "no HTTP call was made");
    assert!(gw.pending_calls().is_empty());
    assert_no_trap(&gw);
}

#[test]
fn an_error_status_reaches_on_grpc_close_with_its_code_and_message() {
    let mut gw = gw("")
        .cluster_grpc_handler(
            "limits",
            grpc_handler(|_| GrpcResponse::error(grpc_status::RESOURCE_EXHAUSTED, "over limit")),
        )
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:x")
        .send();
    gw.settle();
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "8");
    assert_eq!(header(&gw, id, "x-probe-grpc-message"), "");
    assert_eq!(header(&gw, id, "x-probe-grpc-status-message"), "over limit");
    assert_logged(
        &gw,
        "probe grpc response: token=5 status=8 size=0 message= get_status=8:over limit",
    );
    // Outside the callback the code stays (as on Envoy's root context), the
    // message is gone, and the receive buffer reads as empty.
    gw.request(0)
        .header("x-probe", "grpc-status;grpc-buffer")
        .send();
    assert_logged(&gw, "probe grpc-status: Ok code=8 message=");
    assert_not_logged(&gw, "code=8 message=over limit");
    assert_logged(&gw, "probe grpc-buffer: Ok size=0");
    assert_no_trap(&gw);
}

#[test]
fn an_answer_arrives_at_its_virtual_time_and_a_later_one_times_out_with_deadline_exceeded() {
    let mut gw = gw("")
        .cluster_grpc_handler(
            "limits",
            grpc_handler(|r| {
                let delay = if r.message == b"fast" { 400 } else { 5000 };
                GrpcResponse::ok("late").with_delay(Duration::from_millis(delay))
            }),
        )
        .build()
        .unwrap();
    let fast = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:fast")
        .send();
    let slow = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:slow")
        .send();
    gw.advance(Duration::from_millis(399));
    gw.outcome(fast).expect_pending();
    gw.advance(Duration::from_millis(1));
    assert_eq!(header(&gw, fast, "x-probe-grpc-status"), "0");
    gw.advance(Duration::from_millis(599));
    gw.outcome(slow).expect_pending();
    gw.advance(Duration::from_millis(1));
    assert_eq!(header(&gw, slow, "x-probe-grpc-status"), "4");
    assert_eq!(
        header(&gw, slow, "x-probe-grpc-status-message"),
        "upstream request timeout"
    );
    assert!(gw.pending_calls().is_empty());
    assert_no_trap(&gw);
}

#[test]
fn a_zero_timeout_waits_for_any_delay() {
    let mut gw = gw("")
        .cluster_grpc_handler(
            "limits",
            grpc_handler(|_| GrpcResponse::ok("ok").with_delay(Duration::from_secs(30))),
        )
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:x")
        .header("x-probe-timeout", "0")
        .send();
    gw.advance(Duration::from_secs(30));
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "0");
}

#[test]
fn an_unknown_cluster_is_parse_failure_and_dispatches_nothing() {
    let mut gw = gw("")
        .cluster_grpc_handler("limits", grpc_handler(|_| GrpcResponse::ok("")))
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:nowhere:pkg.Limits:Check:x")
        .send();
    assert_logged(&gw, "probe grpc nowhere: ParseFailure");
    gw.outcome(id).expect_forwarded();
    assert!(gw.grpc_calls().is_empty());
    assert!(gw.pending_calls().is_empty());
    assert_no_trap(&gw);
}

#[test]
fn a_grpc_call_to_an_http_cluster_closes_with_unavailable() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("t"))
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:vault:pkg.Limits:Check:x")
        .send();
    gw.settle();
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "14");
    assert!(gw.calls().is_empty(), "the HTTP handler is not called");
}

#[test]
fn a_cancelled_call_is_never_answered() {
    let answered = Arc::new(Mutex::new(0));
    let count = answered.clone();
    let mut gw = gw("")
        .cluster_grpc_handler(
            "limits",
            grpc_handler(move |_| {
                *count.lock().unwrap() += 1;
                GrpcResponse::ok("x").with_delay(Duration::from_millis(100))
            }),
        )
        .build()
        .unwrap();
    let id = gw
        .request(0)
        .header(
            "x-probe",
            "grpc-async:limits:pkg.Limits:Check:a;grpc-cancel:last;grpc-cancel:last;\
             grpc-async:limits:pkg.Limits:Check:b;grpc-close:last",
        )
        .send();
    assert_logged(&gw, "probe grpc-cancel 5: Ok");
    assert_logged(&gw, "probe grpc-cancel 5: NotFound");
    assert_logged(&gw, "probe grpc-close 9: Ok");
    assert!(gw.pending_calls().is_empty());
    gw.advance(Duration::from_secs(1));
    assert_not_logged(&gw, "probe grpc response");
    // The calls were dispatched (and recorded) before they were cancelled.
    assert_eq!(gw.grpc_calls().len(), 2);
    assert_eq!(*answered.lock().unwrap(), 2);
    gw.outcome(id).expect_forwarded();
    assert_no_trap(&gw);
}

#[test]
fn cancelling_a_token_that_names_no_grpc_call_is_envoys_status() {
    let mut gw = gw("").build().unwrap();
    // 4: an HTTP call token; 3: no callout type; 6: a gRPC stream token
    // (none exist); 13: a gRPC call token never handed out.
    gw.request(0)
        .header(
            "x-probe",
            "grpc-cancel:4;grpc-cancel:3;grpc-cancel:6;grpc-cancel:13;grpc-close:4",
        )
        .send();
    assert_logged(&gw, "probe grpc-cancel 4: BadArgument");
    assert_logged(&gw, "probe grpc-cancel 3: BadArgument");
    assert_logged(&gw, "probe grpc-cancel 6: NotFound");
    assert_logged(&gw, "probe grpc-cancel 13: NotFound");
    assert_logged(&gw, "probe grpc-close 4: BadArgument");
    assert_no_trap(&gw);
}

#[test]
fn an_answer_for_a_stream_that_ended_is_dropped_silently() {
    let mut gw = gw("")
        .cluster_grpc_handler(
            "limits",
            grpc_handler(|_| GrpcResponse::ok("late").with_delay(Duration::from_secs(1))),
        )
        .build()
        .unwrap();
    // One stream ends normally with its call in flight...
    let done = gw
        .request(0)
        .header("x-probe", "grpc-async:limits:pkg.Limits:Check:a")
        .send();
    gw.respond(done, 200, &[], b"ok");
    // ...another is reset by the client while it waits for its answer.
    let reset = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:b")
        .send();
    assert_eq!(gw.pending_calls().len(), 1);
    gw.cancel(reset);
    assert!(gw.pending_calls().is_empty());
    gw.advance(Duration::from_secs(2));
    assert_not_logged(&gw, "probe grpc response");
    assert_logged(&gw, &format!("probe done {}", done.context_id()));
    assert_logged(&gw, &format!("probe done {}", reset.context_id()));
    assert_eq!(gw.grpc_calls().len(), 2);
    assert_no_trap(&gw);
}

#[test]
fn tokens_are_envoys_per_worker_and_typed_by_kind() {
    let mut gw = gw("")
        .workers(2)
        .cluster_handler("vault", ok_with("t"))
        .cluster_grpc_handler("limits", grpc_handler(|_| GrpcResponse::ok("")))
        .build()
        .unwrap();
    gw.request(0)
        .header(
            "x-probe",
            "grpc-async:limits:s:m:1;call:vault;grpc-async:limits:s:m:2",
        )
        .send();
    gw.request(1)
        .header("x-probe", "grpc-async:limits:s:m:3")
        .send();
    let grpc: Vec<(usize, u32)> = gw
        .grpc_calls()
        .iter()
        .map(|c| (c.worker, c.token))
        .collect();
    assert_eq!(grpc, vec![(0, 5), (0, 9), (1, 5)]);
    let http: Vec<(usize, u32)> = gw.calls().iter().map(|c| (c.worker, c.token)).collect();
    assert_eq!(http, vec![(0, 4)]);
    gw.settle();
    assert_logged(&gw, "probe grpc response: token=9 status=0");
    assert_no_trap(&gw);
}

#[test]
fn a_faulted_grpc_call_returns_the_status_and_dispatches_nothing() {
    let mut gw = gw("")
        .cluster_grpc_handler("limits", grpc_handler(|_| GrpcResponse::ok("")))
        .build()
        .unwrap();
    gw.fault(
        "proxy_grpc_call",
        HostFault::new(Status::InternalFailure).once(),
    );
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:x")
        .send();
    assert_logged(&gw, "probe grpc limits: InternalFailure");
    gw.outcome(id).expect_forwarded();
    assert!(gw.grpc_calls().is_empty());
    assert_eq!(gw.fault_fired("proxy_grpc_call"), 1);
    // Once: the next call goes through, with the first token.
    gw.request(0)
        .header("x-probe", "grpc-async:limits:pkg.Limits:Check:x")
        .send();
    assert_logged(&gw, "probe grpc limits: token=5");
    assert_no_trap(&gw);
}

// --- A real gRPC server: plaintext HTTP/2 (h2c) with hyper. ---

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the test server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    /// None: no trailers (headers-only when the body is empty too).
    trailers: Option<Vec<(&'static str, &'static str)>>,
    delay: Duration,
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn grpc_reply(message: &[u8], status: &'static str, text: &'static str) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type", "application/grpc")],
        body: frame(message),
        trailers: Some(vec![("grpc-status", status), ("grpc-message", text)]),
        delay: Duration::ZERO,
    }
}

struct H2Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

fn h2_server(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> H2Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let reply = Arc::new(reply);
    let log = seen.clone();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (reply, log) = (reply.clone(), log.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (reply, log) = (reply.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes().to_vec())
                                .unwrap_or_default();
                            let seen = Seen {
                                path: parts.uri.path().to_string(),
                                authority: parts
                                    .uri
                                    .authority()
                                    .map(|a| a.to_string())
                                    .unwrap_or_default(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                                body,
                            };
                            let r = reply(&seen);
                            log.lock().unwrap().push(seen);
                            tokio::time::sleep(r.delay).await;
                            let mut resp = hyper::Response::builder().status(r.status);
                            for (k, v) in &r.headers {
                                resp = resp.header(*k, *v);
                            }
                            let body = match r.trailers {
                                None => Full::new(Bytes::from(r.body)).boxed(),
                                Some(t) => {
                                    let mut map = hyper::HeaderMap::new();
                                    for (k, v) in t {
                                        map.insert(k, hyper::header::HeaderValue::from_static(v));
                                    }
                                    Full::new(Bytes::from(r.body))
                                        .with_trailers(async move { Some(Ok(map)) })
                                        .boxed()
                                }
                            };
                            Ok::<_, Infallible>(resp.body(body).unwrap())
                        }
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    H2Server {
        addr,
        seen,
        _runtime: runtime,
    }
}

#[test]
fn a_real_grpc_server_gets_envoys_request_and_its_answer_reaches_the_guest() {
    let server = h2_server(|s| {
        let mut m = b"pong:".to_vec();
        m.extend_from_slice(&s.body[5..]);
        Reply {
            body: frame(&m),
            ..grpc_reply(b"", "0", "")
        }
    });
    let mut gw = gw("").cluster_grpc("limits", server.addr).build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:ping")
        .header("x-probe-grpc-metadata", "x-tenant=a")
        .send();
    gw.settle();
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "0");
    assert_eq!(header(&gw, id, "x-probe-grpc-message"), "pong:ping");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path, "/pkg.Limits/Check");
    assert_eq!(s.authority, "limits");
    assert_eq!(s.header("content-type"), Some("application/grpc"));
    assert_eq!(s.header("te"), Some("trailers"));
    assert_eq!(s.header("grpc-timeout"), Some("1000m"));
    assert_eq!(s.header("x-tenant"), Some("a"));
    assert_eq!(s.body, frame(b"ping"));
    assert!(gw.pending_calls().is_empty());
    assert_no_trap(&gw);
}

#[test]
fn a_real_servers_error_status_and_trailers_only_answer_reach_on_grpc_close() {
    let server = h2_server(|s| match s.body.get(5..) {
        Some(b"trailers-only") => Reply {
            status: 200,
            headers: vec![
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "no such limit"),
            ],
            body: Vec::new(),
            trailers: None,
            delay: Duration::ZERO,
        },
        Some(b"http-error") => Reply {
            status: 503,
            headers: vec![],
            body: b"busy".to_vec(),
            trailers: None,
            delay: Duration::ZERO,
        },
        _ => Reply {
            body: Vec::new(),
            ..grpc_reply(b"", "8", "slow%20down")
        },
    });
    let mut gw = gw("").cluster_grpc("limits", server.addr).build().unwrap();
    let error = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:x")
        .send();
    let trailers_only = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:trailers-only")
        .send();
    let http_error = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:http-error")
        .send();
    gw.settle();
    assert_eq!(header(&gw, error, "x-probe-grpc-status"), "8");
    assert_eq!(
        header(&gw, error, "x-probe-grpc-status-message"),
        "slow down"
    );
    assert_eq!(header(&gw, trailers_only, "x-probe-grpc-status"), "5");
    assert_eq!(
        header(&gw, trailers_only, "x-probe-grpc-status-message"),
        "no such limit"
    );
    // A non-200 without grpc-status: Envoy's async client reports CANCELLED.
    assert_eq!(header(&gw, http_error, "x-probe-grpc-status"), "1");
    assert_no_trap(&gw);
}

#[test]
fn an_unreachable_grpc_server_closes_the_call_with_unavailable() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut gw = gw("").cluster_grpc("limits", addr).build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:x")
        .send();
    gw.settle();
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "14");
    assert_eq!(
        header(&gw, id, "x-probe-grpc-status-message"),
        "upstream connect error or disconnect/reset before headers"
    );
    assert!(gw.pending_calls().is_empty());
    assert_no_trap(&gw);
}

#[test]
fn a_real_server_slower_than_the_timeout_closes_the_call_with_deadline_exceeded() {
    let server = h2_server(|_| Reply {
        delay: Duration::from_secs(3),
        ..grpc_reply(b"late", "0", "")
    });
    let mut gw = gw("").cluster_grpc("limits", server.addr).build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "grpc:limits:pkg.Limits:Check:x")
        .header("x-probe-timeout", "200")
        .send();
    gw.settle();
    assert_eq!(header(&gw, id, "x-probe-grpc-status"), "4");
    assert_eq!(
        header(&gw, id, "x-probe-grpc-status-message"),
        "upstream request timeout"
    );
    assert_eq!(
        server.seen.lock().unwrap()[0].header("grpc-timeout"),
        Some("200m")
    );
    assert_no_trap(&gw);
}
