//! Tests for the mock credential service (`tollgate_harness::mock`).
//!
//! Job: pin both protocols the filter speaks (`tollgate_v1`, `vault_kv2`) in
//! in-process mode (`handler()`) and served mode (`serve()`), every fault,
//! rotation, per-workload keys, denials, request counting, redaction and the
//! operators' env/keys-file mode.
//!
//! Invariants: no test sleeps beyond a few hundred milliseconds of real
//! time; servers bind 127.0.0.1:0; only `from_env_or_demo_reads_process_env`
//! touches process env vars, and only the two it owns.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_harness::call::{CallRequest, CallResponse};
use tollgate_harness::mock::{Fault, KeysError, MockCredentialService};

const WL_A: &str = "spiffe://cluster.local/ns/a/sa/b";
const WL_C: &str = "spiffe://cluster.local/ns/c/sa/d";
const VAULT_DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

fn call(path: &str, headers: &[(&str, &str)]) -> CallRequest {
    call_method("GET", path, headers)
}

fn call_method(method: &str, path: &str, headers: &[(&str, &str)]) -> CallRequest {
    let mut h = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), b"credentials".to_vec()),
    ];
    h.extend(
        headers
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    CallRequest {
        cluster: "tollgate_credentials".into(),
        headers: h,
        body: vec![],
        trailers: vec![],
        timeout: Duration::from_secs(1),
    }
}

fn v1(mock: &MockCredentialService, name: &str, workload: Option<&str>) -> CallResponse {
    let mut headers = vec![];
    if let Some(w) = workload {
        headers.push(("x-tollgate-workload", w));
    }
    (mock.handler())(&call(&format!("/v1/credentials/{name}"), &headers))
}

fn vault(mock: &MockCredentialService, path: &str) -> CallResponse {
    (mock.handler())(&call(
        &format!("/v1/secret/data/{path}"),
        &[("x-vault-request", "true")],
    ))
}

fn body(r: &CallResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: status {}", r.status))
}

fn demo_mock() -> MockCredentialService {
    let mock = MockCredentialService::new();
    mock.set_key("openai", "sk-test-openai", "key-openai-1");
    mock.set_key("tollgate/openai", "sk-test-vault", "key-vault-1");
    mock
}

// ---------------------------------------------------------------- tollgate_v1

#[test]
fn v1_shared_key() {
    let mock = demo_mock();
    let r = v1(&mock, "openai", None);
    assert_eq!(r.status, 200);
    assert!(!r.reset);
    assert_eq!(r.delay, Duration::ZERO);
    assert!(r
        .headers
        .contains(&(b"content-type".to_vec(), b"application/json".to_vec())));
    assert_eq!(
        body(&r),
        json!({"value": "sk-test-openai", "expires_in_s": 3600, "id": "key-openai-1"})
    );
    // Names may contain '/'.
    let r = v1(&mock, "tollgate/openai", None);
    assert_eq!(body(&r)["value"], "sk-test-vault");

    mock.set_expires_in(60);
    assert_eq!(body(&v1(&mock, "openai", None))["expires_in_s"], 60);
}

