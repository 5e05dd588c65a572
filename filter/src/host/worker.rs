//! Per-worker state, and the performer of `flow` steps.
//!
//! Envoy runs one VM per worker thread; each has one [`Worker`], shared (via
//! `Rc`) by its root context and all its HTTP contexts.
//!
//! Waiting across workers: proxy-wasm has no cross-worker wake-up. A request
//! that must wait for a credential pauses in request headers and is listed
//! in `waiting`. It is woken (a) at once when a fetch completes on this
//! worker, or (b) by `on_tick`, which runs every [`TICK_MS`] and re-reads
//! shared data, so a fetch completed by another worker is seen within one
//! tick. Every waiter has a deadline; past it the request gets 503.
//!
//! Invariants:
//! - Every step that touches another stream first makes it the effective
//!   context and restores the caller's context afterwards.
//! - A stream is forwarded only after its credential header was written; if
//!   any host call in the way fails, it gets a local reply instead.
//! - Fetches are dispatched with the SDK's `dispatch_http_call` (which
//!   registers the token with the SDK's dispatcher) from the context that
//!   is current, never while another context is effective.

use core::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use hashbrown::HashMap;
use proxy_wasm::types::Action;

use super::abi;
use super::store::HostStore;
use crate::config::Config;
use crate::credential::cache::{self, Lookup};
use crate::credential::CredentialKey;
use crate::flow::{HeadFacts, RequestFlow, Step};
use crate::metrics::Counter;
use crate::reason::DenyReason;
use crate::reply::deny_reply;

/// The tick: how quickly a request waiting on another worker's fetch notices it.
pub const TICK_MS: u32 = 20;
/// How often the refresh-ahead pass runs.
const REFRESH_CHECK_MS: u64 = 1_000;
/// After a failed refresh, wait this long before trying again.
const REFRESH_RETRY_MS: u64 = 1_000;
/// Credential-service answers larger than this are garbage.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One HTTP stream's state, shared by its context and the waiting list.
pub struct Stream {
    pub flow: RequestFlow,
    pub config: Rc<Config>,
}

struct Waiter {
    stream: Rc<RefCell<Stream>>,
    cache_key: String,
    since_ms: u64,
    deadline_ms: u64,
}

struct InFlight {
    cache_key: String,
    credential: CredentialKey,
    config: Rc<Config>,
}

struct Interest {
    credential: CredentialKey,
    last_used_ms: u64,
}

/// How a step is being performed: inside the stream's own request-headers
/// callback (return an `Action`), or on wake-up from another callback
/// (resume explicitly).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    OwnHeaders,
    Wake,
}

pub struct Worker {
    config: RefCell<Option<Rc<Config>>>,
    /// Metric ids by `Counter::slot`.
    counters: RefCell<Vec<Option<u32>>>,
    /// This worker's lease-owner id (random per VM).
    owner: u64,
    waiting: RefCell<HashMap<u32, Waiter>>,
    fetches: RefCell<HashMap<u32, InFlight>>,
    interest: RefCell<HashMap<String, Interest>>,
    last_refresh_check_ms: Cell<u64>,
    scratch: RefCell<Vec<u32>>,
}

impl Worker {
    pub fn new() -> Self {
        Worker {
            config: RefCell::new(None),
            counters: RefCell::new(Vec::new()),
            owner: random_u64(),
            waiting: RefCell::new(HashMap::new()),
            fetches: RefCell::new(HashMap::new()),
            interest: RefCell::new(HashMap::new()),
            last_refresh_check_ms: Cell::new(0),
            scratch: RefCell::new(Vec::with_capacity(16)),
        }
    }

    pub fn config(&self) -> Option<Rc<Config>> {
        self.config.borrow().clone()
    }

