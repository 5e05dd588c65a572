//! Scenarios defined once and run twice: in the harness and in a real Envoy.
//!
//! Job: hold the table of requests and expected outcomes that both runners
//! ([`crate::run_harness`] and [`crate::run_envoy`]) execute, so a
//! difference between the harness and Envoy is a failing test rather than a
//! surprise in production.
//!
//! A scenario says which policy and credential-service state it needs, what
//! the workload sends, and what must happen: forwarded with exactly the real
//! credential (and none of the client's), or denied with a reason code.
//!
//! Invariants:
//! - A scenario is data: no runner-specific branches. If Envoy itself
//!   (rather than Tollgate) must answer, the scenario is not in this table;
//!   TLS-layer cases live in the Envoy suite alone.
//! - Every scenario runs at both [`Temperature`]s in both runners: cold (no
//!   credential fetched yet for its provider) and warm (the credential
//!   already cached by an allowed request to the same provider,
//!   [`Scenario::warm_up`]). A credential fault is applied after the
//!   warm-up, so warm shows what a cached key does when the service fails;
//!   where that differs, [`Scenario::expect_warm`] says so.
//! - The runners judge with the same rules ([`Scenario::judge`]): the
//!   outcome, the decision counters' change across the one request under
//!   test (exactly one verdict), and how often the credential service was
//!   asked for the scenario's credential meanwhile (the proof of the
//!   temperature).

use std::time::Duration;

use serde_json::Value;
use tollgate_harness::mock::{Fault, MockCredentialService};

use crate::*;

/// What part of the filter a scenario exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Identity,
    Upstream,
    Stripping,
    AccessPolicy,
    DryRun,
    CredentialFault,
}

/// The policy a scenario runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// [`crate::config`] as is.
    Enforce,
    /// [`crate::config`] in `dry_run` mode.
    DryRun,
}

impl Policy {
    pub fn config(self) -> Value {
        let mut c = config();
        if self == Policy::DryRun {
            c["mode"] = "dry_run".into();
        }
        c
    }
}

/// Credential-service state beyond [`crate::credential_service`].
#[derive(Clone, Debug)]
pub enum CredentialState {
    Normal,
    Fault(Fault),
    /// The service refuses this credential name (403).
    Denied(&'static str),
    /// The service does not know this credential name (404).
    Missing(&'static str),
}

impl CredentialState {
    pub fn needs_cold_cache(&self) -> bool {
        !matches!(self, CredentialState::Normal)
    }

    pub fn apply(&self, creds: &MockCredentialService) {
        match self {
            CredentialState::Normal => {}
            CredentialState::Fault(f) => creds.set_fault(f.clone()),
            CredentialState::Denied(name) => creds.deny(name, None),
            CredentialState::Missing(name) => creds.remove_key(name),
        }
    }

    /// Undoes [`apply`](Self::apply) on a service that started as
    /// [`crate::credential_service`].
    pub fn revert(&self, creds: &MockCredentialService) {
        match self {
            CredentialState::Normal => {}
            CredentialState::Fault(_) => creds.clear_fault(),
            CredentialState::Denied(name) => creds.allow(name, None),
            CredentialState::Missing(name) => restore_fixture_key(creds, name),
        }
    }
}

/// Whether the scenario's credential is already cached when its request
/// arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Temperature {
    /// Nothing fetched yet for the scenario's credential.
    Cold,
    /// The credential cached by [`Scenario::warm_up`] first; the
    /// scenario's [`CredentialState`] applied after it.
    Warm,
}

impl Temperature {
    pub const BOTH: [Temperature; 2] = [Temperature::Cold, Temperature::Warm];
}

impl std::fmt::Display for Temperature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Temperature::Cold => "cold",
            Temperature::Warm => "warm",
        })
    }
}

/// What the workload sends.
#[derive(Clone, Debug)]
pub struct Req {
    /// The SPIFFE ID in the workload's certificate.
    pub workload: &'static str,
    pub method: &'static str,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What must happen.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Forwarded upstream with `header` set to exactly `value` (once), none
    /// of `absent` present, and (if given) this path.
    Forwarded {
        header: &'static str,
        value: String,
        absent: Vec<&'static str>,
        path: Option<String>,
    },
    /// A local reply from Tollgate.
    Denied { status: u16, reason: &'static str },
}

impl Expect {
    /// The decision counters this outcome moves, each by exactly one
    /// (`dry_run` forwards with a shadow denial instead of an allow).
    pub fn decision_counters(&self, shadow: Option<&str>) -> Vec<(String, i64)> {
        match (self, shadow) {
            (Expect::Denied { reason, .. }, _) => {
                vec![(format!("tollgate.decision.deny.{reason}"), 1)]
            }
            (Expect::Forwarded { .. }, Some(r)) => {
                vec![(format!("tollgate.decision.shadow_deny.{r}"), 1)]
            }
            (Expect::Forwarded { .. }, None) => vec![("tollgate.decision.allow".into(), 1)],
        }
    }

