//! The host Tollgate approves is the host Envoy routes, in a real Envoy 1.40
//! whose route table lists exact provider domains (as a production egress
//! gateway's does, `mesh-config/envoy/`), with `strip_any_host_port` on:
//!
//! | `Host` sent               | what Tollgate sees     | expected |
//! |---------------------------|------------------------|----------|
//! | `API.OpenAI.com`          | the same               | canonicalised to `api.openai.com`, routed, key injected |
//! | `api.openai.com:443:443`  | `api.openai.com:443` (Envoy strips one port) | canonicalised to `api.openai.com`, routed |
//! | `api.openai.com.`         | the same               | 400 `authority_invalid`: no key written, nothing upstream |
//! | `..openai.azure.com`      | the same               | 400 `authority_invalid` |
//!
//! Every request either reaches the provider with the key and an `allow`
//! record naming the host it was routed to, or is refused by Tollgate with a
//! reason: never a bare route 404 after an `allow`.

use tollgate_tests::run_envoy::*;
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_host_is_the_routed_host() {
    let stack = start_stack(&scratch_dir("authority"), &config(), |o| {
        o.mock_domains = vec![
            "api.openai.com".into(),
            "api.anthropic.com".into(),
            "*.openai.azure.com".into(),
        ];
    })
    .await;

    for host in ["API.OpenAI.com", "api.openai.com:443:443"] {
        let seen = stack.llm.requests().len();
        let r = post_as(&stack, SUPPORT_BOT, host, CHAT, &[]).await.unwrap();
        assert_eq!(
            r.status,
            200,
            "{host}: {} {:?}",
            String::from_utf8_lossy(&r.body),
            r.header("x-tollgate-reason")
        );
        let reqs = stack.llm.requests();
        assert_eq!(reqs.len(), seen + 1, "{host}: reached the provider once");
        let last = reqs.last().unwrap();
        assert_eq!(
            last.key.as_deref(),
            Some(OPENAI_KEY.as_bytes()),
            "{host}: with the real key"
        );
    }
    for host in ["api.openai.com.", "..openai.azure.com"] {
        let seen = stack.llm.requests().len();
        let r = post_as(&stack, SUPPORT_BOT, host, CHAT, &[]).await.unwrap();
        assert_eq!(r.status, 400, "{host}");
        assert_eq!(
            r.header("x-tollgate-reason").as_deref(),
            Some("authority_invalid"),
            "{host}: refused by Tollgate with a reason"
        );
        assert_eq!(stack.llm.requests().len(), seen, "{host}: nothing upstream");
    }
    let lines = access_log_lines(&stack, 4);
    let hosts: Vec<&str> = lines
        .iter()
        .filter(|l| l["tollgate"]["decision"] == "allow")
        .filter_map(|l| l["tollgate"]["host"].as_str())
        .collect();
    assert_eq!(hosts, ["api.openai.com", "api.openai.com"], "{lines:?}");
    assert!(
        lines.iter().all(|l| l["status"] != 404),
        "no bare 404: {lines:?}"
    );
    assert_no_leak_in(&stack, &[]);
}

/// A WebSocket upgrade reaches Tollgate (the rendered and shipped plain
/// Envoy configurations enable websocket upgrades in the connection manager,
/// as Istio's gateways do), which refuses it with a reason and an audit
/// record, instead of Envoy's bare 403 `upgrade_failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_refused_with_a_reason() {
    let stack = start_stack(&scratch_dir("upgrade"), &config(), |_| {}).await;
    let req = tollgate_tests::tls_client::HttpsRequest {
        method: "GET".into(),
        host: "api.openai.com".into(),
        path: "/v1/realtime?model=gpt-4o-realtime-preview".into(),
        headers: vec![
            ("connection".into(), b"Upgrade".to_vec()),
            ("upgrade".into(), b"websocket".to_vec()),
            ("sec-websocket-version".into(), b"13".to_vec()),
            (
                "sec-websocket-key".into(),
                b"dGhlIHNhbXBsZSBub25jZQ==".to_vec(),
            ),
        ],
        body: vec![],
    };
    let seen = stack.llm.requests().len();
    let r = tollgate_tests::tls_client::send(stack.listen, client_for(&stack, SUPPORT_BOT), &req)
        .await
        .unwrap();
    assert_eq!(r.status, 501, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("x-tollgate-reason").as_deref(),
        Some("upgrade_not_supported")
    );
    assert_eq!(stack.llm.requests().len(), seen, "nothing upstream");
    let lines = access_log_lines(&stack, 1);
    assert_eq!(
        lines[0]["tollgate"]["reason"], "upgrade_not_supported",
        "{lines:?}"
    );
}

/// `OPTIONS *` (asterisk form) is refused by Envoy's connection manager
/// before any filter runs (404 `absolute_path_rejected`); the gateway's
/// `local_reply_config` still gives it a reason, and nothing goes upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_refused_with_a_reason() {
    let stack = start_stack(&scratch_dir("options-star"), &config(), |_| {}).await;
    let req = tollgate_tests::tls_client::HttpsRequest {
        method: "OPTIONS".into(),
        host: "api.openai.com".into(),
        path: "*".into(),
        headers: vec![],
        body: vec![],
    };
    let seen = stack.llm.requests().len();
    let r = tollgate_tests::tls_client::send(stack.listen, client_for(&stack, SUPPORT_BOT), &req)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-tollgate-reason").as_deref(),
        Some("absolute_path_rejected")
    );
    assert_eq!(stack.llm.requests().len(), seen, "nothing upstream");
    let lines = access_log_lines(&stack, 1);
    assert_eq!(lines[0]["response_code_details"], "absolute_path_rejected");
    assert_eq!(
        lines[0]["tollgate"],
        serde_json::Value::Null,
        "Tollgate never ran"
    );
}
