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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_harness::mock::MockCredentialService;
use tollgate_harness::{Gateway, LocalReply, Module, Outcome, RequestBuilder, StreamId};

pub use tollgate_harness;

pub mod dlp_bench;
pub mod global_tier;
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
/// Workloads of the request-body rules the scenario table adds
/// (`scenario::Policy::Bodies`): listed models with an output cap that is
/// clamped, and listed models with a cap that is refused and a small body
/// limit.
pub const CHATBOT: &str = "spiffe://cluster.local/ns/chatbot/sa/bot";
pub const CHATBOT_STRICT: &str = "spiffe://cluster.local/ns/chatbot/sa/strict";

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

/// The credentials [`credential_service`] holds: (name, value, id).
pub const FIXTURE_KEYS: [(&str, &str, &str); 5] = [
    ("openai", OPENAI_KEY, "openai-key-1"),
    ("anthropic", ANTHROPIC_KEY, "anthropic-key-1"),
    ("gemini", GEMINI_KEY, "gemini-key-1"),
    ("azure-openai", AZURE_KEY, "azure-key-1"),
    ("search", SEARCH_KEY, "search-key-1"),
];

/// A credential service holding every fixture key.
pub fn credential_service() -> MockCredentialService {
    let m = MockCredentialService::new();
    for (name, value, id) in FIXTURE_KEYS {
        m.set_key(name, value, id);
    }
    m
}

/// Sets credential `name` back to its fixture value (after `remove_key`).
pub fn restore_fixture_key(creds: &MockCredentialService, name: &str) {
    if let Some((n, v, id)) = FIXTURE_KEYS.iter().find(|(n, _, _)| *n == name) {
        creds.set_key(n, v, id);
    }
}

/// Polls `cond` every 10 ms until it holds (true) or `limit` has passed
/// (false). For waiting on something observable instead of sleeping.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`poll_until`] inside a tokio runtime: sleeps without blocking the
/// runtime's thread, so the tasks being waited on can run.
pub async fn poll_until_async(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counter values at one moment, to check what one request changed: take a
/// snapshot before sending, compare after. (A `> 0` check on a gateway that
/// served earlier requests passes because of them.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<String, u64>);

/// The prefix of the counters that record a request's verdict.
pub const DECISION_PREFIX: &str = "tollgate.decision.";

impl Counters {
    /// The harness gateway's counters now.
    pub fn snapshot(gw: &Gateway) -> Self {
        Self(gw.metrics())
    }

    /// Counters from `(name, value)` pairs; Envoy's `wasmcustom.` prefix is
    /// removed so names read as the filter defines them.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| match k.strip_prefix("wasmcustom.") {
                    Some(k) => (k.to_string(), v),
                    None => (k, v),
                })
                .collect(),
        )
    }

    /// Every counter under `prefix` that differs between `self` and `after`,
    /// by how much (a counter missing on one side counts as 0).
    pub fn changes_under(&self, after: &Counters, prefix: &str) -> BTreeMap<String, i64> {
        let names: std::collections::BTreeSet<&String> =
            self.0.keys().chain(after.0.keys()).collect();
        names
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .filter_map(|k| {
                let d = after.0.get(k).copied().unwrap_or(0) as i64
                    - self.0.get(k).copied().unwrap_or(0) as i64;
                (d != 0).then(|| (k.clone(), d))
            })
            .collect()
    }

    /// `Ok` if the decision counters (`tollgate.decision.*`) changed from
    /// `self` to `after` by exactly `expected` (full names) and no other
    /// decision counter changed.
    pub fn check_decisions(
        &self,
        after: &Counters,
        expected: &[(&str, i64)],
    ) -> Result<(), String> {
        let seen = self.changes_under(after, DECISION_PREFIX);
        let want: BTreeMap<String, i64> = expected
            .iter()
            .filter(|(_, n)| *n != 0)
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        if seen == want {
            Ok(())
        } else {
            Err(format!(
                "decision counters changed by {seen:?}, expected {want:?}"
            ))
        }
    }

    /// Asserts `name` changed by exactly `n` since this snapshot.
    #[track_caller]
    pub fn assert_delta(&self, gw: &Gateway, name: &str, n: i64) {
        let after = Counters::snapshot(gw);
        let d = after.0.get(name).copied().unwrap_or(0) as i64
            - self.0.get(name).copied().unwrap_or(0) as i64;
        assert_eq!(d, n, "{name} changed by {d}, expected {n}");
    }

    /// Asserts the decision counters changed by exactly `expected` since
    /// this snapshot, and no other decision counter changed.
    #[track_caller]
    pub fn assert_decisions(&self, gw: &Gateway, expected: &[(&str, i64)]) {
        if let Err(e) = self.check_decisions(&Counters::snapshot(gw), expected) {
            panic!("{e}");
        }
    }
}

