//! Host state: what one worker's wasmtime `Store` carries (`WorkerHost`), and
//! what all workers of one gateway share (`GatewayShared`).
//!
//! Invariants:
//! - `GatewayShared` is the only state workers share; it is behind
//!   `Arc`/`Mutex`, per gateway, never global, so tests run in parallel.
//! - Host functions never call into the guest except through its allocator:
//!   stream control (`continue`, local replies, resets) is recorded in
//!   `after` and applied once the current callback has returned, as Envoy's
//!   `addAfterVmCallAction` does.
//! - `effective` is reset to the callback's own context at every callback.
//! - Callout tokens are Envoy's (proxy-wasm-cpp-host `WasmBase::next*Id`):
//!   per VM, typed by their low two bits, HTTP calls `4, 8, 12, ...`, unary
//!   gRPC calls `5, 9, 13, ...` (2 would be gRPC streams, which this host
//!   does not open). So an HTTP and a gRPC call never share a token, and a
//!   token tells which kind of call it names (`CalloutKind::of`).
//! - Every pending call (`pending`) is delivered at most once, by
//!   `Worker::deliver`, and never inside a hostcall; a cancelled or
//!   orphaned call is removed from `pending` and leaves no callback behind.
//! - The gRPC receive buffer and the status message exist only during the
//!   `proxy_on_grpc_receive` / `proxy_on_grpc_close` (or failed
//!   `proxy_on_http_call_response`) callback that set them; the status code
//!   stays until the next close, as on Envoy's root context.

use crate::call::{CallHandler, CallRequest, GrpcHandler, GrpcRequest};
use crate::clock::Clock;
use crate::logs::{LogLevel, LogStore};
use crate::outcome::LocalReply;
use crate::pairs::Pairs;
use crate::stream::{Direction, EndedStreams, Stream};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide
/// the state from the assertions that follow).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a cluster's calls go. One namespace, as Envoy's clusters: an HTTP
/// call to a gRPC cluster, or a gRPC call to an HTTP cluster, is accepted
/// (the cluster exists) and fails upstream (see `abi::http_call`,
/// `abi::grpc`).
#[derive(Clone)]
pub enum Cluster {
    /// HTTP calls answered in-process.
    Handler(CallHandler),
    /// HTTP calls to a real HTTP/1.1 server.
    Http(SocketAddr),
    /// Unary gRPC calls answered in-process.
    GrpcHandler(GrpcHandler),
    /// Unary gRPC calls to a real gRPC server (plaintext HTTP/2, prior knowledge).
    Grpc(SocketAddr),
}

/// Which kind of call a token names, by its low two bits (Envoy's
/// `WasmBase::CalloutType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalloutKind {
    Http,
    GrpcCall,
    GrpcStream,
    /// No call ever has such a token.
    None,
}

impl CalloutKind {
    pub fn of(token: u32) -> Self {
        match token & 3 {
            0 => CalloutKind::Http,
            1 => CalloutKind::GrpcCall,
            2 => CalloutKind::GrpcStream,
            _ => CalloutKind::None,
        }
    }
}

/// One dispatched gRPC call, as recorded for `Gateway::grpc_calls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCallRecord {
    pub worker: usize,
    /// The context that owns the call (the effective context at dispatch).
    pub context_id: u32,
    pub token: u32,
    pub request: GrpcRequest,
}

/// One dispatched call, as recorded for `Gateway::calls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub worker: usize,
    /// The context that owns the call (the effective context at dispatch).
    pub context_id: u32,
    pub token: u32,
    pub request: CallRequest,
}

/// A call response as the guest will see it. Zero headers means a reset.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

impl Delivery {
    pub fn local(status: u16, body: &str) -> Self {
        let mut headers = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        if !body.is_empty() {
            headers.push((
                b"content-length".to_vec(),
                body.len().to_string().into_bytes(),
            ));
            headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
        }
        Delivery {
            headers,
            body: body.as_bytes().to_vec(),
            trailers: Vec::new(),
        }
    }
}

/// How a unary gRPC call ended, as the guest will see it: status 0 is
/// `proxy_on_grpc_receive` with `message`; anything else is
/// `proxy_on_grpc_close` with `status` and `status_message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcDelivery {
    pub status: u32,
    pub message: Vec<u8>,
    pub status_message: Vec<u8>,
}

