//! One request's journey, as a state machine with no host calls.
//!
//! The glue (`worker`) feeds it facts (headers, properties, cache lookups,
//! the clock) through one method per host callback, and performs the step
//! each returns. States ([`State`]):
//!
//! ```text
//! Start ──on_request_headers──▶ Replied(reason)              (denied)
//!   │
//!   └──▶ AwaitingCredential ──on_lookup(Ready)──▶ Forwarded
//!              │  ▲               └─(Failed / deadline / host failure)──▶ Replied
//!              ▼  │ (Wait / Fetch: paused; woken by the tick or a fetch answer)
//!
//! any state ──on_stream_end──▶ Ended   (the audit record is final)
//! ```
//!
//! Where the next phases attach (ARCHITECTURE.md, "Body and response
//! phases"): a rule that needs the body turns `AwaitingCredential` into a
//! `HoldingBody` state before `Forwarded`, and `Forwarded` grows a response
//! sub-state (status, streamed, usage). Each new callback gets its own
//! method returning its own step type, so a phase cannot return another
//! phase's action.
//!
//! Invariants:
//! - Client credentials are stripped by the glue before this runs; the flow
//!   never sees or keeps their values, only whether one looked real.
//! - A request is forwarded only with a credential ([`CredentialStep::Forward`]
//!   carries it); there is no step that forwards without one.
//! - The audit record is final exactly once, at stream end
//!   ([`RequestFlow::on_stream_end`]). The worker publishes a refused
//!   request's record at its verdict ([`RequestFlow::verdict_record`]); a
//!   forwarded request's record, which its response always changes, is
//!   written once, at stream end.
//! - dry_run: a policy denial is kept as a typed shadow reason and the
//!   request continues; identity, upstream, path and credential failures are
//!   always enforced.

use crate::audit::{printable, AuditRecord, UsageRecord, Verdict};
use crate::body::check::{self, BodyOutcome, BodyPlan};
use crate::budget::global;
use crate::budget::ledger::{Refusal, Reservation};
use crate::budget::price::Price;
use crate::budget::Metric;
use crate::config::{BodyMode, Config, Mode};
use crate::credential::cache::Lookup;
use crate::credential::CredentialKey;
use crate::exchange::Exchange;
use crate::policy::{Decision, RuleId};
use crate::provider::{canonical_host, Injection, ProviderId};
use crate::reason::DenyReason;
use crate::request_path::RequestTarget;
use crate::response::redact::Redactor;
use crate::response::redactors::Redactors;
use crate::response::tap::ResponseTap;
use crate::spiffe::SpiffeId;

/// What the glue read from the host for the request-headers phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadFacts<'a> {
    /// A client certificate was presented (in Envoy: a URI SAN is exposed
    /// only then; the listener must require and validate it).
    pub mtls: bool,
    /// `connection.uri_san_peer_certificate`.
    pub peer_uri_san: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub authority: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    /// The strip scan saw a stripped header whose value looks like a real key.
    pub client_key_seen: bool,
    /// A method-override header is present.
    pub method_override: bool,
    /// The request asks for a protocol upgrade.
    pub upgrade: bool,
    /// The headers end the request (no body follows).
    pub end_of_stream: bool,
    /// Every `content-type` value.
    pub content_types: &'a [&'a [u8]],
    /// Every `content-encoding` value.
    pub content_encodings: &'a [&'a [u8]],
    /// `content-length`, when present and a plain number.
    pub content_length: Option<u64>,
    /// A `content-length` header is present, whatever its value.
    pub content_length_sent: bool,
}

/// The request is admitted pending its credential.
#[derive(Debug, Clone)]
pub struct Admission {
    pub provider: ProviderId,
    pub credential: CredentialKey,
    /// Shared-data key of the credential entry.
    pub cache_key: String,
    pub injection: Injection,
    /// A new `:path` to send upstream (normalised, credential parameters removed).
    pub rewrite_path: Option<String>,
    /// The canonical host to send as `:authority` when the client's differs
    /// (case, port): the host approved is the host routed.
    pub rewrite_authority: Option<String>,
    /// The body will be checked: held mode holds the request for it;
    /// streamed mode sends the headers without Content-Length.
    pub body_checked: bool,
}

/// What the glue must do after a credential lookup (or a wait ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialStep {
    /// Write `header: value` (replacing any), then let the request go.
    Forward { header: Box<str>, value: String },
    /// Send the deny reply for this reason.
    Reply(DenyReason),
    /// Stay paused; another fetch is in flight.
    Wait,
    /// Stay paused and dispatch the fetch holding lease `lease`.
    Fetch { lease: u64 },
    /// The credential is ready but the body has not been checked (held
    /// mode): stay paused until it has.
    AwaitBody,
}

/// What the glue must do with a request-body callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// Let the data go on (the request was forwarded and needs no check).
    Pass,
    /// Keep buffering (Envoy: StopIterationAndBuffer).
    Hold,
    /// The body is complete: read it and call [`RequestFlow::on_body`].
    Inspect,
    /// Send the deny reply.
    Reply(DenyReason),
}

/// How long a held body may go without progress before `body_timeout`.
pub const BODY_IDLE_MS: u64 = 10_000;