/// A gateway with `workers` VMs, the given config, and `creds` answering
/// the credential cluster in-process. Like every configuration we ship, it
/// sets Envoy's `allow_on_headers_stop_iteration` (held body mode).
pub fn gateway(config: &Value, workers: usize, creds: &MockCredentialService) -> Gateway {
    Gateway::builder(module())
        .allow_on_headers_stop_iteration(true)
        .workers(workers)
        .plugin_config(config.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .build()
        .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"))
}

/// The messages a gateway logged when it refused `config` at load;
/// panics if it was accepted or failed otherwise.
pub fn rejection_logs(config: &str) -> String {
    let creds = credential_service();
    let started = Gateway::builder(module())
        .plugin_config(config.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .build();
    match started {
        Ok(_) => panic!("configuration was accepted: {config}"),
        Err(tollgate_harness::StartError::ConfigureRejected { logs }) => logs
            .iter()
            .map(|l| l.message.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => panic!("unexpected start error: {other:?}"),
    }
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

/// A one-worker gateway whose cache already holds the OpenAI key: one
/// allowed chat request went through first.
pub fn warm_gateway(config: &Value, creds: &MockCredentialService) -> Gateway {
    let mut gw = gateway(config, 1, creds);
    let id = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    gw.outcome(id).expect_forwarded();
    gw
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

/// A request from `workload` (with mTLS) on `worker`, to add headers, a
/// body or trailers to before sending.
pub fn request_on<'g>(
    gw: &'g mut Gateway,
    worker: usize,
    workload: &str,
    method: &str,
    authority: &str,
    path: &str,
) -> RequestBuilder<'g> {
    gw.request(worker)
        .mtls(true)
        .peer_uri_san(workload)
        .method(method)
        .authority(authority)
        .path(path)
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
    request_on(gw, worker, workload, method, authority, path).send()
}

/// The outcome after everything ready has been delivered.
pub fn settle(gw: &mut Gateway, id: StreamId) -> Outcome {
    gw.settle();
    gw.outcome(id)
}

/// Asserts a deny reply with this reason (header, body, status, audit
/// record), and that this one request moved the decision counters by
/// exactly `deny.<reason>` +1 since `before` (taken just before it was
/// sent): nothing else, no allow.
#[track_caller]
pub fn assert_denied(
    gw: &Gateway,
    before: &Counters,
    id: StreamId,
    status: u16,
    reason: &str,
) -> LocalReply {
    let reply = assert_denied_reply(gw, id, status, reason);
    before.assert_decisions(gw, &[(&format!("tollgate.decision.deny.{reason}"), 1)]);
    reply
}

/// [`assert_denied`] without the counter check, for requests answered
/// together (the caller checks the counters' combined change).
#[track_caller]
pub fn assert_denied_reply(gw: &Gateway, id: StreamId, status: u16, reason: &str) -> LocalReply {
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
    let audit = gw
        .filter_state(id, AUDIT_KEY)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    assert!(
        audit
            .as_ref()
            .is_some_and(|a| a["decision"] == "deny" && a["reason"] == reason),
        "audit record of this stream for {reason}: {audit:?}"
    );
    reply
}

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

/// Ends stream `id` if it is still open, as its upstream or client would: a
/// forwarded request gets an empty 200 answer, any other is cancelled. A
/// forwarded request's audit record is written when its stream ends, as in
/// Envoy, whose access log reads it then.
pub fn end_stream(gw: &mut Gateway, id: StreamId) {
    if !gw.is_open(id) {
        return;
    }
    if matches!(gw.outcome(id), Outcome::Forwarded(_)) {
        gw.respond(id, 200, &[], b"");
    } else {
        gw.cancel(id);
    }
}

/// [`end_stream`] for every stream of the gateway.
pub fn end_open_streams(gw: &mut Gateway) {
    for id in gw.stream_ids() {
        end_stream(gw, id);
    }
}

/// The audit record of one stream (`Null` if it has none).
pub fn audit_of(gw: &Gateway, id: StreamId) -> Value {
    gw.filter_state(id, AUDIT_KEY)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
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

/// Budget tests' helpers (the local tier's `budgets.rs`, the global tier's
/// `budgets_global.rs`).
pub mod budget_fixture {
    use serde_json::Value;
    use tollgate_harness::{Gateway, StreamId};

    use super::{request_on, send, BATCH_JOB};

    pub const CHAT: &str = "/v1/chat/completions";
    pub const JSON: &[(&str, &[u8])] = &[("content-type", b"application/json")];

    /// Merges `rule`'s fields into the fixture's first rule (`support-chat`).
    pub fn merge_into_first_rule(c: &mut Value, rule: &Value) {
        if let (Some(r), Some(extra)) = (c["rules"][0].as_object_mut(), rule.as_object()) {
            for (k, v) in extra {
                r.insert(k.clone(), v.clone());
            }
        }
    }

    /// Fills the credential cache through the rule without budgets
    /// (`batch-embeddings`), so no budget has moved.
    pub fn warm_through_batch(gw: &mut Gateway) {
        let id = send(gw, BATCH_JOB, "POST", "api.openai.com", "/v1/embeddings");
        gw.settle();
        gw.outcome(id).expect_forwarded();
        gw.respond(id, 200, JSON, b"{}");
    }

    /// A JSON chat request with `body` from `workload` on `worker`.
    pub fn chat(gw: &mut Gateway, worker: usize, workload: &str, body: &str) -> StreamId {
        request_on(gw, worker, workload, "POST", "api.openai.com", CHAT)
            .header("content-type", "application/json")
            .body(body)
            .send()
    }

    /// An OpenAI chat answer reporting this usage.
    pub fn usage_answer(prompt: u64, completion: u64) -> Vec<u8> {
        format!(
            r#"{{"id":"c1","choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
            prompt + completion
        )
        .into_bytes()
    }
}