impl GrpcDelivery {
    pub fn ok(message: Vec<u8>) -> Self {
        GrpcDelivery {
            status: 0,
            message,
            status_message: Vec::new(),
        }
    }
    pub fn close(status: u32, status_message: &str) -> Self {
        GrpcDelivery {
            status,
            message: Vec::new(),
            status_message: status_message.as_bytes().to_vec(),
        }
    }
}

/// What a pending call delivers; its kind matches its token's `CalloutKind`.
#[derive(Debug, Clone)]
pub enum CallDelivery {
    Http(Delivery),
    Grpc(GrpcDelivery),
}

pub enum PendingKind {
    /// Answered in-process; reaches the guest at virtual time `due`.
    InProcess {
        due: Duration,
        delivery: CallDelivery,
    },
    /// In flight to a real server; completes through the gateway's channel.
    Remote { abort: tokio::task::AbortHandle },
}

pub struct PendingCall {
    pub token: u32,
    pub owner: u32,
    /// Order of dispatch, to deliver same-time responses in dispatch order.
    pub seq: u64,
    pub kind: PendingKind,
}

/// A stream-control request recorded during a callback.
#[derive(Debug)]
pub enum AfterAction {
    Continue(u32, Direction),
    Close(u32, Direction),
    LocalReply(u32, LocalReply),
}

/// A completed call to a real server (HTTP or gRPC).
pub struct Completion {
    pub worker: usize,
    pub token: u32,
    pub delivery: CallDelivery,
}

#[derive(Default)]
pub struct SharedData {
    /// vm_id -> key -> (value, cas).
    pub map: HashMap<String, HashMap<String, (Vec<u8>, u32)>>,
    pub next_cas: u32,
}

impl SharedData {
    pub fn bump(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        self.next_cas
    }
}

pub struct Queue {
    pub owner_worker: usize,
    pub owner_context: u32,
    pub items: VecDeque<Vec<u8>>,
}

