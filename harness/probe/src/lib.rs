//! A tiny proxy-wasm guest for the harness's own tests.
//!
//! Its behaviour is chosen from outside, so one module covers every host
//! feature:
//! - plugin configuration: one `key=value` (or bare `key`) per line, read in
//!   `on_configure` (`reject`, `tick=<ms>`, `queue=<name>`, `tick-call=<cluster>`,
//!   `metric=<name>`);
//! - the request header `x-probe`: `;`-separated operations run in
//!   `on_http_request_headers`, e.g. `add:x-a=1;call:vault;log:warn:hello`.
//!
//! gRPC operations: `grpc:<cluster>:<service>:<method>:<message>` dispatches
//! a unary call (metadata from `x-probe-grpc-metadata: k=v,k=v`, timeout
//! from `x-probe-timeout`, default 1000 ms) and pauses the request until the
//! answer, which it copies into the request headers `x-probe-grpc-status`,
//! `x-probe-grpc-message` and `x-probe-grpc-status-message` before resuming;
//! `grpc-async:...` dispatches without pausing; `grpc-cancel:<token|last>`
//! and `grpc-close:<token|last>` cancel a call (`last`: this context's last
//! dispatch); `grpc-status` and `grpc-buffer` read `proxy_get_status` and
//! the gRPC receive buffer outside any gRPC callback. Every answer is logged
//! as `probe grpc response: token=.. status=.. size=.. message=..
//! get_status=<code>:<message>`.
//!
//! Invariants:
//! - Every operation that can fail logs its outcome as `probe <op> <arg>: <Status>`
//!   (or a value), using the raw imports so a non-Ok status is observed, never
//!   turned into a panic by the SDK's helpers.
//! - The only deliberate panic is the `panic` operation.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_add_header_map_value(m: u32, k: *const u8, kl: usize, v: *const u8, vl: usize) -> u32;
    fn proxy_replace_header_map_value(
        m: u32,
        k: *const u8,
        kl: usize,
        v: *const u8,
        vl: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(m: u32, k: *const u8, kl: usize) -> u32;
    fn proxy_get_header_map_value(
        m: u32,
        k: *const u8,
        kl: usize,
        v: *mut *mut u8,
        vl: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_shared_data(k: *const u8, kl: usize, v: *const u8, vl: usize, cas: u32) -> u32;
    fn proxy_set_effective_context(id: u32) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
    fn proxy_set_property(p: *const u8, pl: usize, v: *const u8, vl: usize) -> u32;
    fn proxy_set_buffer_bytes(kind: u32, start: usize, size: usize, v: *const u8, vl: usize)
        -> u32;
    #[link_name = "proxy_log"]
    fn proxy_log_raw(level: u32, msg: usize, len: usize) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(code: *mut u32, msg: *mut *mut u8, msg_len: *mut usize) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        n: *const u8,
        nl: usize,
        a: *const u8,
        al: usize,
        r: *mut *mut u8,
        rl: *mut usize,
    ) -> u32;
}

const REQUEST_HEADERS: u32 = 0;
const REQUEST_TRAILERS: u32 = 1;
const RESPONSE_HEADERS: u32 = 2;
const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const GRPC_RECEIVE_BUFFER: u32 = 5;

/// `proxy_get_status` through the raw import: (status, code, message).
fn grpc_status_now() -> (u32, u32, String) {
    let (mut code, mut p, mut l) = (0u32, std::ptr::null_mut(), 0usize);
    // SAFETY: out-params are live locals. The returned buffer (if any) is
    // leaked, which is fine in a probe.
    let s = unsafe { proxy_get_status(&mut code, &mut p, &mut l) };
    let msg = if p.is_null() || l == 0 {
        String::new()
    } else {
        // SAFETY: the host wrote `l` bytes at `p`, allocated by our allocator.
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p, l) }).into_owned()
    };
    (s, code, msg)
}

