//! The host, as the worker sees it: every effect a request or the tick can
//! have on Envoy, behind one trait.
//!
//! `host::ProxyHost` implements it over the raw proxy-wasm ABI;
//! `worker::fake_host::FakeHost` implements it in memory for unit tests, so
//! every decision the worker makes (single flight, deadlines, wake-ups,
//! refresh-ahead, fail-closed branches) runs without wasmtime or Envoy.
//!
//! Invariants for implementors:
//! - Never panic; every host status other than Ok is an `Err(HostError)`.
//! - Calls act on the *effective* context (the one whose callback is
//!   running, or the one set by [`Host::set_effective_context`]).
//! - Header names are lowercase `str`; values are bytes.

use crate::credential::cache::{SharedStore, StoreError};
use crate::pairs::HeaderMap;

/// A proxy-wasm status other than Ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    pub const BAD_ARGUMENT: HostError = HostError(2);
    pub const CAS_MISMATCH: HostError = HostError(8);
    pub const INTERNAL_FAILURE: HostError = HostError(10);
}

/// Header maps the worker touches (proxy-wasm `MapType` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
}

/// Body buffers the worker reads and rewrites (proxy-wasm `BufferType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyBuffer {
    Request = 0,
    Response = 1,
}

/// `proxy_log` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// What the worker needs from the host.
pub trait Host {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Result<u64, HostError>;
    /// Makes future ticks come every `ms` (for this worker's root context).
    fn set_tick_ms(&self, ms: u32) -> Result<(), HostError>;
    /// 64 bits of host randomness (lease ids).
    fn random_u64(&self) -> u64;

    /// Process-wide shared data: the value and its CAS, `None` when absent.
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes shared data; `cas` 0 is unconditional; a stale `cas` is
    /// `HostError::CAS_MISMATCH`.
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError>;

    /// The whole header map, every duplicate included.
    fn header_map(&self, map: MapType) -> Result<HeaderMap, HostError>;
    /// The first value of `name`, `None` when absent.
    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Removes every value of `name` (absent is Ok).
    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError>;
    /// Replaces every value of `name` with one `value`.
    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError>;

    /// A property (path segments), `None` when the host has none.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// Stores `value` as the stream's filter state `wasm.<path>`.
    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError>;

    /// Dispatches an HTTP call from the effective context; the token.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError>;
    /// Dispatches a unary gRPC call from the effective context; the token.
    /// Its answer comes to that context: `on_grpc_receive` (the message,
    /// read with [`Host::grpc_message`]) or `on_grpc_close` (a status).
    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError>;
    /// Up to `max` bytes of the gRPC message being delivered.
    fn grpc_message(&self, max: usize) -> Result<Vec<u8>, HostError>;
    /// Up to `max` bytes of the stream's body buffer, from its start.
    fn body(&self, which: BodyBuffer, max: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the whole body buffer (`len` bytes now) with `new`.
    fn replace_body(&self, which: BodyBuffer, len: usize, new: &[u8]) -> Result<(), HostError>;
    /// Up to `max` bytes of the HTTP call response body being delivered.
    fn call_response_body(&self, max: usize) -> Result<Vec<u8>, HostError>;

    /// Lets the effective stream's request continue.
    fn resume_request(&self) -> Result<(), HostError>;
    /// Sends a local reply on the effective stream.
    fn send_reply(
        &self,
        status: u32,
        details: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError>;
    /// Resets the effective stream (the last resort when no reply can be sent).
    fn close_stream(&self) -> Result<(), HostError>;
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;

    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    /// A gauge: [`Host::increment`] adds to it (negative to subtract).
    fn define_gauge(&self, name: &str) -> Result<u32, HostError>;
    fn increment(&self, id: u32, by: i64);
    fn log(&self, level: LogLevel, message: &str);
}

/// A host's shared data as the credential cache's store.
pub struct Shared<'a, H: Host>(pub &'a H);

impl<H: Host> SharedStore for Shared<'_, H> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.0.shared_get(key).map_err(|e| StoreError::Host(e.0))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        self.0.shared_set(key, value, cas).map_err(|e| {
            if e == HostError::CAS_MISMATCH {
                StoreError::CasMismatch
            } else {
                StoreError::Host(e.0)
            }
        })
    }
}

/// A shared reference to a host is a host (several workers over one fake
/// host in tests share its shared data, as Envoy's workers do).
impl<H: Host> Host for &H {
    fn now_ms(&self) -> Result<u64, HostError> {
        (**self).now_ms()
    }
    fn body(&self, which: BodyBuffer, max: usize) -> Result<Vec<u8>, HostError> {
        (**self).body(which, max)
    }
    fn replace_body(&self, which: BodyBuffer, len: usize, new: &[u8]) -> Result<(), HostError> {
        (**self).replace_body(which, len, new)
    }
    fn set_tick_ms(&self, ms: u32) -> Result<(), HostError> {
        (**self).set_tick_ms(ms)
    }
    fn random_u64(&self) -> u64 {
        (**self).random_u64()
    }
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        (**self).shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        (**self).shared_set(key, value, cas)
    }
    fn header_map(&self, map: MapType) -> Result<HeaderMap, HostError> {
        (**self).header_map(map)
    }
    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        (**self).header(map, name)
    }
    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
        (**self).remove_header(map, name)
    }
    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        (**self).replace_header(map, name, value)
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        (**self).property(path)
    }
    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        (**self).set_property(path, value)
    }
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        (**self).dispatch(cluster, headers, timeout_ms)
    }
    fn call_response_body(&self, max: usize) -> Result<Vec<u8>, HostError> {
        (**self).call_response_body(max)
    }
    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        (**self).dispatch_grpc(cluster, service, method, message, timeout_ms)
    }
    fn grpc_message(&self, max: usize) -> Result<Vec<u8>, HostError> {
        (**self).grpc_message(max)
    }
    fn resume_request(&self) -> Result<(), HostError> {
        (**self).resume_request()
    }
    fn send_reply(
        &self,
        status: u32,
        details: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        (**self).send_reply(status, details, body, headers)
    }
    fn close_stream(&self) -> Result<(), HostError> {
        (**self).close_stream()
    }
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        (**self).set_effective_context(context_id)
    }
    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        (**self).define_counter(name)
    }
    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        (**self).define_gauge(name)
    }
    fn increment(&self, id: u32, by: i64) {
        (**self).increment(id, by)
    }
    fn log(&self, level: LogLevel, message: &str) {
        (**self).log(level, message)
    }
}