#[test]
fn v1_unknown_bad_and_wrong_method() {
    let mock = demo_mock();
    let r = v1(&mock, "nope", None);
    assert_eq!(r.status, 404);
    assert!(body(&r).get("value").is_none());

    for bad in [
        "/v1/credentials/",
        "/v1/credentials/a%20b",
        "/v1/credentials/a/../openai",
        "/v1/credentials/a//b",
        "/v1/credentials/open ai",
    ] {
        let r = (mock.handler())(&call(bad, &[]));
        assert_eq!(r.status, 400, "{bad}");
    }
    for bad_wl in ["not-a-spiffe-id", "spiffe://", "spiffe://td/ns/../x"] {
        assert_eq!(v1(&mock, "openai", Some(bad_wl)).status, 400, "{bad_wl}");
    }
    // Two workload identities are ambiguous.
    let r = (mock.handler())(&call(
        "/v1/credentials/openai",
        &[("x-tollgate-workload", WL_A), ("x-tollgate-workload", WL_C)],
    ));
    assert_eq!(r.status, 400);
    // Non-UTF-8 path and header bytes don't panic.
    let mut weird = call("/v1/credentials/openai", &[]);
    weird.headers[1].1 = b"/v1/credentials/\xff\xfe".to_vec();
    weird
        .headers
        .push((b"x-tollgate-workload".to_vec(), b"\xff".to_vec()));
    assert!((mock.handler())(&weird).status >= 400);
    // Missing pseudo-headers.
    let mut empty = call("/", &[]);
    empty.headers.clear();
    assert_eq!((mock.handler())(&empty).status, 404);

    let r = (mock.handler())(&call_method("POST", "/v1/credentials/openai", &[]));
    assert_eq!(r.status, 405);
    assert_eq!((mock.handler())(&call("/healthz", &[])).status, 404);
    // A query string is ignored.
    assert_eq!(
        (mock.handler())(&call("/v1/credentials/openai?x=1", &[])).status,
        200
    );
}

#[test]
fn v1_per_workload_keys_do_not_fall_back() {
    let mock = demo_mock();
    mock.set_workload_key("openai", WL_A, "sk-test-wl-a", "key-wl-a");
    let r = v1(&mock, "openai", Some(WL_A));
    assert_eq!(
        body(&r),
        json!({"value": "sk-test-wl-a", "expires_in_s": 3600, "id": "key-wl-a"})
    );
    // Another workload has no key of its own: 404, never the shared key.
    assert_eq!(v1(&mock, "openai", Some(WL_C)).status, 404);
    // The gateway (no workload header) gets the shared key.
    assert_eq!(body(&v1(&mock, "openai", None))["value"], "sk-test-openai");

    mock.rotate_workload_key("openai", WL_A, "sk-test-wl-a2", "key-wl-a2");
    assert_eq!(body(&v1(&mock, "openai", Some(WL_A)))["id"], "key-wl-a2");
}

#[test]
fn v1_deny() {
    let mock = demo_mock();
    mock.set_workload_key("openai", WL_A, "sk-test-wl-a", "key-wl-a");
    mock.set_workload_key("openai", WL_C, "sk-test-wl-c", "key-wl-c");

    mock.deny("openai", Some(WL_A));
    let r = v1(&mock, "openai", Some(WL_A));
    assert_eq!(r.status, 403);
    assert_eq!(body(&r), json!({"error": "denied"}));
    assert_eq!(v1(&mock, "openai", Some(WL_C)).status, 200);
    assert_eq!(v1(&mock, "openai", None).status, 200);

    mock.deny("openai", None);
    for wl in [None, Some(WL_A), Some(WL_C)] {
        assert_eq!(v1(&mock, "openai", wl).status, 403, "{wl:?}");
    }
    // Denying an unknown name still answers 403, not 404.
    mock.deny("secret-thing", None);
    assert_eq!(v1(&mock, "secret-thing", None).status, 403);

    mock.allow("openai", None);
    mock.allow("openai", Some(WL_A));
    assert_eq!(v1(&mock, "openai", Some(WL_A)).status, 200);
}

// ------------------------------------------------------------------ vault_kv2

#[test]
fn vault_shared_secret_exact_shape() {
    let mock = demo_mock();
    let r = vault(&mock, "tollgate/openai");
    assert_eq!(r.status, 200);
    let b = body(&r);
    let request_id = b["request_id"].as_str().expect("request_id").to_owned();
    assert_eq!(request_id.len(), 36);
    assert_eq!(
        b,
        json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": {
                "data": {"value": "sk-test-vault"},
                "metadata": {
                    "created_time": b["data"]["metadata"]["created_time"],
                    "custom_metadata": null,
                    "deletion_time": "",
                    "destroyed": false,
                    "version": 1
                }
            },
            "wrap_info": null,
            "warnings": null,
            "auth": null
        })
    );
    let created = b["data"]["metadata"]["created_time"]
        .as_str()
        .expect("time");
    assert!(
        created.starts_with("2025-01-01T00:00:") && created.ends_with('Z'),
        "{created}"
    );

    // Any mount, including nested ones.
    let r = (mock.handler())(&call(
        "/v1/kv/team-a/data/tollgate/openai",
        &[("x-vault-request", "true")],
    ));
    assert_eq!(body(&r)["data"]["data"]["value"], "sk-test-vault");

    // Field name is configurable.
    mock.set_vault_field("api_key");
    let b = body(&vault(&mock, "tollgate/openai"));
    assert_eq!(b["data"]["data"], json!({"api_key": "sk-test-vault"}));
}

