//! The gateway: N workers (VMs) of one module, the clusters they may call,
//! the virtual clock, and the test-facing API to send requests and observe
//! what happened.
//!
//! Invariants:
//! - One `Gateway` per test; nothing is shared between gateways except the
//!   compiled module, so tests run in parallel.
//! - Time moves only in `advance`. Call responses are delivered only by
//!   `settle` / `advance`, never inside the callback that dispatched them.
//! - `advance` fires ticks and delayed deliveries in virtual-time order
//!   (deliveries before ticks at the same instant), then settles.
//! - HTTP and gRPC calls share one pending list per worker: `settle`,
//!   `advance` and `pending_calls` treat both alike, and `settle` waits for
//!   every real (remote) call in flight, each bounded by its timeout.

use crate::abi;
use crate::call::{CallHandler, GrpcHandler};
use crate::clock::{Clock, DEFAULT_START_UNIX_SECS};
use crate::fault::HostFault;
use crate::logs::{LogLevel, LogLine};
use crate::module::Module;
use crate::outcome::{Outcome, Response};
use crate::pairs::Pairs;
use crate::state::{
    lock, CallDelivery, CallRecord, Cluster, Completion, Delivery, GatewayShared, GrpcCallRecord,
    MetricKind, PendingKind, WorkerHost,
};
use crate::stream::{headers, FilterState};
use crate::upstream::{Upstream, MAX_REAL_TIMEOUT};
use crate::worker::{StartFailure, Worker};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `on_vm_start` or `on_configure` returned false on some worker (Envoy
    /// refuses to start). `logs` holds everything the guest logged.
    #[error("the plugin rejected its configuration (on_vm_start/on_configure returned false); guest logs:\n{}", join_logs(.logs))]
    ConfigureRejected { logs: Vec<LogLine> },
    /// The module could not be linked or instantiated.
    #[error("could not instantiate the module: {0}")]
    Instantiate(String),
    /// The guest trapped while starting.
    #[error("the guest trapped while starting: {0}")]
    Trap(String),
    /// The host could not set up (e.g. the runtime for real-HTTP clusters).
    #[error("host setup failed: {0}")]
    Host(String),
}

fn join_logs(logs: &[LogLine]) -> String {
    logs.iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifies one downstream request: its worker and HTTP context id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    worker: usize,
    context: u32,
}

impl StreamId {
    pub fn worker(&self) -> usize {
        self.worker
    }
    pub fn context_id(&self) -> u32 {
        self.context
    }
}

/// Configures a gateway. Decide, in order: the module (given), how many
/// workers, the plugin (and VM) configuration, the clusters the guest may
/// call, and optionally ids, start time and log level.
pub struct GatewayBuilder {
    module: Arc<Module>,
    workers: usize,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    root_id: String,
    vm_id: String,
    plugin_name: Option<String>,
    clusters: HashMap<String, Cluster>,
    start: SystemTime,
    log_level: LogLevel,
    guest_time_limit: Option<Duration>,
    faults: Vec<(String, HostFault)>,
    allow_on_headers_stop_iteration: bool,
}