    /// Whether this outcome comes before the credential step, so nothing
    /// may be fetched for it.
    fn fetches_nothing(&self) -> bool {
        matches!(self, Expect::Denied { reason, .. } if !reason.starts_with("credential_"))
    }
}

/// One scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub area: Area,
    pub policy: Policy,
    pub creds: CredentialState,
    pub req: Req,
    pub expect: Expect,
    /// The outcome when warm, if it differs from `expect` (a cached key
    /// keeps serving while the credential service fails).
    pub expect_warm: Option<Expect>,
    /// In `dry_run`, the policy denial a forwarded request is shadowed by.
    pub shadow: Option<&'static str>,
}

/// What a runner saw.
#[derive(Clone, Debug)]
pub enum Observed {
    Forwarded {
        path: String,
        headers: Vec<(String, Vec<u8>)>,
    },
    Replied {
        status: u16,
        reason: Option<String>,
        /// Every `content-type` value on the reply.
        content_types: Vec<String>,
        body: Value,
    },
    /// Neither forwarded nor answered (a hang, a reset, a TLS failure).
    Failed(String),
}

/// Every header name that can carry a provider credential.
pub const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "x-search-token",
];

/// Every credential a client sends in the table.
const CLIENT_KEYS: [&str; 4] = [
    CLIENT_OPENAI_KEY,
    CLIENT_GEMINI_KEY,
    CLIENT_GOOGLE_TOKEN,
    CLIENT_AZURE_KEY,
];

/// The header that identifies a scenario's request at the mock upstream.
pub const SCENARIO_HEADER: &str = "x-tollgate-scenario";

/// Canonical hosts of the fixture's providers, with their credential name
/// and a request [`SUPPORT_BOT`] is allowed to send there.
const PROVIDERS: [(&str, &str, &str); 5] = [
    ("api.openai.com", "openai", CHAT),
    ("api.anthropic.com", "anthropic", "/v1/messages"),
    ("generativelanguage.googleapis.com", "gemini", GEMINI_PATH),
    ("myres.openai.azure.com", "azure-openai", AZURE_PATH),
    ("api.search.example.com", "search", "/v1/search"),
];

impl Scenario {
    /// What must happen at `t`.
    pub fn expected(&self, t: Temperature) -> &Expect {
        match (t, &self.expect_warm) {
            (Temperature::Warm, Some(e)) => e,
            _ => &self.expect,
        }
    }

    /// The provider entry the scenario's host is meant for: by its last
    /// labels, so a host Tollgate refuses (`..openai.azure.com`,
    /// `api.openai.com.`) still names the credential a bug would inject.
    /// A host of no provider warms (and watches) OpenAI's.
    fn provider(&self) -> (&'static str, &'static str, &'static str) {
        let host = self.req.host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        let host = host.split(':').next().unwrap_or(host);
        PROVIDERS
            .iter()
            .copied()
            .find(|(h, _, _)| match h.strip_prefix("myres.") {
                Some(suffix) => host.ends_with(suffix),
                None => host == *h,
            })
            .unwrap_or(PROVIDERS[0])
    }

    /// Whether the (cold) outcome comes before the credential step.
    pub fn expect_fetches_nothing(&self) -> bool {
        self.expect.fetches_nothing()
    }