/// The request body, as far as the flow is concerned.
#[derive(Debug)]
enum Body {
    /// Not read: the rule needs no check (or none is needed any more).
    Unchecked,
    /// To be checked at its end.
    Pending {
        plan: Box<BodyPlan>,
        max_bytes: u32,
        /// When the body counts as stalled (reset by each chunk).
        idle_deadline_ms: u64,
    },
    /// Checked and passed.
    Checked,
}

/// What the response phase needs from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponsePlan {
    pub exchange: Option<Exchange>,
    pub stream: bool,
    /// Remove the usage-only chunk (the client did not ask for it).
    pub drop_usage_chunk: bool,
    /// The rule's DLP policy, when it scans model output too.
    pub dlp: Option<std::rc::Rc<crate::body::dlp_scan::DlpPolicy>>,
    /// dry_run: DLP on the output records what it would redact, and changes
    /// nothing.
    pub dlp_record_only: bool,
}

/// What [`RequestFlow::on_stream_end`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    /// The final record differs from the one published at the verdict (or
    /// none was published).
    pub changed_since_verdict: bool,
}

/// Where one request is.
#[derive(Debug)]
pub enum State {
    /// Nothing seen yet.
    Start,
    /// Admitted; paused until its credential is ready or the deadline passes.
    AwaitingCredential {
        admission: Admission,
        since_ms: u64,
        deadline_ms: u64,
    },
    /// Sent upstream with its credential.
    Forwarded { provider: ProviderId },
    /// Refused with a local reply.
    Replied(DenyReason),
}

/// One request's state and audit record.
#[derive(Debug)]
pub struct RequestFlow {
    state: State,
    body: Body,
    /// Forwarded waits for the body check (held mode).
    held: bool,
    /// The client sent `content-length`: a held body's rewrite must fix it.
    length_sent: bool,
    /// The rule that allowed the request (none under a dry_run shadow).
    rule: Option<RuleId>,
    /// Budget reservations to settle at the stream's end.
    reservations: Vec<(Reservation, Metric)>,
    /// Global reservations to ask the rate-limit service for.
    global_due: Vec<global::Item>,
    /// Global reservations held, with the service's hold ids (empty: a
    /// service that keeps no holds), to settle at the stream's end.
    global_held: Vec<(global::Item, Box<str>)>,
    /// The model's price, when a `cost` budget was reserved.
    price: Option<Price>,
    /// `retry-after` of a budget refusal.
    retry_after_s: Option<u64>,
    /// Words the reply's message adds (a DLP block's detector names).
    reply_detail: Option<String>,
    response: ResponsePlan,
    /// Finds the injected key in the response (built when it was written).
    redactor: Option<Redactor>,
    tap: Option<ResponseTap>,
    started_ms: u64,
    response_ended: bool,
    /// dry_run: the policy verdict that was not enforced.
    shadow: Option<DenyReason>,
    audit: AuditRecord,
    /// The record was published at the verdict and has not changed since.
    published: bool,
    ended: bool,
    /// The request's one decision (allow, shadow denial, deny) was counted.
    decision_taken: bool,
    /// The request's cache hit or miss was counted (at its first lookup; a
    /// held body makes a second lookup once it has passed).
    lookup_counted: bool,
    /// A held request's credential as the cache gave it while the body was
    /// still on its way, and when: used for the body's verdict instead of a
    /// second read if it is at most [`HELD_READ_REUSE_MS`] old.
    early: Option<(Lookup, u64)>,
}

/// How long a held request may use the credential read at its headers once
/// its body has passed, instead of reading the cache again (one shared-data
/// read, about a microsecond in Envoy). Short enough that a rotation or a
/// revocation on another worker is seen as if the request had come that
/// much earlier; a slower body reads the cache again.
pub const HELD_READ_REUSE_MS: u64 = 250;

impl RequestFlow {
    pub fn new(mode: Mode) -> Self {
        RequestFlow {
            state: State::Start,
            body: Body::Unchecked,
            held: true,
            length_sent: false,
            rule: None,
            reservations: Vec::new(),
            global_due: Vec::new(),
            global_held: Vec::new(),
            price: None,
            retry_after_s: None,
            reply_detail: None,
            response: ResponsePlan::default(),
            redactor: None,
            tap: None,
            started_ms: 0,
            response_ended: false,
            shadow: None,
            audit: AuditRecord::new(mode.as_str()),
            published: false,
            ended: false,
            decision_taken: false,
            lookup_counted: false,
            early: None,
        }
    }

    pub fn admission(&self) -> Option<&Admission> {
        match &self.state {
            State::AwaitingCredential { admission, .. } => Some(admission),
            _ => None,
        }
    }

    /// When a waiting request gives up, if it is waiting.
    pub fn deadline_ms(&self) -> Option<u64> {
        match &self.state {
            State::AwaitingCredential { deadline_ms, .. } => Some(*deadline_ms),
            _ => None,
        }
    }

    /// The dry-run verdict, if the policy would have denied this request.
    pub fn shadow_denial(&self) -> Option<DenyReason> {
        self.shadow
    }

    /// Whether this lookup is the request's first, the one its cache hit or
    /// miss is counted at.
    pub fn take_first_lookup(&mut self) -> bool {
        !core::mem::replace(&mut self.lookup_counted, true)
    }

    /// The request's decision to count, once: `Some(shadow)` the first time
    /// (`Some(None)`: allowed), `None` after. A decision is final when the
    /// request is refused, or forwarded with nothing left to check; in
    /// streamed mode a forwarded request's body is still checked, so its
    /// decision comes with the body's verdict.
    pub fn take_decision(&mut self) -> Option<Option<DenyReason>> {
        if self.decision_taken {
            return None;
        }
        self.decision_taken = true;
        Some(self.shadow)
    }