/// `proxy_grpc_cancel` / `proxy_grpc_close` through the raw imports, so
/// every status is observed (the SDK panics on some).
fn grpc_cancel(op: &str, token: u32) -> u32 {
    // SAFETY: plain value calls.
    let s = unsafe {
        if op == "grpc-close" {
            proxy_grpc_close(token)
        } else {
            proxy_grpc_cancel(token)
        }
    };
    info(&format!("probe {op} {token}: {}", status_name(s)));
    s
}

/// `proxy_set_property(path, value)` with the path bytes verbatim.
fn set_prop(arg: &str) -> u32 {
    let (k, v) = kv(arg);
    // SAFETY: pointers and lengths come from live Rust slices.
    let s = unsafe { proxy_set_property(k.as_ptr(), k.len(), v.as_ptr(), v.len()) };
    info(&format!("probe setprop {k}: {}", status_name(s)));
    s
}

/// `proxy_set_buffer_bytes`, logging the status.
fn set_buffer(kind: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    // SAFETY: pointers and lengths come from live Rust slices.
    let s = unsafe { proxy_set_buffer_bytes(kind, start, size, data.as_ptr(), data.len()) };
    info(&format!(
        "probe set-buffer {kind} start={start} size={size}: {}",
        status_name(s)
    ));
    s
}

fn status_name(s: u32) -> String {
    match s {
        0 => "Ok".into(),
        1 => "NotFound".into(),
        2 => "BadArgument".into(),
        3 => "SerializationFailure".into(),
        4 => "ParseFailure".into(),
        6 => "InvalidMemoryAccess".into(),
        7 => "Empty".into(),
        8 => "CasMismatch".into(),
        10 => "InternalFailure".into(),
        11 => "BrokenConnection".into(),
        other => format!("Status({other})"),
    }
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

fn info(msg: &str) {
    log(LogLevel::Info, msg);
}

fn pairs(map: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = (map.len() as u32).to_le_bytes().to_vec();
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn kv(arg: &str) -> (&str, &str) {
    arg.split_once('=').unwrap_or((arg, ""))
}

fn header_op(op: &str, map: u32, arg: &str) -> u32 {
    let (k, v) = kv(arg);
    // SAFETY: pointers and lengths come from live Rust slices.
    let s = unsafe {
        match op {
            "add" => proxy_add_header_map_value(map, k.as_ptr(), k.len(), v.as_ptr(), v.len()),
            "replace" => {
                proxy_replace_header_map_value(map, k.as_ptr(), k.len(), v.as_ptr(), v.len())
            }
            _ => proxy_remove_header_map_value(map, k.as_ptr(), k.len()),
        }
    };
    info(&format!("probe {op} {k}: {}", status_name(s)));
    s
}

fn local_reply(status: u32, details: &str, body: &[u8], headers: &[(&str, &[u8])]) -> u32 {
    let h = pairs(headers);
    // SAFETY: pointers and lengths come from live Rust slices.
    let s = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    };
    info(&format!("probe reply {status}: {}", status_name(s)));
    s
}

fn dispatch(cluster: &str, headers: &[(&str, &[u8])], timeout_ms: u32) -> Result<u32, u32> {
    // The SDK's dispatcher must learn the token, so go through its wrapper
    // (it only panics on statuses Envoy never returns here).
    let text: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (*k, std::str::from_utf8(v).unwrap_or("")))
        .collect();
    match hostcalls::dispatch_http_call(
        cluster,
        text,
        Some(b"probe-call"),
        vec![],
        Duration::from_millis(u64::from(timeout_ms)),
    ) {
        Ok(token) => {
            info(&format!("probe call {cluster}: token={token}"));
            Ok(token)
        }
        Err(s) => {
            let s = s as u32;
            info(&format!("probe call {cluster}: {}", status_name(s)));
            Err(s)
        }
    }
}