    /// Installs a new configuration (streams in flight keep theirs).
    pub fn configure(&self, config: Config) {
        let mut counters = self.counters.borrow_mut();
        for c in Counter::all() {
            if counters.len() <= c.slot() {
                counters.resize(c.slot() + 1, None);
            }
            if let Some(slot) = counters.get_mut(c.slot()) {
                *slot = abi::define_counter(&c.name()).ok();
            }
        }
        if let Err(e) = cache::init(&HostStore) {
            log::warn!("tollgate: could not initialise the lease table: {e:?}");
        }
        *self.config.borrow_mut() = Some(Rc::new(config));
    }

    fn count(&self, c: Counter) {
        if let Some(Some(id)) = self.counters.borrow().get(c.slot()) {
            abi::increment(*id, 1);
        }
    }

    /// The request-headers phase of stream `ctx`.
    pub fn on_request_headers(&self, ctx: u32, slot: &mut Option<Rc<RefCell<Stream>>>) -> Action {
        let Some(config) = self.config() else {
            // Unconfigured VM (Envoy would not start it): fail closed.
            return self.reply_without_flow(DenyReason::InternalError);
        };
        let stream = Rc::new(RefCell::new(Stream {
            flow: RequestFlow::new(config.mode),
            config: config.clone(),
        }));
        *slot = Some(stream.clone());

        let headers = match abi::get_header_map(abi::MAP_REQUEST_HEADERS) {
            Ok(h) => h,
            Err(_) => return self.fail_closed(ctx, &stream, Via::OwnHeaders),
        };
        // 1. Strip every client credential, before anything else.
        let scan = config.strip.scan(headers.iter());
        for name in config.strip.present(&scan) {
            if abi::remove_header(abi::MAP_REQUEST_HEADERS, name).is_err() {
                return self.fail_closed(ctx, &stream, Via::OwnHeaders);
            }
        }
        if scan.client_key_seen {
            self.count(Counter::ClientKeySeen);
        }
        // 2. Identity from the validated peer certificate only.
        let mtls = matches!(abi::get_property(&["connection", "mtls"]), Ok(Some(v)) if v.first() == Some(&1));
        let san = if mtls {
            abi::get_property(&["connection", "uri_san_peer_certificate"])
                .ok()
                .flatten()
        } else {
            None
        };
        let facts = HeadFacts {
            mtls,
            peer_uri_san: san.as_deref(),
            method: headers.first(b":method"),
            authority: headers.first(b":authority"),
            path: headers.first(b":path"),
            request_id: headers.first(b"x-request-id"),
            client_key_seen: scan.client_key_seen,
        };
        // 3. Decide.
        let admitted = {
            let mut s = stream.borrow_mut();
            let mut scratch = self.scratch.borrow_mut();
            s.flow
                .on_request_headers(&config, &facts, &mut scratch)
                .map(|a| (a.cache_key.clone(), a.rewrite_path.clone()))
        };
        let (cache_key, rewrite) = match admitted {
            Ok(a) => a,
            Err(reason) => return self.perform(ctx, &stream, Step::Reply(reason), Via::OwnHeaders),
        };
        if let Some(shadow) = stream.borrow().flow.shadow_denial() {
            self.count(Counter::ShadowDeny(shadow));
            log::warn!(
                "tollgate: dry_run: would deny with {} (forwarding)",
                shadow.code()
            );
        }
        if let Some(path) = rewrite {
            if abi::replace_header(abi::MAP_REQUEST_HEADERS, ":path", path.as_bytes()).is_err() {
                return self.fail_closed(ctx, &stream, Via::OwnHeaders);
            }
        }
        // 4. The credential.
        let now = abi::now_ms().unwrap_or(0);
        let credential = || {
            stream
                .borrow()
                .flow
                .admission()
                .map(|a| a.credential.clone())
        };
        let known = match self.interest.borrow_mut().get_mut(&cache_key) {
            Some(i) => {
                i.last_used_ms = now;
                true
            }
            None => false,
        };
        if !known {
            if let Some(c) = credential() {
                let interest = Interest {
                    credential: c,
                    last_used_ms: now,
                };
                self.interest
                    .borrow_mut()
                    .insert(cache_key.clone(), interest);
            }
        }
        let lookup = self.resolve(&config, &cache_key, now, now);
        match &lookup {
            Ok(Lookup::Ready { refresh_due, .. }) => {
                self.count(Counter::CacheHit);
                if *refresh_due {
                    self.count(Counter::CacheRefreshDue);
                }
            }
            _ => self.count(Counter::CacheMiss),
        }
        let step = match lookup {
            Ok(l) => stream.borrow_mut().flow.on_lookup(l),
            Err(()) => stream.borrow_mut().flow.on_host_failure(),
        };
        let svc_wait = config.credential_service.wait_limit_ms();
        match step {
            Step::Wait => {
                self.add_waiter(ctx, &stream, cache_key, now, now + svc_wait);
                Action::Pause
            }
            Step::Fetch => {
                self.add_waiter(ctx, &stream, cache_key.clone(), now, now + svc_wait);
                match credential() {
                    Some(c) => self.dispatch_fetch(&config, &cache_key, &c),
                    None => {
                        let _ = cache::release(&HostStore, &cache_key, self.owner);
                    }
                }
                // A failed dispatch already recorded its failure; let the
                // waiter see it now rather than at the next tick.
                if !self.fetch_in_flight(&cache_key) {
                    return self
                        .wake_one(ctx, ctx, Via::OwnHeaders)
                        .unwrap_or(Action::Pause);
                }
                Action::Pause
            }
            other => self.perform(ctx, &stream, other, Via::OwnHeaders),
        }
    }

