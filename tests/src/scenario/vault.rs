//! The `vault_kv2` scenarios: the same table, with the credential cluster
//! pointed at a real OpenBao server behind a real `bao agent` (AppRole
//! auto-auth, `api_proxy` with its own token).
//!
//! Design: the credential source is part of the policy, not of a
//! scenario. [`Policy::Vault`] is this module's [`config`] (a
//! `vault_kv2` credential service), and its [`Policy::source`] is
//! [`CredentialSource::OpenBao`]. Each runner starts one
//! [`OpenBaoStack`] per table run ([`start_openbao`], seeded with
//! [`VAULT_KEYS`]) and points the credential cluster of every gateway that
//! runs a [`Policy::Vault`] scenario at the agent (through the stack's
//! recording relay). The scenarios stay data: a request, a
//! [`CredentialState`], an outcome; the runners apply a state and count
//! fetches through [`Source`], which the mock and OpenBao both implement:
//! - fetches: the relay's requests for `GET /v1/secret/data/<path>`
//!   ([`tollgate_harness::openbao::Recorder::requests_to`]), the
//!   equivalent of the mock's `requests_for(name)`; a scenario's
//!   credential is its KV path, so the judge's rules apply unchanged;
//! - [`CredentialState::Denied`]: the agent's ACL policy denies the path
//!   ([`OpenBaoStack::set_refused`]), so OpenBao answers 403;
//! - [`CredentialState::Missing`]: the secret's versions and metadata are
//!   deleted ([`OpenBaoStack::delete_all`]), so OpenBao answers 404 for a
//!   secret that does not exist; reverting writes the seed again (a new
//!   version with the same value).
//!
//! Shared state: one OpenBao serves every gateway of a run, so every state
//! is reverted after its scenario, and the Envoy runner counts a stack's
//! fetches from that stack's start.
//!
//! Not here: cases that need time to pass or a process to change (a new
//! version picked up within `refresh_ahead`, a deleted version dropped at
//! the next refresh, the agent stopped, its token revoked) have no place
//! in a table of one request and one outcome; they stay in
//! `tests/tests/envoy_openbao.rs` only.

use std::path::Path;

use serde_json::{json, Value};
use tollgate_harness::openbao::{OpenBaoOptions, OpenBaoStack};

use super::*;

/// The host of the per-workload provider (OpenAI-shaped).
pub const PER_WORKLOAD_HOST: &str = "workload.openai.example";
/// The shared key's KV path.
pub const SHARED_PATH: &str = "tollgate/openai";
/// [`SUPPORT_BOT`]'s own path under the per-workload provider's
/// `tollgate/per-workload` (scope `per_workload` appends the SPIFFE ID
/// without its scheme).
pub const SUPPORT_BOT_PATH: &str = "tollgate/per-workload/cluster.local/ns/support/sa/chatbot";
/// Another workload's path under the same provider: seeded, so a filter
/// that read the wrong workload's path would inject a wrong key.
pub const OTHER_WORKLOAD_PATH: &str = "tollgate/per-workload/cluster.local/ns/support/sa/helper";

pub const VAULT_OPENAI_KEY: &str = "sk-bao-table-openai-3c5e7a9b1d2f4a6c";
pub const VAULT_SUPPORT_BOT_KEY: &str = "sk-bao-table-chatbot-8d0f2b4c6e1a3b5d";
pub const VAULT_OTHER_WORKLOAD_KEY: &str = "sk-bao-table-helper-9e1a3c5d7f2b4c6e";

/// What [`start_openbao`] seeds: (KV path, value).
pub const VAULT_KEYS: [(&str, &str); 3] = [
    (SHARED_PATH, VAULT_OPENAI_KEY),
    (SUPPORT_BOT_PATH, VAULT_SUPPORT_BOT_KEY),
    (OTHER_WORKLOAD_PATH, VAULT_OTHER_WORKLOAD_KEY),
];

/// [`Policy::Vault`]'s hosts, with the KV path [`SUPPORT_BOT`] reads for
/// each and a request it may send there.
pub(super) const VAULT_PROVIDERS: [(&str, &str, &str); 2] = [
    (OPENAI, SHARED_PATH, CHAT),
    (PER_WORKLOAD_HOST, SUPPORT_BOT_PATH, CHAT),
];