#[test]
fn vault_errors() {
    let mock = demo_mock();
    let r = vault(&mock, "tollgate/absent");
    assert_eq!(r.status, 404);
    assert_eq!(body(&r), json!({"errors": []}));

    // X-Vault-Request missing or not "true": 400.
    for headers in [vec![], vec![("x-vault-request", "false")]] {
        let r = (mock.handler())(&call("/v1/secret/data/tollgate/openai", &headers));
        assert_eq!(r.status, 400);
        assert!(body(&r)["errors"].is_array());
    }
    // Header name matching is case-insensitive (the mock also gets
    // HTTP/1.1 requests); value "True" is accepted.
    let r = (mock.handler())(&call(
        "/v1/secret/data/tollgate/openai",
        &[("X-Vault-Request", "True")],
    ));
    assert_eq!(r.status, 200);

    let r = (mock.handler())(&call(
        "/v1/secret/data/a/../b",
        &[("x-vault-request", "true")],
    ));
    assert_eq!(r.status, 400);

    mock.deny("tollgate/openai", None);
    let r = vault(&mock, "tollgate/openai");
    assert_eq!(r.status, 403);
    assert_eq!(body(&r), json!({"errors": [VAULT_DENIED]}));
}

#[test]
fn vault_per_workload_paths() {
    let mock = demo_mock();
    mock.set_workload_key("tollgate/openai", WL_A, "sk-test-vault-a", "key-vault-a");
    let r = vault(&mock, "tollgate/openai/cluster.local/ns/a/sa/b");
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["data"]["data"]["value"], "sk-test-vault-a");
    assert_eq!(body(&r)["data"]["metadata"]["version"], 1);
    // A workload without its own key: 404, never the shared secret.
    assert_eq!(
        vault(&mock, "tollgate/openai/cluster.local/ns/c/sa/d").status,
        404
    );

    mock.deny("tollgate/openai", Some(WL_A));
    let r = vault(&mock, "tollgate/openai/cluster.local/ns/a/sa/b");
    assert_eq!(r.status, 403);
    assert_eq!(body(&r), json!({"errors": [VAULT_DENIED]}));
    assert_eq!(vault(&mock, "tollgate/openai").status, 200);

    assert_eq!(mock.requests_for("tollgate/openai"), 4);
    assert_eq!(mock.requests_for_workload("tollgate/openai", WL_A), 2);
    assert_eq!(mock.requests_for_workload("tollgate/openai", WL_C), 1);
}

#[test]
fn rotation_bumps_vault_version() {
    let mock = demo_mock();
    assert_eq!(mock.version("tollgate/openai"), Some(1));
    let before = body(&vault(&mock, "tollgate/openai"));
    mock.rotate("tollgate/openai", "sk-test-vault-2", "key-vault-2");
    mock.rotate("tollgate/openai", "sk-test-vault-3", "key-vault-3");
    let after = body(&vault(&mock, "tollgate/openai"));
    assert_eq!(after["data"]["data"]["value"], "sk-test-vault-3");
    assert_eq!(after["data"]["metadata"]["version"], 3);
    assert_ne!(
        before["data"]["metadata"]["created_time"],
        after["data"]["metadata"]["created_time"]
    );
    let r = body(&v1(&mock, "tollgate/openai", None));
    assert_eq!(
        (r["value"].as_str(), r["id"].as_str()),
        (Some("sk-test-vault-3"), Some("key-vault-3"))
    );
    // set_key resets to version 1; rotating an unset name starts at 1.
    mock.set_key("tollgate/openai", "sk-test-vault-x", "key-x");
    assert_eq!(mock.version("tollgate/openai"), Some(1));
    mock.rotate("fresh", "sk-test-fresh", "key-fresh");
    assert_eq!(mock.version("fresh"), Some(1));
}