impl GatewayBuilder {
    /// Makes the import `import` (e.g. `"proxy_get_shared_data"`) answer
    /// with the fault's status instead of working, from the first callback
    /// on (`on_vm_start`, `on_configure` included). See `crate::fault`.
    pub fn fault(mut self, import: &str, f: HostFault) -> Self {
        self.faults.push((import.to_string(), f));
        self
    }
    /// Envoy's `allow_on_headers_stop_iteration` plugin option (default
    /// false). Off, Pause in a headers callback is
    /// StopAllIterationAndWatermark: no body or trailers callback until the
    /// guest continues. On, it is StopIteration: body and trailers callbacks
    /// arrive while the headers are held (and still editable); nothing goes
    /// on until the guest continues, from a body/trailers callback (returning
    /// Continue) or with `proxy_continue_stream`.
    pub fn allow_on_headers_stop_iteration(mut self, on: bool) -> Self {
        self.allow_on_headers_stop_iteration = on;
        self
    }
    /// Real time one guest callback may run before it is interrupted with a
    /// trap (default 30 s; granularity 100 ms), so a runaway guest fails the
    /// test instead of hanging it.
    pub fn guest_time_limit(mut self, d: Duration) -> Self {
        self.guest_time_limit = Some(d);
        self
    }
    /// Number of workers (VMs), default 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    pub fn plugin_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = bytes.into();
        self
    }
    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.vm_config = bytes.into();
        self
    }
    pub fn root_id(mut self, id: &str) -> Self {
        self.root_id = id.into();
        self
    }
    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = id.into();
        self
    }
    /// The `plugin_name` property (default: the root id).
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = Some(name.into());
        self
    }
    /// Answer calls to `name` in-process.
    pub fn cluster_handler(mut self, name: &str, h: CallHandler) -> Self {
        self.clusters.insert(name.into(), Cluster::Handler(h));
        self
    }
    /// Send calls to `name` to a real HTTP/1.1 server.
    pub fn cluster_http(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.insert(name.into(), Cluster::Http(addr));
        self
    }
    /// Answer gRPC calls to cluster `name` in-process (see `crate::call::GrpcResponse`).
    pub fn cluster_grpc_handler(mut self, name: &str, h: GrpcHandler) -> Self {
        self.clusters.insert(name.into(), Cluster::GrpcHandler(h));
        self
    }
    /// Send gRPC calls to cluster `name` to a real gRPC server speaking
    /// plaintext HTTP/2 (prior knowledge, no TLS), as Envoy's gRPC client
    /// does (see `crate::upstream`).
    pub fn cluster_grpc(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.insert(name.into(), Cluster::Grpc(addr));
        self
    }
    /// The virtual clock's start (default 2026-01-01T00:00:00Z).
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start = t;
        self
    }
    /// Lines below this level are dropped (default Info).
    pub fn log_level(mut self, l: LogLevel) -> Self {
        self.log_level = l;
        self
    }

    pub fn build(self) -> Result<Gateway, StartError> {
        let (done_tx, done_rx) = mpsc::channel();
        let needs_runtime = self
            .clusters
            .values()
            .any(|c| matches!(c, Cluster::Http(_) | Cluster::Grpc(_)));
        let upstream = if needs_runtime {
            Some(Upstream::new(done_tx).map_err(|e| StartError::Host(e.to_string()))?)
        } else {
            None
        };
        let shared = Arc::new(GatewayShared {
            plugin_name: self
                .plugin_name
                .clone()
                .unwrap_or_else(|| self.root_id.clone()),
            vm_id: self.vm_id,
            root_id: self.root_id,
            log_level: self.log_level,
            clock: Clock::new(self.start),
            clusters: self.clusters,
            shared_data: Mutex::default(),
            queues: Mutex::default(),
            metrics: Mutex::default(),
            logs: Mutex::default(),
            calls: Mutex::default(),
            grpc_calls: Mutex::default(),
            traps: Mutex::default(),
            upstream,
            faults: crate::fault::Faults::default(),
            allow_on_headers_stop_iteration: self.allow_on_headers_stop_iteration,
        });
        for (import, f) in &self.faults {
            shared.faults.add(import, *f);
        }
        let mut linker = wasmtime::Linker::new(&self.module.engine);
        abi::link(&mut linker, &self.module.module)
            .map_err(|e| StartError::Instantiate(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&self.module.module)
            .map_err(|e| StartError::Instantiate(format!("{e:#}")))?;
        let mut workers = Vec::with_capacity(self.workers);
        for i in 0..self.workers {
            let mut host = WorkerHost::new(
                i,
                shared.clone(),
                self.vm_config.clone(),
                self.plugin_config.clone(),
            );
            if let Some(d) = self.guest_time_limit {
                host.epoch_budget =
                    (d.as_millis() / crate::module::EPOCH_TICK.as_millis()).max(1) as u64 + 1;
            }
            match Worker::start(&self.module, &pre, host) {
                Ok(w) => workers.push(w),
                Err(StartFailure::Rejected) => {
                    return Err(StartError::ConfigureRejected {
                        logs: lock(&shared.logs).to_vec(),
                    })
                }
                Err(StartFailure::Instantiate(m)) => return Err(StartError::Instantiate(m)),
                Err(StartFailure::Trap(m)) => return Err(StartError::Trap(m)),
            }
        }
        Ok(Gateway {
            shared,
            workers,
            done_rx,
            next_request: 0,
        })
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<GatewayShared>,
    workers: Vec<Worker>,
    done_rx: mpsc::Receiver<Completion>,
    next_request: u64,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Never block (or panic) when dropped inside an async test.
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            if let Some(up) = shared.upstream.take() {
                up.runtime.shutdown_background();
            }
        }
    }
}

