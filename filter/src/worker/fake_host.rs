//! [`FakeHost`]: an in-memory [`Host`] with Envoy's semantics where the
//! worker depends on them, for unit tests and benches.
//!
//! What it models: a virtual clock; process-wide shared data with CAS; one
//! request-header map, trailer map, property set and filter-state map per
//! context; the effective context (set by the test before each callback,
//! and by the worker through `set_effective_context`); dispatched calls
//! with the context that owns them; local replies and resumes per context;
//! counters by name; log lines; and fault injection by method name.
//!
//! Invariants: never panics; a faulted method does nothing and returns its
//! error; calls on a context that does not exist return BadArgument.

use core::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use super::host::{BodyBuffer, Host, HostError, LogLevel, MapType};
use crate::pairs::{encode_pairs, HeaderMap};

/// One dispatched call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub token: u32,
    /// The effective context when it was dispatched (the call's owner).
    pub owner: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u32,
}

/// One dispatched gRPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcDispatched {
    pub token: u32,
    /// The effective context when it was dispatched (the call's owner).
    pub owner: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub message: Vec<u8>,
    pub timeout_ms: u32,
}

/// A local reply sent on a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct Ctx {
    headers: Vec<(String, Vec<u8>)>,
    trailers: Vec<(String, Vec<u8>)>,
    response_headers: Vec<(String, Vec<u8>)>,
    properties: BTreeMap<String, Vec<u8>>,
    filter_state: BTreeMap<String, Vec<u8>>,
    /// `set_property` calls that succeeded.
    filter_state_writes: u32,
    replies: Vec<Reply>,
    /// Body buffers by `BodyBuffer as usize`.
    bodies: [Vec<u8>; 2],
    resumed: u32,
    closed: bool,
}

#[derive(Debug, Default)]
pub struct FakeHost {
    now_ms: Cell<u64>,
    tick_ms: Cell<u32>,
    random: Cell<u64>,
    shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    contexts: RefCell<BTreeMap<u32, Ctx>>,
    effective: Cell<u32>,
    calls: RefCell<Vec<Dispatched>>,
    grpc_calls: RefCell<Vec<GrpcDispatched>>,
    grpc_message: RefCell<Vec<u8>>,
    next_token: Cell<u32>,
    call_status: RefCell<Option<Vec<u8>>>,
    call_body: RefCell<Vec<u8>>,
    counters: RefCell<Vec<(String, i64)>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    faults: RefCell<BTreeMap<&'static str, HostError>>,
    fault_hits: RefCell<BTreeMap<&'static str, u32>>,
    shared_reads: Cell<u32>,
}

impl FakeHost {
    pub fn new() -> Self {
        let h = FakeHost::default();
        h.random.set(0x1000);
        h.now_ms.set(1_000_000);
        h
    }

    // ---- driving ----