// ----------------------------------------------------- counting and recording

#[test]
fn counts_and_last_request() {
    let mock = demo_mock();
    assert_eq!(mock.requests(), 0);
    assert!(mock.last_request().is_none());
    v1(&mock, "openai", None);
    v1(&mock, "openai", Some(WL_A)); // 404
    v1(&mock, "nope", None); // 404
    (mock.handler())(&call("/v1/credentials/bad%name", &[])); // 400, no name
    vault(&mock, "openai");
    mock.set_fault(Fault::Status(500));
    v1(&mock, "openai", None); // faults count too
    mock.clear_fault();

    assert_eq!(mock.requests(), 6);
    assert_eq!(mock.requests_for("openai"), 4);
    assert_eq!(mock.requests_for("nope"), 1);
    assert_eq!(mock.requests_for("anthropic"), 0);

    (mock.handler())(&call(
        "/v1/credentials/openai",
        &[("X-Tollgate-Workload", WL_A), ("x-trace", "t1")],
    ));
    let last = mock.last_request().expect("recorded");
    assert_eq!(last.method, "GET");
    assert_eq!(last.path, "/v1/credentials/openai");
    assert_eq!(
        last.headers,
        vec![
            (b"x-tollgate-workload".to_vec(), WL_A.as_bytes().to_vec()),
            (b"x-trace".to_vec(), b"t1".to_vec())
        ]
    );
    assert_eq!(
        last.header_str("x-tollgate-workload").as_deref(),
        Some(WL_A)
    );

    mock.reset_counts();
    assert_eq!((mock.requests(), mock.requests_for("openai")), (0, 0));
    // Clones share state.
    let clone = mock.clone();
    v1(&clone, "openai", None);
    assert_eq!(mock.requests(), 1);
}

#[test]
fn debug_output_redacts_values() {
    let mock = demo_mock();
    mock.set_workload_key("openai", WL_A, "sk-test-wl-a", "key-wl-a");
    let dbg = format!("{mock:?}");
    for secret in ["sk-test-openai", "sk-test-vault", "sk-test-wl-a"] {
        assert!(!dbg.contains(secret), "{dbg}");
    }
    assert!(dbg.contains("key-openai-1"));
    let answer = mock.answer(b"GET", b"/v1/credentials/openai", &[]);
    assert_eq!(answer.status, 200);
    assert!(!format!("{answer:?}").contains("sk-test-openai"));
    mock.answer(
        b"GET",
        b"/v1/secret/data/openai",
        &[
            (b"x-vault-request".to_vec(), b"true".to_vec()),
            (b"x-vault-token".to_vec(), b"hvs.leaked".to_vec()),
        ],
    );
    let last = mock.last_request().expect("recorded");
    assert_eq!(last.header("x-vault-token"), Some(&b"hvs.leaked"[..]));
    assert!(!format!("{last:?}").contains("hvs.leaked"));
}

// --------------------------------------------------------- faults, in-process

