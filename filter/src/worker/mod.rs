//! Per-worker state and the performer of the request flow's steps, written
//! against the [`Host`] trait so that all of it runs in unit tests with a
//! fake host.
//!
//! Envoy runs one VM per worker thread; each plugin (root context) in it has
//! one [`Worker`]. The worker owns the compiled configuration, the metric
//! ids, every live stream's [`RequestFlow`], the requests waiting for a
//! credential, and the credential fetches in flight.
//!
//! Waiting across workers: proxy-wasm has no cross-worker wake-up. A request
//! that must wait pauses in request headers and is listed in `waiting`. It is
//! woken (a) at once when a fetch completes on this worker, or (b) by the
//! tick, which re-reads shared data, so a fetch completed by another worker
//! is seen within one tick. The tick runs every [`TICK_FAST_MS`] only while
//! something waits, and every [`TICK_IDLE_MS`] otherwise (refresh-ahead).
//!
//! Invariants:
//! - Fetches belong to the worker, not to the request that missed first:
//!   they are dispatched with the root context as the effective context, so
//!   a client that resets its stream cancels nothing, and the answer always
//!   arrives, completes the cache entry and wakes every waiter.
//! - A stream is forwarded only after its credential header was written; if
//!   any host call in the way fails, it gets a local reply instead
//!   (`internal_error`). A failed clock read fails closed too.
//! - Every step that touches another stream first makes it the effective
//!   context and restores the caller's context afterwards.
//! - Everything registered for a stream (its flow, its place in `waiting`)
//!   is released when the stream ends, however it ends.

mod budgets;
mod global;
pub mod host;

#[cfg(any(test, feature = "fake-host"))]
pub mod fake_host;
#[cfg(test)]
mod global_tests;
#[cfg(test)]
mod tests;

use core::cell::{Cell, RefCell};
use std::rc::Rc;

use hashbrown::HashMap;

pub use host::{BodyBuffer, Host, HostError, LogLevel, MapType, Shared};

use crate::config::BodyMode;
use crate::config::{self, Config};
use crate::credential::cache::{self, Completion};
use crate::credential::protocol::FetchFailure;
use crate::credential::CredentialKey;
use crate::flow::{BodyStep, CredentialStep, HeadFacts, RequestFlow};
use crate::metrics::Counter;
use crate::reason::DenyReason;
use crate::reply::deny_reply_with;
use crate::response::redactors::Redactors;
use budgets::Phase;

/// The tick while a request waits: how quickly a request waiting on another
/// worker's fetch notices it.
pub const TICK_FAST_MS: u32 = 20;
/// The tick while nothing waits: the refresh-ahead cadence.
pub const TICK_IDLE_MS: u32 = 1_000;
/// How often the refresh-ahead pass runs.
const REFRESH_CHECK_MS: u64 = 1_000;
/// After a failed refresh, wait this long before trying again.
const REFRESH_RETRY_MS: u64 = 1_000;
/// Credential-service answers larger than this are garbage.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The filter-state path of the audit record (`wasm.tollgate.audit` in Envoy).
pub const AUDIT_PROPERTY: &str = "tollgate.audit";

/// What a request callback tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One HTTP stream: its flow and the configuration it started with.
struct Stream {
    flow: RequestFlow,
    config: Rc<Config>,
}

/// A credential fetch in flight, by call token.
struct InFlight {
    cache_key: String,
    credential: CredentialKey,
    config: Rc<Config>,
    lease: u64,
    /// Twice its lease: the host answers every call by its timeout (the lease
    /// is the timeout plus a margin), so an answer that has not come by then
    /// never will (the call was cancelled) and the record is dropped.
    deadline_ms: u64,
}

/// A credential this worker used recently (the refresh-ahead set).
struct Interest {
    credential: CredentialKey,
    last_used_ms: u64,
}

/// How a step is performed: inside the stream's own callback (return an
/// `Action`), or on wake-up from another callback (resume explicitly).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Own,
    Wake,
}

pub struct Worker<H: Host> {
    host: H,
    root: u32,
    config: RefCell<Option<Rc<Config>>>,
    /// Metric ids by `Counter::slot`.
    counters: RefCell<Vec<Option<u32>>>,
    /// `tollgate.budget.reservations_outstanding`: held reservations of
    /// streams not yet settled (a gauge, shared by every worker).
    outstanding: Cell<Option<u32>>,
    /// Lease ids are `lease_base + n`: unique per fetch across workers.
    lease_base: u64,
    lease_seq: Cell<u64>,
    streams: RefCell<HashMap<u32, Stream>>,
    /// Streams paused for a credential, by context id.
    waiting: RefCell<Vec<u32>>,
    /// By call token. A few at a time (one per credential being fetched):
    /// a list, which costs the module less than another map type.
    fetches: RefCell<Vec<(u32, InFlight)>>,
    /// By cache key; one per credential in use.
    interest: RefCell<Vec<(String, Interest)>>,
    last_refresh_check_ms: Cell<u64>,
    tick_ms: Cell<u32>,
    scratch: RefCell<Vec<u32>>,
    /// Compiled key-echo redactors, one per credential value.
    redactors: RefCell<Redactors>,
    /// Rate-limit calls in flight (global budgets), by token.
    global_calls: RefCell<Vec<(u32, global::GlobalCall)>>,
    /// Settlements to try again at the next tick.
    global_retries: RefCell<Vec<global::Retry>>,
    /// Settlements gathered for the next tick.
    settle_batch: RefCell<Option<global::SettleBatch>>,
}

