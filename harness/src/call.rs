//! HTTP calls that the guest dispatches with `proxy_dispatch_http_call`, as
//! plain data, and the in-process handlers that answer them.
//!
//! Invariants:
//! - Header names are lowercase bytes; values are arbitrary bytes (never
//!   assumed UTF-8), exactly as Envoy hands them over.
//! - A `CallResponse` with `reset = true` is delivered to the guest with zero
//!   headers, which is how Envoy reports a reset call.
//! - `delay` is virtual time: the response reaches the guest only once the
//!   gateway's clock has advanced that far. A delay longer than the call's
//!   timeout turns into Envoy's local `504` reply at the timeout.

use std::sync::Arc;
use std::time::Duration;

/// One call as the guest dispatched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// The cluster name the guest asked for.
    pub cluster: String,
    /// All headers, pseudo-headers (`:method`, `:path`, `:authority`) included, in order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The timeout the guest passed.
    pub timeout: Duration,
}

impl CallRequest {
    /// First value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
    /// First value of a header as (lossy) text, for assertions.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    pub fn method(&self) -> Option<String> {
        self.header_str(":method")
    }
    pub fn path(&self) -> Option<String> {
        self.header_str(":path")
    }
}

/// The answer to a call, as the guest will see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallResponse {
    pub status: u16,
    /// Extra headers; `:status` is added by the harness from `status`.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Virtual time before the response arrives.
    pub delay: Duration,
    /// Deliver as a reset stream (zero headers, no body).
    pub reset: bool,
}

impl CallResponse {
    pub fn new(status: u16) -> Self {
        CallResponse {
            status,
            ..Default::default()
        }
    }
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        CallResponse {
            status,
            headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
            body: body.into(),
            ..Default::default()
        }
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn reset() -> Self {
        CallResponse {
            reset: true,
            ..Default::default()
        }
    }
}

/// An in-process handler for one cluster. Handlers run on the test thread,
/// synchronously, when the call is dispatched.
pub type CallHandler = Arc<dyn Fn(&CallRequest) -> CallResponse + Send + Sync>;