#[test]
fn faults_in_process() {
    let mock = demo_mock();
    let h = mock.handler();

    mock.set_fault(Fault::Delay(Duration::from_secs(30)));
    let r = h(&call("/v1/credentials/openai", &[]));
    assert_eq!((r.status, r.delay), (200, Duration::from_secs(30)));
    assert_eq!(body(&r)["value"], "sk-test-openai");
    let r = h(&call("/v1/credentials/nope", &[]));
    assert_eq!((r.status, r.delay), (404, Duration::from_secs(30)));

    mock.set_fault(Fault::Status(503));
    let r = h(&call("/v1/credentials/openai", &[]));
    assert_eq!(r.status, 503);
    assert_eq!(body(&r), json!({"error": "injected fault"}));
    let r = vault(&mock, "openai");
    assert_eq!(r.status, 503);
    assert!(body(&r)["errors"].is_array());

    mock.set_fault(Fault::Garbage);
    for r in [
        h(&call("/v1/credentials/openai", &[])),
        vault(&mock, "openai"),
    ] {
        assert_eq!(r.status, 200);
        assert!(serde_json::from_slice::<Value>(&r.body).is_err());
        assert!(!String::from_utf8_lossy(&r.body).contains("sk-test"));
    }

    mock.set_fault(Fault::WrongShape);
    let b = body(&h(&call("/v1/credentials/openai", &[])));
    assert!(!b["value"].is_string());
    let b = body(&vault(&mock, "openai"));
    assert!(b["data"]["data"].is_null());

    mock.set_fault(Fault::Reset);
    let r = h(&call("/v1/credentials/openai", &[]));
    assert_eq!(r, CallResponse::reset());

    mock.clear_fault();
    assert_eq!(h(&call("/v1/credentials/openai", &[])).status, 200);

    // A limited fault clears itself.
    mock.set_fault_for(Fault::Status(500), 2);
    let statuses: Vec<u16> = (0..3)
        .map(|_| h(&call("/v1/credentials/openai", &[])).status)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
}

// -------------------------------------------------------------- served mode

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), hyper_util::client::legacy::Error> {
    let mut req = hyper::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).expect("request"))
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Ok((status, body.to_vec()))
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).expect("JSON body")
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

#[tokio::test]
async fn served_both_protocols_match_in_process() {
    let mock = demo_mock();
    mock.set_workload_key("tollgate/openai", WL_A, "sk-test-vault-a", "key-vault-a");
    mock.deny("openai", Some(WL_C));
    let served = mock.serve(localhost()).await.expect("serve");
    assert_ne!(served.addr.port(), 0);
    assert_eq!(served.url(), format!("http://{}", served.addr));
    let c = client();
    let vault_hdr = [("x-vault-request", "true")];

    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/v1/credentials/openai", vec![]),
        (
            "/v1/credentials/openai",
            vec![("x-tollgate-workload", WL_C)],
        ),
        ("/v1/credentials/nope", vec![]),
        ("/v1/credentials/a/../b", vec![]),
        ("/v1/secret/data/tollgate/openai", vault_hdr.to_vec()),
        (
            "/v1/secret/data/tollgate/openai/cluster.local/ns/a/sa/b",
            vault_hdr.to_vec(),
        ),
        ("/v1/secret/data/tollgate/nope", vault_hdr.to_vec()),
        ("/v1/secret/data/tollgate/openai", vec![]),
    ];
    for (path, headers) in &cases {
        let (status, body) = get(&c, served.addr, path, headers).await.expect("response");
        let in_process = (mock.handler())(&call(path, headers));
        assert_eq!(status, in_process.status, "{path}");
        let (mut a, mut b) = (json_of(&body), json_of(&in_process.body));
        // Vault request ids are per request.
        for v in [&mut a, &mut b] {
            if let Some(o) = v.as_object_mut() {
                o.remove("request_id");
            }
        }
        assert_eq!(a, b, "{path}");
    }
    let (status, body) = get(&c, served.addr, "/v1/credentials/openai", &[])
        .await
        .expect("ok");
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["value"], "sk-test-openai");
    let (_, body) = get(
        &c,
        served.addr,
        "/v1/secret/data/tollgate/openai",
        &vault_hdr,
    )
    .await
    .expect("ok");
    assert_eq!(json_of(&body)["data"]["data"]["value"], "sk-test-vault");

    // Served requests are counted and recorded like in-process ones.
    assert_eq!(mock.requests(), 2 * cases.len() + 2);
    let last = mock.last_request().expect("recorded");
    assert_eq!(last.header_str("x-vault-request").as_deref(), Some("true"));
    assert!(last.header("host").is_some());
    served.shutdown().await;
}

