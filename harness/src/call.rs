//! Calls the guest dispatches, as plain data, and the in-process handlers
//! that answer them: HTTP calls (`proxy_http_call`: `CallRequest`,
//! `CallResponse`, `CallHandler`) and unary gRPC calls (`proxy_grpc_call`:
//! `GrpcRequest`, `GrpcResponse`, `GrpcHandler`).
//!
//! Invariants:
//! - Header and metadata names are lowercase bytes; values are arbitrary
//!   bytes (never assumed UTF-8), exactly as Envoy hands them over.
//! - A `CallResponse` with `reset = true` is delivered to the guest with zero
//!   headers, which is how Envoy reports a reset call.
//! - `delay` is virtual time: the response reaches the guest only once the
//!   gateway's clock has advanced that far. A delay longer than the call's
//!   (non-zero) timeout turns into Envoy's timeout at the timeout: the local
//!   `504` reply for HTTP, `DEADLINE_EXCEEDED` for gRPC.
//! - A `GrpcResponse` with status 0 reaches the guest as
//!   `proxy_on_grpc_receive` with its message; any other status as
//!   `proxy_on_grpc_close` with that code and `status_message`.

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

/// One unary gRPC call as the guest dispatched it (`proxy_grpc_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcRequest {
    /// The cluster name the guest passed as its `service` argument.
    pub cluster: String,
    /// The fully qualified service name, e.g. `envoy.service.ratelimit.v3.RateLimitService`.
    pub service: String,
    pub method: String,
    /// The initial metadata the guest passed (names lowercased), in order.
    pub metadata: Vec<(Vec<u8>, Vec<u8>)>,
    /// The serialized request message (without the gRPC frame header).
    pub message: Vec<u8>,
    /// The timeout the guest passed (zero: none).
    pub timeout: Duration,
}

impl GrpcRequest {
    /// The HTTP/2 `:path` of the call: `/{service}/{method}`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
    /// First value of a metadata entry, by lowercase name.
    pub fn metadata(&self, name: &str) -> Option<&[u8]> {
        self.metadata
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// gRPC status codes (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
pub mod grpc_status {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const NOT_FOUND: u32 = 5;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
    /// What Envoy reports for a `grpc-status` that is not a number from 0
    /// to 16 (its `InvalidCode`, -1, as the ABI's u32).
    pub const INVALID_CODE: u32 = u32::MAX;
}

/// The answer to a unary gRPC call, as the guest will see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrpcResponse {
    /// The gRPC status code; 0 delivers `message`, anything else closes the
    /// call with this code.
    pub status: u32,
    /// The serialized response message (status 0 only).
    pub message: Vec<u8>,
    /// `grpc-message`: what `proxy_get_status` returns in `proxy_on_grpc_close`.
    pub status_message: String,
    /// Virtual time before the answer arrives.
    pub delay: Duration,
}

impl GrpcResponse {
    /// Status 0 with this response message.
    pub fn ok(message: impl Into<Vec<u8>>) -> Self {
        GrpcResponse {
            message: message.into(),
            ..Default::default()
        }
    }
    /// A non-zero status with its `grpc-message`.
    pub fn error(status: u32, status_message: &str) -> Self {
        GrpcResponse {
            status,
            status_message: status_message.into(),
            ..Default::default()
        }
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// An in-process handler for one gRPC cluster. Handlers run on the test
/// thread, synchronously, when the call is dispatched.
pub type GrpcHandler = Arc<dyn Fn(&GrpcRequest) -> GrpcResponse + Send + Sync>;
