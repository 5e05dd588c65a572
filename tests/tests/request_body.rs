//! The request body phase on the real `.wasm`: a request is held (headers
//! and body) until the filter has decided, in both of Envoy's header-pause
//! modes, and nothing goes upstream without its credential.

use tollgate_harness::{Gateway, StreamId};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";
const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn held_gateway(config: &serde_json::Value) -> (Gateway, tollgate_harness::mock::MockCredentialService) {
    let creds = credential_service();
    let gw = Gateway::builder(module())
        .workers(1)
        .plugin_config(config.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .allow_on_headers_stop_iteration(true)
        .build()
        .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"));
    (gw, creds)
}

fn post_chat(gw: &mut Gateway, chunks: Vec<Vec<u8>>) -> StreamId {
    gw.request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .path(CHAT)
        .header("content-type", "application/json")
        .body_chunks(chunks)
        .send()
}

/// Measured in Envoy before this phase existed: with
/// `allow_on_headers_stop_iteration`, a body callback that returned
/// Continue while the credential was being fetched released the held
/// headers upstream without any credential.
#[test]
fn a_cold_cache_post_is_held_until_its_credential_is_written() {
    let (mut gw, _creds) = held_gateway(&config());
    let body = CHAT_BODY.as_bytes();
    let id = post_chat(&mut gw, vec![body[..10].to_vec(), body[10..].to_vec()]);
    // The fetch has not been answered yet: nothing may have gone upstream.
    assert_eq!(gw.upstream_headers(id), None, "headers left before the credential");
    assert!(gw.upstream_body_pieces(id).is_empty());
    gw.settle();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_str("authorization").as_deref(),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(f.body, body);
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn a_cold_cache_post_with_trailers_is_held_until_its_credential_is_written() {
    let (mut gw, _creds) = held_gateway(&config());
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .path(CHAT)
        .header("content-type", "application/json")
        .body(CHAT_BODY)
        .trailer("x-checksum", "abc")
        .send();
    assert_eq!(gw.upstream_headers(id), None, "headers left before the credential");
    gw.settle();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_str("authorization").as_deref(),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(f.body, CHAT_BODY.as_bytes());
    assert_eq!(f.trailer("x-checksum"), Some(&b"abc"[..]));
}

#[test]
fn a_denied_requests_body_never_goes_upstream_in_either_pause_mode() {
    for allow in [false, true] {
        let creds = credential_service();
        let mut gw = Gateway::builder(module())
            .workers(1)
            .plugin_config(config().to_string())
            .cluster_handler(CREDS_CLUSTER, creds.handler())
            .allow_on_headers_stop_iteration(allow)
            .build()
            .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"));
        let id = gw
            .request(0)
            .mtls(true)
            .peer_uri_san(STRANGER)
            .method("POST")
            .authority("api.openai.com")
            .path(CHAT)
            .body_chunks(vec![b"{\"model\":".to_vec(), b"\"x\"}".to_vec()])
            .send();
        gw.settle();
        assert_denied_reply(&gw, id, 403, "workload_not_permitted");
        assert_eq!(gw.upstream_headers(id), None, "allow={allow}");
        assert!(gw.upstream_body_pieces(id).is_empty(), "allow={allow}");
    }
}