    fn resolve(&self, config: &Config, key: &str, now: u64, since: u64) -> Result<Lookup, ()> {
        let svc = &config.credential_service;
        cache::resolve(
            &HostStore,
            key,
            self.owner,
            now,
            since,
            svc.refresh_ahead_ms,
            svc.lease_ms(),
        )
        .map_err(|e| {
            log::error!("tollgate: shared data error during credential lookup: {e:?}");
        })
    }

    fn add_waiter(
        &self,
        ctx: u32,
        stream: &Rc<RefCell<Stream>>,
        cache_key: String,
        since_ms: u64,
        deadline_ms: u64,
    ) {
        self.waiting.borrow_mut().insert(
            ctx,
            Waiter {
                stream: stream.clone(),
                cache_key,
                since_ms,
                deadline_ms,
            },
        );
    }

    fn fetch_in_flight(&self, key: &str) -> bool {
        self.fetches.borrow().values().any(|f| f.cache_key == key)
    }

    /// Dispatches the fetch for `key` from the current context. The caller
    /// holds the lease. On failure the outcome is recorded (releasing it).
    fn dispatch_fetch(&self, config: &Rc<Config>, key: &str, credential: &CredentialKey) {
        let svc = &config.credential_service;
        let call = svc.fetch_call(credential);
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let timeout = Duration::from_millis(u64::from(svc.timeout_ms));
        match proxy_wasm::hostcalls::dispatch_http_call(
            &svc.cluster,
            headers,
            None,
            vec![],
            timeout,
        ) {
            Ok(token) => {
                self.fetches.borrow_mut().insert(
                    token,
                    InFlight {
                        cache_key: key.to_string(),
                        credential: credential.clone(),
                        config: config.clone(),
                    },
                );
            }
            Err(status) => {
                log::error!(
                    "tollgate: cannot dispatch credential fetch for {:?} to cluster {:?}: {:?}",
                    credential.name,
                    svc.cluster,
                    status
                );
                self.count(Counter::FetchFailed(
                    crate::credential::protocol::FetchFailure::DispatchFailed,
                ));
                let now = abi::now_ms().unwrap_or(0);
                let _ = cache::complete(
                    &HostStore,
                    key,
                    self.owner,
                    &Err(crate::credential::protocol::FetchFailure::DispatchFailed),
                    now,
                );
            }
        }
    }