fn set_shared(key: &str, value: &[u8], cas: u32) -> u32 {
    // SAFETY: pointers and lengths come from live Rust slices.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

fn effective(id: u32) -> u32 {
    // SAFETY: plain value call.
    unsafe { proxy_set_effective_context(id) }
}

fn resume_request() -> u32 {
    // SAFETY: plain value call.
    unsafe { proxy_continue_stream(0) }
}

fn metric(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

thread_local! {
    /// HTTP contexts parked by `park-root`, woken by the root's next tick.
    static PARKED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { id, tick_call: None, ticks: 0 })
    });
}}

struct ProbeRoot {
    id: u32,
    tick_call: Option<String>,
    ticks: u64,
}

impl Context for ProbeRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        info(&format!(
            "probe root call response: token={token} status={status} headers={headers} body={body}"
        ));
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let cfg = self.get_vm_configuration().unwrap_or_default();
        info(&format!(
            "probe vm_start: {}",
            String::from_utf8_lossy(&cfg)
        ));
        !cfg.starts_with(b"reject")
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&cfg).into_owned();
        info(&format!("probe configure: {text}"));
        for line in text.lines() {
            let (k, v) = kv(line.trim());
            match k {
                "reject" => {
                    log(LogLevel::Error, "probe rejects this configuration");
                    return false;
                }
                "tick" => {
                    let ms = v.parse().unwrap_or(0);
                    self.set_tick_period(Duration::from_millis(ms));
                }
                "queue" => {
                    let id = self.register_shared_queue(v);
                    info(&format!("probe queue registered {v}: {id}"));
                }
                "tick-call" => self.tick_call = Some(v.to_string()),
                "metric" => {
                    let id = metric(MetricType::Counter, v);
                    info(&format!("probe metric {v}: {id:?}"));
                }
                "log-level" => {
                    info(&format!(
                        "probe log level: {:?}",
                        hostcalls::get_log_level()
                    ));
                }
                _ => {}
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if let Some(id) = metric(MetricType::Counter, "probe_ticks") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        info(&format!(
            "probe tick n={} now_ms={}",
            self.ticks,
            now.as_millis()
        ));
        let parked: Vec<u32> = PARKED.with(|p| p.borrow_mut().drain(..).collect());
        for id in parked {
            let s = effective(id);
            info(&format!("probe tick wake {id}: {}", status_name(s)));
            if s == 0 {
                header_op("replace", REQUEST_HEADERS, "x-woken-by=tick");
                info(&format!(
                    "probe tick resume {id}: {}",
                    status_name(resume_request())
                ));
            }
        }
        effective(self.id);
        if let Some(cluster) = self.tick_call.clone() {
            let _ = dispatch(
                &cluster,
                &[
                    (":method", b"GET"),
                    (":path", b"/tick"),
                    (":authority", cluster.as_bytes()),
                ],
                1000,
            );
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(msg)) = self.dequeue_shared_queue(queue_id) {
            info(&format!(
                "probe queue {queue_id}: {}",
                String::from_utf8_lossy(&msg)
            ));
        }
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id,
            root: self.id,
            ops: Vec::new(),
            waiting_call: false,
            waiting_grpc: false,
            last_grpc: 0,
            body_calls: 0,
            response_body_calls: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    root: u32,
    ops: Vec<(String, String)>,
    waiting_call: bool,
    /// A `grpc` operation holds the request until its answer.
    waiting_grpc: bool,
    /// The token of this context's last gRPC dispatch (0: none).
    last_grpc: u32,
    /// Request / response body callbacks so far.
    body_calls: usize,
    response_body_calls: usize,
}

impl Probe {
    fn has(&self, op: &str) -> Option<&str> {
        self.ops
            .iter()
            .find(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
    }

    fn run(&mut self, op: &str, arg: &str) -> Action {
        match op {
            "add" | "replace" | "remove" => {
                header_op(op, REQUEST_HEADERS, arg);
            }
            "reply" => {
                local_reply(
                    arg.parse().unwrap_or(403),
                    "probe reply",
                    b"denied by probe",
                    &[("x-probe-reply", b"1")],
                );
            }
            "pause" => return Action::Pause,
            "call" | "call-bad" => {
                let timeout = self
                    .get_http_request_header("x-probe-timeout")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1000);
                let id = self.id.to_string();
                let mut headers: Vec<(&str, &[u8])> = vec![(":method", b"POST")];
                if op == "call" {
                    headers.push((":path", b"/probe"));
                }
                headers.push((":authority", arg.as_bytes()));
                headers.push(("x-from-probe", id.as_bytes()));
                if dispatch(arg, &headers, timeout).is_ok() && op == "call" {
                    self.waiting_call = true;
                    return Action::Pause;
                }
            }
            "grpc" | "grpc-async" => {
                let mut parts = arg.splitn(4, ':');
                let cluster = parts.next().unwrap_or_default();
                let service = parts.next().unwrap_or_default();
                let method = parts.next().unwrap_or_default();
                let message = parts.next().unwrap_or_default();
                let timeout = self
                    .get_http_request_header("x-probe-timeout")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1000);
                let metadata_text = self
                    .get_http_request_header("x-probe-grpc-metadata")
                    .unwrap_or_default();
                let metadata: Vec<(&str, &[u8])> = metadata_text
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(|e| {
                        let (k, v) = kv(e);
                        (k, v.as_bytes())
                    })
                    .collect();
                // The SDK's dispatcher must learn the token to route the
                // answer here (it panics only on statuses Envoy never returns).
                match hostcalls::dispatch_grpc_call(
                    cluster,
                    service,
                    method,
                    metadata,
                    Some(message.as_bytes()),
                    Duration::from_millis(timeout),
                ) {
                    Ok(token) => {
                        info(&format!("probe grpc {cluster}: token={token}"));
                        self.last_grpc = token;
                        if op == "grpc" {
                            self.waiting_grpc = true;
                            return Action::Pause;
                        }
                    }
                    Err(s) => info(&format!("probe grpc {cluster}: {}", status_name(s as u32))),
                }
            }
            "grpc-cancel" | "grpc-close" => {
                let token = if arg == "last" {
                    self.last_grpc
                } else {
                    arg.parse().unwrap_or(0)
                };
                grpc_cancel(op, token);
            }
            "grpc-status" => {
                let (s, code, msg) = grpc_status_now();
                info(&format!(
                    "probe grpc-status: {} code={code} message={msg}",
                    status_name(s)
                ));
            }
            "grpc-buffer" => {
                let (mut p, mut l) = (std::ptr::null_mut(), 0usize);
                // SAFETY: out-params are live locals.
                let s = unsafe {
                    proxy_get_buffer_bytes(GRPC_RECEIVE_BUFFER, 0, usize::MAX >> 1, &mut p, &mut l)
                };
                info(&format!("probe grpc-buffer: {} size={l}", status_name(s)));
            }
            "call-root" => {
                effective(self.root);
                let _ = dispatch(
                    arg,
                    &[
                        (":method", b"GET"),
                        (":path", b"/root"),
                        (":authority", arg.as_bytes()),
                    ],
                    1000,
                );
                effective(self.id);
            }
            "log" => {
                let (level, msg) = arg.split_once(':').unwrap_or(("info", arg));
                let level = match level {
                    "trace" => LogLevel::Trace,
                    "debug" => LogLevel::Debug,
                    "warn" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    "critical" => LogLevel::Critical,
                    _ => LogLevel::Info,
                };
                log(level, msg);
            }
            "metric" | "gauge" | "hist" => {
                let (name, n) = kv(arg);
                let n: u64 = n.parse().unwrap_or(1);
                let kind = match op {
                    "metric" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    _ => MetricType::Histogram,
                };
                if let Some(id) = metric(kind, name) {
                    let r = if op == "metric" {
                        hostcalls::increment_metric(id, n as i64)
                    } else {
                        hostcalls::record_metric(id, n)
                    };
                    info(&format!("probe {op} {name}: id={id} {r:?}"));
                }
            }
            "sd-set" => {
                let (k, v) = kv(arg);
                info(&format!(
                    "probe sd-set {k}: {}",
                    status_name(set_shared(k, v.as_bytes(), 0))
                ));
            }
            "sd-get" => match hostcalls::get_shared_data(arg) {
                Ok((Some(v), cas)) => info(&format!(
                    "probe sd-get {arg}: {} cas={}",
                    String::from_utf8_lossy(&v),
                    cas.unwrap_or(0)
                )),
                Ok((None, Some(cas))) => info(&format!("probe sd-get {arg}:  cas={cas}")),
                _ => info(&format!("probe sd-get {arg}: NotFound")),
            },
            "sd-cas" | "sd-stale" => {
                let (k, v) = kv(arg);
                let cas = hostcalls::get_shared_data(k)
                    .ok()
                    .and_then(|(_, c)| c)
                    .unwrap_or(0);
                let first = set_shared(k, v.as_bytes(), cas);
                if op == "sd-cas" {
                    info(&format!("probe sd-cas {k}: {}", status_name(first)));
                } else {
                    let second = set_shared(k, b"stale", cas);
                    info(&format!(
                        "probe sd-stale {k}: first={} second={}",
                        status_name(first),
                        status_name(second)
                    ));
                }
            }
            "panic" => panic!("probe was asked to panic"),
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "park" => {
                set_shared(&format!("park:{arg}"), self.id.to_string().as_bytes(), 0);
                info(&format!("probe parked {arg} as {}", self.id));
                return Action::Pause;
            }
            "park-root" => {
                PARKED.with(|p| p.borrow_mut().push(self.id));
                return Action::Pause;
            }
            "wake" | "wake-reply" => {
                let id: u32 = hostcalls::get_shared_data(&format!("park:{arg}"))
                    .ok()
                    .and_then(|(v, _)| v)
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let s = effective(id);
                info(&format!("probe wake {arg} ({id}): {}", status_name(s)));
                if s == 0 {
                    header_op(
                        "replace",
                        REQUEST_HEADERS,
                        &format!("x-woken-by={}", self.id),
                    );
                    if op == "wake" {
                        info(&format!(
                            "probe resume {id}: {}",
                            status_name(resume_request())
                        ));
                    } else {
                        local_reply(429, "woken with reply", b"too many", &[]);
                    }
                }
                effective(self.id);
            }
            "tick" => {
                // SAFETY: plain value call.
                let s = unsafe { proxy_set_tick_period_milliseconds(arg.parse().unwrap_or(0)) };
                info(&format!("probe tick period: {}", status_name(s)));
            }
            "prop" => {
                let path: Vec<&str> = arg.split('.').collect();
                match hostcalls::get_property(path) {
                    Ok(Some(v)) => info(&format!(
                        "probe prop {arg}: {} len={}",
                        String::from_utf8_lossy(&v),
                        v.len()
                    )),
                    Ok(None) => info(&format!("probe prop {arg}: NotFound")),
                    Err(s) => info(&format!("probe prop {arg}: {s:?}")),
                }
            }
            "time" => {
                let host = self
                    .get_current_time()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let wasi = std::time::SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                info(&format!(
                    "probe time: host_ms={} wasi_ms={}",
                    host.as_millis(),
                    wasi.as_millis()
                ));
            }
            "time-raw" => {
                let mut out: u64 = 12345;
                // SAFETY: out is a live local.
                let s = unsafe { proxy_get_current_time_nanoseconds(&mut out) };
                info(&format!("probe time-raw: {} value={out}", status_name(s)));
            }
            "setprop" => {
                set_prop(arg);
            }
            "resume" => {
                info(&format!("probe resume: {}", status_name(resume_request())));
            }
            "stdout" => println!("{arg}"),
            "stderr" => eprintln!("{arg}"),
            "enqueue" => {
                let (q, msg) = kv(arg);
                let vm = self.get_property(vec!["plugin_vm_id"]).unwrap_or_default();
                let vm = String::from_utf8_lossy(&vm).into_owned();
                match self.resolve_shared_queue(&vm, q) {
                    Some(id) => info(&format!(
                        "probe enqueue {q}: {:?}",
                        self.enqueue_shared_queue(id, Some(msg.as_bytes()))
                    )),
                    None => info(&format!("probe enqueue {q}: NotFound")),
                }
            }
            "get-header" => match self.get_http_request_header_bytes(arg) {
                Some(v) => info(&format!(
                    "probe header {arg}: {}",
                    String::from_utf8_lossy(&v)
                )),
                None => info(&format!("probe header {arg}: NotFound")),
            },
            "oob" => {
                // SAFETY: deliberately passes a pointer outside linear memory;
                // the host must check it and answer with a status.
                let s = unsafe { proxy_log_raw(2, 0xffff_fff0, 64) };
                info(&format!("probe oob: {}", status_name(s)));
            }
            "foreign" => {
                let mut p = std::ptr::null_mut();
                let mut l = 0usize;
                // SAFETY: name is a live slice; out-params are live locals.
                let s = unsafe {
                    proxy_call_foreign_function(
                        arg.as_ptr(),
                        arg.len(),
                        std::ptr::null(),
                        0,
                        &mut p,
                        &mut l,
                    )
                };
                info(&format!("probe foreign {arg}: {}", status_name(s)));
            }
            _ => {}
        }
        Action::Continue
    }
}