#[derive(Default)]
pub struct Queues {
    pub ids: HashMap<(String, String), u32>,
    pub queues: HashMap<u32, Queue>,
    /// (worker, context, queue id) awaiting `proxy_on_queue_ready`.
    pub ready: VecDeque<(usize, u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
    pub samples: Vec<u64>,
}

#[derive(Default)]
pub struct Metrics {
    pub ids: HashMap<(u8, String), u32>,
    pub by_id: BTreeMap<u32, Metric>,
}

/// State shared by every worker of one gateway.
pub struct GatewayShared {
    pub vm_id: String,
    pub root_id: String,
    pub plugin_name: String,
    pub log_level: LogLevel,
    pub clock: Clock,
    pub clusters: HashMap<String, Cluster>,
    pub shared_data: Mutex<SharedData>,
    pub queues: Mutex<Queues>,
    pub metrics: Mutex<Metrics>,
    pub logs: Mutex<LogStore>,
    pub calls: Mutex<Vec<CallRecord>>,
    pub grpc_calls: Mutex<Vec<GrpcCallRecord>>,
    /// Messages of guest traps, in order.
    pub traps: Mutex<Vec<String>>,
    /// Runtime handle and completion channel for real-HTTP and gRPC clusters.
    pub upstream: Option<crate::upstream::Upstream>,
    /// Host-call faults the test installed.
    pub faults: crate::fault::Faults,
    /// Envoy's `allow_on_headers_stop_iteration` plugin option.
    pub allow_on_headers_stop_iteration: bool,
}

impl GatewayShared {
    pub fn log(&self, worker: usize, context_id: u32, level: LogLevel, message: &[u8]) {
        if level >= self.log_level {
            lock(&self.logs).push(worker, context_id, level, message);
        }
    }
}

/// The data of one worker's `Store`: its VM's host-side state.
pub struct WorkerHost {
    pub worker: usize,
    pub shared: Arc<GatewayShared>,
    pub memory: Option<wasmtime::Memory>,
    /// The guest allocator, behind an `Arc` so a hostcall can call it without
    /// cloning the `TypedFunc` (and its registered type) every time.
    pub alloc: Option<Arc<wasmtime::TypedFunc<i32, i32>>>,
    pub root_context_id: u32,
    pub next_context_id: u32,
    /// The context whose callback is running.
    pub current: u32,
    /// The context hostcalls act on (`proxy_set_effective_context`).
    pub effective: u32,
    /// Live streams only; a stream moves to `ended` once it is over.
    pub streams: HashMap<u32, Stream>,
    /// What ended streams leave for the test to read.
    pub ended: EndedStreams,
    pub after: Vec<AfterAction>,
    /// The call response being delivered (`proxy_on_http_call_response`).
    pub call_response: Option<Delivery>,
    /// The gRPC message being delivered (`proxy_on_grpc_receive`): the
    /// `GrpcReceiveBuffer`, which reads as empty otherwise.
    pub grpc_receive: Option<Vec<u8>>,
    /// What `proxy_get_status` returns: the code of the last failed call
    /// (kept), and its message (only during that failure's callback).
    pub status_code: u32,
    pub status_message: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    /// True during `proxy_on_configure`, when the plugin configuration is readable.
    pub configuring: bool,
    pub root_properties: HashMap<Vec<u8>, Vec<u8>>,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<Duration>,
    /// The last HTTP call token handed out (0: none yet).
    pub last_http_token: u32,
    /// The last gRPC call token handed out (1: none yet).
    pub last_grpc_token: u32,
    pub next_seq: u64,
    pub pending: Vec<PendingCall>,
    pub rng: u64,
    /// A reusable buffer for data on its way to the guest (header maps,
    /// values, properties), so hostcalls do not allocate per call.
    pub scratch: Vec<u8>,
    /// Epoch ticks one guest callback may run before it is interrupted.
    pub epoch_budget: u64,
}

impl WorkerHost {
    pub fn new(
        worker: usize,
        shared: Arc<GatewayShared>,
        vm_config: Vec<u8>,
        plugin_config: Vec<u8>,
    ) -> Self {
        WorkerHost {
            worker,
            shared,
            memory: None,
            alloc: None,
            root_context_id: 1,
            next_context_id: 2,
            current: 1,
            effective: 1,
            streams: HashMap::new(),
            ended: EndedStreams::default(),
            after: Vec::new(),
            call_response: None,
            grpc_receive: None,
            status_code: 0,
            status_message: Vec::new(),
            vm_config,
            plugin_config,
            configuring: false,
            root_properties: HashMap::new(),
            tick_period: None,
            next_tick: None,
            last_http_token: 0,
            last_grpc_token: 1,
            next_seq: 0,
            pending: Vec::new(),
            scratch: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1),
            epoch_budget: crate::module::CALLBACK_EPOCH_BUDGET,
        }
    }

    /// The live stream the effective context refers to, if it is an HTTP context.
    pub fn effective_stream(&mut self) -> Option<&mut Stream> {
        let id = self.effective;
        self.streams.get_mut(&id).filter(|s| s.live)
    }

    /// Shared-borrow twin of `effective_stream`.
    pub fn effective_stream_ref(&self) -> Option<&Stream> {
        self.streams.get(&self.effective).filter(|s| s.live)
    }

    /// The next HTTP call token: 4, 8, 12, ... (Envoy's `nextHttpCallId`).
    pub fn next_http_token(&mut self) -> u32 {
        self.last_http_token = self.last_http_token.wrapping_add(4);
        self.last_http_token
    }

    /// The next unary gRPC call token: 5, 9, 13, ... (Envoy's `nextGrpcCallId`).
    pub fn next_grpc_token(&mut self) -> u32 {
        self.last_grpc_token = self.last_grpc_token.wrapping_add(4);
        self.last_grpc_token
    }

    pub fn is_known_context(&self, id: u32) -> bool {
        id == self.root_context_id || self.streams.get(&id).is_some_and(|s| s.live)
    }

    /// Moves an ended stream out of the live set, keeping only what the
    /// test may still read.
    pub fn end_stream(&mut self, ctx: u32) {
        if let Some(s) = self.streams.remove(&ctx) {
            self.ended.record(&s);
        }
    }

    pub fn log(&self, level: LogLevel, message: &[u8]) {
        self.shared.log(self.worker, self.effective, level, message);
    }

    /// Deterministic pseudo-random bytes (xorshift64*), for WASI `random_get`.
    pub fn random_fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            *b = (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
    }
}
