//! Scenarios defined once and run twice: in the harness and in a real Envoy.
//!
//! Job: hold the table of requests and expected outcomes that both runners
//! ([`crate::run_harness`] and [`crate::run_envoy`]) execute, so a
//! difference between the harness and Envoy is a failing test rather than a
//! surprise in production.
//!
//! A scenario says which policy and credential-service state it needs, what
//! the workload sends (headers and body), and what must happen: forwarded
//! with exactly the real credential (and none of the client's), and, where
//! the scenario says, exactly these body bytes; or denied with a reason code
//! at a given [`Stage`].
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
//!   temperature, and of the [`Stage`] a refusal came at).
//! - A policy names its credential source ([`Policy::source`]): the mock
//!   credential service, or one real OpenBao and agent per table run
//!   ([`vault`], where the design is explained). Runners apply a
//!   [`CredentialState`] and count fetches through [`Source`], so the
//!   judge's rules are the same for both.
//! - Both runners send a request as an HTTP/1.1 client does: a non-empty
//!   body with its `content-length`, unless the scenario's headers carry
//!   `transfer-encoding` (then chunked, without one).

use std::time::Duration;

use serde_json::{json, Value};
use tollgate_harness::mock::{Fault, MockCredentialService};
use tollgate_harness::openbao::OpenBaoStack;

use crate::*;

mod bodies;
pub mod vault;

/// What part of the filter a scenario exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Identity,
    Upstream,
    Stripping,
    AccessPolicy,
    DryRun,
    CredentialFault,
    /// The request-body policy: models, output caps, body limits, strict
    /// JSON, and the rewrites (cap clamped or written in, stream usage).
    RequestBody,
    /// `vault_kv2` against a real OpenBao and `bao agent` ([`vault`]).
    VaultKv2,
}

/// The policy a scenario runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// [`crate::config`] as is.
    Enforce,
    /// [`crate::config`] in `dry_run` mode.
    DryRun,
    /// [`crate::config`] plus the request-body rules ([`body_rules`]).
    Bodies,
    /// [`Policy::Bodies`] in `dry_run` mode.
    BodiesDryRun,
    /// [`vault::config`]: `vault_kv2` credentials from OpenBao.
    Vault,
}

/// Where a policy's credentials come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// [`crate::credential_service`] (`tollgate_v1`).
    Mock,
    /// One OpenBao server and agent per table run ([`vault`]).
    OpenBao,
}

/// A runner's credential service for one gateway: what a
/// [`CredentialState`] is applied to and fetches are counted at.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Mock(&'a MockCredentialService),
    OpenBao(&'a OpenBaoStack),
}

impl Source<'_> {
    /// How often credential `name` (for OpenBao, its KV path) was asked
    /// for so far.
    pub fn requests_for(&self, name: &str) -> usize {
        match self {
            Source::Mock(m) => m.requests_for(name),
            Source::OpenBao(b) => b.recorder().requests_to(
                "GET",
                &format!("/v1/{}/data/{name}", tollgate_harness::openbao::KV_MOUNT),
            ),
        }
    }
}

impl Policy {
    /// Where this policy's credentials come from.
    pub fn source(self) -> CredentialSource {
        match self {
            Policy::Vault => CredentialSource::OpenBao,
            _ => CredentialSource::Mock,
        }
    }

    pub fn config(self) -> Value {
        if self == Policy::Vault {
            return vault::config();
        }
        let mut c = config();
        if matches!(self, Policy::Bodies | Policy::BodiesDryRun) {
            if let Some(rules) = c["rules"].as_array_mut() {
                rules.extend(body_rules());
            }
            c["dlp_policies"] = dlp_policies();
        }
        if matches!(self, Policy::DryRun | Policy::BodiesDryRun) {
            c["mode"] = "dry_run".into();
        }
        c
    }
}

/// The DLP policy of [`CHATBOT`]'s body rule: keys and an internal token
/// shape blocked, card numbers and an employee-id shape redacted, e-mail
/// addresses recorded.
pub fn dlp_policies() -> Value {
    json!([{"name": "prompts",
    "block": ["secrets", "internal_token"],
    "redact": ["payment_card", "employee_id"],
    "audit": ["email"],
    "literals": [
        {"name": "employee_id", "pattern": "EMP-\\d{6}"},
        {"name": "internal_token", "pattern": "acme_tok_[a-z0-9]{24}"}
    ]}])
}