impl Gateway {
    pub fn builder(module: Arc<Module>) -> GatewayBuilder {
        GatewayBuilder {
            module,
            workers: 1,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            root_id: String::new(),
            vm_id: String::new(),
            plugin_name: None,
            clusters: HashMap::new(),
            start: UNIX_EPOCH + Duration::from_secs(DEFAULT_START_UNIX_SECS),
            log_level: LogLevel::Info,
            guest_time_limit: None,
            faults: Vec::new(),
            allow_on_headers_stop_iteration: false,
        }
    }

    /// Makes the import `import` answer with the fault's status instead of
    /// working, from now on. See `crate::fault`.
    pub fn fault(&mut self, import: &str, f: HostFault) -> &mut Self {
        self.shared.faults.add(import, f);
        self
    }

    /// Removes every fault (and forgets their counts).
    pub fn clear_faults(&mut self) -> &mut Self {
        self.shared.faults.clear();
        self
    }

    /// How many calls to `import` a fault answered.
    pub fn fault_fired(&self, import: &str) -> u64 {
        self.shared.faults.fired(import)
    }

    /// How many calls to `import` matched an installed fault, fired or not
    /// (with `HostFault::times(0)` installed, every call to it).
    pub fn fault_seen(&self, import: &str) -> u64 {
        self.shared.faults.seen(import)
    }

    /// (import, times fired) for every installed fault, in installation order.
    pub fn faults_fired(&self) -> Vec<(String, u64)> {
        self.shared.faults.all_fired()
    }