    /// Request headers: identity, upstream, path and policy. On success the
    /// request awaits its credential (from `now_ms`, for at most `wait_ms`):
    /// the glue looks it up and calls [`Self::on_lookup`].
    pub fn on_request_headers(
        &mut self,
        config: &Config,
        facts: &HeadFacts<'_>,
        now_ms: u64,
        scratch: &mut Vec<u32>,
    ) -> Result<&Admission, DenyReason> {
        self.audit.client_key_seen = facts.client_key_seen;
        self.audit.request_id = facts.request_id.and_then(|r| printable(r, 128));
        self.held = config.body_mode == BodyMode::Held;
        self.length_sent = facts.content_length_sent;
        self.started_ms = now_ms;
        match self.admit(config, facts, now_ms, scratch) {
            Ok(admission) => {
                self.state = State::AwaitingCredential {
                    admission,
                    since_ms: now_ms,
                    deadline_ms: now_ms.saturating_add(config.credential_service.wait_limit_ms()),
                };
                self.admission().ok_or(DenyReason::InternalError)
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
        now_ms: u64,
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
        if facts.upgrade || method == b"CONNECT" {
            return Err(DenyReason::UpgradeNotSupported);
        }
        if facts.method_override {
            return Err(DenyReason::MethodOverride);
        }

        let host = canonical_host(authority).map_err(|_| DenyReason::AuthorityInvalid)?;
        let provider_id = config
            .providers
            .lookup_host(&host)
            .ok_or(DenyReason::UnknownUpstream)?;
        let provider = config
            .providers
            .get(provider_id)
            .ok_or(DenyReason::InternalError)?;
        self.audit.provider = Some(provider.name.clone());
        let rewrite_authority = (authority != host.as_bytes()).then(|| host.clone());
        self.audit.host = Some(host);

        let target = RequestTarget::parse_removing(raw_path, provider.kind.secret_query_params())
            .map_err(|_| DenyReason::PathInvalid)?;
        self.audit.path = Some(target.path().to_string());
        self.audit.client_key_seen |= target.removed_real_key();

        let mut limits = None;
        match config
            .policy
            .evaluate(&workload, provider_id, method, &target, scratch)
        {
            Decision::Allow(permit) => {
                self.audit.rule = Some(config.policy.rule_name(permit.rule).into());
                self.rule = Some(permit.rule);
                limits = config.policy.limits(permit.rule);
            }
            Decision::Deny(reason) if config.mode == Mode::DryRun && reason.is_policy_verdict() => {
                self.shadow = Some(reason);
                self.audit.decision = Verdict::ShadowDeny;
                self.audit.reason = Some(reason.code());
            }
            Decision::Deny(reason) => return Err(reason),
        }

        let exchange = Exchange::classify(provider.kind, target.path());
        let body_checked = self.plan_body(config, facts, exchange, limits.cloned(), now_ms)?;

        let credential = CredentialKey::for_request(&provider.credential, &workload);
        Ok(Admission {
            provider: provider_id,
            cache_key: credential.shared_key(),
            credential,
            injection: provider.injection.clone(),
            rewrite_path: target.upstream_target(),
            rewrite_authority,
            body_checked,
        })
    }

    /// Decides what the body needs: nothing (header-only), a check at its
    /// end, or a decision now (path model, no body, headers that rule the
    /// body out). True when the body will be checked.
    fn plan_body(
        &mut self,
        config: &Config,
        facts: &HeadFacts<'_>,
        exchange: Exchange,
        limits: Option<crate::policy::limits::ExchangeLimits>,
        now_ms: u64,
    ) -> Result<bool, DenyReason> {
        let dry_run = config.mode == Mode::DryRun;
        self.response.exchange = Some(exchange.clone());
        self.response.stream = exchange.streams_by_path();
        if let (Some(l), Some(m)) = (&limits, &exchange.path_model) {
            self.audit.model = printable(m.as_bytes(), 256);
            if !l.permits_model(m) {
                self.policy_denial(dry_run, DenyReason::ModelNotPermitted)?;
            }
        }
        let models_in_body =
            limits.as_ref().is_some_and(|l| l.models.is_some()) && exchange.model_in_body();
        if limits.as_ref().is_some_and(|l| l.models.is_some())
            && !exchange.model_in_body()
            && exchange.path_model.is_none()
        {
            self.policy_denial(dry_run, DenyReason::ModelMissing)?;
        }
        let capped = limits
            .as_ref()
            .is_some_and(|l| l.max_output_tokens.is_some())
            && exchange.cap_fields().is_some();
        let usage = config.inject_stream_usage && exchange.usage_needs_stream_option();
        // A token budget reserves the body's size: the body must be read.
        let metered = self.rule.is_some_and(|r| {
            config.policy.budgets(r).iter().any(|&b| {
                config
                    .budgets
                    .get(usize::from(b))
                    .is_some_and(|b| b.metric.needs_bound())
            }) || config.policy.guard(r).is_some()
        });
        // DLP reads every string value of the body.
        let dlp = self
            .rule
            .and_then(|r| config.policy.dlp(r))
            .and_then(|d| config.dlp.get(usize::from(d)))
            .cloned();
        self.response.dlp = dlp.as_ref().filter(|d| d.responses).cloned();
        self.response.dlp_record_only = dry_run;
        if !(models_in_body || capped || usage || metered || dlp.is_some()) {
            return Ok(false);
        }
        if facts.end_of_stream {
            if models_in_body {
                self.policy_denial(dry_run, DenyReason::ModelMissing)?;
            }
            return Ok(false);
        }
        let max_bytes = limits
            .as_ref()
            .map_or(crate::policy::limits::DEFAULT_MAX_BODY_BYTES, |l| {
                l.max_body_bytes
            });
        json_request(facts)?;
        if facts
            .content_length
            .is_some_and(|n| n > u64::from(max_bytes))
        {
            return Err(DenyReason::BodyTooLarge);
        }
        self.body = Body::Pending {
            plan: Box::new(BodyPlan {
                exchange,
                limits,
                inject_usage: config.inject_stream_usage,
                dry_run,
                dlp,
            }),
            max_bytes,
            idle_deadline_ms: now_ms.saturating_add(BODY_IDLE_MS),
        };
        Ok(true)
    }

    /// Enforces a policy denial, or in dry_run keeps the first as the shadow.
    fn policy_denial(&mut self, dry_run: bool, reason: DenyReason) -> Result<(), DenyReason> {
        if !dry_run {
            return Err(reason);
        }
        if self.shadow.is_none() {
            self.shadow = Some(reason);
            self.audit.decision = Verdict::ShadowDeny;
            self.audit.reason = Some(reason.code());
        }
        Ok(())
    }

    /// A request-body callback: `size` is what the buffer holds now (all of
    /// the body so far while it is held), `end` whether it is complete.
    pub fn on_body_data(&mut self, size: usize, end: bool, now_ms: u64) -> BodyStep {
        let forwarded = self.is_forwarded();
        match &mut self.body {
            Body::Pending {
                max_bytes,
                idle_deadline_ms,
                ..
            } => {
                if size > *max_bytes as usize {
                    return BodyStep::Reply(self.deny(DenyReason::BodyTooLarge));
                }
                *idle_deadline_ms = now_ms.saturating_add(BODY_IDLE_MS);
                if end {
                    BodyStep::Inspect
                } else {
                    BodyStep::Hold
                }
            }
            _ if forwarded => BodyStep::Pass,
            _ => BodyStep::Hold,
        }
    }

    /// The whole body: checks it. `Ok(Some(new))` when the provider must
    /// receive `new` instead.
    pub fn on_body(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, DenyReason> {
        let Body::Pending { plan, .. } = core::mem::replace(&mut self.body, Body::Checked) else {
            return Ok(None);
        };
        match check::check(&plan, body) {
            Ok(outcome) => match outcome.denied {
                Some(reason) => {
                    let blocked = outcome.dlp.as_ref().map(|d| d.blocked.join(", "));
                    self.note_body(outcome);
                    self.reply_detail = blocked.map(|b| format!("detectors: {b}"));
                    Err(self.deny(reason))
                }
                None => Ok(self.note_body(outcome)),
            },
            Err(reason) => Err(self.deny(reason)),
        }
    }

    /// Extra words for the reply's message (DLP's detector names), if any.
    pub fn reply_detail(&self) -> Option<&str> {
        self.reply_detail.as_deref()
    }

    fn note_body(&mut self, out: BodyOutcome) -> Option<Vec<u8>> {
        if let Some(m) = &out.model {
            self.audit.model = printable(m.as_bytes(), 256);
        }
        self.audit.max_tokens_requested = out.requested_cap;
        self.audit.max_tokens_effective = out.effective_cap;
        self.audit.clamped = out.clamped;
        self.audit.stream = Some(out.stream);
        self.response.stream = out.stream;
        self.response.drop_usage_chunk = out.usage_injected;
        if let Some(d) = &out.dlp {
            self.audit.dlp = crate::audit::DlpCount::list(&d.counts);
            self.audit.dlp_redacted = d.redacted;
        }
        if let Some(reason) = out.shadow {
            if self.shadow.is_none() {
                self.shadow = Some(reason);
                self.audit.decision = Verdict::ShadowDeny;
                self.audit.reason = Some(reason.code());
            }
        }
        self.published = false;
        out.rewrite
    }

    /// The most a held body may hold (its rule's `max_body_bytes`), while
    /// it is still to be checked.
    pub fn body_limit(&self) -> Option<usize> {
        match &self.body {
            Body::Pending { max_bytes, .. } => Some(*max_bytes as usize),
            _ => None,
        }
    }

    /// Whether the body is still to be checked.
    pub fn body_pending(&self) -> bool {
        matches!(self.body, Body::Pending { .. })
    }

    /// When a held body counts as stalled, if one is awaited.
    pub fn body_deadline_ms(&self) -> Option<u64> {
        match &self.body {
            Body::Pending {
                idle_deadline_ms, ..
            } if !matches!(self.state, State::Replied(_)) => Some(*idle_deadline_ms),
            _ => None,
        }
    }

    /// The held body never came (or stalled): `body_timeout`.
    pub fn on_body_timeout(&mut self) -> DenyReason {
        self.body = Body::Unchecked;
        self.deny(DenyReason::BodyTimeout)
    }

    /// What the response phase needs.
    pub fn response_plan(&self) -> &ResponsePlan {
        &self.response
    }

    /// Whether the response is read (usage): the upstream is then asked for
    /// an uncompressed body.
    pub fn reads_response(&self) -> bool {
        self.response
            .exchange
            .as_ref()
            .is_some_and(|e| e.dialect().is_some())
            || self.redactor.is_some()
            || self.response.dlp.is_some()
    }

    /// A response being read came with this `content-encoding`: whether it
    /// must be refused. Tollgate asked for `identity`; a compressed body
    /// cannot be checked for the injected key (nor read for usage), so it
    /// never reaches the client. Records the refusal.
    pub fn refuses_response_encoding(&mut self, encoding: &[u8]) -> bool {
        let e = encoding.trim_ascii();
        if e.is_empty() || e.eq_ignore_ascii_case(b"identity") || self.tap.is_none() {
            return false;
        }
        self.audit.response_refused = Some("response_encoded");
        self.published = false;
        true
    }

    /// The response headers of a forwarded request: starts reading the
    /// response. `sse` when it is `text/event-stream`. False when the
    /// request was not forwarded (a local reply: nothing to read).
    pub fn on_response_headers(&mut self, status: Option<u16>, sse: bool, now_ms: u64) -> bool {
        if !self.is_forwarded() || self.tap.is_some() {
            return false;
        }
        self.audit.upstream_status = status;
        self.audit.ttfb_ms = Some(now_ms.saturating_sub(self.started_ms));
        // A request whose body was not read (its rule needs nothing from
        // it) did not say whether it streams: the response does.
        if self.audit.stream.is_none() {
            self.audit.stream = Some(sse || self.response.stream);
        }
        let dialect = self.response.exchange.as_ref().and_then(|e| e.dialect());
        let drop = self.response.drop_usage_chunk && sse;
        let dlp =
            self.response.dlp.clone().map(|p| {
                crate::response::dlp::ResponseDlp::new(p, sse, self.response.dlp_record_only)
            });
        self.tap = Some(ResponseTap::new(
            dialect,
            sse,
            drop,
            self.redactor.take(),
            dlp,
        ));
        self.published = false;
        true
    }

    /// A response header value with the injected key replaced, if it held it.
    pub fn redact_header(&mut self, value: &[u8]) -> Option<Vec<u8>> {
        let (v, n) = self.tap.as_ref()?.redact_header(value)?;
        self.audit.key_echo_redacted = self.audit.key_echo_redacted.saturating_add(n);
        Some(v)
    }

    /// One response chunk: the bytes to send instead (if any change), and
    /// the redactions made in them. `None` when the response is not read.
    pub fn on_response_chunk(
        &mut self,
        chunk: &[u8],
        end: bool,
    ) -> Option<crate::response::tap::Chunk> {
        let tap = self.tap.as_mut()?;
        let r = tap.on_chunk(chunk, end);
        if end {
            self.response_ended = true;
        }
        self.audit.key_echo_redacted = self.audit.key_echo_redacted.saturating_add(r.redactions);
        if let Some(cut) = r.cut {
            self.audit.response_refused = Some(cut.code());
            self.published = false;
        }
        Some(r)
    }

    /// Whether a real-looking client key was found (headers or query).
    pub fn client_key_seen(&self) -> bool {
        self.audit.client_key_seen
    }

    /// Notes a real-looking client key found after the headers (trailers).
    pub fn note_client_key(&mut self) {
        if !self.audit.client_key_seen {
            self.audit.client_key_seen = true;
            self.published = false;
        }
    }

    /// The credential's shared-data key and since when this request waits.
    pub fn waiting_on(&self) -> Option<(&str, u64)> {
        match &self.state {
            State::AwaitingCredential {
                admission,
                since_ms,
                ..
            } => Some((&admission.cache_key, *since_ms)),
            _ => None,
        }
    }

    /// The credential a held request read before its body passed, if it
    /// was read at most [`HELD_READ_REUSE_MS`] before `now`; taken once.
    pub fn take_early_lookup(&mut self, now: u64) -> Option<Lookup> {
        if matches!(self.body, Body::Pending { .. }) {
            // Still held: a lookup now is a fresh read, which replaces it.
            return None;
        }
        let (lookup, at) = self.early.take()?;
        (now.saturating_sub(at) <= HELD_READ_REUSE_MS).then_some(lookup)
    }

    /// Consumes a cache lookup, made at `now`, for the waiting request.
    /// `redactors` compiles (or hands out the worker's compiled) redactor
    /// for the key written.
    pub fn on_lookup(
        &mut self,
        lookup: Lookup,
        now: u64,
        redactors: &mut Redactors,
    ) -> CredentialStep {
        let State::AwaitingCredential { admission, .. } = &self.state else {
            return CredentialStep::Reply(self.deny(DenyReason::InternalError));
        };
        match lookup {
            ready @ Lookup::Ready { .. }
                if self.held && matches!(self.body, Body::Pending { .. }) =>
            {
                self.early = Some((ready, now));
                CredentialStep::AwaitBody
            }
            Lookup::Ready {
                value,
                id,
                fingerprint,
                ..
            } => {
                let step = CredentialStep::Forward {
                    header: admission.injection.header.clone(),
                    value: admission.injection.value_for(&value),
                };
                self.redactor = redactors.for_secret(value.as_bytes());
                self.state = State::Forwarded {
                    provider: admission.provider,
                };
                self.audit.credential_id = Some(id);
                self.audit.credential_fp = Some(fingerprint);
                if self.shadow.is_none() {
                    self.audit.decision = Verdict::Allow;
                }
                step
            }
            Lookup::Wait => CredentialStep::Wait,
            Lookup::Fetch { lease } => CredentialStep::Fetch { lease },
            Lookup::Failed(reason) => CredentialStep::Reply(self.deny(reason)),
        }
    }

    /// The request waited past its deadline for its credential.
    pub fn on_wait_expired(&mut self) -> DenyReason {
        self.deny(DenyReason::CredentialUnavailable)
    }

    /// The glue could not carry out a step (a host call failed): fail closed.
    pub fn on_host_failure(&mut self) -> DenyReason {
        self.deny(DenyReason::InternalError)
    }

    fn deny(&mut self, reason: DenyReason) -> DenyReason {
        self.state = State::Replied(reason);
        self.audit.decision = Verdict::Deny;
        self.audit.reason = Some(reason.code());
        // A streamed request's allow record may already be out: the deny
        // replaces it.
        self.published = false;
        reason
    }

    /// The audit record at the verdict (forward or reply), for hosts whose
    /// access log may run before the stream's end callback. `None` if no
    /// verdict yet or already published unchanged.
    pub fn verdict_record(&mut self) -> Option<String> {
        if self.ended || self.published || self.audit.decision == Verdict::Pending {
            return None;
        }
        self.published = true;
        Some(self.audit.to_json())
    }

    /// The stream ended (completed or reset): the record is final. `None`
    /// when it had already ended; otherwise whether the record changed since
    /// [`Self::verdict_record`] published it (a request that never reached a
    /// verdict is recorded as abandoned). Read it with [`Self::audit`].
    pub fn on_stream_end(&mut self, now_ms: Option<u64>) -> Option<StreamEnd> {
        if self.ended {
            return None;
        }
        self.ended = true;
        if let Some(tap) = &self.tap {
            self.audit.response_complete = Some(self.response_ended);
            self.audit.usage = tap.usage().map(|u| UsageRecord {
                input: u.input,
                output: u.output,
                cached_input: u.cached_input,
                reasoning: u.reasoning,
                total: u.total,
            });
            if let Some(dlp) = tap.dlp() {
                self.audit.dlp_response = crate::audit::DlpCount::list(&dlp.counts);
                self.audit.dlp_response_redacted = dlp.redacted;
            }
            self.published = false;
        }
        // Only a record that changes anyway (usage) gets the duration: for
        // a header-only request Envoy's access log has it, and an unchanged
        // record is not written a second time.
        if let Some(now) = now_ms.filter(|_| self.tap.is_some() && self.started_ms > 0) {
            self.audit.duration_ms = Some(now.saturating_sub(self.started_ms));
        }
        if self.is_undecided() {
            self.audit.decision = Verdict::Abandoned;
            self.published = false;
        }
        Some(StreamEnd {
            changed_since_verdict: !self.published,
        })
    }

    /// The rule that allowed the request, if one did.
    pub fn rule(&self) -> Option<RuleId> {
        self.rule
    }

    /// The most output tokens the request can cost: the effective cap of
    /// its body (written in or clamped), else `rule_cap`.
    pub fn output_tokens_bound(&self, rule_cap: Option<u64>) -> Option<u64> {
        self.audit.max_tokens_effective.or(rule_cap)
    }

    /// The caller's SPIFFE ID, once read.
    pub fn workload(&self) -> Option<&str> {
        self.audit.workload.as_deref()
    }

    /// The model the provider reads, when Tollgate could read it.
    pub fn model(&self) -> Option<&str> {
        self.audit.model.as_deref()
    }

    /// The model's price, for settling a `cost` budget.
    pub fn set_price(&mut self, price: Price) {
        self.price = Some(price);
    }

    /// Records a reservation made on budget `name` (to settle at the end).
    pub fn on_reserved(&mut self, r: Reservation, name: &str, metric: Metric) {
        self.note_reserved(name, metric, r.amount);
        self.reservations.push((r, metric));
    }

    /// Notes a reservation on a global budget, asked of the rate-limit
    /// service once every local step passed ([`Self::take_global_due`]).
    pub fn defer_global(&mut self, item: global::Item, name: &str) {
        self.note_reserved(name, item.metric, item.amount);
        self.global_due.push(item);
    }

    /// The global reservations to ask for now (emptied).
    pub fn take_global_due(&mut self) -> Vec<global::Item> {
        core::mem::take(&mut self.global_due)
    }

    /// The service granted `items`, with its hold ids in order.
    pub fn on_global_held(&mut self, items: Vec<global::Item>, holds: &[Box<str>]) {
        for (i, item) in items.into_iter().enumerate() {
            let hold = holds.get(i).cloned().unwrap_or_default();
            self.global_held.push((item, hold));
        }
    }

    fn note_reserved(&mut self, name: &str, metric: Metric, amount: u64) {
        self.audit.budgets.push(name.into());
        match metric {
            Metric::Tokens => self.audit.tokens_reserved = Some(amount),
            Metric::Cost => self.audit.cost_reserved_micros = Some(amount),
            Metric::Requests => {}
        }
    }

    /// A budget refused the request: the denial to reply with, or in
    /// dry_run `Ok` (kept as the shadow; the spend was still counted where
    /// the store answered).
    pub fn on_budget_refused(
        &mut self,
        config: &Config,
        metric: Metric,
        refusal: Refusal,
    ) -> Result<(), DenyReason> {
        let (reason, retry) = match (refusal, metric) {
            (Refusal::Exhausted { retry_after_s }, Metric::Requests) => {
                (DenyReason::RateLimited, Some(retry_after_s))
            }
            (Refusal::Exhausted { retry_after_s }, Metric::Tokens) => {
                (DenyReason::TokenBudgetExhausted, Some(retry_after_s))
            }
            (Refusal::Exhausted { retry_after_s }, Metric::Cost) => {
                (DenyReason::CostBudgetExhausted, Some(retry_after_s))
            }
            (Refusal::PriceUnknown, _) => (DenyReason::PriceUnknown, None),
            (Refusal::Unavailable, _) => (DenyReason::BudgetUnavailable, None),
        };
        if config.mode == Mode::DryRun {
            return self.policy_denial(true, reason);
        }
        self.retry_after_s = retry;
        Err(self.deny(reason))
    }

    /// The prompt guard found this prompt far above `baseline` bytes:
    /// `deny` refuses it (dry_run: shadows it); `record` only notes it.
    pub fn on_prompt_anomaly(
        &mut self,
        config: &Config,
        baseline: u64,
        deny: bool,
    ) -> Result<(), DenyReason> {
        self.audit.prompt_anomaly_baseline = Some(baseline);
        if !deny {
            return Ok(());
        }
        if config.mode == Mode::DryRun {
            return self.policy_denial(true, DenyReason::PromptAnomaly);
        }
        Err(self.deny(DenyReason::PromptAnomaly))
    }

    /// `retry-after` for the reply, when a budget refused the request.
    pub fn retry_after_s(&self) -> Option<u64> {
        self.retry_after_s
    }

    /// At the stream's end (after [`Self::on_stream_end`]): the reservations
    /// to settle, each with what it spent. A request that never went
    /// upstream spent nothing; otherwise the provider's usage (tokens: input
    /// plus output; cost: each priced, cache reads at their price); without
    /// usage, nothing after an error status, else the whole reservation (the
    /// client left or the stream broke: the provider may have spent it).
    pub fn take_settlements(&mut self) -> Vec<(Reservation, u64)> {
        let mut out = Vec::with_capacity(self.reservations.len());
        for (r, metric) in core::mem::take(&mut self.reservations) {
            let spent = self.spent(metric, r.amount);
            out.push((r, spent));
        }
        out
    }

    /// As [`Self::take_settlements`], for the global holds: each with its
    /// hold id and what it spent. A request counts on a `requests` budget
    /// whatever became of it, as a local one is charged at admission.
    pub fn take_global_settlements(&mut self) -> Vec<(global::Item, Box<str>, u64)> {
        let mut out = Vec::with_capacity(self.global_held.len());
        for (item, hold) in core::mem::take(&mut self.global_held) {
            let spent = match item.metric {
                Metric::Requests => item.amount,
                m => self.spent(m, item.amount),
            };
            out.push((item, hold, spent));
        }
        out
    }

    /// What a reservation of `held` on a `metric` budget spent (see
    /// [`Self::take_settlements`]); noted in the audit record.
    fn spent(&mut self, metric: Metric, held: u64) -> u64 {
        if !self.is_forwarded() {
            return self.note_charged(metric, 0);
        }
        let usage = self
            .audit
            .usage
            .filter(|u| u.total.is_some() || u.input.is_some() || u.output.is_some());
        let Some(u) = usage else {
            let failed = self.audit.upstream_status.is_some_and(|s| s >= 400);
            return self.note_charged(metric, if failed { 0 } else { held });
        };
        // Only a total: priced as output, the dearer kind.
        let (input, output) = match (u.input, u.output, u.total) {
            (None, None, Some(total)) => (0, total),
            (i, o, _) => (i.unwrap_or(0), o.unwrap_or(0)),
        };
        let spent = match metric {
            Metric::Tokens => u.total.unwrap_or(input.saturating_add(output)),
            // Reserving needed a price; without one, charge the hold.
            Metric::Cost => self
                .price
                .map_or(held, |p| p.cost(input, u.cached_input.unwrap_or(0), output)),
            Metric::Requests => 0,
        };
        self.note_charged(metric, spent)
    }

    fn note_charged(&mut self, metric: Metric, spent: u64) -> u64 {
        match metric {
            Metric::Tokens => self.audit.tokens_charged = Some(spent),
            Metric::Cost => self.audit.cost_charged_micros = Some(spent),
            Metric::Requests => {}
        }
        spent
    }

    /// Whether a held body's rewrite must set `content-length`: the request
    /// is held (its headers still unsent) and the client sent one. A body
    /// that came without one (chunked, HTTP/2) goes on without one, so that
    /// its trailers still can.
    pub fn rewrite_sets_length(&self) -> bool {
        self.held && self.length_sent && !self.is_forwarded()
    }

    /// Whether the request went upstream (its credential written).
    pub fn is_forwarded(&self) -> bool {
        matches!(self.state, State::Forwarded { .. })
    }

    /// Whether the request never reached a verdict (for the abandoned counter).
    pub fn is_undecided(&self) -> bool {
        matches!(self.state, State::Start | State::AwaitingCredential { .. })
    }

    pub fn audit(&self) -> &AuditRecord {
        &self.audit
    }
}

/// A body that will be inspected must be plain JSON: exactly one
/// `content-type` of `application/json` (parameters allowed) and no
/// `content-encoding` other than one `identity`.
fn json_request(facts: &HeadFacts<'_>) -> Result<(), DenyReason> {
    let [ct] = facts.content_types else {
        return Err(DenyReason::BodyUnsupported);
    };
    let media = ct.split(|&b| b == b';').next().unwrap_or_default();
    if !media.trim_ascii().eq_ignore_ascii_case(b"application/json") {
        return Err(DenyReason::BodyUnsupported);
    }
    match facts.content_encodings {
        [] => Ok(()),
        [e] if e.trim_ascii().eq_ignore_ascii_case(b"identity") => Ok(()),
        _ => Err(DenyReason::BodyUnsupported),
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
            end_of_stream: true,
            ..Default::default()
        }
    }

    const APP: &[u8] = b"spiffe://cluster.local/ns/app/sa/web";

    fn run(config: &Config, f: &HeadFacts<'_>) -> Result<Admission, DenyReason> {
        let mut flow = RequestFlow::new(config.mode);
        flow.on_request_headers(config, f, 0, &mut Vec::new())
            .cloned()
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
                0,
                &mut Vec::new()
            )
            .is_ok());
        assert_eq!(flow.shadow_denial(), Some(DenyReason::EndpointNotPermitted));
        let step = flow.on_lookup(
            Lookup::Ready {
                value: "sk-real".into(),
                id: "k1".into(),
                fingerprint: "fp".into(),
                refresh_due: false,
            },
            0,
            &mut Redactors::default(),
        );
        assert!(matches!(step, CredentialStep::Forward { .. }));
        let line = flow.verdict_record().unwrap();
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
            0,
            &mut Vec::new(),
        )
        .unwrap();
        let mut redactors = Redactors::default();
        assert_eq!(
            flow.on_lookup(Lookup::Wait, 0, &mut redactors),
            CredentialStep::Wait
        );
        let step = flow.on_lookup(
            Lookup::Ready {
                value: "sk-real-secret".into(),
                id: "k1".into(),
                fingerprint: "sha256:abcd".into(),
                refresh_due: false,
            },
            0,
            &mut redactors,
        );
        assert_eq!(
            step,
            CredentialStep::Forward {
                header: "authorization".into(),
                value: "Bearer sk-real-secret".into()
            }
        );
        let line = flow.verdict_record().unwrap();
        assert!(!line.contains("sk-real-secret"));
        assert!(
            line.contains(r#""rule":"chat""#) && line.contains(r#""credential_id":"k1""#),
            "{line}"
        );
        assert_eq!(flow.verdict_record(), None, "published once");
        assert_eq!(
            flow.on_stream_end(None),
            Some(StreamEnd {
                changed_since_verdict: false
            })
        );
        assert_eq!(flow.on_stream_end(None), None, "final exactly once");
    }