    /// The credential the scenario's request is about (see [`Self::provider`]).
    pub fn credential(&self) -> &'static str {
        self.provider().1
    }

    /// The request that makes this scenario warm: an allowed workload to
    /// the same provider, under the same policy, with the service healthy.
    pub fn warm_up(&self) -> Scenario {
        let (host, cred, path) = self.provider();
        let value = FIXTURE_KEYS
            .iter()
            .find(|(n, _, _)| *n == cred)
            .map(|(_, v, _)| v.to_string())
            .unwrap_or_default();
        let expect = match cred {
            "openai" => forwarded("authorization", bearer(&value)),
            "anthropic" => forwarded("x-api-key", value),
            "gemini" => forwarded("x-goog-api-key", value),
            "azure-openai" => forwarded("api-key", value),
            _ => forwarded("x-search-token", format!("Token {value}")),
        };
        Scenario {
            name: "warm_up",
            area: self.area,
            policy: self.policy,
            creds: CredentialState::Normal,
            req: req(SUPPORT_BOT, "POST", host, path),
            expect,
            expect_warm: None,
            shadow: None,
        }
    }

    /// The whole verdict on one run at `t`: `seen` matches the expectation;
    /// the decision counters moved, from `before` to `after` (the one
    /// request under test), by exactly that outcome's counter; and the
    /// credential service was asked for [`Self::credential`] `fetches`
    /// times meanwhile: never when warm or when refused before the
    /// credential step, exactly once for a cold request that was forwarded.
    pub fn judge(
        &self,
        t: Temperature,
        seen: &Observed,
        before: &Counters,
        after: &Counters,
        fetches: usize,
    ) -> Result<(), String> {
        let expect = self.expected(t);
        self.check_against(expect, seen)?;
        let want = expect.decision_counters(self.shadow);
        let want: Vec<(&str, i64)> = want.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        before.check_decisions(after, &want)?;
        let cred = self.credential();
        let want_fetches = match (t, expect) {
            (Temperature::Warm, _) => Some(0),
            (Temperature::Cold, e) if e.fetches_nothing() => Some(0),
            (Temperature::Cold, Expect::Forwarded { .. }) => Some(1),
            (Temperature::Cold, _) => None,
        };
        match want_fetches {
            Some(n) if n != fetches => Err(format!(
                "the credential service was asked for {cred:?} {fetches} time(s), expected {n}"
            )),
            _ => Ok(()),
        }
    }

    /// Checks `seen` against the cold expectation; `Err` says how it differs.
    pub fn check(&self, seen: &Observed) -> Result<(), String> {
        self.check_against(&self.expect, seen)
    }

    fn check_against(&self, expect: &Expect, seen: &Observed) -> Result<(), String> {
        match (expect, seen) {
            (
                Expect::Forwarded {
                    header,
                    value,
                    absent,
                    path,
                },
                Observed::Forwarded {
                    path: seen_path,
                    headers,
                },
            ) => {
                let values: Vec<&[u8]> = headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(header))
                    .map(|(_, v)| v.as_slice())
                    .collect();
                if values != [value.as_bytes()] {
                    return Err(format!(
                        "{header}: expected exactly one value (the real credential), got {} value(s){}",
                        values.len(),
                        if values.iter().any(|v| is_client_key(v)) { ", one of them a client key" } else { "" }
                    ));
                }
                for a in absent {
                    if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(a)) {
                        return Err(format!("{a} reached upstream"));
                    }
                }
                if let Some(p) = path {
                    if seen_path != p {
                        return Err(format!("path upstream: expected {p}, got {seen_path}"));
                    }
                }
                let all = format!("{seen_path} {headers:?}");
                for k in CLIENT_KEYS {
                    if all.contains(k)
                        || headers
                            .iter()
                            .any(|(_, v)| v.windows(k.len()).any(|w| w == k.as_bytes()))
                    {
                        return Err("a client-sent key reached upstream".into());
                    }
                }
                Ok(())
            }
            (
                Expect::Denied { status, reason },
                Observed::Replied {
                    status: s,
                    reason: r,
                    body,
                    content_types,
                },
            ) => {
                if content_types != &["application/json"] {
                    return Err(format!("reply content-type must be exactly application/json, got {content_types:?}"));
                }
                if s != status || r.as_deref() != Some(*reason) {
                    return Err(format!("expected {status} {reason}, got {s} {r:?} {body}"));
                }
                if body["error"]["code"] != *reason || body["error"]["type"] != "tollgate_denied" {
                    return Err(format!("reply body does not carry {reason}: {body}"));
                }
                Ok(())
            }
            (e, o) => Err(format!(
                "expected {}, observed {}",
                describe(e),
                summarise(o)
            )),
        }
    }
}

fn describe(e: &Expect) -> String {
    match e {
        Expect::Forwarded { header, .. } => format!("forwarded with {header}"),
        Expect::Denied { status, reason } => format!("denied {status} {reason}"),
    }
}

