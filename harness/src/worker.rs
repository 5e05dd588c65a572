//! One worker: a VM (wasmtime `Store` + instance) with its root context, and
//! the state machine that drives its HTTP streams through the guest's
//! callbacks the way Envoy's filter manager does.
//!
//! Invariants:
//! - Guest callbacks run only from here, one at a time, on the test thread.
//!   Before each, the current and effective contexts are set to the
//!   callback's context.
//! - After each callback: the returned Action is applied first (unless a local
//!   reply is pending for that stream), then the deferred `AfterAction`s,
//!   then every touched stream is driven as far as it can go.
//! - Bodies and trailers reach the guest as `crate::flow` says (Envoy's
//!   pause modes, chunked delivery, buffering). A local reply ends the
//!   request path: it is run through the stream's
//!   response callbacks (as Envoy encodes local replies through the filter
//!   chain), then the stream is finished with on_log, on_done, on_delete.
//! - Finishing a stream cancels the calls it owns, silently.
//! - A call's answer is delivered once, to the context that owns it, after
//!   the hostcall that dispatched it has returned: HTTP with
//!   `proxy_on_http_call_response`; gRPC status 0 with
//!   `proxy_on_grpc_receive` (the message readable as `GrpcReceiveBuffer`),
//!   any other status with `proxy_on_grpc_close` (code and message readable
//!   with `proxy_get_status`). A reset HTTP call (zero headers) also sets
//!   the status to BrokenConnection `reset`, as Envoy's `onHttpCallFailure`.
//!   What the callback could read is cleared when it returns, before its
//!   deferred actions run. Without an owner or an exported callback the
//!   answer is dropped.
//! - A trap kills the VM: every live stream gets a 503 `wasm_fail_stream`
//!   local reply, pending calls and ticks stop, later requests get a 503
//!   `wasm_vm_failed` reply without reaching the guest.

use crate::abi::stream_control::local_reply_headers;
use crate::flow::Next;
use crate::logs::LogLevel;
use crate::module::Module;
use crate::outcome::LocalReply;
use crate::pairs::Pairs;
use crate::state::{
    lock, AfterAction, CallDelivery, Delivery, GrpcDelivery, PendingKind, WorkerHost,
};
use crate::stream::{response_of, Direction, Stream, UpstreamResponse};
use std::collections::HashMap;
use wasmtime::{InstancePre, Store, TypedFunc};

/// Why a VM could not start.
#[derive(Debug)]
pub enum StartFailure {
    Instantiate(String),
    Trap(String),
    Rejected,
}

/// `proxy_on_http_call_response(context, token, headers, body_size, trailers)`.
type CallResponseFn = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// `proxy_on_grpc_receive(context, token, size)`, `proxy_on_grpc_close(context, token, code)`.
type GrpcFn = TypedFunc<(i32, i32, i32), ()>;

/// Envoy's `WasmResult::BrokenConnection`, the status of a reset HTTP call.
const BROKEN_CONNECTION: u32 = 11;

struct Exports {
    context_create: TypedFunc<(i32, i32), ()>,
    vm_start: Option<TypedFunc<(i32, i32), i32>>,
    configure: Option<TypedFunc<(i32, i32), i32>>,
    tick: Option<TypedFunc<i32, ()>>,
    queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    request_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    response_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    http_call_response: Option<CallResponseFn>,
    grpc_receive: Option<GrpcFn>,
    grpc_close: Option<GrpcFn>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Headers,
    Body,
    Trailers,
}

const ACTION_CONTINUE: i32 = 0;

pub struct Worker {
    pub index: usize,
    pub store: Store<WorkerHost>,
    /// Behind an `Arc` so a callback can hold its export while the worker
    /// is borrowed mutably, without cloning the `TypedFunc` (which clones
    /// its registered type) on every call.
    ex: std::sync::Arc<Exports>,
    pub dead: Option<String>,
    /// Streams to drive once the running [`Worker::drive`] returns: driving
    /// is never re-entered from a callback it made, so a body in a million
    /// 1-byte chunks does not grow the stack.
    drive_queue: Vec<u32>,
    driving: bool,
}

