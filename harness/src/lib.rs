//! Tollgate's test host: a wasmtime host for the proxy-wasm ABI 0.2.1 with
//! Envoy's semantics, so that a filter that passes here behaves the same way
//! in Envoy.
//!
//! Start at `Gateway::builder`. Layout:
//! - `gateway` (the test-facing API), `worker` (one VM and its stream state
//!   machine), `stream` (per-request state), `flow` (one direction through
//!   the filter: pause modes, body chunks, trailers), `outcome` (what tests
//!   assert), `fault` (host-call fault injection);
//! - `abi/*` (host functions by ABI area), `memory` (bounds-checked guest
//!   memory), `pairs` (header-map encoding), `clock` (virtual time),
//!   `upstream` (real-HTTP clusters), `state` (what host functions share);
//! - `call` (in-process call handlers), `mock` (mock services);
//! - `ratelimit` (Envoy's rate-limit gRPC service on limitador and Redis);
//! - `envoy` (a real Envoy: PKI, configuration, process, local stack) and
//!   `bench` (`make bench-envoy`'s driver).
//!
//! Invariants: no global host state; one `Gateway` per test; only compiled
//! modules are cached process-wide.

pub mod abi;
pub mod bench;
pub mod call;
pub mod child;
pub mod clock;
pub mod envoy;
pub mod fault;
pub mod flow;
pub mod gateway;
pub mod logs;
pub mod memory;
pub mod mock;
pub mod module;
pub mod openbao;
pub mod outcome;
pub mod pairs;
pub mod ratelimit;
pub mod spend;
pub mod state;
pub mod stream;
pub mod upstream;
pub mod worker;

pub use abi::Status;
pub use call::{CallHandler, CallRequest, CallResponse};
pub use fault::HostFault;
pub use gateway::{Gateway, GatewayBuilder, RequestBuilder, StartError, StreamId};
pub use logs::{LogLevel, LogLine};
pub use module::Module;
pub use outcome::{BodyPiece, Forwarded, LocalReply, Outcome, Response};
pub use state::CallRecord;
pub use stream::FilterState;