impl Context for Probe {
    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, size: usize) {
        let message = self
            .get_grpc_call_response_body(0, size)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&message).into_owned();
        let (_, code, status_message) = grpc_status_now();
        info(&format!(
            "probe grpc response: token={token} status={status_code} size={size} \
             message={text} get_status={code}:{status_message}"
        ));
        if self.waiting_grpc {
            self.waiting_grpc = false;
            for (k, v) in [
                ("x-probe-grpc-status", status_code.to_string()),
                ("x-probe-grpc-message", text),
                ("x-probe-grpc-status-message", status_message),
            ] {
                header_op("replace", REQUEST_HEADERS, &format!("{k}={v}"));
            }
            info(&format!("probe resume: {}", status_name(resume_request())));
        }
    }

    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        self.waiting_call = false;
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let body_text = String::from_utf8_lossy(&body).into_owned();
        info(&format!(
            "probe call response: token={token} status={status} headers={headers} body={body_text}"
        ));
        if headers == 0 {
            local_reply(503, "call reset", b"call reset", &[]);
        } else if status == "200" {
            header_op(
                "replace",
                REQUEST_HEADERS,
                &format!("x-probe-call-status={status}"),
            );
            header_op(
                "replace",
                REQUEST_HEADERS,
                &format!("x-probe-call-body={body_text}"),
            );
            info(&format!("probe resume: {}", status_name(resume_request())));
        } else {
            local_reply(
                502,
                "upstream call failed",
                &body,
                &[("x-upstream-status", status.as_bytes())],
            );
        }
    }

    fn on_done(&mut self) -> bool {
        info(&format!("probe done {}", self.id));
        if let Some(arg) = self.has("done-setprop") {
            set_prop(&arg.to_string());
        }
        true
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        let spec = self
            .get_http_request_header_bytes("x-probe")
            .unwrap_or_default();
        let spec = String::from_utf8_lossy(&spec).into_owned();
        self.ops = spec
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (o, a) = s.split_once(':').unwrap_or((s, ""));
                (o.to_string(), a.to_string())
            })
            .collect();
        info(&format!("probe request headers {} eos={eos}", self.id));
        let mut action = Action::Continue;
        for (op, arg) in self.ops.clone() {
            if self.run(&op, &arg) == Action::Pause {
                action = Action::Pause;
            }
        }
        action
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        let n = self.body_calls;
        self.body_calls += 1;
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        info(&format!(
            "probe body: size={size} eos={eos} text={}",
            String::from_utf8_lossy(&body)
        ));
        if let Some(name) = self.has("body-get") {
            let (mut p, mut l) = (std::ptr::null_mut(), 0usize);
            // SAFETY: name is a live slice; out-params are live locals. The
            // returned buffer (if any) is leaked, which is fine in a probe.
            let s = unsafe {
                proxy_get_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    &mut p,
                    &mut l,
                )
            };
            info(&format!("probe body-get {name}: {}", status_name(s)));
            let all = self.get_http_request_headers_bytes().len();
            info(&format!("probe body-get all: {all} headers"));
        }
        if self.has("late-add").is_some() {
            header_op("add", REQUEST_HEADERS, &format!("x-late={n}"));
        }
        if let Some(text) = self.has("body-replace") {
            let text = text.to_string();
            self.set_http_request_body(0, size, text.as_bytes());
        }
        if self.has("body-set-bad").is_some() {
            set_buffer(REQUEST_BODY, 1, 1, b"x");
        }
        if self.has("body-pause").is_some() {
            return Action::Pause;
        }
        // A buffering filter: holds every chunk until the end of the body
        // (or until the trailers), then optionally rewrites the whole buffer.
        if self.has("body-hold").is_some() && !eos {
            return Action::Pause;
        }
        if self.has("body-upper").is_some() && eos {
            set_buffer(REQUEST_BODY, 0, size, &body.to_ascii_uppercase());
        }
        // Pauses the body callbacks before index `at`, continues from it on.
        if let Some(at) = self.has("body-release-at") {
            if at.parse::<usize>().is_ok_and(|at| n < at) {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        let trailers = self.get_http_request_trailers_bytes();
        let text: Vec<String> = trailers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect();
        info(&format!("probe trailers: n={n} {}", text.join(",")));
        if let Some(name) = self.has("trailer-remove") {
            let name = name.to_string();
            header_op("remove", REQUEST_TRAILERS, &name);
        }
        if self.has("late-add").is_some() {
            header_op("add", REQUEST_HEADERS, "x-late=trailers");
        }
        if self.has("body-upper").is_some() {
            let body = self
                .get_http_request_body(0, usize::MAX)
                .unwrap_or_default();
            set_buffer(REQUEST_BODY, 0, body.len(), &body.to_ascii_uppercase());
        }
        if self.has("trailers-pause").is_some() {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let status = self.get_http_response_header(":status").unwrap_or_default();
        info(&format!(
            "probe response headers {}: status={status}",
            self.id
        ));
        if let Some(arg) = self.has("resp-add") {
            let arg = arg.to_string();
            header_op("add", RESPONSE_HEADERS, &arg);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        let n = self.response_body_calls;
        self.response_body_calls += 1;
        let body = self.get_http_response_body(0, size).unwrap_or_default();
        info(&format!(
            "probe response body: size={size} eos={eos} text={}",
            String::from_utf8_lossy(&body)
        ));
        if self.has("resp-body-mark").is_some() {
            let mut marked = b"<".to_vec();
            marked.extend_from_slice(&body);
            marked.push(b'>');
            set_buffer(RESPONSE_BODY, 0, size, &marked);
        }
        if self.has("resp-body-hold").is_some() && !eos {
            return Action::Pause;
        }
        if self.has("resp-body-upper").is_some() && eos {
            set_buffer(RESPONSE_BODY, 0, size, &body.to_ascii_uppercase());
        }
        // Holds chunk `n` (pauses once); the next chunk releases both.
        if let Some(at) = self.has("resp-hold-at") {
            if at.parse::<usize>().ok() == Some(n) {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, n: usize) -> Action {
        info(&format!("probe response trailers: n={n}"));
        if let Some(name) = self.has("resp-trailer-remove") {
            let name = name.to_string();
            header_op("remove", 3, &name);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        info(&format!("probe log {}", self.id));
        if let Some(arg) = self.has("log-setprop") {
            set_prop(&arg.to_string());
        }
    }
}