    /// A credential-service answer arrived (in context `current`).
    pub fn on_fetch_response(
        &self,
        current: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(f) = self.fetches.borrow_mut().remove(&token) else {
            log::warn!("tollgate: answer for an unknown call token {token}");
            return;
        };
        let status = if num_headers == 0 {
            None
        } else {
            abi::get_header(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
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
            abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size).ok()
        };
        let svc = &f.config.credential_service;
        let outcome = match body {
            Some(body) => svc.parse_answer(&f.credential, status, &body),
            None => Err(crate::credential::protocol::FetchFailure::Garbage),
        };
        match &outcome {
            Ok(c) => {
                self.count(Counter::FetchOk);
                log::info!(
                    "tollgate: credential {:?} fetched: id={} fp={} lifetime={}s",
                    f.credential.name,
                    c.id,
                    c.fingerprint,
                    c.lifetime_ms / 1000
                );
            }
            Err(e) => {
                self.count(Counter::FetchFailed(*e));
                log::warn!(
                    "tollgate: credential {:?} fetch failed: {} (status {})",
                    f.credential.name,
                    e.code(),
                    status.map_or("reset".to_string(), |s| s.to_string())
                );
            }
        }
        let now = abi::now_ms().unwrap_or(0);
        if let Err(e) = cache::complete(&HostStore, &f.cache_key, self.owner, &outcome, now) {
            log::error!("tollgate: shared data error while storing a credential: {e:?}");
        }
        self.wake(current, Some(&f.cache_key));
    }

    /// The tick: wake waiters whose credential is ready (or overdue), then,
    /// once a second, refresh credentials that are due.
    pub fn on_tick(&self, root: u32) {
        if !self.waiting.borrow().is_empty() {
            self.wake(root, None);
        }
        let now = abi::now_ms().unwrap_or(0);
        if now.saturating_sub(self.last_refresh_check_ms.get()) < REFRESH_CHECK_MS {
            return;
        }
        self.last_refresh_check_ms.set(now);
        let Some(config) = self.config() else { return };
        let svc = &config.credential_service;
        let forget_after = svc.ttl_ms.max(600_000);
        self.interest
            .borrow_mut()
            .retain(|_, i| now.saturating_sub(i.last_used_ms) < forget_after);
        let due: Vec<(String, CredentialKey)> = self
            .interest
            .borrow()
            .iter()
            .filter(|(key, _)| !self.fetch_in_flight(key))
            .filter(|(key, _)| match cache::read_entry(&HostStore, key) {
                Ok(Some(e)) => {
                    cache::refresh_wanted(&e, now, svc.refresh_ahead_ms, REFRESH_RETRY_MS)
                }
                _ => false,
            })
            .map(|(k, i)| (k.clone(), i.credential.clone()))
            .collect();
        for (key, credential) in due {
            if matches!(
                cache::try_acquire(&HostStore, &key, self.owner, now, svc.lease_ms()),
                Ok(true)
            ) {
                self.dispatch_fetch(&config, &key, &credential);
            }
        }
    }