/// `seen` in one line, header names only (values may hold keys).
fn summarise(seen: &Observed) -> String {
    match seen {
        Observed::Forwarded { path, headers } => {
            let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
            format!("forwarded to {path} with headers {names:?}")
        }
        Observed::Replied {
            status,
            reason,
            body,
            ..
        } => format!("reply {status} {reason:?} {body}"),
        Observed::Failed(e) => format!("no answer: {e}"),
    }
}

fn is_client_key(v: &[u8]) -> bool {
    CLIENT_KEYS
        .iter()
        .any(|k| v.windows(k.len()).any(|w| w == k.as_bytes()))
}

fn req(workload: &'static str, method: &'static str, host: &str, path: &str) -> Req {
    Req {
        workload,
        method,
        host: host.to_string(),
        path: path.to_string(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
    }
}

fn with(mut r: Req, name: &str, value: &[u8]) -> Req {
    r.headers.push((name.to_string(), value.to_vec()));
    r
}

fn forwarded(header: &'static str, value: String) -> Expect {
    Expect::Forwarded {
        header,
        value,
        absent: CREDENTIAL_HEADERS
            .iter()
            .copied()
            .filter(|h| *h != header)
            .collect(),
        path: None,
    }
}

fn forwarded_to(header: &'static str, value: String, path: &str) -> Expect {
    match forwarded(header, value) {
        Expect::Forwarded {
            header,
            value,
            absent,
            ..
        } => Expect::Forwarded {
            header,
            value,
            absent,
            path: Some(path.to_string()),
        },
        e => e,
    }
}

fn denied(status: u16, reason: &'static str) -> Expect {
    Expect::Denied { status, reason }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

const CHAT: &str = "/v1/chat/completions";
const OPENAI: &str = "api.openai.com";
const GEMINI_PATH: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const AZURE_PATH: &str = "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21";

fn s(name: &'static str, area: Area, req: Req, expect: Expect) -> Scenario {
    Scenario {
        name,
        area,
        policy: Policy::Enforce,
        creds: CredentialState::Normal,
        req,
        expect,
        expect_warm: None,
        shadow: None,
    }
}

/// The whole table.
pub fn scenarios() -> Vec<Scenario> {
    use Area::*;
    let gemini_path = GEMINI_PATH;
    let mut v = vec![
        // Identity (the TLS-layer cases are Envoy-only; see tests/tests/envoy_identity.rs).
        s("allowed_workload_gets_the_real_key", Identity,
          req(SUPPORT_BOT, "POST", OPENAI, CHAT), forwarded("authorization", bearer(OPENAI_KEY))),
        s("untrusted_trust_domain", Identity,
          req("spiffe://evil.example/ns/support/sa/chatbot", "POST", OPENAI, CHAT),
          denied(403, "trust_domain_untrusted")),
        s("malformed_spiffe_id", Identity,
          req("spiffe://Cluster.Local/ns/support/sa/chatbot", "POST", OPENAI, CHAT),
          denied(403, "identity_invalid")),
        s("spoofed_xfcc_is_ignored", Identity,
          with(req(STRANGER, "POST", OPENAI, CHAT), "x-forwarded-client-cert",
               format!("By=spiffe://cluster.local/ns/gw;URI={SUPPORT_BOT}").as_bytes()),
          denied(403, "workload_not_permitted")),
        s("spoofed_identity_headers_are_ignored", Identity,
          with(with(req(STRANGER, "POST", OPENAI, CHAT), "x-tollgate-workload", SUPPORT_BOT.as_bytes()),
               "x-spiffe-id", SUPPORT_BOT.as_bytes()),
          denied(403, "workload_not_permitted")),
        // Upstream: which provider a request is for.
        s("unknown_upstream", Upstream,
          req(SUPPORT_BOT, "POST", "api.unknown.example", CHAT), denied(403, "unknown_upstream")),
        s("host_with_port", Upstream,
          req(SUPPORT_BOT, "POST", "api.openai.com:443", CHAT), forwarded("authorization", bearer(OPENAI_KEY))),
        s("host_in_upper_case", Upstream,
          req(SUPPORT_BOT, "POST", "API.OpenAI.COM", CHAT), forwarded("authorization", bearer(OPENAI_KEY))),
        s("anthropic", Upstream,
          req(SUPPORT_BOT, "POST", "api.anthropic.com", "/v1/messages"),
          forwarded("x-api-key", ANTHROPIC_KEY.into())),
        s("gemini", Upstream,
          req(SUPPORT_BOT, "POST", "generativelanguage.googleapis.com", gemini_path),
          forwarded_to("x-goog-api-key", GEMINI_KEY.into(), gemini_path)),
        s("azure_wildcard_host", Upstream,
          req(SUPPORT_BOT, "POST", "myres.openai.azure.com",
              "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"),
          forwarded("api-key", AZURE_KEY.into())),
        s("generic_provider_header_and_prefix", Upstream,
          req(SUPPORT_BOT, "POST", "api.search.example.com", "/v1/search"),
          forwarded("x-search-token", format!("Token {SEARCH_KEY}"))),
        s("dot_dot_path", Upstream,
          req(SUPPORT_BOT, "POST", OPENAI, "/v1/models/../chat/completions"), denied(400, "path_invalid")),
        s("encoded_slash_path", Upstream,
          req(SUPPORT_BOT, "POST", OPENAI, "/v1/chat%2fcompletions"), denied(400, "path_invalid")),
        s("double_slash_path", Upstream,
          req(SUPPORT_BOT, "POST", OPENAI, "/v1//chat/completions"), denied(400, "path_invalid")),
        // Stripping: nothing the client sends survives.
        s("client_credentials_in_every_header_are_replaced", Stripping,
          with(with(with(with(req(SUPPORT_BOT, "POST", OPENAI, CHAT),
              "authorization", format!("Bearer {CLIENT_OPENAI_KEY}").as_bytes()),
              "x-api-key", CLIENT_OPENAI_KEY.as_bytes()),
              "x-goog-api-key", CLIENT_GEMINI_KEY.as_bytes()),
              "api-key", CLIENT_OPENAI_KEY.as_bytes()),
          forwarded("authorization", bearer(OPENAI_KEY))),
        s("duplicate_authorization_headers", Stripping,
          with(with(req(SUPPORT_BOT, "POST", OPENAI, CHAT),
              "authorization", format!("Bearer {CLIENT_OPENAI_KEY}").as_bytes()),
              "authorization", b"Bearer sk-placeholder"),
          forwarded("authorization", bearer(OPENAI_KEY))),
        s("non_utf8_client_header_is_stripped", Stripping,
          with(req(SUPPORT_BOT, "POST", "api.anthropic.com", "/v1/messages"), "x-api-key", b"\xff\xfe\xfdkey"),
          forwarded("x-api-key", ANTHROPIC_KEY.into())),
        s("gemini_query_key_is_removed", Stripping,
          req(SUPPORT_BOT, "POST", "generativelanguage.googleapis.com",
              &format!("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={CLIENT_GEMINI_KEY}")),
          forwarded_to("x-goog-api-key", GEMINI_KEY.into(),
              "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")),
        s("proxy_authorization_is_stripped", Stripping,
          with(req(SUPPORT_BOT, "POST", OPENAI, CHAT),
              "proxy-authorization", format!("Bearer {CLIENT_OPENAI_KEY}").as_bytes()),
          forwarded("authorization", bearer(OPENAI_KEY))),
        s("gemini_access_token_query_is_removed", Stripping,
          req(SUPPORT_BOT, "POST", "generativelanguage.googleapis.com",
              &format!("{gemini_path}?access_token={CLIENT_GOOGLE_TOKEN}&alt=sse")),
          forwarded_to("x-goog-api-key", GEMINI_KEY.into(), &format!("{gemini_path}?alt=sse"))),
        s("azure_api_key_query_is_removed", Stripping,
          req(SUPPORT_BOT, "POST", "myres.openai.azure.com",
              &format!("/openai/deployments/gpt4o/chat/completions?api-key={CLIENT_AZURE_KEY}&api-version=2024-10-21")),
          forwarded_to("api-key", AZURE_KEY.into(),
              "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21")),
        s("method_override_header_is_refused", Stripping,
          with(req(SUPPORT_BOT, "POST", OPENAI, CHAT), "x-http-method-override", b"DELETE"),
          denied(400, "method_override")),
        s("x_method_override_header_is_refused", Stripping,
          with(req(SUPPORT_BOT, "POST", "generativelanguage.googleapis.com", gemini_path),
              "x-method-override", b"GET"),
          denied(400, "method_override")),
        // Authorities that Envoy's routes would read differently.
        s("trailing_dot_host_is_refused", Upstream,
          req(SUPPORT_BOT, "POST", "api.openai.com.", CHAT), denied(400, "authority_invalid")),
        s("empty_label_wildcard_host_is_refused", Upstream,
          req(SUPPORT_BOT, "POST", "..openai.azure.com",
              "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"),
          denied(400, "authority_invalid")),
        s("bracket_in_wildcard_host_is_refused", Upstream,
          req(SUPPORT_BOT, "POST", "evil.test]x.openai.azure.com",
              "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"),
          denied(400, "authority_invalid")),
        // Policy.
        s("workload_not_permitted", AccessPolicy,
          req(STRANGER, "POST", OPENAI, CHAT), denied(403, "workload_not_permitted")),
        s("provider_not_permitted", AccessPolicy,
          req(BATCH_JOB, "POST", "api.anthropic.com", "/v1/messages"), denied(403, "provider_not_permitted")),
        s("endpoint_not_permitted_by_path", AccessPolicy,
          req(BATCH_JOB, "POST", OPENAI, CHAT), denied(403, "endpoint_not_permitted")),
        s("endpoint_not_permitted_by_method", AccessPolicy,
          req(SUPPORT_BOT, "GET", OPENAI, CHAT), denied(403, "endpoint_not_permitted")),
        s("second_rule_permits", AccessPolicy,
          req(BATCH_JOB, "POST", OPENAI, "/v1/embeddings"), forwarded("authorization", bearer(OPENAI_KEY))),
    ];
    // dry_run: access-policy denials are shadowed; identity is not.
    let mut dry = vec![
        s(
            "dry_run_forwards_a_stranger_with_the_key",
            DryRun,
            req(STRANGER, "POST", OPENAI, CHAT),
            forwarded("authorization", bearer(OPENAI_KEY)),
        ),
        s(
            "dry_run_still_denies_untrusted_domains",
            DryRun,
            req(
                "spiffe://evil.example/ns/support/sa/chatbot",
                "POST",
                OPENAI,
                CHAT,
            ),
            denied(403, "trust_domain_untrusted"),
        ),
        s(
            "dry_run_still_denies_bad_paths",
            DryRun,
            req(SUPPORT_BOT, "POST", OPENAI, "/v1/chat/../completions"),
            denied(400, "path_invalid"),
        ),
    ];
    dry[0].shadow = Some("workload_not_permitted");
    for d in &mut dry {
        d.policy = Policy::DryRun;
    }
    v.extend(dry);
    // Credential faults. Cold, nothing is cached: the fault decides. Warm,
    // the key fetched by the warm-up is fresh (ttl 60 s, refresh_ahead
    // 30 s), so the service is not asked and every fault is invisible: the
    // cached key keeps serving, a 403 included (it revokes only when a
    // fetch sees it).
    let faults: Vec<(&'static str, CredentialState, Expect)> = vec![
        (
            "credential_service_refuses",
            CredentialState::Denied("openai"),
            denied(403, "credential_denied"),
        ),
        (
            "credential_unknown_to_the_service",
            CredentialState::Missing("openai"),
            denied(503, "credential_unavailable"),
        ),
        (
            "credential_service_500",
            CredentialState::Fault(Fault::Status(500)),
            denied(503, "credential_unavailable"),
        ),
        (
            "credential_service_garbage",
            CredentialState::Fault(Fault::Garbage),
            denied(503, "credential_unavailable"),
        ),
        (
            "credential_service_wrong_shape",
            CredentialState::Fault(Fault::WrongShape),
            denied(503, "credential_unavailable"),
        ),
        (
            "credential_service_reset",
            CredentialState::Fault(Fault::Reset),
            denied(503, "credential_unavailable"),
        ),
        (
            "credential_service_slower_than_timeout",
            CredentialState::Fault(Fault::Delay(Duration::from_secs(4))),
            denied(503, "credential_unavailable"),
        ),
        (
            "credential_service_slow_but_in_time",
            CredentialState::Fault(Fault::Delay(Duration::from_millis(500))),
            forwarded("authorization", bearer(OPENAI_KEY)),
        ),
    ];
    for (name, state, expect) in faults {
        v.push(Scenario {
            name,
            area: CredentialFault,
            policy: Policy::Enforce,
            creds: state,
            req: req(SUPPORT_BOT, "POST", OPENAI, CHAT),
            expect,
            expect_warm: Some(forwarded("authorization", bearer(OPENAI_KEY))),
            shadow: None,
        });
    }
    v
}