    #[test]
    fn abandoned_requests_are_audited_as_such() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        let mut flow = RequestFlow::new(c.mode);
        flow.on_request_headers(
            &c,
            &facts(APP, b"api.openai.com", b"/v1/chat/completions"),
            0,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(
            flow.on_lookup(Lookup::Fetch { lease: 7 }, 0, &mut Redactors::default()),
            CredentialStep::Fetch { lease: 7 }
        );
        assert_eq!(flow.verdict_record(), None, "no verdict yet");
        assert!(flow.on_stream_end(None).unwrap().changed_since_verdict);
        assert!(flow.audit().to_json().contains(r#""decision":"abandoned""#));
    }

    #[test]
    fn authority_method_override_and_upgrade_are_refused_with_reasons() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        for bad in [&b"api.openai.com."[..], b"api.openai.com:443:443", b"[::1]"] {
            assert_eq!(
                run(&c, &facts(APP, bad, b"/v1/chat/completions")).err(),
                Some(DenyReason::AuthorityInvalid)
            );
        }
        let f = HeadFacts {
            method_override: true,
            ..facts(APP, b"api.openai.com", b"/v1/chat/completions")
        };
        assert_eq!(run(&c, &f).err(), Some(DenyReason::MethodOverride));
        let f = HeadFacts {
            upgrade: true,
            ..facts(APP, b"api.openai.com", b"/v1/chat/completions")
        };
        assert_eq!(run(&c, &f).err(), Some(DenyReason::UpgradeNotSupported));
    }

    #[test]
    fn gemini_access_token_is_removed_and_trips_the_tripwire_only_when_real() {
        let c = parse(CONFIG.as_bytes()).unwrap();
        let host = b"generativelanguage.googleapis.com";
        let mut flow = RequestFlow::new(c.mode);
        let a = flow
            .on_request_headers(
                &c,
                &facts(APP, host, b"/v1beta/models/g:generateContent?access_token=ya29.abcdefghijklmnopqrstuvwxyz"),
                0,
                &mut Vec::new(),
            )
            .unwrap();
        assert_eq!(
            a.rewrite_path.as_deref(),
            Some("/v1beta/models/g:generateContent")
        );
        assert!(flow.client_key_seen());
        let mut flow = RequestFlow::new(c.mode);
        flow.on_request_headers(
            &c,
            &facts(
                APP,
                host,
                b"/v1beta/models/g:generateContent?key=placeholder",
            ),
            0,
            &mut Vec::new(),
        )
        .unwrap();
        assert!(!flow.client_key_seen(), "a placeholder is not a leak");
    }
}