/// An OpenAI project key's shape (made up; built here so that no
/// key-shaped literal sits in the sources).
pub fn fake_openai_key() -> String {
    format!(
        "sk-proj-{}T3BlbkFJ{}",
        "AbCdEfGhIj".repeat(5),
        "KlMnOpQrSt".repeat(5)
    )
}

/// The largest body [`CHATBOT_STRICT`] may send.
pub const STRICT_MAX_BODY_BYTES: usize = 256;

/// The output cap of both body rules.
pub const BODY_CAP: u64 = 2000;

/// The rules [`Policy::Bodies`] adds after the fixture's (whose workloads
/// they do not name): [`CHATBOT`] may use listed models with output capped
/// at [`BODY_CAP`] by clamping; [`CHATBOT_STRICT`] may use one model, a
/// cap over [`BODY_CAP`] is refused, and bodies are at most
/// [`STRICT_MAX_BODY_BYTES`].
pub fn body_rules() -> Vec<Value> {
    vec![
        json!({
            "name": "chatbot-clamp",
            "workloads": [CHATBOT],
            "providers": ["openai", "anthropic", "gemini", "azure"],
            "endpoints": ["POST /v1/chat/completions", "POST /v1/messages",
                          "POST /v1beta/models/*:generateContent",
                          "POST /openai/deployments/*/chat/completions"],
            "models": ["gpt-4o-mini", "claude-3-5-haiku-*", "gemini-2.0-flash", "gpt4o"],
            "max_output_tokens": BODY_CAP,
            "dlp": "prompts"
        }),
        json!({
            "name": "chatbot-strict",
            "workloads": [CHATBOT_STRICT],
            "providers": ["openai"],
            "endpoints": ["POST /v1/chat/completions"],
            "models": ["gpt-4o-mini"],
            "max_output_tokens": BODY_CAP,
            "max_output_tokens_action": "deny",
            "max_body_bytes": STRICT_MAX_BODY_BYTES
        }),
    ]
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

    /// Applies the state to `src`. OpenBao: a refused path is denied by
    /// the agent's ACL policy, a missing one deleted with its metadata;
    /// faults are the mock's alone (the table has none for OpenBao).
    pub fn apply(&self, src: Source<'_>) {
        match (self, src) {
            (CredentialState::Normal, _) => {}
            (CredentialState::Fault(f), Source::Mock(creds)) => creds.set_fault(f.clone()),
            (CredentialState::Denied(name), Source::Mock(creds)) => creds.deny(name, None),
            (CredentialState::Missing(name), Source::Mock(creds)) => creds.remove_key(name),
            (CredentialState::Fault(f), Source::OpenBao(_)) => {
                panic!("no fault {f:?} for OpenBao in the table")
            }
            (CredentialState::Denied(path), Source::OpenBao(bao)) => bao
                .set_refused(&[path])
                .unwrap_or_else(|e| panic!("refusing {path}: {e:#}")),
            (CredentialState::Missing(path), Source::OpenBao(bao)) => bao
                .delete_all(path)
                .unwrap_or_else(|e| panic!("deleting {path}: {e:#}")),
        }
    }

    /// Undoes [`apply`](Self::apply) on a service that started as
    /// [`crate::credential_service`] (or [`vault::start_openbao`]).
    pub fn revert(&self, src: Source<'_>) {
        match (self, src) {
            (CredentialState::Normal, _) | (CredentialState::Fault(_), Source::OpenBao(_)) => {}
            (CredentialState::Fault(_), Source::Mock(creds)) => creds.clear_fault(),
            (CredentialState::Denied(name), Source::Mock(creds)) => creds.allow(name, None),
            (CredentialState::Missing(name), Source::Mock(creds)) => {
                restore_fixture_key(creds, name)
            }
            (CredentialState::Denied(path), Source::OpenBao(bao)) => bao
                .set_refused(&[])
                .unwrap_or_else(|e| panic!("allowing {path} again: {e:#}")),
            (CredentialState::Missing(path), Source::OpenBao(bao)) => {
                let value = vault::seed(path).unwrap_or_else(|| panic!("no seed for {path}"));
                bao.put(path, value)
                    .unwrap_or_else(|e| panic!("restoring {path}: {e:#}"));
            }
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

/// When Tollgate refuses a request, relative to its credential lookup.
/// In held body mode (the fixture's) the lookup starts at the request
/// headers, so a cold credential is fetched while the body uploads, and a
/// refusal of the body comes after that fetch began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// At the request headers, before the lookup: nothing is fetched.
    Headers,
    /// At the credential step: the fetch's outcome is the refusal.
    Credential,
    /// At the end of the held body (or as soon as it passes the rule's
    /// limit): a cold request has fetched its credential exactly once.
    Body,
}

/// What must happen.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Forwarded upstream with `header` set to exactly `value` (once), none
    /// of `absent` present, (if given) this path and exactly these body
    /// bytes, and a `content-length` (if any) that is the body's.
    Forwarded {
        header: &'static str,
        value: String,
        absent: Vec<&'static str>,
        path: Option<String>,
        body: Option<Vec<u8>>,
    },
    /// A local reply from Tollgate, reached at `stage`.
    Denied {
        status: u16,
        reason: &'static str,
        stage: Stage,
    },
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
        matches!(
            self,
            Expect::Denied {
                stage: Stage::Headers,
                ..
            }
        )
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
        /// The whole body the upstream received.
        body: Vec<u8>,
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

    /// The provider entry the scenario's host is meant for (see
    /// [`provider_for`]); under [`Policy::Vault`], the entry of
    /// [`vault::VAULT_PROVIDERS`] for the host, whose credential is the KV
    /// path [`SUPPORT_BOT`] reads.
    fn provider(&self) -> (&'static str, &'static str, &'static str) {
        match self.policy.source() {
            CredentialSource::Mock => provider_for(&self.req.host),
            CredentialSource::OpenBao => {
                let host = self.req.host.to_ascii_lowercase();
                vault::VAULT_PROVIDERS
                    .iter()
                    .copied()
                    .find(|(h, _, _)| *h == host)
                    .unwrap_or(vault::VAULT_PROVIDERS[0])
            }
        }
    }

    /// Whether the (cold) outcome comes before the credential step.
    pub fn expect_fetches_nothing(&self) -> bool {
        self.expect.fetches_nothing()
    }

    /// How often the credential service must be asked for
    /// [`Self::credential`] while the request under test runs at `t`
    /// (`None`: any number). Never when warm or when refused at the
    /// headers; exactly once for a cold request that was forwarded or
    /// whose body was refused (held mode fetches while the body uploads).
    pub fn expected_fetches(&self, t: Temperature) -> Option<usize> {
        match (t, self.expected(t)) {
            (Temperature::Warm, _) => Some(0),
            (Temperature::Cold, Expect::Forwarded { .. }) => Some(1),
            (Temperature::Cold, Expect::Denied { stage, .. }) => match stage {
                Stage::Headers => Some(0),
                Stage::Body => Some(1),
                Stage::Credential => None,
            },
        }
    }

    /// The credential the scenario's request is about (see [`Self::provider`]).
    pub fn credential(&self) -> &'static str {
        self.provider().1
    }

    /// The request that makes this scenario warm: an allowed workload to
    /// the same provider, under the same policy, with the service healthy.
    pub fn warm_up(&self) -> Scenario {
        let (host, cred, path) = self.provider();
        let expect = real_key(cred);
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
    /// times meanwhile, as [`Self::expected_fetches`] says.
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
        match self.expected_fetches(t) {
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
                    body,
                },
                Observed::Forwarded {
                    path: seen_path,
                    headers,
                    body: seen_body,
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
                if let Some(b) = body {
                    if seen_body != b {
                        return Err(format!(
                            "body upstream: expected {:?}, got {:?}",
                            String::from_utf8_lossy(b),
                            String::from_utf8_lossy(seen_body)
                        ));
                    }
                }
                let lengths: Vec<&[u8]> = headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.as_slice())
                    .collect();
                match lengths[..] {
                    [] => {}
                    [n] if n == seen_body.len().to_string().as_bytes() => {}
                    _ => {
                        return Err(format!(
                            "content-length upstream {:?} is not the body's length ({})",
                            lengths
                                .iter()
                                .map(|v| String::from_utf8_lossy(v))
                                .collect::<Vec<_>>(),
                            seen_body.len()
                        ))
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
                Expect::Denied { status, reason, .. },
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
        Expect::Denied {
            status,
            reason,
            stage,
        } => format!("denied {status} {reason} at {stage:?}"),
    }
}

/// `seen` in one line, header names only (values may hold keys).
fn summarise(seen: &Observed) -> String {
    match seen {
        Observed::Forwarded {
            path,
            headers,
            body,
        } => {
            let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
            format!(
                "forwarded to {path} with headers {names:?} and a {}-byte body",
                body.len()
            )
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

/// `r` without any `name` header.
fn without(mut r: Req, name: &str) -> Req {
    r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    r
}

/// `r` with `body` instead of its own.
fn with_body(mut r: Req, body: impl AsRef<[u8]>) -> Req {
    r.body = body.as_ref().to_vec();
    r
}

/// An OpenAI chat request from `workload` with `body`.
fn chat(workload: &'static str, body: &str) -> Req {
    with_body(req(workload, "POST", OPENAI, CHAT), body)
}

/// A request from `workload` to `host` and `path` with `body`.
fn post(workload: &'static str, host: &str, path: &str, body: &str) -> Req {
    with_body(req(workload, "POST", host, path), body)
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
        body: None,
    }
}

fn forwarded_to(header: &'static str, value: String, path: &str) -> Expect {
    match forwarded(header, value) {
        Expect::Forwarded {
            header,
            value,
            absent,
            body,
            ..
        } => Expect::Forwarded {
            header,
            value,
            absent,
            path: Some(path.to_string()),
            body,
        },
        e => e,
    }
}

/// Refused before the credential step, or (a `credential_*` reason) at it.
fn denied(status: u16, reason: &'static str) -> Expect {
    let stage = if reason.starts_with("credential_") {
        Stage::Credential
    } else {
        Stage::Headers
    };
    Expect::Denied {
        status,
        reason,
        stage,
    }
}

/// Refused once the held body was read (or passed the rule's limit).
fn denied_at_body(status: u16, reason: &'static str) -> Expect {
    Expect::Denied {
        status,
        reason,
        stage: Stage::Body,
    }
}

/// The provider entry `host` is meant for: by its last labels, so a host
/// Tollgate refuses (`..openai.azure.com`, `api.openai.com.`) still names
/// the credential a bug would inject. A host of no provider warms (and
/// watches) OpenAI's.
fn provider_for(host: &str) -> (&'static str, &'static str, &'static str) {
    let host = host.to_ascii_lowercase();
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

/// Forwarded with credential `cred`'s fixture key, where its provider
/// expects it.
fn real_key(cred: &str) -> Expect {
    if let Some(value) = vault::seed(cred) {
        return forwarded("authorization", bearer(value));
    }
    let value = FIXTURE_KEYS
        .iter()
        .find(|(n, _, _)| *n == cred)
        .map(|(_, v, _)| v.to_string())
        .unwrap_or_default();
    match cred {
        "openai" => forwarded("authorization", bearer(&value)),
        "anthropic" => forwarded("x-api-key", value),
        "gemini" => forwarded("x-goog-api-key", value),
        "azure-openai" => forwarded("api-key", value),
        _ => forwarded("x-search-token", format!("Token {value}")),
    }
}

/// Forwarded with the real key of `r`'s provider and exactly `body`.
fn arrives(r: &Req, body: impl AsRef<[u8]>) -> Expect {
    match real_key(provider_for(&r.host).1) {
        Expect::Forwarded {
            header,
            value,
            absent,
            path,
            ..
        } => Expect::Forwarded {
            header,
            value,
            absent,
            path,
            body: Some(body.as_ref().to_vec()),
        },
        e => e,
    }
}

/// Forwarded with the real key of `r`'s provider and `r`'s body, byte for
/// byte.
fn arrives_unchanged(r: &Req) -> Expect {
    arrives(r, &r.body)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

const CHAT: &str = "/v1/chat/completions";
const OPENAI: &str = "api.openai.com";
const ANTHROPIC: &str = "api.anthropic.com";
const GEMINI_HOST: &str = "generativelanguage.googleapis.com";
const AZURE_HOST: &str = "myres.openai.azure.com";
const GEMINI_PATH: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const AZURE_PATH: &str = "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21";

/// A scenario under [`Policy::Enforce`]; forwarded, its body must arrive
/// as sent.
fn s(name: &'static str, area: Area, req: Req, expect: Expect) -> Scenario {
    let expect = as_sent(expect, &req);
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

/// `e`, if it forwards and names no body, with `r`'s body byte for byte.
fn as_sent(e: Expect, r: &Req) -> Expect {
    match e {
        Expect::Forwarded {
            header,
            value,
            absent,
            path,
            body: None,
        } => Expect::Forwarded {
            header,
            value,
            absent,
            path,
            body: Some(r.body.clone()),
        },
        e => e,
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
        let r = req(SUPPORT_BOT, "POST", OPENAI, CHAT);
        v.push(Scenario {
            name,
            area: CredentialFault,
            policy: Policy::Enforce,
            creds: state,
            expect: as_sent(expect, &r),
            expect_warm: Some(as_sent(forwarded("authorization", bearer(OPENAI_KEY)), &r)),
            req: r,
            shadow: None,
        });
    }
    v.extend(bodies::body_scenarios());
    v.extend(vault::vault_scenarios());
    v
}