    /// Re-checks waiting streams (all, or those waiting on `key`).
    fn wake(&self, current: u32, key: Option<&str>) {
        let ids: Vec<u32> = self
            .waiting
            .borrow()
            .iter()
            .filter(|(_, w)| key.is_none_or(|k| w.cache_key == k))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.wake_one(id, current, Via::Wake);
        }
    }

    /// Re-checks one waiting stream. Returns the action when `via` is
    /// `OwnHeaders`, `None` when it keeps waiting.
    fn wake_one(&self, ctx: u32, current: u32, via: Via) -> Option<Action> {
        let (stream, key, since, deadline) = {
            let waiting = self.waiting.borrow();
            let w = waiting.get(&ctx)?;
            (
                w.stream.clone(),
                w.cache_key.clone(),
                w.since_ms,
                w.deadline_ms,
            )
        };
        let config = stream.borrow().config.clone();
        let now = abi::now_ms().unwrap_or(0);
        let step = if now >= deadline {
            stream.borrow_mut().flow.on_wait_expired()
        } else {
            match self.resolve(&config, &key, now, since) {
                Ok(l) => stream.borrow_mut().flow.on_lookup(l),
                Err(()) => stream.borrow_mut().flow.on_host_failure(),
            }
        };
        match step {
            Step::Wait => None,
            Step::Fetch => {
                let credential = stream
                    .borrow()
                    .flow
                    .admission()
                    .map(|a| a.credential.clone());
                match credential {
                    Some(c) => self.dispatch_fetch(&config, &key, &c),
                    None => {
                        let _ = cache::release(&HostStore, &key, self.owner);
                    }
                }
                None
            }
            step => {
                self.waiting.borrow_mut().remove(&ctx);
                if via == Via::OwnHeaders {
                    return Some(self.perform(ctx, &stream, step, via));
                }
                if abi::set_effective_context(ctx).is_err() {
                    // The stream is gone; nothing to answer.
                    return None;
                }
                self.perform(ctx, &stream, step, Via::Wake);
                let _ = abi::set_effective_context(current);
                None
            }
        }
    }

    /// Performs a final step (forward or reply) on the effective stream.
    fn perform(&self, ctx: u32, stream: &Rc<RefCell<Stream>>, step: Step, via: Via) -> Action {
        match step {
            Step::Forward { header, value } => {
                if abi::replace_header(abi::MAP_REQUEST_HEADERS, &header, value.as_bytes()).is_err()
                {
                    return self.fail_closed(ctx, stream, via);
                }
                if via == Via::Wake && abi::resume_request().is_err() {
                    log::warn!("tollgate: could not resume a stream after writing its credential");
                }
                let shadow = stream.borrow().flow.shadow_denial().is_some();
                if !shadow {
                    self.count(Counter::Allow);
                }
                self.emit_audit(stream);
                Action::Continue
            }
            Step::Reply(reason) => {
                self.count(Counter::Deny(reason));
                send_reply(reason);
                self.emit_audit(stream);
                Action::Pause
            }
            Step::Wait | Step::Fetch => Action::Pause,
        }
    }

    fn fail_closed(&self, ctx: u32, stream: &Rc<RefCell<Stream>>, via: Via) -> Action {
        let step = stream.borrow_mut().flow.on_host_failure();
        self.perform(ctx, stream, step, via)
    }

    fn reply_without_flow(&self, reason: DenyReason) -> Action {
        self.count(Counter::Deny(reason));
        send_reply(reason);
        Action::Pause
    }

    fn emit_audit(&self, stream: &Rc<RefCell<Stream>>) {
        if let Some(line) = stream.borrow_mut().flow.finish_audit() {
            if log::log_enabled!(log::Level::Info) {
                abi::log(2, &line);
            }
        }
    }

    /// The stream ended (completed or reset): stop waiting for it, and audit
    /// it if it never reached a verdict.
    pub fn on_stream_end(&self, ctx: u32, stream: &Rc<RefCell<Stream>>) {
        let was_waiting = self.waiting.borrow_mut().remove(&ctx).is_some();
        if was_waiting {
            self.count(Counter::Abandoned);
        }
        self.emit_audit(stream);
    }
}

impl Default for Worker {
    fn default() -> Self {
        Self::new()
    }
}

fn send_reply(reason: DenyReason) {
    let r = deny_reply(reason);
    if let Err(s) = abi::send_local_response(r.status, &r.details, r.body.as_bytes(), &r.headers) {
        log::error!(
            "tollgate: could not send the local reply ({}): {s:?}",
            reason.code()
        );
    }
}

/// 64 random bits from the host (WASI random_get, via std's hasher keys).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x746f_6c6c_6761_7465);
    h.finish()
}