fn typed<P, R>(
    instance: &wasmtime::Instance,
    store: &mut Store<WorkerHost>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, StartFailure>
where
    P: wasmtime::WasmParams,
    R: wasmtime::WasmResults,
{
    if instance.get_func(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map(Some)
        .map_err(|e| {
            StartFailure::Instantiate(format!("export {name} has an unexpected signature: {e:#}"))
        })
}

impl Worker {
    /// Instantiates the module and runs `_initialize`, root context creation,
    /// `on_vm_start` and `on_configure`.
    pub fn start(
        module: &Module,
        pre: &InstancePre<WorkerHost>,
        host: WorkerHost,
    ) -> Result<Worker, StartFailure> {
        let index = host.worker;
        let mut store = Store::new(&module.engine, host);
        store.epoch_deadline_trap();
        let budget = store.data().epoch_budget;
        store.set_epoch_deadline(budget);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| StartFailure::Instantiate(format!("{e:#}")))?;
        if instance
            .get_func(&mut store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            return Err(StartFailure::Instantiate(
                "the module does not export proxy_abi_version_0_2_1 (not a proxy-wasm 0.2.1 module)".into(),
            ));
        }
        let memory = instance.get_memory(&mut store, "memory");
        let alloc = match typed::<i32, i32>(&instance, &mut store, "malloc")? {
            Some(f) => Some(f),
            None => typed::<i32, i32>(&instance, &mut store, "proxy_on_memory_allocate")?,
        };
        if memory.is_none() || alloc.is_none() {
            return Err(StartFailure::Instantiate(
                "the module exports no memory, or neither malloc nor proxy_on_memory_allocate"
                    .into(),
            ));
        }
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc.map(std::sync::Arc::new);
        let context_create = typed::<(i32, i32), ()>(
            &instance,
            &mut store,
            "proxy_on_context_create",
        )?
        .ok_or_else(|| {
            StartFailure::Instantiate("the module does not export proxy_on_context_create".into())
        })?;
        let ex = Exports {
            context_create,
            vm_start: typed(&instance, &mut store, "proxy_on_vm_start")?,
            configure: typed(&instance, &mut store, "proxy_on_configure")?,
            tick: typed(&instance, &mut store, "proxy_on_tick")?,
            queue_ready: typed(&instance, &mut store, "proxy_on_queue_ready")?,
            request_headers: typed(&instance, &mut store, "proxy_on_request_headers")?,
            request_body: typed(&instance, &mut store, "proxy_on_request_body")?,
            request_trailers: typed(&instance, &mut store, "proxy_on_request_trailers")?,
            response_headers: typed(&instance, &mut store, "proxy_on_response_headers")?,
            response_body: typed(&instance, &mut store, "proxy_on_response_body")?,
            response_trailers: typed(&instance, &mut store, "proxy_on_response_trailers")?,
            http_call_response: typed(&instance, &mut store, "proxy_on_http_call_response")?,
            grpc_receive: typed(&instance, &mut store, "proxy_on_grpc_receive")?,
            grpc_close: typed(&instance, &mut store, "proxy_on_grpc_close")?,
            done: typed(&instance, &mut store, "proxy_on_done")?,
            log: typed(&instance, &mut store, "proxy_on_log")?,
            delete: typed(&instance, &mut store, "proxy_on_delete")?,
        };
        let initialize = typed::<(), ()>(&instance, &mut store, "_initialize")?;
        let mut w = Worker {
            index,
            store,
            ex: std::sync::Arc::new(ex),
            dead: None,
            drive_queue: Vec::new(),
            driving: false,
        };
        let root = w.root() as i32;
        let ex = w.ex.clone();
        if let Some(init) = initialize {
            w.guest(root as u32, "_initialize", |st| init.call(st, ()));
        }
        let create = &ex.context_create;
        w.guest(root as u32, "proxy_on_context_create", |st| {
            create.call(st, (root, 0))
        });
        if let Some(msg) = w.dead.clone() {
            return Err(StartFailure::Trap(msg));
        }
        if let Some(f) = ex.vm_start.as_ref() {
            let size = w.store.data().vm_config.len() as i32;
            match w.guest(root as u32, "proxy_on_vm_start", |st| {
                f.call(st, (root, size))
            }) {
                Some(0) => return Err(StartFailure::Rejected),
                Some(_) => {}
                None => return Err(StartFailure::Trap(w.dead.clone().unwrap_or_default())),
            }
        }
        match w.configure(None) {
            Some(true) => {}
            Some(false) => return Err(StartFailure::Rejected),
            None => return Err(StartFailure::Trap(w.dead.clone().unwrap_or_default())),
        }
        w.finish_callback(root as u32, None);
        Ok(w)
    }

    pub fn root(&self) -> u32 {
        self.store.data().root_context_id
    }

    /// Runs `proxy_on_configure` (with a new plugin configuration if given).
    /// None if the VM is dead or trapped.
    pub fn configure(&mut self, config: Option<Vec<u8>>) -> Option<bool> {
        let ex = self.ex.clone();
        let f = ex.configure.as_ref()?;
        let old = config.map(|c| std::mem::replace(&mut self.store.data_mut().plugin_config, c));
        let root = self.root();
        let size = self.store.data().plugin_config.len() as i32;
        self.store.data_mut().configuring = true;
        let r = self.guest(root, "proxy_on_configure", |st| {
            f.call(st, (root as i32, size))
        });
        self.store.data_mut().configuring = false;
        if r == Some(0) {
            if let Some(old) = old {
                self.store.data_mut().plugin_config = old;
            }
        }
        if r.is_some() {
            self.finish_callback(root, None);
        }
        r.map(|v| v != 0)
    }

    /// Calls into the guest with `ctx` as current and effective context.
    /// Returns None if the VM is dead or the call trapped (which kills it).
    fn guest<R>(
        &mut self,
        ctx: u32,
        what: &str,
        f: impl FnOnce(&mut Store<WorkerHost>) -> wasmtime::Result<R>,
    ) -> Option<R> {
        if self.dead.is_some() {
            return None;
        }
        {
            let h = self.store.data_mut();
            h.current = ctx;
            h.effective = ctx;
        }
        let budget = self.store.data().epoch_budget;
        self.store.set_epoch_deadline(budget);
        match f(&mut self.store) {
            Ok(r) => Some(r),
            Err(e) => {
                self.fail(what, ctx, e);
                None
            }
        }
    }

    fn fail(&mut self, what: &str, ctx: u32, e: wasmtime::Error) {
        let shared = self.store.data().shared.clone();
        let stderr: Vec<String> = lock(&shared.logs)
            .filtered(|worker, level| worker == self.index && level >= LogLevel::Error)
            .into_iter()
            .rev()
            .take(3)
            .map(|l| l.message.clone())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let mut msg = format!(
            "wasm trap in {what} (worker {}, context {ctx}): {e:#}",
            self.index
        );
        if !stderr.is_empty() {
            msg.push_str("\nlast error output: ");
            msg.push_str(&stderr.join("\n"));
        }
        shared.log(self.index, ctx, LogLevel::Critical, msg.as_bytes());
        lock(&shared.traps).push(msg.clone());
        self.dead = Some(msg);
        let host = self.store.data_mut();
        host.after.clear();
        host.call_response = None;
        host.grpc_receive = None;
        host.status_message.clear();
        host.tick_period = None;
        host.next_tick = None;
        for p in host.pending.drain(..) {
            if let PendingKind::Remote { abort } = p.kind {
                abort.abort();
            }
        }
        for (_, mut s) in host.streams.drain() {
            s.live = false;
            if s.local_reply.is_none() {
                s.local_reply = Some(failure_reply("wasm_fail_stream"));
            }
            host.ended.record(&s);
        }
    }

    fn stream(&mut self, ctx: u32) -> Option<&mut Stream> {
        self.store
            .data_mut()
            .streams
            .get_mut(&ctx)
            .filter(|s| s.live)
    }

    /// Creates an HTTP context and delivers the request headers.
    pub fn start_stream(
        &mut self,
        headers: Pairs,
        chunks: Vec<Vec<u8>>,
        trailers: Option<Pairs>,
        properties: HashMap<Vec<u8>, Vec<u8>>,
    ) -> u32 {
        let ex = self.ex.clone();
        let host = self.store.data_mut();
        let ctx = host.next_context_id;
        host.next_context_id += 1;
        let n = headers.len() as i32;
        let mut stream = Stream::new(ctx, headers, chunks, trailers, properties);
        let eos = stream.req.headers_eos() as i32;
        if self.dead.is_some() {
            stream.live = false;
            stream.local_reply = Some(failure_reply("wasm_vm_failed"));
            self.store.data_mut().ended.record(&stream);
            return ctx;
        }
        self.store.data_mut().streams.insert(ctx, stream);
        let root = self.root() as i32;
        let create = &ex.context_create;
        if self
            .guest(ctx, "proxy_on_context_create", |st| {
                create.call(st, (ctx as i32, root))
            })
            .is_none()
        {
            return ctx;
        }
        let action = match ex.request_headers.as_ref() {
            Some(f) => match self.guest(ctx, "proxy_on_request_headers", |st| {
                f.call(st, (ctx as i32, n, eos))
            }) {
                Some(a) => a,
                None => return ctx,
            },
            None => ACTION_CONTINUE,
        };
        self.finish_callback(ctx, Some((Direction::Request, Hook::Headers, action)));
        ctx
    }

    /// Applies a callback's returned Action and deferred actions, then drives
    /// every touched stream.
    fn finish_callback(&mut self, ctx: u32, applied: Option<(Direction, Hook, i32)>) {
        if self.dead.is_some() {
            return;
        }
        let after = std::mem::take(&mut self.store.data_mut().after);
        let replying = after
            .iter()
            .any(|a| matches!(a, AfterAction::LocalReply(c, _) if *c == ctx));
        if let (Some((dir, hook, action)), false) = (applied, replying) {
            self.apply(ctx, dir, hook, action);
        }
        let mut touched = vec![ctx];
        for a in after {
            match a {
                AfterAction::Continue(c, dir) => {
                    if let Some(s) = self.stream(c) {
                        if s.local_reply.is_none() && !s.reset {
                            match dir {
                                Direction::Request => s.req.resume(),
                                Direction::Response => {
                                    if let Some(f) = s.resp.as_mut() {
                                        f.resume()
                                    }
                                }
                            }
                        }
                        touched.push(c);
                    }
                }
                AfterAction::Close(c, _) => {
                    if let Some(s) = self.stream(c) {
                        s.reset = true;
                        touched.push(c);
                    }
                }
                AfterAction::LocalReply(c, reply) => {
                    if let Some(s) = self.stream(c) {
                        if s.local_reply.is_none() {
                            s.local_reply = Some(reply);
                        }
                        touched.push(c);
                    }
                }
            }
        }
        touched.dedup();
        for c in touched {
            self.drive(c);
        }
    }

    fn apply(&mut self, ctx: u32, dir: Direction, hook: Hook, action: i32) {
        let allow = self.store.data().shared.allow_on_headers_stop_iteration;
        let Some(s) = self.stream(ctx) else { return };
        if s.local_reply.is_some() || s.reset {
            return;
        }
        let go = action == ACTION_CONTINUE;
        let flow = match dir {
            Direction::Request => &mut s.req,
            Direction::Response => match s.resp.as_mut() {
                Some(f) => f,
                None => return,
            },
        };
        match hook {
            Hook::Headers if !flow.headers_done => flow.headers_returned(go, allow),
            Hook::Body => flow.body_returned(go),
            Hook::Trailers => flow.trailers_returned(go),
            _ => {}
        }
    }

    /// Runs one body or trailers callback of `dir`, as `Flow::step` said. Returns
    /// false if the VM died.
    fn deliver_next(&mut self, ctx: u32, dir: Direction, next: Next) -> bool {
        let ex = self.ex.clone();
        let (body_fn, trailers_fn, body_name, trailers_name) = match dir {
            Direction::Request => (
                ex.request_body.as_ref(),
                ex.request_trailers.as_ref(),
                "proxy_on_request_body",
                "proxy_on_request_trailers",
            ),
            Direction::Response => (
                ex.response_body.as_ref(),
                ex.response_trailers.as_ref(),
                "proxy_on_response_body",
                "proxy_on_response_trailers",
            ),
        };
        fn flow(w: &mut Worker, ctx: u32, dir: Direction) -> Option<&mut crate::flow::Flow> {
            let s = w.stream(ctx)?;
            match dir {
                Direction::Request => Some(&mut s.req),
                Direction::Response => s.resp.as_mut(),
            }
        }
        match next {
            Next::Body { len, eos } => {
                let Some(f) = body_fn else {
                    if let Some(fl) = flow(self, ctx, dir) {
                        fl.body_returned(true);
                    }
                    return true;
                };
                if let Some(fl) = flow(self, ctx, dir) {
                    fl.in_body = true;
                }
                let r = self.guest(ctx, body_name, |st| {
                    f.call(st, (ctx as i32, len as i32, eos as i32))
                });
                if let Some(fl) = flow(self, ctx, dir) {
                    fl.in_body = false;
                }
                let Some(action) = r else { return false };
                self.finish_callback(ctx, Some((dir, Hook::Body, action)));
            }
            Next::Trailers { n } => {
                if let Some(fl) = flow(self, ctx, dir) {
                    fl.trailers_started();
                }
                let Some(f) = trailers_fn else {
                    if let Some(fl) = flow(self, ctx, dir) {
                        fl.trailers_returned(true);
                    }
                    return true;
                };
                let Some(action) =
                    self.guest(ctx, trailers_name, |st| f.call(st, (ctx as i32, n as i32)))
                else {
                    return false;
                };
                self.finish_callback(ctx, Some((dir, Hook::Trailers, action)));
            }
            Next::Wait | Next::Complete => {}
        }
        true
    }

    /// Advances a stream as far as it can go without outside input.
    fn drive(&mut self, ctx: u32) {
        if self.driving {
            if !self.drive_queue.contains(&ctx) {
                self.drive_queue.push(ctx);
            }
            return;
        }
        self.driving = true;
        self.drive_one(ctx);
        while !self.drive_queue.is_empty() {
            let next = self.drive_queue.remove(0);
            self.drive_one(next);
        }
        self.driving = false;
    }

    fn drive_one(&mut self, ctx: u32) {
        let ex = self.ex.clone();
        loop {
            if self.dead.is_some() {
                return;
            }
            let Some(s) = self.stream(ctx) else { return };
            if s.local_reply.is_some() {
                if !s.local_reply_encoded {
                    s.local_reply_encoded = true;
                    self.encode_local_reply(ctx);
                    continue;
                }
                self.finish(ctx);
                return;
            }
            if s.reset {
                self.finish(ctx);
                return;
            }
            match s.req.step() {
                Next::Wait => return,
                n @ (Next::Body { .. } | Next::Trailers { .. }) => {
                    if !self.deliver_next(ctx, Direction::Request, n) {
                        return;
                    }
                    continue;
                }
                Next::Complete => {}
            }
            match s.resp.as_mut() {
                None => {
                    let Some(up) = s.upstream_response.take() else {
                        return;
                    };
                    let n = up.headers.len() as i32;
                    let mut flow = crate::flow::Flow::new(up.headers, up.chunks, up.trailers);
                    flow.open = up.open;
                    let eos = flow.headers_eos() as i32;
                    s.resp = Some(flow);
                    let action = match ex.response_headers.as_ref() {
                        Some(f) => match self.guest(ctx, "proxy_on_response_headers", |st| {
                            f.call(st, (ctx as i32, n, eos))
                        }) {
                            Some(a) => a,
                            None => return,
                        },
                        None => ACTION_CONTINUE,
                    };
                    self.finish_callback(ctx, Some((Direction::Response, Hook::Headers, action)));
                    return;
                }
                Some(flow) => match flow.step() {
                    Next::Wait => return,
                    n @ (Next::Body { .. } | Next::Trailers { .. }) => {
                        if !self.deliver_next(ctx, Direction::Response, n) {
                            return;
                        }
                    }
                    Next::Complete => {
                        s.downstream_response = Some(response_of(flow));
                        self.finish(ctx);
                        return;
                    }
                },
            }
        }
    }

    /// Runs a local reply through the stream's response callbacks (unless the
    /// response phase had already begun), recording the reply as sent. The
    /// filter's answers are not waited for: the reply goes out whole.
    fn encode_local_reply(&mut self, ctx: u32) {
        let ex = self.ex.clone();
        let Some(s) = self.stream(ctx) else { return };
        if s.resp.is_some() {
            return;
        }
        let Some(reply) = s.local_reply.clone() else {
            return;
        };
        let n = reply.headers.len() as i32;
        let flow = crate::flow::Flow::new(reply.headers.clone(), vec![reply.body.clone()], None);
        let eos = flow.headers_eos() as i32;
        s.resp = Some(flow);
        if let Some(f) = ex.response_headers.as_ref() {
            if self
                .guest(ctx, "proxy_on_response_headers", |st| {
                    f.call(st, (ctx as i32, n, eos))
                })
                .is_none()
            {
                return;
            }
        }
        let mut after = std::mem::take(&mut self.store.data_mut().after);
        let mut body = None;
        if let Some(fl) = self.stream(ctx).and_then(|s| s.resp.as_mut()) {
            fl.headers_done = true;
            fl.headers_ptr = false;
            if let Next::Body { len, eos } = fl.step() {
                body = Some((len, eos));
            }
        }
        if let (Some((len, eos)), Some(f)) = (body, ex.response_body.as_ref()) {
            if let Some(fl) = self.stream(ctx).and_then(|s| s.resp.as_mut()) {
                fl.in_body = true;
            }
            if self
                .guest(ctx, "proxy_on_response_body", |st| {
                    f.call(st, (ctx as i32, len as i32, eos as i32))
                })
                .is_none()
            {
                return;
            }
            if let Some(fl) = self.stream(ctx).and_then(|s| s.resp.as_mut()) {
                fl.in_body = false;
                fl.body_callbacks += 1;
            }
            after.extend(std::mem::take(&mut self.store.data_mut().after));
        }
        if let Some(s) = self.stream(ctx) {
            if let Some(fl) = s.resp.as_mut() {
                fl.force_all();
                let headers = fl.sent_headers.clone().unwrap_or_default();
                let body = fl.sent_body.clone();
                if let Some(r) = s.local_reply.as_mut() {
                    r.headers = headers;
                    r.body = body;
                }
            }
        }
        self.store.data_mut().after = after;
        self.finish_callback(ctx, None);
    }

    /// Ends a stream: on_log, on_done, on_delete; cancels the calls it owns.
    pub fn finish(&mut self, ctx: u32) {
        let ex = self.ex.clone();
        if self.stream(ctx).is_none() {
            return;
        }
        if let Some(s) = self.stream(ctx) {
            s.in_log = true;
        }
        if let Some(f) = ex.log.as_ref() {
            self.guest(ctx, "proxy_on_log", |st| f.call(st, ctx as i32));
        }
        if let Some(s) = self.stream(ctx) {
            s.in_log = false;
            s.filter_state.at_access_log = Some(s.filter_state.values.clone());
        }
        if let Some(f) = ex.done.as_ref() {
            self.guest(ctx, "proxy_on_done", |st| f.call(st, ctx as i32));
        }
        if let Some(f) = ex.delete.as_ref() {
            self.guest(ctx, "proxy_on_delete", |st| f.call(st, ctx as i32));
        }
        if self.dead.is_some() {
            return;
        }
        let host = self.store.data_mut();
        if let Some(s) = host.streams.get_mut(&ctx) {
            s.live = false;
        }
        host.end_stream(ctx);
        host.pending.retain(|p| {
            if p.owner != ctx {
                return true;
            }
            if let PendingKind::Remote { abort } = &p.kind {
                abort.abort();
            }
            false
        });
        self.finish_callback(ctx, None);
    }

    /// Delivers a call's answer to the owning context (dropped if the call
    /// is no longer pending, e.g. cancelled, or its context is gone).
    pub fn deliver(&mut self, token: u32, delivery: CallDelivery) {
        let host = self.store.data_mut();
        let Some(i) = host.pending.iter().position(|p| p.token == token) else {
            return;
        };
        let owner = host.pending.remove(i).owner;
        if !host.is_known_context(owner) {
            return;
        }
        match delivery {
            CallDelivery::Http(d) => self.deliver_http(owner, token, d),
            CallDelivery::Grpc(d) => self.deliver_grpc(owner, token, d),
        }
    }

    fn deliver_http(&mut self, owner: u32, token: u32, delivery: Delivery) {
        let ex = self.ex.clone();
        let reset = delivery.headers.is_empty();
        if reset {
            let h = self.store.data_mut();
            h.status_code = BROKEN_CONNECTION;
            h.status_message = b"reset".to_vec();
        }
        let Some(f) = ex.http_call_response.as_ref() else {
            self.store.data_mut().status_message.clear();
            return;
        };
        let (nh, nb, nt) = (
            delivery.headers.len() as i32,
            delivery.body.len() as i32,
            delivery.trailers.len() as i32,
        );
        self.store.data_mut().call_response = Some(delivery);
        let r = self.guest(owner, "proxy_on_http_call_response", |st| {
            f.call(st, (owner as i32, token as i32, nh, nb, nt))
        });
        let h = self.store.data_mut();
        h.call_response = None;
        h.status_message.clear();
        if r.is_some() {
            self.finish_callback(owner, None);
        }
    }

    fn deliver_grpc(&mut self, owner: u32, token: u32, delivery: GrpcDelivery) {
        let ex = self.ex.clone();
        let r = if delivery.status == 0 {
            let Some(f) = ex.grpc_receive.as_ref() else {
                return;
            };
            let size = delivery.message.len() as i32;
            self.store.data_mut().grpc_receive = Some(delivery.message);
            let r = self.guest(owner, "proxy_on_grpc_receive", |st| {
                f.call(st, (owner as i32, token as i32, size))
            });
            self.store.data_mut().grpc_receive = None;
            r
        } else {
            let Some(f) = ex.grpc_close.as_ref() else {
                return;
            };
            let code = delivery.status;
            let h = self.store.data_mut();
            h.status_code = code;
            h.status_message = delivery.status_message;
            let r = self.guest(owner, "proxy_on_grpc_close", |st| {
                f.call(st, (owner as i32, token as i32, code as i32))
            });
            self.store.data_mut().status_message.clear();
            r
        };
        if r.is_some() {
            self.finish_callback(owner, None);
        }
    }

    /// Fires `proxy_on_tick` if a tick is due at virtual time `now`.
    pub fn tick_if_due(&mut self, now: std::time::Duration) -> bool {
        let ex = self.ex.clone();
        let host = self.store.data_mut();
        let (Some(due), Some(period)) = (host.next_tick, host.tick_period) else {
            return false;
        };
        if due > now {
            return false;
        }
        host.next_tick = Some(now + period);
        let root = self.root();
        if let Some(f) = ex.tick.as_ref() {
            if self
                .guest(root, "proxy_on_tick", |st| f.call(st, root as i32))
                .is_some()
            {
                self.finish_callback(root, None);
            }
        }
        true
    }

    pub fn queue_ready(&mut self, ctx: u32, queue: u32) {
        let ex = self.ex.clone();
        if !self.store.data().is_known_context(ctx) {
            return;
        }
        if let Some(f) = ex.queue_ready.as_ref() {
            if self
                .guest(ctx, "proxy_on_queue_ready", |st| {
                    f.call(st, (ctx as i32, queue as i32))
                })
                .is_some()
            {
                self.finish_callback(ctx, None);
            }
        }
    }

    /// The upstream answers a forwarded stream.
    pub fn respond(
        &mut self,
        ctx: u32,
        headers: Pairs,
        chunks: Vec<Vec<u8>>,
        trailers: Option<Pairs>,
    ) -> Result<(), String> {
        self.upstream_answers(
            ctx,
            UpstreamResponse {
                headers,
                chunks,
                trailers,
                open: false,
            },
        )
    }

    /// The upstream sends its response headers and these chunks, and has
    /// not finished: the filter sees no end_of_stream. Followed by
    /// [`cancel`](Self::cancel), this is a client leaving mid-response.
    pub fn respond_partial(
        &mut self,
        ctx: u32,
        headers: Pairs,
        chunks: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        self.upstream_answers(
            ctx,
            UpstreamResponse {
                headers,
                chunks,
                trailers: None,
                open: true,
            },
        )
    }

    fn upstream_answers(&mut self, ctx: u32, response: UpstreamResponse) -> Result<(), String> {
        let Some(s) = self.stream(ctx) else {
            return Err("the stream has already ended".into());
        };
        if s.local_reply.is_some() || !s.req.complete {
            return Err(format!(
                "the request has not been forwarded (it is {:?})",
                s.outcome()
            ));
        }
        if s.resp.is_some() || s.upstream_response.is_some() {
            return Err("the stream already has a response".into());
        }
        s.upstream_response = Some(response);
        self.drive(ctx);
        Ok(())
    }

    /// Downstream reset.
    pub fn cancel(&mut self, ctx: u32) {
        if let Some(s) = self.stream(ctx) {
            s.cancelled = true;
            self.finish(ctx);
        }
    }
}

fn failure_reply(details: &str) -> LocalReply {
    LocalReply {
        status: 503,
        headers: local_reply_headers(503, &[], Vec::new()),
        body: Vec::new(),
        details: details.into(),
    }
}
