//! Shared fixtures for Tollgate's end-to-end scenarios: the compiled module,
//! a representative policy, the keys in play, and the leak check every test
//! runs.
//!
//! Invariants:
//! - Tests run the real `tollgate.wasm` (built by `make build`), never a
//!   native copy of the filter.
//! - Every test that uses a key ends with [`assert_no_leak`], which fails if
//!   any key (real or client-sent) appears in a log line, a local reply, or a
//!   metric name.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use tollgate_harness::mock::MockCredentialService;
use tollgate_harness::{Gateway, LocalReply, Module, Outcome, StreamId};

pub use tollgate_harness;

pub mod run_envoy;
pub mod run_harness;
pub mod scenario;
pub mod tls_client;

/// The cluster name the fixtures give the credential service.
pub const CREDS_CLUSTER: &str = "tollgate-credentials";

/// Real keys the mock credential service hands out.
pub const OPENAI_KEY: &str = "sk-real-openai-7f3a9c1e5b2d4f6a8c0e";
pub const ANTHROPIC_KEY: &str = "sk-ant-real-anthropic-1b3d5f7a9c2e4g6i";
pub const GEMINI_KEY: &str = "AIzaReal-gemini-key-0123456789abcdefgh";
pub const AZURE_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const SEARCH_KEY: &str = "search-real-key-5e6f7a8b9c";
/// Keys a (misbehaving) workload sends itself.
pub const CLIENT_OPENAI_KEY: &str = "sk-proj-leakedclientkey0123456789abcdef";
pub const CLIENT_GEMINI_KEY: &str = "AIzaSyLeakedClientKey-0123456789abcdef";
pub const CLIENT_GOOGLE_TOKEN: &str = "ya29.a0LeakedClientAccessToken0123456789";
pub const CLIENT_AZURE_KEY: &str = "abcdef0123456789abcdef0123456789";

/// Workloads of the fixture policy.
pub const SUPPORT_BOT: &str = "spiffe://cluster.local/ns/support/sa/chatbot";
pub const BATCH_JOB: &str = "spiffe://cluster.local/ns/batch/sa/embedder";
pub const STRANGER: &str = "spiffe://cluster.local/ns/default/sa/stranger";

/// Every key any fixture uses.
pub fn all_keys() -> Vec<&'static str> {
    vec![
        OPENAI_KEY,
        ANTHROPIC_KEY,
        GEMINI_KEY,
        AZURE_KEY,
        SEARCH_KEY,
        CLIENT_OPENAI_KEY,
        CLIENT_GEMINI_KEY,
        CLIENT_GOOGLE_TOKEN,
        CLIENT_AZURE_KEY,
    ]
}

/// The compiled filter. `TOLLGATE_WASM` overrides the default location.
pub fn module() -> Arc<Module> {
    let path = std::env::var_os("TOLLGATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip1/release/tollgate.wasm")
        });
    assert!(
        path.exists(),
        "{} is missing: run `make build` first",
        path.display()
    );
    Module::load(&path).unwrap_or_else(|e| panic!("cannot load {}: {e:#}", path.display()))
}