    /// Starts building a request on `worker`.
    #[track_caller]
    pub fn request(&mut self, worker: usize) -> RequestBuilder<'_> {
        assert!(
            worker < self.workers.len(),
            "worker {worker} does not exist (the gateway has {})",
            self.workers.len()
        );
        self.next_request += 1;
        RequestBuilder {
            request_id: format!("00000000-0000-4000-8000-{:012x}", self.next_request),
            gateway: self,
            worker,
            method: "GET".into(),
            scheme: b"http".to_vec(),
            authority: b"localhost".to_vec(),
            path: b"/".to_vec(),
            without: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            split: Split::Whole,
            trailers: Vec::new(),
            properties: HashMap::new(),
        }
    }

    pub fn outcome(&self, id: StreamId) -> Outcome {
        let Some(h) = self.workers.get(id.worker).map(|w| w.store.data()) else {
            return Outcome::Pending;
        };
        match h.streams.get(&id.context) {
            Some(s) => s.outcome(),
            None => h.ended.outcome(id.context).unwrap_or(Outcome::Pending),
        }
    }

    /// The response the downstream client got for a forwarded request (after
    /// `respond`), as the filter's response callbacks left it.
    pub fn response(&self, id: StreamId) -> Option<Response> {
        let h = self.workers.get(id.worker)?.store.data();
        match h.streams.get(&id.context) {
            Some(s) => s.downstream_response.clone(),
            None => h.ended.response(id.context),
        }
    }

    /// Whether the stream's HTTP context still exists in the VM.
    pub fn is_live(&self, id: StreamId) -> bool {
        self.workers
            .get(id.worker)
            .and_then(|w| w.store.data().streams.get(&id.context))
            .is_some_and(|s| s.live)
    }

    /// Whether the guest reset the stream (`proxy_close_stream`).
    pub fn was_reset(&self, id: StreamId) -> bool {
        self.workers.get(id.worker).is_some_and(|w| {
            let h = w.store.data();
            match h.streams.get(&id.context) {
                Some(s) => s.reset,
                None => h.ended.was_reset(id.context),
            }
        })
    }

    fn next_due_delivery(&self, now: Duration) -> Option<(usize, u32)> {
        let mut best: Option<(Duration, usize, u64, u32)> = None;
        for w in &self.workers {
            for p in &w.store.data().pending {
                if let PendingKind::InProcess { due, .. } = &p.kind {
                    let key = (*due, w.index, p.seq, p.token);
                    if *due <= now && best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                        best = Some(key);
                    }
                }
            }
        }
        best.map(|(_, w, _, t)| (w, t))
    }

    fn take_in_process(&mut self, worker: usize, token: u32) -> Option<CallDelivery> {
        let p = self.workers[worker]
            .store
            .data_mut()
            .pending
            .iter_mut()
            .find(|p| p.token == token)?;
        match &mut p.kind {
            PendingKind::InProcess { delivery, .. } => Some(std::mem::replace(
                delivery,
                CallDelivery::Http(Delivery::default()),
            )),
            PendingKind::Remote { .. } => None,
        }
    }

    fn remote_outstanding(&self) -> bool {
        self.workers.iter().any(|w| {
            w.store
                .data()
                .pending
                .iter()
                .any(|p| matches!(p.kind, PendingKind::Remote { .. }))
        })
    }

    /// One round of work that is ready now. Returns whether anything happened.
    fn step(&mut self) -> bool {
        let ready = lock(&self.shared.queues).ready.pop_front();
        if let Some((worker, ctx, queue)) = ready {
            if let Some(w) = self.workers.get_mut(worker) {
                w.queue_ready(ctx, queue);
            }
            return true;
        }
        let now = self.shared.clock.elapsed();
        if let Some((worker, token)) = self.next_due_delivery(now) {
            if let Some(d) = self.take_in_process(worker, token) {
                self.workers[worker].deliver(token, d);
            }
            return true;
        }
        if let Ok(c) = self.done_rx.try_recv() {
            if let Some(w) = self.workers.get_mut(c.worker) {
                w.deliver(c.token, c.delivery);
            }
            return true;
        }
        false
    }

    /// Delivers everything that is ready now (in-process responses due at
    /// the current virtual time, queue notifications, and real-HTTP responses,
    /// waiting for those in flight, each bounded by its timeout), repeatedly,
    /// until nothing is ready. Does not move the clock.
    pub fn settle(&mut self) {
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            assert!(
                rounds < 100_000,
                "settle did not quiesce: the guest keeps producing work"
            );
            if self.step() {
                continue;
            }
            if !self.remote_outstanding() {
                break;
            }
            match self
                .done_rx
                .recv_timeout(MAX_REAL_TIMEOUT + Duration::from_secs(5))
            {
                Ok(c) => {
                    if let Some(w) = self.workers.get_mut(c.worker) {
                        w.deliver(c.token, c.delivery);
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn next_event(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        for w in &self.workers {
            let h = w.store.data();
            let mut consider = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
            if let (Some(t), Some(_)) = (h.next_tick, h.tick_period) {
                consider(t);
            }
            for p in &h.pending {
                if let PendingKind::InProcess { due, .. } = p.kind {
                    consider(due);
                }
            }
        }
        next
    }

    /// Moves the virtual clock forward by `d`, firing ticks and delivering
    /// delayed responses at their times, in time order; then settles.
    pub fn advance(&mut self, d: Duration) {
        let target = self.shared.clock.elapsed() + d;
        self.settle();
        let mut rounds = 0u64;
        while let Some(t) = self.next_event().filter(|t| *t <= target) {
            rounds += 1;
            assert!(
                rounds < 10_000_000,
                "advance did not finish: too many events"
            );
            self.shared.clock.set_elapsed(t);
            self.settle();
            for i in 0..self.workers.len() {
                self.workers[i].tick_if_due(t);
            }
            self.settle();
        }
        self.shared.clock.set_elapsed(target);
        self.settle();
    }

    /// The virtual wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// Virtual time since the gateway started.
    pub fn elapsed(&self) -> Duration {
        self.shared.clock.elapsed()
    }

    /// The upstream answers a forwarded request: drives the response
    /// callbacks, then on_log/on_done/on_delete. Panics if the request has
    /// not been forwarded.
    #[track_caller]
    pub fn respond(&mut self, id: StreamId, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        self.respond_with(id, status, headers, vec![body.to_vec()], &[]);
    }

    /// `respond` with the body delivered in these chunks: one
    /// `proxy_on_response_body` per chunk (see `crate::flow`). The client's
    /// view is `response(id)`: `body` and `body_pieces`.
    #[track_caller]
    pub fn respond_chunks(
        &mut self,
        id: StreamId,
        status: u16,
        headers: &[(&str, &[u8])],
        chunks: Vec<Vec<u8>>,
    ) {
        self.respond_with(id, status, headers, chunks, &[]);
    }

    /// `respond_chunks` with response trailers (delivered with
    /// `proxy_on_response_trailers`; the last body callback then has no
    /// end_of_stream).
    #[track_caller]
    pub fn respond_with(
        &mut self,
        id: StreamId,
        status: u16,
        headers: &[(&str, &[u8])],
        chunks: Vec<Vec<u8>>,
        trailers: &[(&str, &[u8])],
    ) {
        let mut h: Pairs = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        for (k, v) in headers {
            headers::add(&mut h, k.as_bytes(), v);
        }
        let t: Pairs = trailers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.to_vec()))
            .collect();
        let t = (!t.is_empty()).then_some(t);
        let w = &mut self.workers[id.worker];
        if let Err(e) = w.respond(id.context, h, chunks, t) {
            panic!("cannot respond to {id:?}: {e}");
        }
    }

    /// The upstream sends the response headers and these chunks and has not
    /// finished (the filter sees no end_of_stream); then [`Self::cancel`]
    /// is a client leaving mid-response. Panics if the request has not been
    /// forwarded.
    #[track_caller]
    pub fn respond_partial(
        &mut self,
        id: StreamId,
        status: u16,
        headers: &[(&str, &[u8])],
        chunks: Vec<Vec<u8>>,
    ) {
        let mut h: Pairs = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        for (k, v) in headers {
            headers::add(&mut h, k.as_bytes(), v);
        }
        let w = &mut self.workers[id.worker];
        if let Err(e) = w.respond_partial(id.context, h, chunks) {
            panic!("cannot respond to {id:?}: {e}");
        }
    }

    /// The request headers as they went upstream (None while the filter
    /// holds them, or for an unknown stream).
    pub fn upstream_headers(&self, id: StreamId) -> Option<Pairs> {
        let h = self.workers.get(id.worker)?.store.data();
        match h.streams.get(&id.context) {
            Some(s) => s.req.sent_headers.clone(),
            None => match h.ended.outcome(id.context)? {
                Outcome::Forwarded(f) => Some(f.headers),
                _ => None,
            },
        }
    }

    /// The request body that has gone upstream so far, piece by piece.
    pub fn upstream_body_pieces(&self, id: StreamId) -> Vec<crate::flow::BodyPiece> {
        let Some(h) = self.workers.get(id.worker).map(|w| w.store.data()) else {
            return Vec::new();
        };
        match h.streams.get(&id.context) {
            Some(s) => s.req.pieces.clone(),
            None => match h.ended.outcome(id.context) {
                Some(Outcome::Forwarded(f)) => f.body_pieces,
                _ => Vec::new(),
            },
        }
    }

    /// The size of a worker VM's linear memory, in bytes.
    pub fn memory_bytes(&self, worker: usize) -> Option<usize> {
        let w = self.workers.get(worker)?;
        let memory = w.store.data().memory?;
        Some(memory.data_size(&w.store))
    }

    /// Every stream the gateway has seen (live or ended), worker by worker,
    /// in the order the contexts were created.
    pub fn stream_ids(&self) -> Vec<StreamId> {
        let mut ids = Vec::new();
        for (worker, w) in self.workers.iter().enumerate() {
            let h = w.store.data();
            let mut contexts: Vec<u32> = h.streams.keys().copied().collect();
            contexts.extend(h.ended.contexts());
            contexts.sort_unstable();
            contexts.dedup();
            ids.extend(
                contexts
                    .into_iter()
                    .map(|context| StreamId { worker, context }),
            );
        }
        ids
    }

    /// The stream's filter state (what the guest set with
    /// `proxy_set_property`), live or after the stream ended (including
    /// writes from `proxy_on_log` and `proxy_on_done`).
    pub fn filter_states(&self, id: StreamId) -> Option<FilterState> {
        let h = self.workers.get(id.worker)?.store.data();
        match h.streams.get(&id.context) {
            Some(s) => Some(s.filter_state.clone()),
            None => h.ended.filter_state(id.context),
        }
    }

    /// Whether stream `id` has not ended yet (no `proxy_on_log` so far).
    pub fn is_open(&self, id: StreamId) -> bool {
        self.workers
            .get(id.worker)
            .is_some_and(|w| w.store.data().streams.contains_key(&id.context))
    }

    /// One filter-state value by its full key, e.g. `"wasm.tollgate.audit"`
    /// (Envoy's key: `wasm.` + the path the guest passed), as it stands now
    /// (after the stream ended: its final value, after on_log and on_done).
    pub fn filter_state(&self, id: StreamId, key: &str) -> Option<Vec<u8>> {
        self.filter_states(id)?.values.get(key.as_bytes()).cloned()
    }

    /// The value an access log configured on Envoy's HCM would read with
    /// `%FILTER_STATE(<key>:PLAIN)%`: as it stood when `proxy_on_log`
    /// returned (Envoy 1.40 runs the filter's own log handler, i.e.
    /// `proxy_on_log`, before the HCM access loggers, and `proxy_on_done`
    /// after them). None before the stream ended or if unset then.
    pub fn access_log_filter_state(&self, id: StreamId, key: &str) -> Option<Vec<u8>> {
        self.filter_states(id)?
            .at_access_log?
            .get(key.as_bytes())
            .cloned()
    }

    /// The downstream client resets the stream: on_log/on_done/on_delete run
    /// and the calls it owns are cancelled.
    pub fn cancel(&mut self, id: StreamId) {
        if let Some(w) = self.workers.get_mut(id.worker) {
            w.cancel(id.context);
        }
    }

    /// Runs `on_configure` again on one worker with a new plugin config.
    /// Returns what the guest returned (false if the VM is dead or trapped).
    pub fn reconfigure(&mut self, worker: usize, config: impl Into<Vec<u8>>) -> bool {
        self.workers
            .get_mut(worker)
            .and_then(|w| w.configure(Some(config.into())))
            .unwrap_or(false)
    }

    /// Every HTTP call dispatched so far, in dispatch order.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.shared.calls).clone()
    }

    /// Every gRPC call dispatched so far (cancelled ones included), in
    /// dispatch order.
    pub fn grpc_calls(&self) -> Vec<GrpcCallRecord> {
        lock(&self.shared.grpc_calls).clone()
    }

    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.shared.logs).to_vec()
    }

    /// All log messages joined with '\n'.
    pub fn log_text(&self) -> String {
        lock(&self.shared.logs).text()
    }

    /// A metric's value by name (counters and gauges: the value; histograms:
    /// the sum of samples). Negative gauges read as 0.
    pub fn metric(&self, name: &str) -> Option<u64> {
        lock(&self.shared.metrics)
            .by_id
            .values()
            .find(|m| m.name == name)
            .map(|m| m.value.max(0) as u64)
    }

    pub fn metrics(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.metrics)
            .by_id
            .values()
            .map(|m| (m.name.clone(), m.value.max(0) as u64))
            .collect()
    }

    /// A histogram's samples.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        lock(&self.shared.metrics)
            .by_id
            .values()
            .find(|m| m.name == name && m.kind == MetricKind::Histogram)
            .map(|m| m.samples.clone())
    }

    /// A shared-data value in this gateway's vm_id namespace.
    pub fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.shared_data_with_cas(key).map(|(v, _)| v)
    }

    /// Every shared-data key in this gateway's vm_id namespace, sorted.
    pub fn shared_data_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.shared.shared_data)
            .map
            .get(&self.shared.vm_id)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    pub fn shared_data_with_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        lock(&self.shared.shared_data)
            .map
            .get(&self.shared.vm_id)
            .and_then(|m| m.get(key))
            .cloned()
    }

    /// Sets shared data from the test (unconditionally, bumping the cas).
    pub fn set_shared_data(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        let mut d = lock(&self.shared.shared_data);
        let cas = d.bump();
        d.map
            .entry(self.shared.vm_id.clone())
            .or_default()
            .insert(key.into(), (value.into(), cas));
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The first guest trap, if any.
    pub fn trap(&self) -> Option<String> {
        lock(&self.shared.traps).first().cloned()
    }

    /// All guest traps, in order.
    pub fn traps(&self) -> Vec<String> {
        lock(&self.shared.traps).clone()
    }

    pub fn tick_period(&self, worker: usize) -> Option<Duration> {
        self.workers
            .get(worker)
            .and_then(|w| w.store.data().tick_period)
    }

    /// Calls (HTTP and gRPC) dispatched but not yet delivered nor cancelled,
    /// as (worker, owner context, token).
    pub fn pending_calls(&self) -> Vec<(usize, u32, u32)> {
        self.workers
            .iter()
            .flat_map(|w| {
                w.store
                    .data()
                    .pending
                    .iter()
                    .map(move |p| (w.index, p.owner, p.token))
            })
            .collect()
    }
}

