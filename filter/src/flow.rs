//! One request's journey, as a state machine with no host calls.
//!
//! The glue feeds it facts (headers, properties, cache lookups, timeouts) and
//! performs the [`Step`]s it returns. Phases:
//!
//! ```text
//! Start ──on_request_headers──▶ Replied            (denied)
//!   │
//!   └──▶ NeedsCredential ──on_lookup(Ready)──▶ Forwarded
//!              │  ▲                 └─(Failed)──▶ Replied
//!              ▼  │ (Wait / Fetch: paused; woken by tick or fetch completion)
//!          AwaitingCredential ──on_wait_expired──▶ Replied
//! ```
//!
//! Later phases (request body inspection, response accounting) attach after
//! `Forwarded`; because the glue pauses in request headers while it waits,
//! Envoy holds the body until the credential is written (see BRIEF).
//!
//! Invariants:
//! - Client credentials are stripped by the glue before this runs; the flow
//!   never sees or keeps their values, only `client_key_seen`.
//! - The audit record is finished exactly once: on forward, on reply, or on
//!   abandonment ([`RequestFlow::finish_audit`] returns `None` afterwards).
//! - A request is forwarded only with a credential (`Step::Forward` carries
//!   it); there is no step that forwards without one.

use crate::audit::{printable, AuditRecord, Verdict};
use crate::config::{Config, Mode};
use crate::credential::cache::Lookup;
use crate::credential::CredentialKey;
use crate::policy::Decision;
use crate::provider::{Injection, ProviderId};
use crate::reason::DenyReason;
use crate::request_path::RequestTarget;
use crate::spiffe::SpiffeId;

/// What the glue read from the host for the request-headers phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadFacts<'a> {
    /// `connection.mtls`: the listener validated a client certificate.
    pub mtls: bool,
    /// `connection.uri_san_peer_certificate`.
    pub peer_uri_san: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub authority: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    /// The strip scan saw something that looks like a real provider key.
    pub client_key_seen: bool,
}

/// The request is admitted pending its credential.
#[derive(Debug, Clone)]
pub struct Admission {
    pub provider: ProviderId,
    pub credential: CredentialKey,
    /// Shared-data key of the credential entry.
    pub cache_key: String,
    pub injection: Injection,
    /// A new `:path` to send upstream (normalised, `key=` removed).
    pub rewrite_path: Option<String>,
}

/// What the glue must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `header: value` (replacing any), then let the request go.
    Forward { header: Box<str>, value: String },
    /// Send the deny reply for this reason.
    Reply(DenyReason),
    /// Pause; another fetch is in flight.
    Wait,
    /// Pause and dispatch the fetch (this caller holds the lease).
    Fetch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    NeedsCredential,
    Forwarded,
    Replied,
}

/// One request's state.
#[derive(Debug)]
pub struct RequestFlow {
    phase: Phase,
    admission: Option<Admission>,
    audit: AuditRecord,
    audit_done: bool,
}

impl RequestFlow {
    pub fn new(mode: Mode) -> Self {
        RequestFlow {
            phase: Phase::Start,
            admission: None,
            audit: AuditRecord::new(mode.as_str()),
            audit_done: false,
        }
    }

    pub fn admission(&self) -> Option<&Admission> {
        self.admission.as_ref()
    }

    pub fn is_waiting(&self) -> bool {
        self.phase == Phase::NeedsCredential
    }

    /// Identity, upstream, path and policy. On success the request needs its
    /// credential: the glue looks it up and calls [`Self::on_lookup`].
    pub fn on_request_headers(
        &mut self,
        config: &Config,
        facts: &HeadFacts<'_>,
        scratch: &mut Vec<u32>,
    ) -> Result<&Admission, DenyReason> {
        self.audit.client_key_seen = facts.client_key_seen;
        self.audit.request_id = facts.request_id.and_then(|r| printable(r, 128));
        match self.admit(config, facts, scratch) {
            Ok(a) => {
                self.phase = Phase::NeedsCredential;
                Ok(self.admission.insert(a))
            }
            Err(reason) => {
                self.deny(reason);
                Err(reason)
            }
        }
    }