#[tokio::test]
async fn served_faults() {
    let mock = demo_mock();
    let served = mock.serve(localhost()).await.expect("serve");
    let c = client();

    mock.set_fault(Fault::Delay(Duration::from_millis(150)));
    let t0 = Instant::now();
    let (status, _) = get(&c, served.addr, "/v1/credentials/openai", &[])
        .await
        .expect("ok");
    assert_eq!(status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    // Counted on arrival, before the delay ends.
    mock.set_fault(Fault::Delay(Duration::from_millis(300)));
    let pending = tokio::spawn({
        let c = c.clone();
        let addr = served.addr;
        async move { get(&c, addr, "/v1/credentials/openai", &[]).await }
    });
    assert!(
        common::poll_until_async(Duration::from_secs(5), || async { mock.requests() == 2 }).await,
        "the delayed request was never counted: {}",
        mock.requests()
    );
    assert!(
        !pending.is_finished(),
        "counted before its 300 ms delay ended"
    );
    assert_eq!(pending.await.expect("join").expect("ok").0, 200);

    mock.set_fault(Fault::Status(502));
    let (status, body) = get(&c, served.addr, "/v1/credentials/openai", &[])
        .await
        .expect("ok");
    assert_eq!(
        (status, json_of(&body)),
        (502, json!({"error": "injected fault"}))
    );

    mock.set_fault(Fault::Garbage);
    let (status, body) = get(&c, served.addr, "/v1/credentials/openai", &[])
        .await
        .expect("ok");
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    mock.set_fault(Fault::Reset);
    assert!(get(&c, served.addr, "/v1/credentials/openai", &[])
        .await
        .is_err());
    // Raw socket: nothing at all is written back.
    let mut s = TcpStream::connect(served.addr).await.expect("connect");
    s.write_all(b"GET /v1/credentials/openai HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut buf))
        .await
        .expect("closed promptly");
    assert!(buf.is_empty(), "got {} bytes", buf.len());
    // A zero-linger close reads as ECONNRESET (or EOF on some stacks).
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }

    mock.clear_fault();
    let (status, _) = get(&c, served.addr, "/v1/credentials/openai", &[])
        .await
        .expect("ok");
    assert_eq!(status, 200);
    served.shutdown().await;
}

#[tokio::test]
async fn served_raw_http11_and_shutdown() {
    let mock = demo_mock();
    let served = mock.serve(localhost()).await.expect("serve");
    let addr = served.addr;

    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /v1/credentials/openai HTTP/1.1\r\nHost: creds\r\nX-Tollgate-Workload: spiffe://cluster.local/ns/a/sa/b\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert_eq!(
        mock.last_request()
            .expect("recorded")
            .header_str("x-tollgate-workload")
            .as_deref(),
        Some(WL_A)
    );

    // Garbage on the wire: hyper answers 400 itself; the mock must survive.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"\x00\x01 nonsense\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let (status, _) = get(&client(), addr, "/v1/credentials/openai", &[])
        .await
        .expect("ok");
    assert_eq!(status, 200);

    served.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );

    // Drop also stops the server.
    let served = mock.serve(localhost()).await.expect("serve");
    let addr = served.addr;
    drop(served);
    assert!(
        common::poll_until_async(Duration::from_secs(5), || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "still listening 5 s after drop"
    );
}

// -------------------------------------------------------- operators' mode

static FILE_SEQ: AtomicUsize = AtomicUsize::new(0);

fn keys_file(contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tollgate-mock-keys-{}-{}.json",
        std::process::id(),
        FILE_SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, contents).expect("write keys file");
    path
}