    pub fn advance(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    pub fn now(&self) -> u64 {
        self.now_ms.get()
    }

    /// Creates context `ctx` with these request headers and an mTLS peer.
    pub fn add_stream(&self, ctx: u32, headers: &[(&str, &[u8])], peer: Option<&[u8]>) {
        let mut c = Ctx {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            ..Ctx::default()
        };
        if let Some(san) = peer {
            c.properties.insert("connection\0mtls".into(), vec![1]);
            c.properties
                .insert("connection\0uri_san_peer_certificate".into(), san.to_vec());
        }
        self.contexts.borrow_mut().insert(ctx, c);
    }

    /// Creates a context with nothing in it (a root context).
    pub fn add_context(&self, ctx: u32) {
        self.contexts.borrow_mut().insert(ctx, Ctx::default());
    }

    /// Sets what stream `ctx`'s body buffer holds now.
    pub fn set_body(&self, ctx: u32, which: BodyBuffer, bytes: &[u8]) {
        if let Some(c) = self.contexts.borrow_mut().get_mut(&ctx) {
            c.bodies[which as usize] = bytes.to_vec();
        }
    }

    /// What stream `ctx`'s body buffer holds now.
    pub fn body_of(&self, ctx: u32, which: BodyBuffer) -> Vec<u8> {
        self.contexts
            .borrow()
            .get(&ctx)
            .map(|c| c.bodies[which as usize].clone())
            .unwrap_or_default()
    }

    pub fn set_trailers(&self, ctx: u32, trailers: &[(&str, &[u8])]) {
        if let Some(c) = self.contexts.borrow_mut().get_mut(&ctx) {
            c.trailers = trailers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect();
        }
    }

    /// Makes `ctx` effective, as the host does before a callback.
    pub fn enter(&self, ctx: u32) {
        self.effective.set(ctx);
    }

    /// The context is gone (stream reset): later calls on it fail.
    pub fn remove_context(&self, ctx: u32) {
        self.contexts.borrow_mut().remove(&ctx);
    }

    /// The response the next `on_http_call_response` reads (`None`: reset).
    pub fn set_call_response(&self, status: Option<u16>, body: &[u8]) {
        *self.call_status.borrow_mut() = status.map(|s| s.to_string().into_bytes());
        *self.call_body.borrow_mut() = body.to_vec();
    }

    /// Makes `method` (a `Host` method name) fail with `error` until cleared.
    pub fn fault(&self, method: &'static str, error: HostError) {
        self.faults.borrow_mut().insert(method, error);
    }

    pub fn clear_faults(&self) {
        self.faults.borrow_mut().clear();
    }

    /// Shared-data reads so far.
    pub fn shared_reads(&self) -> u32 {
        self.shared_reads.get()
    }

    /// How often a faulted `method` returned its error.
    pub fn fault_hits(&self, method: &str) -> u32 {
        self.fault_hits.borrow().get(method).copied().unwrap_or(0)
    }

    // ---- observing ----

    /// gRPC calls dispatched so far.
    pub fn grpc_calls(&self) -> Vec<GrpcDispatched> {
        self.grpc_calls.borrow().clone()
    }

    /// Sets the message the next `grpc_message` reads.
    pub fn set_grpc_message(&self, message: &[u8]) {
        *self.grpc_message.borrow_mut() = message.to_vec();
    }

    pub fn calls(&self) -> Vec<Dispatched> {
        self.calls.borrow().clone()
    }

    pub fn tick_ms(&self) -> u32 {
        self.tick_ms.get()
    }

    pub fn header(&self, ctx: u32, name: &str) -> Vec<Vec<u8>> {
        self.contexts
            .borrow()
            .get(&ctx)
            .map(|c| {
                c.headers
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn trailer_names(&self, ctx: u32) -> Vec<String> {
        self.contexts
            .borrow()
            .get(&ctx)
            .map(|c| c.trailers.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }

    pub fn replies(&self, ctx: u32) -> Vec<Reply> {
        self.contexts
            .borrow()
            .get(&ctx)
            .map(|c| c.replies.clone())
            .unwrap_or_default()
    }

    pub fn closed(&self, ctx: u32) -> bool {
        self.contexts.borrow().get(&ctx).is_some_and(|c| c.closed)
    }

    pub fn resumed(&self, ctx: u32) -> u32 {
        self.contexts.borrow().get(&ctx).map_or(0, |c| c.resumed)
    }

    pub fn filter_state(&self, ctx: u32, path: &str) -> Option<Vec<u8>> {
        self.contexts
            .borrow()
            .get(&ctx)
            .and_then(|c| c.filter_state.get(path).cloned())
    }

    /// How many times stream `ctx` wrote filter state.
    pub fn filter_state_writes(&self, ctx: u32) -> u32 {
        self.contexts
            .borrow()
            .get(&ctx)
            .map_or(0, |c| c.filter_state_writes)
    }

    pub fn counter(&self, name: &str) -> i64 {
        self.counters
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    pub fn shared_keys(&self) -> Vec<String> {
        self.shared.borrow().keys().cloned().collect()
    }

    fn check(&self, method: &'static str) -> Result<(), HostError> {
        match self.faults.borrow().get(method) {
            Some(e) => {
                *self.fault_hits.borrow_mut().entry(method).or_insert(0) += 1;
                Err(*e)
            }
            None => Ok(()),
        }
    }

    fn with_ctx<T>(&self, f: impl FnOnce(&mut Ctx) -> T) -> Result<T, HostError> {
        self.contexts
            .borrow_mut()
            .get_mut(&self.effective.get())
            .map(f)
            .ok_or(HostError::BAD_ARGUMENT)
    }
}

fn map_of(c: &mut Ctx, map: MapType) -> Option<&mut Vec<(String, Vec<u8>)>> {
    match map {
        MapType::RequestHeaders => Some(&mut c.headers),
        MapType::RequestTrailers => Some(&mut c.trailers),
        MapType::ResponseHeaders => Some(&mut c.response_headers),
        MapType::HttpCallResponseHeaders => None,
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> Result<u64, HostError> {
        self.check("now_ms")?;
        Ok(self.now_ms.get())
    }

    fn set_tick_ms(&self, ms: u32) -> Result<(), HostError> {
        self.check("set_tick_ms")?;
        self.tick_ms.set(ms);
        Ok(())
    }

    fn random_u64(&self) -> u64 {
        let r = self.random.get().wrapping_add(0x1_0000_0000);
        self.random.set(r);
        r
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.check("shared_get")?;
        self.shared_reads.set(self.shared_reads.get() + 1);
        Ok(self.shared.borrow().get(key).cloned())
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        self.check("shared_set")?;
        let mut map = self.shared.borrow_mut();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && *current != cas {
                return Err(HostError::CAS_MISMATCH);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn header_map(&self, map: MapType) -> Result<HeaderMap, HostError> {
        self.check("header_map")?;
        let pairs = self.with_ctx(|c| map_of(c, map).cloned())?;
        let pairs = pairs.ok_or(HostError::BAD_ARGUMENT)?;
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_slice()))
            .collect();
        HeaderMap::parse(encode_pairs(&refs)).ok_or(HostError(3))
    }

    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.check("header")?;
        if map == MapType::HttpCallResponseHeaders {
            if name == ":status" {
                return Ok(self.call_status.borrow().clone());
            }
            return Ok(None);
        }
        self.with_ctx(|c| {
            map_of(c, map).and_then(|m| m.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        })
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
        self.check("remove_header")?;
        self.with_ctx(|c| {
            if let Some(m) = map_of(c, map) {
                m.retain(|(k, _)| k != name);
            }
        })
    }

    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.check("replace_header")?;
        self.with_ctx(|c| {
            if let Some(m) = map_of(c, map) {
                m.retain(|(k, _)| k != name);
                m.push((name.to_string(), value.to_vec()));
            }
        })
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.check("property")?;
        let key = path.join("\0");
        self.with_ctx(|c| c.properties.get(&key).cloned())
    }

    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        self.check("set_property")?;
        self.with_ctx(|c| {
            c.filter_state.insert(path.to_string(), value.to_vec());
            c.filter_state_writes += 1;
        })
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        self.check("dispatch")?;
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.calls.borrow_mut().push(Dispatched {
            token,
            owner: self.effective.get(),
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_ms,
        });
        Ok(token)
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        self.check("dispatch_grpc")?;
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.grpc_calls.borrow_mut().push(GrpcDispatched {
            token,
            owner: self.effective.get(),
            cluster: cluster.to_string(),
            service: service.to_string(),
            method: method.to_string(),
            message: message.to_vec(),
            timeout_ms,
        });
        Ok(token)
    }

    fn grpc_message(&self, max: usize) -> Result<Vec<u8>, HostError> {
        self.check("grpc_message")?;
        let m = self.grpc_message.borrow();
        Ok(m.get(..max.min(m.len())).unwrap_or_default().to_vec())
    }

    fn body(&self, which: BodyBuffer, max: usize) -> Result<Vec<u8>, HostError> {
        self.check("body")?;
        self.with_ctx(|c| {
            let b = &c.bodies[which as usize];
            b.get(..max.min(b.len())).unwrap_or_default().to_vec()
        })
    }

    fn replace_body(&self, which: BodyBuffer, len: usize, new: &[u8]) -> Result<(), HostError> {
        self.check("replace_body")?;
        self.with_ctx(|c| {
            if c.bodies[which as usize].len() == len {
                c.bodies[which as usize] = new.to_vec();
                Ok(())
            } else {
                Err(HostError::BAD_ARGUMENT)
            }
        })?
    }

    fn call_response_body(&self, max: usize) -> Result<Vec<u8>, HostError> {
        self.check("call_response_body")?;
        let body = self.call_body.borrow();
        Ok(body.get(..max.min(body.len())).unwrap_or_default().to_vec())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.check("resume_request")?;
        self.with_ctx(|c| c.resumed += 1)
    }

    fn send_reply(
        &self,
        status: u32,
        details: &str,
        body: &[u8],
        _headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        self.check("send_reply")?;
        self.with_ctx(|c| {
            c.replies.push(Reply {
                status,
                details: details.to_string(),
                body: body.to_vec(),
            })
        })
    }

    fn close_stream(&self) -> Result<(), HostError> {
        self.check("close_stream")?;
        self.with_ctx(|c| c.closed = true)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        self.check("set_effective_context")?;
        if !self.contexts.borrow().contains_key(&context_id) {
            return Err(HostError::BAD_ARGUMENT);
        }
        self.effective.set(context_id);
        Ok(())
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        self.check("define_counter")?;
        let mut counters = self.counters.borrow_mut();
        if let Some(i) = counters.iter().position(|(n, _)| n == name) {
            return Ok(i as u32);
        }
        counters.push((name.to_string(), 0));
        Ok((counters.len() - 1) as u32)
    }

    /// Kept with the counters (a gauge is a counter that may go down).
    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        self.define_counter(name)
    }

    fn increment(&self, id: u32, by: i64) {
        if let Some((_, v)) = self.counters.borrow_mut().get_mut(id as usize) {
            *v += by;
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