/// A request being built; `send` delivers its headers (and body) to the guest.
pub struct RequestBuilder<'g> {
    gateway: &'g mut Gateway,
    worker: usize,
    request_id: String,
    method: String,
    scheme: Vec<u8>,
    authority: Vec<u8>,
    path: Vec<u8>,
    without: Vec<String>,
    headers: Pairs,
    body: Vec<u8>,
    split: Split,
    trailers: Pairs,
    properties: HashMap<Vec<u8>, Vec<u8>>,
}

/// How a request body is cut into the chunks the guest receives.
enum Split {
    Whole,
    Chunks(Vec<Vec<u8>>),
    At(Vec<usize>),
    Random { pieces: usize, seed: u64 },
}

impl<'g> RequestBuilder<'g> {
    /// The body as these chunks: one `proxy_on_request_body` per chunk
    /// (when the headers continued; see `crate::flow`). Empty chunks are
    /// dropped.
    pub fn body_chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.split = Split::Chunks(chunks);
        self
    }
    /// Cuts the body (`body`) at these byte offsets.
    pub fn body_split_at(mut self, offsets: &[usize]) -> Self {
        self.split = Split::At(offsets.to_vec());
        self
    }
    /// Cuts the body (`body`) into up to `pieces` chunks at points drawn
    /// from `seed` (the same seed, the same cuts).
    pub fn body_split_random(mut self, pieces: usize, seed: u64) -> Self {
        self.split = Split::Random { pieces, seed };
        self
    }
    /// Appends a request trailer (name lowercased). With trailers, no body
    /// callback has end_of_stream; `proxy_on_request_trailers` comes last.
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_ref().to_vec(),
        ));
        self
    }
    /// `connection.mtls` (1-byte bool; false unless set).
    pub fn mtls(mut self, on: bool) -> Self {
        self.properties.insert(
            abi::properties::path_key(&["connection", "mtls"]),
            vec![on as u8],
        );
        self
    }
    /// `connection.uri_san_peer_certificate` (absent unless set).
    pub fn peer_uri_san(mut self, v: impl AsRef<[u8]>) -> Self {
        self.properties.insert(
            abi::properties::path_key(&["connection", "uri_san_peer_certificate"]),
            v.as_ref().to_vec(),
        );
        self
    }
    /// Any property for this stream, raw-encoded.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        self.properties
            .insert(abi::properties::path_key(path), value.into());
        self
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn scheme(mut self, s: impl AsRef<[u8]>) -> Self {
        self.scheme = s.as_ref().to_vec();
        self
    }
    pub fn authority(mut self, a: impl AsRef<[u8]>) -> Self {
        self.authority = a.as_ref().to_vec();
        self
    }
    pub fn path(mut self, p: impl AsRef<[u8]>) -> Self {
        self.path = p.as_ref().to_vec();
        self
    }
    /// Appends a header (name lowercased, as Envoy does; duplicates allowed).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_ref().to_vec(),
        ));
        self
    }
    /// Omits a default header (`:method`, `:scheme`, `:authority`, `:path`, `x-request-id`).
    pub fn without(mut self, name: &str) -> Self {
        self.without.push(name.to_ascii_lowercase());
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }

    /// Creates the HTTP context and delivers `on_request_headers` (and the
    /// body, if the headers continue). Does not settle: call responses wait
    /// for `settle`/`advance`.
    pub fn send(self) -> StreamId {
        let mut h: Pairs = Vec::new();
        let defaults: [(&str, Vec<u8>); 4] = [
            (":method", self.method.into_bytes()),
            (":scheme", self.scheme),
            (":authority", self.authority),
            (":path", self.path),
        ];
        for (k, v) in defaults {
            if !self.without.iter().any(|w| w == k) {
                h.push((k.as_bytes().to_vec(), v));
            }
        }
        h.extend(self.headers);
        let has_id = h.iter().any(|(k, _)| k == b"x-request-id");
        if !has_id && !self.without.iter().any(|w| w == "x-request-id") {
            h.push((b"x-request-id".to_vec(), self.request_id.into_bytes()));
        }
        let mut properties = self.properties;
        properties
            .entry(abi::properties::path_key(&["connection", "mtls"]))
            .or_insert_with(|| vec![0]);
        let chunks = match self.split {
            Split::Whole => vec![self.body],
            Split::Chunks(c) => c,
            Split::At(o) => crate::flow::split_at(&self.body, &o),
            Split::Random { pieces, seed } => crate::flow::split_random(&self.body, pieces, seed),
        };
        let trailers = (!self.trailers.is_empty()).then_some(self.trailers);
        let context =
            self.gateway.workers[self.worker].start_stream(h, chunks, trailers, properties);
        StreamId {
            worker: self.worker,
            context,
        }
    }
}