impl<H: Host> Worker<H> {
    /// A worker for the root context `root`.
    pub fn new(host: H, root: u32) -> Self {
        let lease_base = host.random_u64();
        Worker {
            host,
            root,
            config: RefCell::new(None),
            counters: RefCell::new(vec![None; Counter::SLOTS]),
            outstanding: Cell::new(None),
            lease_base,
            lease_seq: Cell::new(0),
            streams: RefCell::new(HashMap::new()),
            waiting: RefCell::new(Vec::new()),
            fetches: RefCell::new(Vec::new()),
            interest: RefCell::new(Vec::new()),
            last_refresh_check_ms: Cell::new(0),
            tick_ms: Cell::new(0),
            scratch: RefCell::new(Vec::with_capacity(16)),
            redactors: RefCell::new(Redactors::default()),
            global_calls: RefCell::new(Vec::new()),
            global_retries: RefCell::new(Vec::new()),
            settle_batch: RefCell::new(None),
        }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn config(&self) -> Option<Rc<Config>> {
        self.config.borrow().clone()
    }

    /// Number of streams this worker holds state for.
    pub fn live_streams(&self) -> usize {
        self.streams.borrow().len()
    }

    /// Number of credential fetches in flight from this worker.
    pub fn fetches_in_flight(&self) -> usize {
        self.fetches.borrow().len()
    }

    fn log(&self, level: LogLevel, message: core::fmt::Arguments<'_>) {
        self.host.log(level, &message.to_string());
    }

    fn count(&self, c: Counter) {
        self.count_n(c, 1);
    }

    /// Moves the outstanding-reservations gauge by `by`.
    fn outstanding(&self, by: i64) {
        if let Some(id) = self.outstanding.get() {
            self.host.increment(id, by);
        }
    }

    fn count_n(&self, c: Counter, n: i64) {
        if let Some(Some(id)) = self.counters.borrow().get(c.slot()) {
            self.host.increment(*id, n);
        }
    }

    fn next_lease(&self) -> u64 {
        let n = self.lease_seq.get().wrapping_add(1);
        self.lease_seq.set(n);
        self.lease_base.wrapping_add(n)
    }

    /// `on_configure`: parse and install the plugin configuration. False
    /// rejects it (Envoy then keeps the old one, or refuses to start).
    pub fn on_configure(&self, doc: impl config::Document) -> bool {
        let config = match config::parse_document(&doc) {
            Ok(c) => c,
            Err(errors) => {
                for e in errors.iter() {
                    self.log(
                        LogLevel::Error,
                        format_args!("tollgate: invalid configuration: {e}"),
                    );
                }
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "tollgate: configuration rejected ({} problem(s))",
                        errors.0.len()
                    ),
                );
                return false;
            }
        };
        self.log(
            LogLevel::Info,
            format_args!(
                "tollgate: configured: mode={} providers={} rules={} credential_service={}:{}",
                config.mode.as_str(),
                config.providers.len(),
                config.policy.len(),
                config.credential_service.protocol.as_str(),
                config.credential_service.cluster
            ),
        );
        {
            let mut counters = self.counters.borrow_mut();
            for c in Counter::all() {
                if let Some(slot) = counters.get_mut(c.slot()) {
                    *slot = self.host.define_counter(&c.name()).ok();
                }
            }
        }
        if self.outstanding.get().is_none() {
            self.outstanding.set(
                self.host
                    .define_gauge("tollgate.budget.reservations_outstanding")
                    .ok(),
            );
        }
        // Budget records exist before the first request can reserve (shared
        // data has no create-if-absent: see budget::ledger).
        for b in config.budgets.iter() {
            if let Err(e) = crate::budget::ledger::ensure_records(&Shared(&self.host), b) {
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "tollgate: budget {:?}: records not created at configuration ({e:?}); they are created at first use",
                        &*b.name
                    ),
                );
            }
        }
        *self.config.borrow_mut() = Some(Rc::new(config));
        if self.host.set_tick_ms(TICK_IDLE_MS).is_err() {
            self.log(
                LogLevel::Error,
                format_args!("tollgate: cannot set the tick period"),
            );
            return false;
        }
        self.tick_ms.set(TICK_IDLE_MS);
        true
    }

    /// The request-headers callback of stream `ctx`; `end_of_stream` when
    /// no body follows.
    pub fn on_request_headers(&self, ctx: u32, end_of_stream: bool) -> Action {
        let Some(config) = self.config() else {
            // An unconfigured VM (Envoy would not start it): fail closed.
            self.count(Counter::Deny(DenyReason::InternalError));
            self.send_reply(DenyReason::InternalError, None, None);
            return Action::Pause;
        };
        let mut flow = RequestFlow::new(config.mode);
        let head = self.read_head(&config, &mut flow, end_of_stream);
        if flow.client_key_seen() {
            self.count(Counter::ClientKeySeen);
        }
        self.streams
            .borrow_mut()
            .insert(ctx, Stream { flow, config });
        match head {
            Ok(now) => match self.start_global(ctx, now) {
                Some(action) => action,
                None => self.advance(ctx, ctx, Via::Own, now),
            },
            Err(reason) => self.reply(ctx, ctx, Via::Own, reason),
        }
    }

    /// Strips client credentials, reads identity and request facts, and runs
    /// the flow's header decision. `Ok(now)` when the request awaits its
    /// credential; the reason (already recorded in `flow`) otherwise.
    fn read_head(
        &self,
        config: &Config,
        flow: &mut RequestFlow,
        end_of_stream: bool,
    ) -> Result<u64, DenyReason> {
        let Ok(now) = self.host.now_ms() else {
            return Err(flow.on_host_failure());
        };
        let Ok(headers) = self.host.header_map(MapType::RequestHeaders) else {
            return Err(flow.on_host_failure());
        };
        // 1. Strip every client credential, before anything else.
        let scan = config.strip.scan(headers.iter());
        for name in config.strip.present(&scan) {
            if self
                .host
                .remove_header(MapType::RequestHeaders, name)
                .is_err()
            {
                return Err(flow.on_host_failure());
            }
        }
        // 2. Identity from the peer certificate only. Envoy exposes a URI SAN
        //    only when the client presented a certificate, which is all that
        //    `connection.mtls` would say (it does not say "validated" either:
        //    the listener's required, validated client certificates do), so
        //    the SAN is the one property read: each costs about 8 µs of
        //    gateway CPU (BENCHMARKS.md).
        let san = match self
            .host
            .property(&["connection", "uri_san_peer_certificate"])
        {
            Ok(v) => v,
            Err(_) => return Err(flow.on_host_failure()),
        };
        let mtls = san.is_some();
        let content_types = headers.all(b"content-type");
        let content_encodings = headers.all(b"content-encoding");
        let content_length = headers
            .first(b"content-length")
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok());
        let facts = HeadFacts {
            mtls,
            peer_uri_san: san.as_deref(),
            method: headers.first(b":method"),
            authority: headers.first(b":authority"),
            path: headers.first(b":path"),
            request_id: headers.first(b"x-request-id"),
            client_key_seen: scan.client_key_seen,
            method_override: scan.method_override,
            upgrade: scan.upgrade,
            end_of_stream,
            content_types: &content_types,
            content_encodings: &content_encodings,
            content_length,
            content_length_sent: headers.first(b"content-length").is_some(),
        };
        // 3. Decide.
        let (path, authority, unlength) = {
            let mut scratch = self.scratch.borrow_mut();
            let admission = flow.on_request_headers(config, &facts, now, &mut scratch)?;
            (
                admission.rewrite_path.clone(),
                admission.rewrite_authority.clone(),
                admission.body_checked && config.body_mode == BodyMode::Streamed,
            )
        };
        // Streamed mode: the headers may leave before the body is checked,
        // so the body can be rewritten only if its length is not declared
        // (Envoy then sends it chunked).
        if unlength
            && self
                .host
                .remove_header(MapType::RequestHeaders, "content-length")
                .is_err()
        {
            return Err(flow.on_host_failure());
        }
        // 4. The path and host authorised are the path and host routed.
        for (name, value) in [(":path", path), (":authority", authority)] {
            let Some(value) = value else { continue };
            if self
                .host
                .replace_header(MapType::RequestHeaders, name, value.as_bytes())
                .is_err()
            {
                return Err(flow.on_host_failure());
            }
        }
        // 5. Budgets due now (requests; tokens when no body will be read).
        self.reserve_budgets(config, flow, Phase::Admission, now)?;
        Ok(now)
    }

    /// Looks up the credential of waiting stream `ctx` and performs what
    /// follows. `current` is the context whose callback is running.
    fn advance(&self, ctx: u32, current: u32, via: Via, now: u64) -> Action {
        // A failed dispatch records its failure in the entry; one more round
        // lets this request see it now rather than at the next tick.
        for _ in 0..2 {
            let step = {
                let mut streams = self.streams.borrow_mut();
                let Some(s) = streams.get_mut(&ctx) else {
                    return Action::Pause;
                };
                // A held request's read from before its body passed, if
                // recent enough (`HELD_READ_REUSE_MS`).
                let early = s.flow.take_early_lookup(now);
                let Some((key, since)) = s.flow.waiting_on() else {
                    return Action::Pause;
                };
                if s.flow.deadline_ms().is_some_and(|d| now >= d) {
                    CredentialStep::Reply(s.flow.on_wait_expired())
                } else {
                    let svc = &s.config.credential_service;
                    let lookup = match early {
                        Some(l) => Ok(l),
                        None => cache::resolve(
                            &Shared(&self.host),
                            key,
                            self.next_lease(),
                            now,
                            since,
                            svc.refresh_ahead_ms,
                            svc.lease_ms(),
                        ),
                    };
                    if via == Via::Own {
                        self.note_interest(&s.flow, now);
                    }
                    if via == Via::Own && s.flow.take_first_lookup() {
                        self.count(match &lookup {
                            Ok(cache::Lookup::Ready { .. }) => Counter::CacheHit,
                            _ => Counter::CacheMiss,
                        });
                        if let Ok(cache::Lookup::Ready {
                            refresh_due: true, ..
                        }) = &lookup
                        {
                            self.count(Counter::CacheRefreshDue);
                        }
                    }
                    match lookup {
                        Ok(l) => s.flow.on_lookup(l, now, &mut self.redactors.borrow_mut()),
                        Err(e) => {
                            self.log(
                                LogLevel::Error,
                                format_args!(
                                    "tollgate: shared data error during credential lookup: {e:?}"
                                ),
                            );
                            CredentialStep::Reply(s.flow.on_host_failure())
                        }
                    }
                }
            };
            match step {
                CredentialStep::Wait => {
                    self.mark_waiting(ctx);
                    return Action::Pause;
                }
                CredentialStep::Fetch { lease } => {
                    self.mark_waiting(ctx);
                    let fetch = {
                        let streams = self.streams.borrow();
                        streams.get(&ctx).and_then(|s| {
                            s.flow.admission().map(|a| {
                                (s.config.clone(), a.cache_key.clone(), a.credential.clone())
                            })
                        })
                    };
                    let Some((config, key, credential)) = fetch else {
                        return Action::Pause;
                    };
                    if self.dispatch_fetch(current, &config, &key, &credential, lease, now) {
                        return Action::Pause;
                    }
                }
                CredentialStep::AwaitBody => {
                    self.unmark_waiting(ctx);
                    return Action::Pause;
                }
                CredentialStep::Forward { header, value } => {
                    self.unmark_waiting(ctx);
                    return self.forward(ctx, current, via, &header, value.as_bytes());
                }
                CredentialStep::Reply(reason) => {
                    self.unmark_waiting(ctx);
                    return self.reply(ctx, current, via, reason);
                }
            }
        }
        Action::Pause
    }

    fn note_interest(&self, flow: &RequestFlow, now: u64) {
        let Some(a) = flow.admission() else { return };
        let mut interest = self.interest.borrow_mut();
        match interest.iter_mut().find(|(k, _)| *k == a.cache_key) {
            Some((_, i)) => i.last_used_ms = now,
            None => {
                interest.push((
                    a.cache_key.clone(),
                    Interest {
                        credential: a.credential.clone(),
                        last_used_ms: now,
                    },
                ));
            }
        }
    }

    fn mark_waiting(&self, ctx: u32) {
        let first = {
            let mut waiting = self.waiting.borrow_mut();
            if !waiting.contains(&ctx) {
                waiting.push(ctx);
            }
            waiting.len() == 1
        };
        if first && self.tick_ms.get() != TICK_FAST_MS {
            self.set_tick(TICK_FAST_MS);
        }
    }

    fn unmark_waiting(&self, ctx: u32) -> bool {
        let mut waiting = self.waiting.borrow_mut();
        let before = waiting.len();
        waiting.retain(|w| *w != ctx);
        waiting.len() != before
    }

    /// Makes the next tick come soon (work queued for it).
    fn tick_soon(&self) {
        if self.tick_ms.get() != TICK_FAST_MS {
            self.set_tick(TICK_FAST_MS);
        }
    }

    fn set_tick(&self, ms: u32) {
        if self.host.set_tick_ms(ms).is_ok() {
            self.tick_ms.set(ms);
        } else {
            self.log(
                LogLevel::Warn,
                format_args!("tollgate: cannot set the tick period to {ms} ms"),
            );
        }
    }

    /// Makes `ctx` effective when performing for another stream. False when
    /// the stream is gone (nothing to perform).
    fn enter(&self, ctx: u32, current: u32, via: Via) -> bool {
        via == Via::Own || ctx == current || self.host.set_effective_context(ctx).is_ok()
    }

    fn leave(&self, ctx: u32, current: u32, via: Via) {
        if via == Via::Wake && ctx != current {
            let _ = self.host.set_effective_context(current);
        }
    }

    /// Writes the credential header and lets the request go.
    fn forward(&self, ctx: u32, current: u32, via: Via, header: &str, value: &[u8]) -> Action {
        if !self.enter(ctx, current, via) {
            return Action::Pause;
        }
        let reads_response = self.with_flow(ctx, |f| f.reads_response()).unwrap_or(false);
        let written = self
            .host
            .replace_header(MapType::RequestHeaders, header, value)
            .is_ok()
            // Usage and key echoes are read from the response: ask for it
            // uncompressed.
            && (!reads_response
                || self
                    .host
                    .replace_header(MapType::RequestHeaders, "accept-encoding", b"identity")
                    .is_ok());
        // On a wake-up the stream is still paused in headers: if it cannot
        // be resumed, answer it rather than leave it hanging.
        let resumed = written && (via == Via::Own || self.host.resume_request().is_ok());
        if !resumed {
            if written {
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "tollgate: could not resume a stream after writing its credential"
                    ),
                );
            }
            let reason = self
                .with_flow(ctx, |f| f.on_host_failure())
                .unwrap_or(DenyReason::InternalError);
            self.leave(ctx, current, via);
            return self.reply(ctx, current, via, reason);
        }
        if !self.with_flow(ctx, |f| f.body_pending()).unwrap_or(false) {
            self.count_decision(ctx);
        }
        // Not published here: a forwarded request's response always changes
        // its record (status, time to first byte, usage), so it is written
        // once, at stream end (`on_log`).
        self.leave(ctx, current, via);
        Action::Continue
    }

    /// Counts the request's decision when it is final and not yet counted:
    /// allowed, or (dry_run) the denial that was not enforced, with its
    /// warning. Denials are counted by [`Self::reply`].
    fn count_decision(&self, ctx: u32) {
        match self.with_flow(ctx, |f| f.take_decision()).flatten() {
            Some(None) => self.count(Counter::Allow),
            Some(Some(shadow)) => {
                self.count(Counter::ShadowDeny(shadow));
                self.log(
                    LogLevel::Warn,
                    format_args!(
                        "tollgate: dry_run: would deny with {} (forwarded)",
                        shadow.code()
                    ),
                );
            }
            None => {}
        }
    }

    /// Sends the deny reply on `ctx`.
    fn reply(&self, ctx: u32, current: u32, via: Via, reason: DenyReason) -> Action {
        // A request refused while its credential was being fetched (a body
        // denial) waits no more.
        self.unmark_waiting(ctx);
        if !self.enter(ctx, current, via) {
            return Action::Pause;
        }
        // Exactly one decision per request: a deny after a shadowed or
        // streamed-mode forward replaces the decision not yet counted.
        let _ = self.with_flow(ctx, |f| f.take_decision());
        self.count(Counter::Deny(reason));
        self.publish_verdict(ctx);
        let retry_after = self.with_flow(ctx, |f| f.retry_after_s()).flatten();
        let detail = self
            .with_flow(ctx, |f| f.reply_detail().map(str::to_owned))
            .flatten();
        self.send_reply(reason, retry_after, detail.as_deref());
        self.leave(ctx, current, via);
        Action::Pause
    }

    /// Sends the deny reply on the effective stream; if the host refuses it,
    /// resets the stream, so that a refused request never hangs.
    fn send_reply(&self, reason: DenyReason, retry_after_s: Option<u64>, detail: Option<&str>) {
        let r = deny_reply_with(reason, detail);
        let retry = retry_after_s.map(|s| s.to_string());
        let mut headers: Vec<(&str, &str)> = r.headers.to_vec();
        if let Some(retry) = &retry {
            headers.push(("retry-after", retry));
        }
        if let Err(e) = self
            .host
            .send_reply(r.status, &r.details, r.body.as_bytes(), &headers)
        {
            self.log(
                LogLevel::Error,
                format_args!(
                    "tollgate: could not send the local reply ({}): {e:?}; resetting the stream",
                    reason.code()
                ),
            );
            if let Err(e) = self.host.close_stream() {
                self.log(
                    LogLevel::Error,
                    format_args!("tollgate: could not reset the stream either: {e:?}"),
                );
            }
        }
    }

    fn with_flow<T>(&self, ctx: u32, f: impl FnOnce(&mut RequestFlow) -> T) -> Option<T> {
        self.flow_of(ctx).map(|mut flow| f(&mut flow))
    }

    /// Stream `ctx`'s flow, borrowed. One out-of-line lookup that every
    /// [`Self::with_flow`] shares (inlined, each of its ~20 uses grew the
    /// module by about 400 bytes).
    #[inline(never)]
    fn flow_of(&self, ctx: u32) -> Option<core::cell::RefMut<'_, RequestFlow>> {
        core::cell::RefMut::filter_map(self.streams.borrow_mut(), |m| {
            m.get_mut(&ctx).map(|s| &mut s.flow)
        })
        .ok()
    }

    /// Publishes the audit record of a refused request at its verdict, as
    /// filter state (the effective context must be `ctx`).
    fn publish_verdict(&self, ctx: u32) {
        let record = {
            let mut streams = self.streams.borrow_mut();
            let Some(s) = streams.get_mut(&ctx) else {
                return;
            };
            if !s.config.audit_log.to_filter_state() {
                return;
            }
            s.flow.verdict_record()
        };
        if let Some(json) = record {
            self.write_audit(&json);
        }
    }

    fn write_audit(&self, json: &str) {
        if let Err(e) = self.host.set_property(AUDIT_PROPERTY, json.as_bytes()) {
            self.log(
                LogLevel::Error,
                format_args!("tollgate: could not store the audit record: {e:?}"),
            );
        }
    }

    /// Dispatches the fetch holding `lease` from the root context, so that it
    /// outlives the stream that asked. False when the dispatch failed (the
    /// failure is then recorded in the entry, releasing the lease).
    fn dispatch_fetch(
        &self,
        current: u32,
        config: &Rc<Config>,
        key: &str,
        credential: &CredentialKey,
        lease: u64,
        now: u64,
    ) -> bool {
        let svc = &config.credential_service;
        let call = svc.fetch_call(credential);
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let switched = current != self.root && self.host.set_effective_context(self.root).is_ok();
        let dispatched = self.host.dispatch(&svc.cluster, &headers, svc.timeout_ms);
        if switched {
            let _ = self.host.set_effective_context(current);
        }
        match dispatched {
            Ok(token) => {
                self.fetches.borrow_mut().push((
                    token,
                    InFlight {
                        cache_key: key.to_string(),
                        credential: credential.clone(),
                        config: config.clone(),
                        lease,
                        deadline_ms: now.saturating_add(svc.lease_ms().saturating_mul(2)),
                    },
                ));
                true
            }
            Err(status) => {
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "tollgate: cannot dispatch credential fetch for {:?} to cluster {:?}: {status:?}",
                        credential.name, svc.cluster
                    ),
                );
                self.count(Counter::FetchFailed(FetchFailure::DispatchFailed));
                if let Err(e) = cache::complete(
                    &Shared(&self.host),
                    key,
                    lease,
                    &Err(FetchFailure::DispatchFailed),
                    now,
                ) {
                    self.log(
                        LogLevel::Error,
                        format_args!(
                            "tollgate: shared data error recording a failed dispatch: {e:?}"
                        ),
                    );
                }
                false
            }
        }
    }

    /// A credential-service answer arrived (in the root context).
    pub fn on_http_call_response(&self, token: u32, num_headers: usize, body_size: usize) {
        let found = {
            let mut fetches = self.fetches.borrow_mut();
            let i = fetches.iter().position(|(t, _)| *t == token);
            i.map(|i| fetches.swap_remove(i).1)
        };
        let Some(f) = found else {
            self.log(
                LogLevel::Warn,
                format_args!("tollgate: answer for an unknown call token {token}"),
            );
            return;
        };
        let status = if num_headers == 0 {
            None
        } else {
            self.host
                .header(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| {
                    core::str::from_utf8(&s)
                        .ok()
                        .and_then(|s| s.parse::<u16>().ok())
                })
                .or(Some(0))
        };
        let body = if body_size > MAX_ANSWER_BYTES {
            None
        } else {
            self.host.call_response_body(body_size).ok()
        };
        let svc = &f.config.credential_service;
        let outcome = match body {
            Some(body) => svc.parse_answer(&f.credential, status, &body),
            None => Err(FetchFailure::Garbage),
        };
        match &outcome {
            Ok(c) => {
                self.count(Counter::FetchOk);
                self.log(
                    LogLevel::Info,
                    format_args!(
                        "tollgate: credential {:?} fetched: id={} fp={} lifetime={}s",
                        f.credential.name,
                        c.id,
                        c.fingerprint,
                        c.lifetime_ms / 1000
                    ),
                );
            }
            Err(e) => {
                self.count(Counter::FetchFailed(*e));
                self.log(
                    LogLevel::Warn,
                    format_args!(
                        "tollgate: credential {:?} fetch failed: {} (status {})",
                        f.credential.name,
                        e.code(),
                        status.map_or("reset".to_string(), |s| s.to_string())
                    ),
                );
            }
        }
        let store = Shared(&self.host);
        let Ok(now) = self.host.now_ms() else {
            // No clock: the answer cannot be dated. Release the lease and
            // fail the waiters closed.
            let _ = cache::release(&store, &f.cache_key, f.lease);
            self.fail_waiters(Some(&f.cache_key));
            return;
        };
        match cache::complete(&store, &f.cache_key, f.lease, &outcome, now) {
            Ok(Completion::Stored(_)) => {}
            Ok(Completion::Superseded) => {
                self.count(Counter::FetchSuperseded);
                self.log(
                    LogLevel::Info,
                    format_args!(
                        "tollgate: credential {:?}: a late answer was discarded (its lease was taken over)",
                        f.credential.name
                    ),
                );
            }
            Err(e) => self.log(
                LogLevel::Error,
                format_args!("tollgate: shared data error while storing a credential: {e:?}"),
            ),
        }
        self.wake(Some(&f.cache_key), now);
    }

    /// Re-checks waiting streams (all, or those waiting on `key`).
    fn wake(&self, key: Option<&str>, now: u64) {
        for ctx in self.waiters(key) {
            self.advance(ctx, self.root, Via::Wake, now);
        }
    }

    fn waiters(&self, key: Option<&str>) -> Vec<u32> {
        let streams = self.streams.borrow();
        self.waiting
            .borrow()
            .iter()
            .copied()
            .filter(|ctx| {
                key.is_none_or(|k| {
                    streams
                        .get(ctx)
                        .and_then(|s| s.flow.waiting_on())
                        .is_some_and(|(w, _)| w == k)
                })
            })
            .collect()
    }

    /// Answers waiting streams with `internal_error` (a host failure that
    /// leaves them no way to get a credential).
    fn fail_waiters(&self, key: Option<&str>) {
        for ctx in self.waiters(key) {
            self.unmark_waiting(ctx);
            if let Some(reason) = self.with_flow(ctx, |f| f.on_host_failure()) {
                self.reply(ctx, self.root, Via::Wake, reason);
            }
        }
    }

    /// The tick: wake waiters whose credential is ready (or overdue), then,
    /// once a second, refresh credentials that are due.
    pub fn on_tick(&self) {
        let Ok(now) = self.host.now_ms() else {
            self.log(
                LogLevel::Error,
                format_args!("tollgate: the clock is unreadable; failing waiting requests"),
            );
            self.fail_waiters(None);
            return;
        };
        if !self.waiting.borrow().is_empty() {
            self.wake(None, now);
        }
        self.expire_bodies(now);
        self.global_pass(now);
        self.refresh_pass(now);
        let wanted = if self.waiting.borrow().is_empty() && self.global_retries.borrow().is_empty()
        {
            TICK_IDLE_MS
        } else {
            TICK_FAST_MS
        };
        if wanted != self.tick_ms.get() {
            self.set_tick(wanted);
        }
    }

    /// Answers requests whose held body stalled (or never comes: held mode
    /// without Envoy's `allow_on_headers_stop_iteration`) with
    /// `body_timeout`, so that no request hangs.
    fn expire_bodies(&self, now: u64) {
        let stalled: Vec<u32> = self
            .streams
            .borrow()
            .iter()
            .filter(|(_, s)| s.flow.body_deadline_ms().is_some_and(|d| now >= d))
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stalled {
            self.unmark_waiting(ctx);
            if let Some(reason) = self.with_flow(ctx, |f| f.on_body_timeout()) {
                self.log(
                    LogLevel::Warn,
                    format_args!(
                        "tollgate: a request body stalled for {} s ({}); if every request with a checked body ends so, set allow_on_headers_stop_iteration: true in the Wasm plugin config or body_mode: streamed",
                        crate::flow::BODY_IDLE_MS / 1000,
                        reason.code()
                    ),
                );
                self.reply(ctx, self.root, Via::Wake, reason);
            }
        }
    }

    fn refresh_pass(&self, now: u64) {
        if now.saturating_sub(self.last_refresh_check_ms.get()) < REFRESH_CHECK_MS {
            return;
        }
        self.last_refresh_check_ms.set(now);
        // A call whose answer can no longer come (cancelled with a stream it
        // had to be dispatched from, when the root could not be made
        // effective) must not block refreshes of its credential forever.
        self.fetches
            .borrow_mut()
            .retain(|(_, f)| f.deadline_ms > now);
        let Some(config) = self.config() else { return };
        let svc = &config.credential_service;
        let forget_after = svc.ttl_ms.max(600_000);
        self.interest
            .borrow_mut()
            .retain(|(_, i)| now.saturating_sub(i.last_used_ms) < forget_after);
        let store = Shared(&self.host);
        let due: Vec<(String, CredentialKey)> = {
            let fetches = self.fetches.borrow();
            self.interest
                .borrow()
                .iter()
                .filter(|(key, _)| !fetches.iter().any(|(_, f)| f.cache_key == *key))
                .filter(|(key, _)| match cache::read_entry(&store, key) {
                    Ok(Some(e)) => {
                        cache::refresh_wanted(&e, now, svc.refresh_ahead_ms, REFRESH_RETRY_MS)
                    }
                    _ => false,
                })
                .map(|(k, i)| (k.clone(), i.credential.clone()))
                .collect()
        };
        for (key, credential) in due {
            let lease = self.next_lease();
            if matches!(
                cache::try_acquire(&store, &key, lease, now, svc.lease_ms()),
                Ok(true)
            ) {
                self.dispatch_fetch(self.root, &config, &key, &credential, lease, now);
            }
        }
    }

    /// A request-body callback. Under Envoy's `allow_on_headers_stop_iteration`
    /// body callbacks run while the headers are still held, and a Continue
    /// from one releases the headers and the buffer upstream: so the body is
    /// held (Pause, Envoy buffers it) for as long as the request is
    /// undecided, and resumed with the headers once its credential is
    /// written. A refused request's body never goes on.
    ///
    /// A body that must be checked is held to its end (or to the trailers),
    /// checked, rewritten if need be, and then the request goes on with its
    /// credential (held mode) or the body follows the headers (streamed).
    pub fn on_request_body(&self, ctx: u32, size: usize, end: bool) -> Action {
        let Ok(now) = self.host.now_ms() else {
            return self.fail_late(ctx);
        };
        let step = self.with_flow(ctx, |f| f.on_body_data(size, end, now));
        match step {
            None | Some(BodyStep::Hold) => Action::Pause,
            Some(BodyStep::Pass) => Action::Continue,
            Some(BodyStep::Reply(reason)) => self.reply(ctx, ctx, Via::Own, reason),
            Some(BodyStep::Inspect) => self.inspect_body(ctx, size, now),
        }
    }

    /// Reads the whole held body (`size` bytes), checks it, writes any
    /// rewrite, and lets the request go on if it may.
    fn inspect_body(&self, ctx: u32, size: usize, now: u64) -> Action {
        let Ok(body) = self.host.body(BodyBuffer::Request, size) else {
            return self.fail_late(ctx);
        };
        let Some(verdict) = self.with_flow(ctx, |f| f.on_body(&body)) else {
            return Action::Pause;
        };
        let rewrite = match verdict {
            Ok(rewrite) => rewrite,
            Err(reason) => return self.reply(ctx, ctx, Via::Own, reason),
        };
        // The prompt guard judges the body as sent; token and cost budgets
        // hold the checked body's size plus its output cap; a prompt that
        // passed everything joins the workload's baseline.
        let len = rewrite.as_ref().map_or(body.len(), Vec::len) as u64;
        let checked = {
            let mut streams = self.streams.borrow_mut();
            match streams.get_mut(&ctx) {
                Some(s) => {
                    let config = s.config.clone();
                    let size = body.len() as u64;
                    self.guard_prompt(&config, &mut s.flow, size)
                        .and_then(|learn| {
                            self.reserve_budgets(&config, &mut s.flow, Phase::Body { len }, now)?;
                            if learn {
                                self.learn_prompt(&config, &s.flow, size);
                            }
                            Ok(())
                        })
                }
                None => Ok(()),
            }
        };
        if let Err(reason) = checked {
            return self.reply(ctx, ctx, Via::Own, reason);
        }
        let forwarded = self.with_flow(ctx, |f| f.is_forwarded()).unwrap_or(false);
        if let Some(new) = rewrite {
            if self
                .host
                .replace_body(BodyBuffer::Request, body.len(), &new)
                .is_err()
            {
                return self.fail_late(ctx);
            }
            // Held headers still carry the client's Content-Length (in
            // streamed mode it was removed before they left).
            let sized = self
                .with_flow(ctx, |f| f.rewrite_sets_length())
                .unwrap_or(false);
            if sized
                && self
                    .host
                    .replace_header(
                        MapType::RequestHeaders,
                        "content-length",
                        new.len().to_string().as_bytes(),
                    )
                    .is_err()
            {
                return self.fail_late(ctx);
            }
        }
        // Global budgets: paused until the rate-limit service answers.
        if let Some(action) = self.start_global(ctx, now) {
            return action;
        }
        if forwarded {
            // Streamed mode: the headers left before the body; the body's
            // verdict completes the decision.
            self.count_decision(ctx);
            return Action::Continue;
        }
        self.advance(ctx, ctx, Via::Own, now)
    }

    /// The request-trailers callback: trailers are stripped like headers.
    pub fn on_request_trailers(&self, ctx: u32) -> Action {
        let config = {
            let streams = self.streams.borrow();
            match streams.get(&ctx) {
                Some(s) => s.config.clone(),
                None => match self.config() {
                    Some(c) => c,
                    None => return Action::Continue,
                },
            }
        };
        let scan = match self.host.header_map(MapType::RequestTrailers) {
            Ok(trailers) => config.strip.scan(trailers.iter()),
            Err(_) => return self.fail_late(ctx),
        };
        for name in config.strip.present(&scan) {
            if self
                .host
                .remove_header(MapType::RequestTrailers, name)
                .is_err()
            {
                return self.fail_late(ctx);
            }
        }
        if scan.client_key_seen {
            self.count(Counter::ClientKeySeen);
            self.with_flow(ctx, |f| f.note_client_key());
        }
        // With trailers, no body callback saw the end: the body ends here.
        let limit = self.with_flow(ctx, |f| f.body_limit()).flatten();
        if let Some(limit) = limit {
            let Ok(now) = self.host.now_ms() else {
                return self.fail_late(ctx);
            };
            let Ok(body) = self.host.body(BodyBuffer::Request, limit.saturating_add(1)) else {
                return self.fail_late(ctx);
            };
            return match self.with_flow(ctx, |f| f.on_body_data(body.len(), true, now)) {
                Some(BodyStep::Inspect) => self.inspect_body(ctx, body.len(), now),
                Some(BodyStep::Reply(reason)) => self.reply(ctx, ctx, Via::Own, reason),
                Some(BodyStep::Pass) => Action::Continue,
                Some(BodyStep::Hold) | None => Action::Pause,
            };
        }
        // As for the body: trailers held with undecided headers stay held.
        match self.streams.borrow().get(&ctx) {
            Some(s) if !s.flow.is_forwarded() => Action::Pause,
            _ => Action::Continue,
        }
    }

    /// A host failure after the headers went upstream: the local reply resets
    /// the upstream stream; nothing unstripped goes on.
    fn fail_late(&self, ctx: u32) -> Action {
        let reason = self
            .with_flow(ctx, |f| f.on_host_failure())
            .unwrap_or(DenyReason::InternalError);
        self.reply(ctx, ctx, Via::Own, reason)
    }

    /// The response headers: the provider's status; the injected key
    /// removed from any header value that echoes it; reading starts.
    pub fn on_response_headers(&self, ctx: u32, end_of_stream: bool) -> Action {
        let Ok(headers) = self.host.header_map(MapType::ResponseHeaders) else {
            return Action::Continue;
        };
        let status = headers
            .first(b":status")
            .and_then(|s| core::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok());
        let sse = headers.first(b"content-type").is_some_and(|v| {
            v.len() >= 17
                && v.get(..17)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"text/event-stream"))
        });
        let now = self.host.now_ms().unwrap_or(0);
        let mut streams = self.streams.borrow_mut();
        let Some(s) = streams.get_mut(&ctx) else {
            return Action::Continue;
        };
        if !s.flow.on_response_headers(status, sse, now) {
            return Action::Continue;
        }
        let encodings = headers.all(b"content-encoding");
        if encodings
            .iter()
            .any(|e| s.flow.refuses_response_encoding(e))
        {
            drop(streams);
            self.count(Counter::ResponseEncodedRefused);
            self.log(
                LogLevel::Warn,
                format_args!(
                    "tollgate: response refused (response_encoded): the upstream compressed a response Tollgate asked for as identity; it cannot be checked for the key"
                ),
            );
            let _ = self.host.close_stream();
            return Action::Pause;
        }
        let mut edits = Vec::new();
        for (name, value) in headers.iter() {
            if let (Some(redacted), Ok(name)) =
                (s.flow.redact_header(value), core::str::from_utf8(name))
            {
                edits.push((name.to_string(), redacted));
            }
        }
        // A removed usage chunk or a DLP redaction changes the length.
        let new_length = (s.flow.response_plan().drop_usage_chunk && sse)
            || s.flow.response_plan().dlp.is_some();
        drop(streams);
        for (name, value) in &edits {
            self.count(Counter::KeyEchoRedacted);
            if self
                .host
                .replace_header(MapType::ResponseHeaders, name, value)
                .is_err()
            {
                // The key must not reach the client: reset rather than send it.
                let _ = self.host.close_stream();
                return Action::Pause;
            }
        }
        if end_of_stream {
            self.with_flow(ctx, |f| f.on_response_chunk(&[], true));
        }
        if new_length {
            let _ = self
                .host
                .remove_header(MapType::ResponseHeaders, "content-length");
        }
        Action::Continue
    }

    /// A response-body chunk: usage read, the usage-only chunk removed when
    /// Tollgate asked for it, the injected key redacted.
    pub fn on_response_body(&self, ctx: u32, size: usize, end: bool) -> Action {
        let reading = self
            .streams
            .borrow()
            .get(&ctx)
            .is_some_and(|s| s.flow.response_plan().exchange.is_some());
        if !reading {
            return Action::Continue;
        }
        let Ok(chunk) = self.host.body(BodyBuffer::Response, size) else {
            let _ = self.host.close_stream();
            return Action::Pause;
        };
        let Some(result) = self
            .with_flow(ctx, |f| f.on_response_chunk(&chunk, end))
            .flatten()
        else {
            return Action::Continue;
        };
        if result.redactions > 0 {
            self.count_n(Counter::KeyEchoRedacted, i64::from(result.redactions));
        }
        if result.dlp_redactions > 0 {
            self.count_n(
                Counter::DlpResponseRedacted,
                i64::from(result.dlp_redactions),
            );
        }
        if let Some(cut) = result.cut {
            self.count(Counter::ResponseCut(cut));
            self.log(
                LogLevel::Warn,
                format_args!(
                    "tollgate: response cut ({}): DLP could not scan it",
                    cut.code()
                ),
            );
            let _ = self.host.close_stream();
            return Action::Pause;
        }
        let Some(out) = result.out else {
            return Action::Continue;
        };
        if out != chunk
            && self
                .host
                .replace_body(BodyBuffer::Response, chunk.len(), &out)
                .is_err()
        {
            // Unredacted bytes must not go on.
            let _ = self.host.close_stream();
            return Action::Pause;
        }
        Action::Continue
    }

    /// The stream ended (completed or reset): stop waiting for it, and write
    /// its final audit record.
    pub fn on_log(&self, ctx: u32) {
        if self.unmark_waiting(ctx) {
            self.count(Counter::Abandoned);
        }
        let (end, sink, json) = {
            let mut streams = self.streams.borrow_mut();
            let Some(s) = streams.get_mut(&ctx) else {
                return;
            };
            let Some(end) = s.flow.on_stream_end(self.host.now_ms().ok()) else {
                return;
            };
            let config = s.config.clone();
            self.settle_budgets(&config, &mut s.flow, ctx);
            let sink = s.config.audit_log;
            let wanted =
                sink.to_proxy_log() || (sink.to_filter_state() && end.changed_since_verdict);
            (end, sink, wanted.then(|| s.flow.audit().to_json()))
        };
        let Some(json) = json else { return };
        if sink.to_filter_state() && end.changed_since_verdict {
            self.write_audit(&json);
        }
        if sink.to_proxy_log() {
            self.host.log(LogLevel::Info, &json);
        }
    }

    /// The stream's context is gone: drop everything held for it.
    pub fn on_delete(&self, ctx: u32) {
        if self.unmark_waiting(ctx) {
            self.count(Counter::Abandoned);
        }
        let removed = self.streams.borrow_mut().remove(&ctx);
        // A stream deleted without `on_log` still settles its budgets.
        if let Some(mut s) = removed {
            if s.flow.on_stream_end(self.host.now_ms().ok()).is_some() {
                self.settle_budgets(&s.config, &mut s.flow, ctx);
            }
        }
    }
}