#[test]
fn keys_file_and_env_vars() {
    let path = keys_file(
        r#"{"openai": "sk-file-openai", "tollgate/anthropic": {"value": "sk-file-anthropic", "id": "anth-7"}, "gemini": {"value": "sk-file-gemini"}}"#,
    );
    let vars = [
        ("TOLLGATE_KEYS_FILE", path.as_os_str().to_owned()),
        ("TOLLGATE_KEY_GEMINI", "sk-env-gemini".into()),
        ("TOLLGATE_KEY_AZURE_OPENAI", "sk-env-azure".into()),
        ("UNRELATED", "x".into()),
    ];
    let mock = MockCredentialService::from_vars_or_demo(vars).expect("loads");
    let _ = std::fs::remove_file(&path);

    let b = body(&v1(&mock, "openai", None));
    assert_eq!(
        (b["value"].as_str(), b["id"].as_str()),
        (Some("sk-file-openai"), Some("file-openai-1"))
    );
    let b = body(&v1(&mock, "tollgate/anthropic", None));
    assert_eq!(
        (b["value"].as_str(), b["id"].as_str()),
        (Some("sk-file-anthropic"), Some("anth-7"))
    );
    // Env overrides the file entry of the same env form.
    let b = body(&v1(&mock, "gemini", None));
    assert_eq!(
        (b["value"].as_str(), b["id"].as_str()),
        (Some("sk-env-gemini"), Some("env-gemini-1"))
    );
    // An env-only key serves any name of its env form, in both protocols.
    assert_eq!(
        body(&v1(&mock, "azure-openai", None))["value"],
        "sk-env-azure"
    );
    assert_eq!(
        body(&vault(&mock, "azure-openai"))["data"]["data"]["value"],
        "sk-env-azure"
    );
    // Configured keys replace the demo set entirely.
    assert_eq!(v1(&mock, "anthropic", None).status, 404);
}

#[test]
fn demo_keys_when_nothing_configured() {
    let mock = MockCredentialService::from_vars_or_demo([("PATH", "/bin")]).expect("demo");
    for name in ["openai", "anthropic", "gemini", "azure-openai"] {
        let b = body(&v1(&mock, name, None));
        assert_eq!(b["value"], format!("sk-demo-{name}-0001"));
        assert_eq!(b["id"], format!("demo-{name}-1"));
    }
    assert_eq!(mock.names().len(), 4);
}

#[test]
fn keys_config_errors_never_show_values() {
    let missing = std::env::temp_dir().join("tollgate-mock-definitely-missing.json");
    let err = MockCredentialService::from_vars_or_demo([("TOLLGATE_KEYS_FILE", &missing)])
        .expect_err("missing file");
    assert!(matches!(err, KeysError::FileRead { .. }), "{err}");

    for (contents, secret) in [
        (r#"{"openai": "sk-secret-1""#, "sk-secret-1"),
        (r#"["sk-secret-2"]"#, "sk-secret-2"),
        (r#"{"bad name": "sk-secret-3"}"#, "sk-secret-3"),
        (
            r#"{"openai": {"value": "sk-secret-4", "extra": 1}}"#,
            "sk-secret-4",
        ),
        (r#"{"openai": ""}"#, "<none>"),
        // A number long enough never to appear in the temp file's path
        // (which the error names, and which holds the pid).
        (r#"{"openai": 987654321987}"#, "987654321987"),
    ] {
        let path = keys_file(contents);
        let err = MockCredentialService::from_vars_or_demo([("TOLLGATE_KEYS_FILE", &path)])
            .expect_err(contents);
        let _ = std::fs::remove_file(&path);
        assert!(!err.to_string().contains(secret), "{err}");
    }
    let err = MockCredentialService::from_vars_or_demo([("TOLLGATE_KEY_OPENAI", "")])
        .expect_err("empty value");
    assert!(matches!(err, KeysError::BadValue { .. }));
}

#[test]
fn from_env_or_demo_reads_process_env() {
    let path = keys_file(r#"{"openai": {"value": "sk-procenv", "id": "proc-1"}}"#);
    // This is the only test that touches these variables.
    std::env::set_var("TOLLGATE_KEYS_FILE", &path);
    let mock = MockCredentialService::from_env_or_demo();
    std::env::remove_var("TOLLGATE_KEYS_FILE");
    let _ = std::fs::remove_file(&path);
    let env_has_keys = std::env::vars_os()
        .any(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("TOLLGATE_KEY_")));
    let b = body(&v1(&mock, "openai", None));
    if !env_has_keys {
        assert_eq!(
            (b["value"].as_str(), b["id"].as_str()),
            (Some("sk-procenv"), Some("proc-1"))
        );
    }
}