/// A representative policy covering every provider kind.
pub fn config() -> Value {
    json!({
        "mode": "enforce",
        "trust_domains": ["cluster.local"],
        "credential_service": {
            "cluster": CREDS_CLUSTER,
            "authority": "credentials.tollgate.local",
            "protocol": "tollgate_v1",
            "timeout": "2s",
            "ttl": "60s",
            "refresh_ahead": "30s"
        },
        "providers": [
            {"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}},
            {"name": "anthropic", "kind": "anthropic", "hosts": ["api.anthropic.com"], "credential": {"name": "anthropic"}},
            {"name": "gemini", "kind": "gemini", "hosts": ["generativelanguage.googleapis.com"], "credential": {"name": "gemini"}},
            {"name": "azure", "kind": "azure_openai", "hosts": ["*.openai.azure.com"], "credential": {"name": "azure-openai"}},
            {"name": "search", "kind": "generic", "hosts": ["api.search.example.com"],
             "header": {"name": "x-search-token", "prefix": "Token "}, "credential": {"name": "search"}}
        ],
        "rules": [
            {"name": "support-chat",
             "workloads": ["spiffe://cluster.local/ns/support/*"],
             "providers": ["openai", "anthropic", "gemini", "azure", "search"],
             "endpoints": ["POST /v1/chat/completions", "POST /v1/messages",
                           "POST /v1beta/models/*:generateContent", "POST /v1beta/models/*:streamGenerateContent",
                           "POST /openai/deployments/*/chat/completions", "POST /v1/search"]},
            {"name": "batch-embeddings",
             "workloads": [BATCH_JOB],
             "providers": ["openai"],
             "endpoints": ["POST /v1/embeddings"]}
        ]
    })
}

/// A credential service holding every fixture key.
pub fn credential_service() -> MockCredentialService {
    let m = MockCredentialService::new();
    m.set_key("openai", OPENAI_KEY, "openai-key-1");
    m.set_key("anthropic", ANTHROPIC_KEY, "anthropic-key-1");
    m.set_key("gemini", GEMINI_KEY, "gemini-key-1");
    m.set_key("azure-openai", AZURE_KEY, "azure-key-1");
    m.set_key("search", SEARCH_KEY, "search-key-1");
    m
}

/// A gateway with `workers` VMs, the given config, and `creds` answering
/// the credential cluster in-process.
pub fn gateway(config: &Value, workers: usize, creds: &MockCredentialService) -> Gateway {
    Gateway::builder(module())
        .workers(workers)
        .plugin_config(config.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .build()
        .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"))
}

/// The fixture policy plus `n` single-workload rules (`w0`…), as a large
/// mesh's policy looks.
pub fn config_with_rules(n: usize) -> Value {
    let mut c = config();
    if let Some(rules) = c["rules"].as_array_mut() {
        for i in 0..n {
            rules.push(json!({
                "name": format!("w{i}"),
                "workloads": [format!("spiffe://cluster.local/ns/tenant{i}/sa/app")],
                "providers": ["openai"],
                "endpoints": ["POST /v1/chat/completions"]
            }));
        }
    }
    c
}

/// Sends a request from `workload` (with mTLS) on worker 0.
pub fn send(
    gw: &mut Gateway,
    workload: &str,
    method: &str,
    authority: &str,
    path: &str,
) -> StreamId {
    send_on(gw, 0, workload, method, authority, path)
}

/// Sends a request from `workload` (with mTLS) on `worker`.
pub fn send_on(
    gw: &mut Gateway,
    worker: usize,
    workload: &str,
    method: &str,
    authority: &str,
    path: &str,
) -> StreamId {
    gw.request(worker)
        .mtls(true)
        .peer_uri_san(workload)
        .method(method)
        .authority(authority)
        .path(path)
        .send()
}

/// The outcome after everything ready has been delivered.
pub fn settle(gw: &mut Gateway, id: StreamId) -> Outcome {
    gw.settle();
    gw.outcome(id)
}

/// Asserts a deny reply with this reason, in header, body, status and metric.
pub fn assert_denied(gw: &Gateway, id: StreamId, status: u16, reason: &str) -> LocalReply {
    let outcome = gw.outcome(id);
    let reply = outcome.expect_reply().clone();
    assert_eq!(reply.status, status, "status for {reason}: {reply:?}");
    assert_eq!(
        reply.header_str("x-tollgate-reason").as_deref(),
        Some(reason),
        "{reply:?}"
    );
    let body = reply.body_json();
    assert_eq!(body["error"]["type"], "tollgate_denied", "{body}");
    assert_eq!(body["error"]["code"], reason, "{body}");
    assert!(
        gw.metric(&format!("tollgate.decision.deny.{reason}"))
            .unwrap_or(0)
            >= 1,
        "metric for {reason}: {:?}",
        gw.metrics()
    );
    assert!(
        audit_lines(gw)
            .iter()
            .any(|a| a["decision"] == "deny" && a["reason"] == reason),
        "audit line for {reason}: {}",
        gw.log_text()
    );
    reply
}

/// The audit records logged so far.
/// The audit records published so far, as the access log reads them: the
/// filter state `wasm.tollgate.audit` of every stream that has one, in the
/// order the streams started. A record is published at the verdict and
/// final at stream end.
pub fn audit_lines(gw: &Gateway) -> Vec<Value> {
    gw.stream_ids()
        .into_iter()
        .filter_map(|id| gw.filter_state(id, AUDIT_KEY))
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}

/// Where Envoy keeps the audit record (`proxy_set_property("tollgate.audit")`).
pub const AUDIT_KEY: &str = "wasm.tollgate.audit";

/// Fails if any key appears in logs, local replies, filter state or metric
/// names, or if a VM trapped.
pub fn assert_no_leak(gw: &Gateway, streams: &[StreamId], keys: &[&str]) {
    assert_eq!(gw.trap(), None, "a VM trapped");
    let logs = gw.log_text();
    let metrics = format!("{:?}", gw.metrics());
    for key in keys {
        assert!(
            !logs.contains(key),
            "key {key:?} leaked into the logs:\n{logs}"
        );
        assert!(
            !metrics.contains(key),
            "key {key:?} leaked into metric names"
        );
        for id in streams {
            if let Outcome::LocalReply(r) = gw.outcome(*id) {
                let text = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
                assert!(
                    !text.contains(key),
                    "key {key:?} leaked into a local reply: {text}"
                );
            }
            // Filter state (the audit record) is what Envoy's access log
            // writes: every value ever set.
            for (_, v) in gw.filter_states(*id).map(|f| f.writes).unwrap_or_default() {
                let v = String::from_utf8_lossy(&v);
                assert!(
                    !v.contains(key),
                    "key {key:?} leaked into filter state: {v}"
                );
            }
        }
    }
}