    fn admit(
        &mut self,
        config: &Config,
        facts: &HeadFacts<'_>,
        scratch: &mut Vec<u32>,
    ) -> Result<Admission, DenyReason> {
        let workload = identity(config, facts)?;
        self.audit.workload = Some(workload.as_str().to_string());

        let (Some(method), Some(authority), Some(raw_path)) =
            (facts.method, facts.authority, facts.path)
        else {
            return Err(DenyReason::RequestInvalid);
        };
        self.audit.method = printable(method, 16);
        if self.audit.method.is_none() {
            return Err(DenyReason::RequestInvalid);
        }

        let provider_id = config
            .providers
            .lookup(authority)
            .ok_or(DenyReason::UnknownUpstream)?;
        let provider = config
            .providers
            .get(provider_id)
            .ok_or(DenyReason::InternalError)?;
        self.audit.provider = Some(provider.name.clone());

        let target = RequestTarget::parse(raw_path).map_err(|_| DenyReason::PathInvalid)?;
        self.audit.path = Some(target.path().to_string());
        self.audit.client_key_seen |= target.removed_query_key();

        match config
            .policy
            .evaluate(&workload, provider_id, method, &target, scratch)
        {
            Decision::Allow(permit) => {
                self.audit.rule = Some(config.policy.rule_name(permit.rule).into());
            }
            Decision::Deny(reason) if config.mode == Mode::DryRun && reason.is_policy_verdict() => {
                self.audit.decision = Verdict::ShadowDeny;
                self.audit.reason = Some(reason.code());
            }
            Decision::Deny(reason) => return Err(reason),
        }

        let credential = CredentialKey::for_request(&provider.credential, &workload);
        Ok(Admission {
            provider: provider_id,
            cache_key: credential.shared_key(),
            credential,
            injection: provider.injection.clone(),
            rewrite_path: target.upstream_target(),
        })
    }

    /// The dry-run verdict, if the policy would have denied this request.
    pub fn shadow_denial(&self) -> Option<DenyReason> {
        if self.audit.decision != Verdict::ShadowDeny {
            return None;
        }
        DenyReason::ALL
            .iter()
            .copied()
            .find(|r| Some(r.code()) == self.audit.reason)
    }

    /// Consumes a cache lookup for the admitted request.
    pub fn on_lookup(&mut self, lookup: Lookup) -> Step {
        if self.phase != Phase::NeedsCredential {
            return Step::Reply(DenyReason::InternalError);
        }
        match lookup {
            Lookup::Ready {
                value,
                id,
                fingerprint,
                ..
            } => {
                let Some(a) = &self.admission else {
                    self.deny(DenyReason::InternalError);
                    return Step::Reply(DenyReason::InternalError);
                };
                let step = Step::Forward {
                    header: a.injection.header.clone(),
                    value: a.injection.value_for(&value),
                };
                self.audit.credential_id = Some(id);
                self.audit.credential_fp = Some(fingerprint);
                if self.audit.decision != Verdict::ShadowDeny {
                    self.audit.decision = Verdict::Allow;
                }
                self.phase = Phase::Forwarded;
                step
            }
            Lookup::Wait => Step::Wait,
            Lookup::Fetch => Step::Fetch,
            Lookup::Failed(reason) => {
                self.deny(reason);
                Step::Reply(reason)
            }
        }
    }

    /// The request waited too long for its credential.
    pub fn on_wait_expired(&mut self) -> Step {
        self.deny(DenyReason::CredentialUnavailable);
        Step::Reply(DenyReason::CredentialUnavailable)
    }

    /// The glue could not carry out a step (a host call failed): fail closed.
    pub fn on_host_failure(&mut self) -> Step {
        self.deny(DenyReason::InternalError);
        Step::Reply(DenyReason::InternalError)
    }

    fn deny(&mut self, reason: DenyReason) {
        self.phase = Phase::Replied;
        self.audit.decision = Verdict::Deny;
        self.audit.reason = Some(reason.code());
    }