/// Every key OpenBao holds in a table run.
pub fn vault_keys() -> Vec<&'static str> {
    VAULT_KEYS.iter().map(|(_, v)| *v).collect()
}

/// The policy of [`Policy::Vault`]: `vault_kv2` at the agent, the shared
/// key for OpenAI and a per-workload key for [`PER_WORKLOAD_HOST`]; the
/// fixture's ttl and refresh_ahead, so warm stays warm for a table run.
pub fn config() -> Value {
    json!({
        "mode": "enforce",
        "trust_domains": ["cluster.local"],
        "credential_service": {
            "cluster": CREDS_CLUSTER,
            "authority": "openbao-agent.local",
            "protocol": "vault_kv2",
            "vault": {"mount": "secret", "field": "value"},
            "timeout": "2s",
            "ttl": "60s",
            "refresh_ahead": "30s"
        },
        "providers": [
            {"name": "openai", "kind": "openai", "hosts": [OPENAI],
             "credential": {"name": SHARED_PATH, "scope": "shared"}},
            {"name": "per-workload", "kind": "openai", "hosts": [PER_WORKLOAD_HOST],
             "credential": {"name": "tollgate/per-workload", "scope": "per_workload"}}
        ],
        "rules": [
            {"name": "support-chat",
             "workloads": ["spiffe://cluster.local/ns/support/*"],
             "providers": ["openai", "per-workload"],
             "endpoints": ["POST /v1/chat/completions"]}
        ]
    })
}

/// Starts OpenBao and its agent under `dir`, seeded with [`VAULT_KEYS`].
pub async fn start_openbao(repo_root: &Path, dir: &Path) -> OpenBaoStack {
    let bao = OpenBaoStack::start(OpenBaoOptions::for_test(repo_root, dir))
        .await
        .unwrap_or_else(|e| panic!("openbao did not start: {e:#}"));
    for (path, value) in VAULT_KEYS {
        bao.put(path, value)
            .unwrap_or_else(|e| panic!("kv put {path}: {e:#}"));
    }
    bao
}

/// The seeded value of `path`.
pub(super) fn seed(path: &str) -> Option<&'static str> {
    VAULT_KEYS.iter().find(|(p, _)| *p == path).map(|(_, v)| *v)
}

/// The `vault_kv2` scenarios. Cold, the OpenBao state decides; warm, the
/// key cached by the warm-up is fresh, so OpenBao is not asked and the
/// cached key keeps serving (as with the mock).
pub(super) fn vault_scenarios() -> Vec<Scenario> {
    let shared = || req(SUPPORT_BOT, "POST", OPENAI, CHAT);
    let openai = || forwarded("authorization", bearer(VAULT_OPENAI_KEY));
    let cases: Vec<(&'static str, Req, CredentialState, Expect, Option<Expect>)> = vec![
        (
            "vault_shared_key_is_fetched_and_injected",
            shared(),
            CredentialState::Normal,
            openai(),
            None,
        ),
        (
            "vault_per_workload_key_is_read_from_the_workloads_path",
            req(SUPPORT_BOT, "POST", PER_WORKLOAD_HOST, CHAT),
            CredentialState::Normal,
            forwarded("authorization", bearer(VAULT_SUPPORT_BOT_KEY)),
            None,
        ),
        (
            "vault_path_refused_by_the_openbao_policy",
            shared(),
            CredentialState::Denied(SHARED_PATH),
            denied(403, "credential_denied"),
            Some(openai()),
        ),
        (
            "vault_secret_that_does_not_exist",
            shared(),
            CredentialState::Missing(SHARED_PATH),
            denied(503, "credential_unavailable"),
            Some(openai()),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, r, creds, expect, warm)| Scenario {
            name,
            area: Area::VaultKv2,
            policy: Policy::Vault,
            creds,
            expect: as_sent(expect, &r),
            expect_warm: warm.map(|e| as_sent(e, &r)),
            req: r,
            shadow: None,
        })
        .collect()
}