    /// The audit line, exactly once. A request that never reached a verdict
    /// (client reset while waiting) is logged as abandoned.
    pub fn finish_audit(&mut self) -> Option<String> {
        if self.audit_done {
            return None;
        }
        self.audit_done = true;
        let undecided = self.audit.decision == Verdict::Pending
            || (self.audit.decision == Verdict::ShadowDeny && self.phase != Phase::Forwarded);
        if undecided && self.phase != Phase::Replied {
            self.audit.decision = Verdict::Abandoned;
        }
        Some(self.audit.to_json())
    }

    pub fn audit(&self) -> &AuditRecord {
        &self.audit
    }
}

/// Reads and checks the caller's SPIFFE identity. Only the validated mTLS
/// peer certificate counts; nothing the application sends can stand in.
fn identity(config: &Config, facts: &HeadFacts<'_>) -> Result<SpiffeId, DenyReason> {
    let san = match facts.peer_uri_san {
        Some(s) if facts.mtls && !s.is_empty() => s,
        _ => return Err(DenyReason::IdentityMissing),
    };
    let id = SpiffeId::parse(san).map_err(|_| DenyReason::IdentityInvalid)?;
    if !config.trusts(id.trust_domain()) {
        return Err(DenyReason::TrustDomainUntrusted);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const CONFIG: &str = r#"{
      "mode": "enforce",
      "trust_domains": ["cluster.local"],
      "credential_service": {"cluster": "c", "authority": "creds", "protocol": "tollgate_v1"},
      "providers": [
        {"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}},
        {"name": "gemini", "kind": "gemini", "hosts": ["generativelanguage.googleapis.com"], "credential": {"name": "gemini", "scope": "per_workload"}}
      ],
      "rules": [
        {"name": "chat", "workloads": ["spiffe://cluster.local/ns/app/*"], "providers": ["openai", "gemini"],
         "endpoints": ["POST /v1/chat/completions", "POST /v1beta/models/*:generateContent"]}
      ]
    }"#;

    fn facts<'a>(san: &'a [u8], authority: &'a [u8], path: &'a [u8]) -> HeadFacts<'a> {
        HeadFacts {
            mtls: true,
            peer_uri_san: Some(san),
            method: Some(b"POST"),
            authority: Some(authority),
            path: Some(path),
            request_id: Some(b"req-1"),
            client_key_seen: false,
        }
    }

    const APP: &[u8] = b"spiffe://cluster.local/ns/app/sa/web";

    fn run(config: &Config, f: &HeadFacts<'_>) -> Result<Admission, DenyReason> {
        let mut flow = RequestFlow::new(config.mode);
        flow.on_request_headers(config, f, &mut Vec::new()).cloned()
    }

    #[test]
    fn identity_comes_only_from_validated_mtls() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        let mut f = facts(APP, b"api.openai.com", b"/v1/chat/completions");
        f.mtls = false;
        assert_eq!(run(&c, &f).err(), Some(DenyReason::IdentityMissing));
        let f = HeadFacts {
            peer_uri_san: None,
            ..facts(APP, b"api.openai.com", b"/v1/chat/completions")
        };
        assert_eq!(run(&c, &f).err(), Some(DenyReason::IdentityMissing));
        let f = facts(
            b"spiffe://cluster.local/ns/../x",
            b"api.openai.com",
            b"/v1/chat/completions",
        );
        assert_eq!(run(&c, &f).err(), Some(DenyReason::IdentityInvalid));
        let f = facts(
            b"spiffe://evil.local/ns/app/sa/web",
            b"api.openai.com",
            b"/v1/chat/completions",
        );
        assert_eq!(run(&c, &f).err(), Some(DenyReason::TrustDomainUntrusted));
    }

    #[test]
    fn admitted_requests_carry_injection_and_cache_key() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        let a = run(&c, &facts(APP, b"api.openai.com", b"/v1/chat/completions")).unwrap();
        assert_eq!(&*a.injection.header, "authorization");
        assert_eq!(a.cache_key, "tollgate/v1/cred/openai");
        assert_eq!(a.rewrite_path, None);
        let a = run(
            &c,
            &facts(
                APP,
                b"generativelanguage.googleapis.com",
                b"/v1beta/models/g:generateContent?key=AIzaXXXX&alt=sse",
            ),
        )
        .unwrap();
        assert_eq!(
            a.cache_key,
            "tollgate/v1/cred/gemini#spiffe://cluster.local/ns/app/sa/web"
        );
        assert_eq!(
            a.rewrite_path.as_deref(),
            Some("/v1beta/models/g:generateContent?alt=sse")
        );
    }

    #[test]
    fn upstream_path_and_policy_denials() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        assert_eq!(
            run(&c, &facts(APP, b"evil.com", b"/v1/chat/completions")).err(),
            Some(DenyReason::UnknownUpstream)
        );
        assert_eq!(
            run(&c, &facts(APP, b"api.openai.com", b"/v1/../chat")).err(),
            Some(DenyReason::PathInvalid)
        );
        assert_eq!(
            run(&c, &facts(APP, b"api.openai.com", b"/v1/embeddings")).err(),
            Some(DenyReason::EndpointNotPermitted)
        );
        let f = HeadFacts {
            path: None,
            ..facts(APP, b"api.openai.com", b"/")
        };
        assert_eq!(run(&c, &f).err(), Some(DenyReason::RequestInvalid));
    }

    #[test]
    fn dry_run_forwards_policy_denials_but_not_identity_failures() {
        let c = parse(CONFIG.replace(r#""enforce""#, r#""dry_run""#).as_bytes()).unwrap();
        let mut flow = RequestFlow::new(c.mode);
        assert!(flow
            .on_request_headers(
                &c,
                &facts(APP, b"api.openai.com", b"/v1/embeddings"),
                &mut Vec::new()
            )
            .is_ok());
        assert_eq!(flow.shadow_denial(), Some(DenyReason::EndpointNotPermitted));
        let step = flow.on_lookup(Lookup::Ready {
            value: "sk-real".into(),
            id: "k1".into(),
            fingerprint: "fp".into(),
            refresh_due: false,
        });
        assert!(matches!(step, Step::Forward { .. }));
        let line = flow.finish_audit().unwrap();
        assert!(line.contains(r#""decision":"shadow_deny""#), "{line}");
        assert!(
            line.contains(r#""reason":"endpoint_not_permitted""#),
            "{line}"
        );
        let f = facts(
            b"spiffe://evil.local/ns/app/sa/web",
            b"api.openai.com",
            b"/v1/embeddings",
        );
        assert_eq!(run(&c, &f).err(), Some(DenyReason::TrustDomainUntrusted));
    }

    #[test]
    fn forward_writes_prefix_and_audit_never_holds_the_value() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        let mut flow = RequestFlow::new(c.mode);
        flow.on_request_headers(
            &c,
            &facts(APP, b"api.openai.com", b"/v1/chat/completions"),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(flow.on_lookup(Lookup::Wait), Step::Wait);
        let step = flow.on_lookup(Lookup::Ready {
            value: "sk-real-secret".into(),
            id: "k1".into(),
            fingerprint: "sha256:abcd".into(),
            refresh_due: false,
        });
        assert_eq!(
            step,
            Step::Forward {
                header: "authorization".into(),
                value: "Bearer sk-real-secret".into()
            }
        );
        let line = flow.finish_audit().unwrap();
        assert!(!line.contains("sk-real-secret"));
        assert!(
            line.contains(r#""rule":"chat""#) && line.contains(r#""credential_id":"k1""#),
            "{line}"
        );
        assert_eq!(flow.finish_audit(), None, "exactly one audit line");
    }

    #[test]
    fn abandoned_requests_are_audited_as_such() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        let mut flow = RequestFlow::new(c.mode);
        flow.on_request_headers(
            &c,
            &facts(APP, b"api.openai.com", b"/v1/chat/completions"),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(flow.on_lookup(Lookup::Fetch), Step::Fetch);
        assert!(flow
            .finish_audit()
            .unwrap()
            .contains(r#""decision":"abandoned""#));
    }
}
