//! Host-call probes (`--probes`): what one proxy-wasm host call costs in
//! Envoy's v8, for each call Tollgate makes on its cached request path.
//!
//! Each probe is the no-op module (`noop_wasm`) with one change: its
//! `proxy_on_request_headers` makes one host call
//! [`HostCall::calls_per_request`] times, unrolled, then returns
//! `Continue`. Its gateway is measured like every other; its closed-loop
//! gateway CPU per request minus the no-op gateway's (paired per round,
//! median over rounds), divided by its own calls per request, is the cost
//! of one call: the crossing into the host and back, the host's work,
//! and, for calls that return data, Envoy's call back into
//! `proxy_on_memory_allocate` and its copy into the module's memory
//! (Tollgate pays its own allocator on top).
//!
//! Most probes make their call [`CALLS_PER_REQUEST`] (10) times, so their
//! figure is the average over a stream's first call and nine repeats. A
//! call's first use in a stream can cost much more than a repeat (for
//! `proxy_get_property` Envoy builds its CEL attribute wrappers per
//! stream); so the calls where that may matter (the property read, every
//! header, the shared data, a filter-state write) also have a once-probe
//! (`HostCall::*Once`) that makes the call a single time: its figure is
//! the cost of the first call of a stream. From the two, a repeat costs
//! (10 × the 10× figure − the once figure) / 9.
//!
//! Every call's status must be `Ok`: the module traps otherwise (one
//! compare and branch per call), so a call that fails in Envoy fails the
//! gateway's checks (the filter fails closed) rather than measuring an
//! error path.
//!
//! Memory (one page): out-parameters at 0..16, the constant strings in a
//! data segment at [`DATA`], and every allocation Envoy asks for at
//! [`HEAP`] (the upper half of the page; each reply is far smaller).

use super::noop_wasm::{leb128, noop_funcs, sleb128, WasmFunc, WasmImport, WasmModule, I32, I64};

/// How many times a probe other than a once-probe makes its host call per
/// request ([`HostCall::calls_per_request`]).
pub(crate) const CALLS_PER_REQUEST: usize = 10;

/// Out-parameters: a returned pointer, a returned size (or the time's
/// 8 bytes at 0..8), the metric's id and the shared data's CAS.
const OUT_PTR: i32 = 0;
const OUT_LEN: i32 = 4;
const METRIC_ID: i32 = 8;
const OUT_CAS: i32 = 12;
/// Where the data segment (keys, paths, values) starts.
const DATA: u32 = 1024;
/// What `proxy_on_memory_allocate` returns, whatever the size asked.
const HEAP: i32 = 32768;
/// `WasmHeaderMapType::RequestHeaders`.
const REQUEST_HEADERS: i32 = 0;
/// `MetricType::Counter`.
const COUNTER: i32 = 0;

/// The probed call's import is function 0; a setup call's, function 1.
const PROBED: usize = 0;
const SETUP: usize = 1;

/// The shared-data key [`HostCall::SharedGet`] (and its once-probe) stores at configure time
/// and reads per request, and its value's size.
const SHARED_KEY: &str = "tollgate-probe";
const SHARED_VALUE_BYTES: usize = 256;
/// [`HostCall::Metric`]'s counter (Envoy names it `wasmcustom.<name>`).
pub(crate) const METRIC_NAME: &str = "probe_counter";
/// [`HostCall::ReplaceHeader`]'s header, and its value's size (a
/// credential header's).
const REPLACED_HEADER: &str = "x-tollgate-probe";
const REPLACED_VALUE_BYTES: usize = 60;
/// [`HostCall::SetProperty`]'s (and its once-probe's) value size (an audit record's order).
const PROPERTY_VALUE_BYTES: usize = 300;

/// The host calls Tollgate makes on its cached request path, one probe
/// each making the call [`CALLS_PER_REQUEST`] times, and for four of them
/// a once-probe making it a single time (the first call of a stream).
/// The order is the table's row order (each once-probe after its 10×).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum HostCall {
    /// `proxy_get_property(connection.uri_san_peer_certificate)`: the
    /// caller's SPIFFE id.
    Property,
    /// [`Self::Property`] once per request: the first read of a stream.
    PropertyOnce,
    /// `proxy_get_header_map_pairs(request headers)`: every header at once.
    HeaderPairs,
    /// [`Self::HeaderPairs`] once per request.
    HeaderPairsOnce,
    /// `proxy_get_header_map_value(request headers, ":authority")`.
    HeaderValue,
    /// `proxy_replace_header_map_value`: a 60-byte value, as the credential.
    ReplaceHeader,
    /// `proxy_remove_header_map_value` of an absent header: the floor of a
    /// removal (Tollgate removes only headers that are there).
    RemoveHeader,
    /// `proxy_get_shared_data` of a 256-byte value: the credential cache.
    SharedGet,
    /// [`Self::SharedGet`] once per request.
    SharedGetOnce,
    /// `proxy_set_property` of 300 bytes, a new filter-state key each
    /// call (`wasm.probe0`, `wasm.probe1`, …): the audit record.
    SetProperty,
    /// [`Self::SetProperty`] once per request (`wasm.probe0`).
    SetPropertyOnce,
    /// `proxy_increment_metric` of a counter.
    Metric,
    /// `proxy_get_current_time_nanoseconds`.
    Time,
}

impl HostCall {
    pub(crate) const ALL: [HostCall; 13] = [
        Self::Property,
        Self::PropertyOnce,
        Self::HeaderPairs,
        Self::HeaderPairsOnce,
        Self::HeaderValue,
        Self::ReplaceHeader,
        Self::RemoveHeader,
        Self::SharedGet,
        Self::SharedGetOnce,
        Self::SetProperty,
        Self::SetPropertyOnce,
        Self::Metric,
        Self::Time,
    ];

    /// How many times the probe makes its call per request: once for the
    /// once-probes, [`CALLS_PER_REQUEST`] for the others.
    pub(crate) fn calls_per_request(self) -> usize {
        match self {
            Self::PropertyOnce
            | Self::HeaderPairsOnce
            | Self::SharedGetOnce
            | Self::SetPropertyOnce => 1,
            Self::Property
            | Self::HeaderPairs
            | Self::HeaderValue
            | Self::ReplaceHeader
            | Self::RemoveHeader
            | Self::SharedGet
            | Self::SetProperty
            | Self::Metric
            | Self::Time => CALLS_PER_REQUEST,
        }
    }

    /// A short name for the gateway's directory, clusters and module file.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Self::Property => "probe_property",
            Self::PropertyOnce => "probe_property_once",
            Self::HeaderPairs => "probe_header_pairs",
            Self::HeaderPairsOnce => "probe_header_pairs_once",
            Self::HeaderValue => "probe_header_value",
            Self::ReplaceHeader => "probe_replace_header",
            Self::RemoveHeader => "probe_remove_header",
            Self::SharedGet => "probe_shared_get",
            Self::SharedGetOnce => "probe_shared_get_once",
            Self::SetProperty => "probe_set_property",
            Self::SetPropertyOnce => "probe_set_property_once",
            Self::Metric => "probe_metric",
            Self::Time => "probe_time",
        }
    }

    /// The call and what it is made with, for the probe table (the same
    /// for a once-probe as for its 10×).
    pub(crate) fn call(self) -> &'static str {
        match self {
            Self::Property | Self::PropertyOnce => "proxy_get_property(uri_san)",
            Self::HeaderPairs | Self::HeaderPairsOnce => "proxy_get_header_map_pairs",
            Self::HeaderValue => "proxy_get_header_map_value(:authority)",
            Self::ReplaceHeader => "proxy_replace_header_map_value(60 B)",
            Self::RemoveHeader => "proxy_remove_header_map_value(absent)",
            Self::SharedGet | Self::SharedGetOnce => "proxy_get_shared_data(256 B)",
            Self::SetProperty | Self::SetPropertyOnce => "proxy_set_property(new key, 300 B)",
            Self::Metric => "proxy_increment_metric",
            Self::Time => "proxy_get_current_time_nanoseconds",
        }
    }

    /// The gateway's label: [`Self::calls_per_request`] × [`Self::call`].
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Property => "(probe) 10 × proxy_get_property(uri_san)",
            Self::PropertyOnce => "(probe) 1 × proxy_get_property(uri_san)",
            Self::HeaderPairs => "(probe) 10 × proxy_get_header_map_pairs",
            Self::HeaderPairsOnce => "(probe) 1 × proxy_get_header_map_pairs",
            Self::HeaderValue => "(probe) 10 × proxy_get_header_map_value(:authority)",
            Self::ReplaceHeader => "(probe) 10 × proxy_replace_header_map_value(60 B)",
            Self::RemoveHeader => "(probe) 10 × proxy_remove_header_map_value(absent)",
            Self::SharedGet => "(probe) 10 × proxy_get_shared_data(256 B)",
            Self::SharedGetOnce => "(probe) 1 × proxy_get_shared_data(256 B)",
            Self::SetProperty => "(probe) 10 × proxy_set_property(new key, 300 B)",
            Self::SetPropertyOnce => "(probe) 1 × proxy_set_property(new key, 300 B)",
            Self::Metric => "(probe) 10 × proxy_increment_metric",
            Self::Time => "(probe) 10 × proxy_get_current_time_nanoseconds",
        }
    }

    /// The module's file name in the work directory.
    pub(crate) fn file_name(self) -> String {
        format!("{}.wasm", self.slug())
    }

    /// The host function probed (ABI 0.2.1 signature).
    fn import(self) -> WasmImport {
        match self {
            Self::Property | Self::PropertyOnce => import("proxy_get_property", &[I32; 4]),
            Self::HeaderPairs | Self::HeaderPairsOnce => {
                import("proxy_get_header_map_pairs", &[I32; 3])
            }
            Self::HeaderValue => import("proxy_get_header_map_value", &[I32; 5]),
            Self::ReplaceHeader => import("proxy_replace_header_map_value", &[I32; 5]),
            Self::RemoveHeader => import("proxy_remove_header_map_value", &[I32; 3]),
            Self::SharedGet | Self::SharedGetOnce => import("proxy_get_shared_data", &[I32; 5]),
            Self::SetProperty | Self::SetPropertyOnce => import("proxy_set_property", &[I32; 4]),
            Self::Metric => import("proxy_increment_metric", &[I32, I64]),
            Self::Time => import("proxy_get_current_time_nanoseconds", &[I32]),
        }
    }
}

/// A host function of `params` that returns its status (`WasmResult`).
fn import(name: &'static str, params: &'static [u8]) -> WasmImport {
    WasmImport {
        name,
        params,
        results: &[I32],
    }
}

/// The probe module for `call`.
pub(crate) fn probe_wasm(call: HostCall) -> Vec<u8> {
    probe_module(call).encode()
}

fn probe_module(call: HostCall) -> WasmModule {
    let mut data = Data::default();
    let mut imports = vec![call.import()];
    let (mut configure, mut request) = (Code::default(), Code::default());
    let times = call.calls_per_request();
    match call {
        HostCall::Property | HostCall::PropertyOnce => {
            let (path, n) = data.put(b"connection\0uri_san_peer_certificate");
            request.repeat(times, &[path, n, OUT_PTR, OUT_LEN]);
        }
        HostCall::HeaderPairs | HostCall::HeaderPairsOnce => {
            request.repeat(times, &[REQUEST_HEADERS, OUT_PTR, OUT_LEN])
        }
        HostCall::HeaderValue => {
            let (key, n) = data.put(b":authority");
            request.repeat(times, &[REQUEST_HEADERS, key, n, OUT_PTR, OUT_LEN]);
        }
        HostCall::ReplaceHeader => {
            let (key, n) = data.put(REPLACED_HEADER.as_bytes());
            let (value, len) = data.put(&padded("Bearer sk-probe-", REPLACED_VALUE_BYTES));
            request.repeat(times, &[REQUEST_HEADERS, key, n, value, len]);
        }
        HostCall::RemoveHeader => {
            let (key, n) = data.put(b"x-absent-probe");
            request.repeat(times, &[REQUEST_HEADERS, key, n]);
        }
        HostCall::SharedGet | HostCall::SharedGetOnce => {
            imports.push(import("proxy_set_shared_data", &[I32; 5]));
            let (key, n) = data.put(SHARED_KEY.as_bytes());
            let (value, len) = data.put(&json_ish(SHARED_VALUE_BYTES));
            configure.call_ok(SETUP, &[key, n, value, len, 0]); // cas 0: always
            request.repeat(times, &[key, n, OUT_PTR, OUT_LEN, OUT_CAS]);
        }
        HostCall::SetProperty | HostCall::SetPropertyOnce => {
            // A new key per call: wasm.probe0 .. wasm.probe{times - 1}.
            let (value, len) = data.put(&json_ish(PROPERTY_VALUE_BYTES));
            for i in 0..times {
                let (path, n) = data.put(format!("wasm.probe{i}").as_bytes());
                request.call_ok(PROBED, &[path, n, value, len]);
            }
        }
        HostCall::Metric => {
            imports.push(import("proxy_define_metric", &[I32; 4]));
            let (name, n) = data.put(METRIC_NAME.as_bytes());
            configure.call_ok(SETUP, &[COUNTER, name, n, METRIC_ID]);
            for _ in 0..times {
                // proxy_increment_metric(i32.load(METRIC_ID), i64.const 1)
                request
                    .i32(METRIC_ID)
                    .load_i32()
                    .i64(1)
                    .call_ok(PROBED, &[]);
            }
        }
        HostCall::Time => request.repeat(times, &[OUT_PTR]),
    }
    let mut funcs = noop_funcs(false);
    set_body(
        &mut funcs,
        "proxy_on_memory_allocate",
        Code::default().i32(HEAP),
    );
    set_body(&mut funcs, "proxy_on_configure", configure.i32(1)); // true
    set_body(&mut funcs, "proxy_on_request_headers", request.i32(0)); // Continue
    WasmModule {
        imports,
        funcs,
        data: (!data.bytes.is_empty()).then_some((DATA, data.bytes)),
    }
}

fn set_body(funcs: &mut [WasmFunc], export: &str, code: &mut Code) {
    if let Some(f) = funcs.iter_mut().find(|f| f.export == export) {
        f.body = std::mem::take(&mut code.0);
    }
}

/// The data segment being laid out from [`DATA`].
#[derive(Default)]
struct Data {
    bytes: Vec<u8>,
}

impl Data {
    /// Appends `s`; its address and length.
    fn put(&mut self, s: &[u8]) -> (i32, i32) {
        let at = DATA as usize + self.bytes.len();
        self.bytes.extend_from_slice(s);
        // Far below 2^31: the segment holds a few hundred bytes.
        (at as i32, s.len() as i32)
    }
}

/// Instructions of one function body.
#[derive(Default)]
struct Code(Vec<u8>);

impl Code {
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.push(0x41);
        sleb128(&mut self.0, v.into());
        self
    }

    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.push(0x42);
        sleb128(&mut self.0, v);
        self
    }

    /// `i32.load` (align 4, offset 0) of the address on the stack.
    fn load_i32(&mut self) -> &mut Self {
        self.0.extend([0x28, 2, 0]);
        self
    }

    /// Pushes `args` (after what is already on the stack), calls `func`,
    /// and traps unless it returned 0 (`WasmResult::Ok`).
    fn call_ok(&mut self, func: usize, args: &[i32]) -> &mut Self {
        for &a in args {
            self.i32(a);
        }
        self.0.push(0x10); // call
        leb128(&mut self.0, func);
        self.0.extend([0x04, 0x40, 0x00, 0x0b]); // if (status ≠ 0) unreachable end
        self
    }

    /// The probed call, `times` times with the same `args`.
    fn repeat(&mut self, times: usize, args: &[i32]) {
        for _ in 0..times {
            self.call_ok(PROBED, args);
        }
    }
}

/// `prefix` padded with `x` to `len` bytes.
fn padded(prefix: &str, len: usize) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(len.max(v.len()), b'x');
    v
}

/// A JSON object of `len` bytes (ASCII), shaped like an audit record.
fn json_ish(len: usize) -> Vec<u8> {
    let mut v = padded(
        r#"{"workload":"spiffe://cluster.local/ns/support/sa/chatbot","provider":"openai","pad":""#,
        len.saturating_sub(2),
    );
    v.extend_from_slice(br#""}"#);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Linker, Module, Store, Val};

    /// What the stub host saw: each call's import name and arguments.
    #[derive(Default)]
    struct Host {
        calls: Vec<(String, Vec<i64>)>,
        /// What every stub returns.
        status: i32,
    }

    /// The id the stub `proxy_define_metric` hands out.
    const STUB_METRIC_ID: i32 = 42;

    fn instantiate(call: HostCall, status: i32) -> (Store<Host>, Instance) {
        let engine = Engine::default();
        let module = Module::new(&engine, probe_wasm(call)).unwrap();
        let mut linker: Linker<Host> = Linker::new(&engine);
        for import in module.imports() {
            assert_eq!(import.module(), "env");
            let name = import.name().to_string();
            let ty = import.ty().func().unwrap().clone();
            linker
                .func_new(
                    "env",
                    import.name(),
                    ty,
                    move |mut caller, params, results| {
                        let args: Vec<i64> = params
                            .iter()
                            .map(|p| match p {
                                Val::I32(x) => i64::from(*x),
                                Val::I64(x) => *x,
                                other => panic!("unexpected argument {other:?}"),
                            })
                            .collect();
                        if name == "proxy_define_metric" {
                            let memory =
                                caller.get_export("memory").unwrap().into_memory().unwrap();
                            let at = args[3] as usize;
                            memory
                                .write(&mut caller, at, &STUB_METRIC_ID.to_le_bytes())
                                .unwrap();
                        }
                        results[0] = Val::I32(caller.data().status);
                        caller.data_mut().calls.push((name.clone(), args));
                        Ok(())
                    },
                )
                .unwrap();
        }
        let mut store = Store::new(
            &engine,
            Host {
                status,
                ..Host::default()
            },
        );
        let instance = linker.instantiate(&mut store, &module).unwrap();
        (store, instance)
    }

    fn call2(store: &mut Store<Host>, instance: &Instance, name: &str, args: (i32, i32)) -> i32 {
        let f = instance
            .get_typed_func::<(i32, i32), i32>(&mut *store, name)
            .unwrap();
        f.call(store, args).unwrap()
    }

    fn on_request_headers(store: &mut Store<Host>, instance: &Instance) -> wasmtime::Result<i32> {
        let f = instance
            .get_typed_func::<(i32, i32, i32), i32>(&mut *store, "proxy_on_request_headers")
            .unwrap();
        f.call(store, (2, 6, 1))
    }

    /// The bytes at `ptr` (`len` long) in the instance's memory.
    fn bytes(store: &mut Store<Host>, instance: &Instance, ptr: i64, len: i64) -> Vec<u8> {
        let memory = instance.get_memory(&mut *store, "memory").unwrap();
        memory.data(&store)[ptr as usize..(ptr + len) as usize].to_vec()
    }

    #[test]
    fn every_probe_is_valid_wasm_with_its_imports_and_the_proxy_wasm_exports() {
        let engine = Engine::default();
        for call in HostCall::ALL {
            let module = Module::new(&engine, probe_wasm(call)).unwrap();
            let imports: Vec<&str> = module.imports().map(|i| i.name()).collect();
            let mut expected = vec![call.import().name];
            match call {
                HostCall::SharedGet | HostCall::SharedGetOnce => {
                    expected.push("proxy_set_shared_data")
                }
                HostCall::Metric => expected.push("proxy_define_metric"),
                _ => {}
            }
            assert_eq!(imports, expected, "{call:?}");
            assert!(module.imports().all(|i| i.module() == "env"));
            let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
            for name in [
                "proxy_abi_version_0_2_1",
                "proxy_on_memory_allocate",
                "proxy_on_configure",
                "proxy_on_request_headers",
                "memory",
            ] {
                assert!(exports.contains(&name), "{call:?}: no {name}");
            }
            assert!(call.label().ends_with(call.call()), "{call:?}");
            assert!(call
                .label()
                .starts_with(&format!("(probe) {} × ", call.calls_per_request())));
        }
    }

    #[test]
    fn the_once_probes_make_one_call_and_the_others_ten() {
        use HostCall::*;
        let expected = [
            (Property, 10),
            (PropertyOnce, 1),
            (HeaderPairs, 10),
            (HeaderPairsOnce, 1),
            (HeaderValue, 10),
            (ReplaceHeader, 10),
            (RemoveHeader, 10),
            (SharedGet, 10),
            (SharedGetOnce, 1),
            (SetProperty, 10),
            (SetPropertyOnce, 1),
            (Metric, 10),
            (Time, 10),
        ];
        assert_eq!(HostCall::ALL.map(|c| (c, c.calls_per_request())), expected);
        assert_eq!(CALLS_PER_REQUEST, 10);
        for (call, n) in expected {
            let (mut store, instance) = instantiate(call, 0);
            call2(&mut store, &instance, "proxy_on_configure", (1, 0));
            store.data_mut().calls.clear();
            on_request_headers(&mut store, &instance).unwrap();
            assert_eq!(store.data().calls.len(), n, "{call:?}");
        }
    }

    #[test]
    fn every_probe_has_its_own_slug_and_label() {
        let slugs: std::collections::BTreeSet<_> = HostCall::ALL.map(HostCall::slug).into();
        let labels: std::collections::BTreeSet<_> = HostCall::ALL.map(HostCall::label).into();
        assert_eq!(slugs.len(), HostCall::ALL.len());
        assert_eq!(labels.len(), HostCall::ALL.len());
        for call in HostCall::ALL {
            let once = call.calls_per_request() == 1;
            assert_eq!(call.slug().ends_with("_once"), once, "{call:?}");
        }
    }

    #[test]
    fn each_probe_makes_its_call_its_count_of_times_per_request_and_continues() {
        for call in HostCall::ALL {
            let (mut store, instance) = instantiate(call, 0);
            let alloc = instance
                .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
                .unwrap();
            assert_eq!(alloc.call(&mut store, 300).unwrap(), HEAP);
            assert_eq!(
                call2(&mut store, &instance, "proxy_on_configure", (1, 0)),
                1
            );
            let setup = std::mem::take(&mut store.data_mut().calls);
            match call {
                HostCall::SharedGet | HostCall::SharedGetOnce => {
                    assert_eq!(setup.len(), 1, "{call:?}: {setup:?}");
                    let (name, a) = &setup[0];
                    assert_eq!(name, "proxy_set_shared_data");
                    assert_eq!(
                        bytes(&mut store, &instance, a[0], a[1]),
                        SHARED_KEY.as_bytes()
                    );
                    assert_eq!(a[3], SHARED_VALUE_BYTES as i64);
                    assert_eq!(a[4], 0, "cas");
                }
                HostCall::Metric => {
                    assert_eq!(setup.len(), 1, "{call:?}: {setup:?}");
                    let (name, a) = &setup[0];
                    assert_eq!(name, "proxy_define_metric");
                    assert_eq!(a[0], i64::from(COUNTER));
                    assert_eq!(
                        bytes(&mut store, &instance, a[1], a[2]),
                        METRIC_NAME.as_bytes()
                    );
                }
                _ => assert!(setup.is_empty(), "{call:?}: {setup:?}"),
            }

            assert_eq!(
                on_request_headers(&mut store, &instance).unwrap(),
                0,
                "{call:?}"
            );
            let calls = std::mem::take(&mut store.data_mut().calls);
            assert_eq!(calls.len(), call.calls_per_request(), "{call:?}: {calls:?}");
            assert!(
                calls.iter().all(|(n, _)| n == call.import().name),
                "{calls:?}"
            );
            let args: Vec<&Vec<i64>> = calls.iter().map(|(_, a)| a).collect();
            let mut text = |ptr: i64, len: i64| {
                String::from_utf8(bytes(&mut store, &instance, ptr, len)).unwrap()
            };
            match call {
                HostCall::Property | HostCall::PropertyOnce => {
                    let a = args[0];
                    assert_eq!(text(a[0], a[1]), "connection\0uri_san_peer_certificate");
                    assert_eq!(&a[2..], [OUT_PTR, OUT_LEN].map(i64::from));
                }
                HostCall::HeaderPairs | HostCall::HeaderPairsOnce => {
                    assert_eq!(args[0], &[REQUEST_HEADERS, OUT_PTR, OUT_LEN].map(i64::from))
                }
                HostCall::HeaderValue => {
                    let a = args[0];
                    assert_eq!(a[0], i64::from(REQUEST_HEADERS));
                    assert_eq!(text(a[1], a[2]), ":authority");
                }
                HostCall::ReplaceHeader => {
                    let a = args[0];
                    assert_eq!(text(a[1], a[2]), REPLACED_HEADER);
                    let value = text(a[3], a[4]);
                    assert_eq!(value.len(), REPLACED_VALUE_BYTES);
                    assert!(value.starts_with("Bearer "));
                }
                HostCall::RemoveHeader => {
                    let a = args[0];
                    assert_eq!(text(a[1], a[2]), "x-absent-probe");
                }
                HostCall::SharedGet | HostCall::SharedGetOnce => {
                    let a = args[0];
                    assert_eq!(text(a[0], a[1]), SHARED_KEY);
                    assert_eq!(&a[2..], [OUT_PTR, OUT_LEN, OUT_CAS].map(i64::from));
                }
                HostCall::SetProperty | HostCall::SetPropertyOnce => {
                    let paths: Vec<String> = args.iter().map(|a| text(a[0], a[1])).collect();
                    let expected: Vec<String> = (0..call.calls_per_request())
                        .map(|i| format!("wasm.probe{i}"))
                        .collect();
                    assert_eq!(paths, expected);
                    if call == HostCall::SetPropertyOnce {
                        assert_eq!(paths, ["wasm.probe0"]);
                    }
                    let value = text(args[0][2], args[0][3]);
                    assert_eq!(value.len(), PROPERTY_VALUE_BYTES);
                    assert!(value.starts_with('{') && value.ends_with("\"}"), "{value}");
                }
                HostCall::Metric => {
                    assert!(args.iter().all(|a| **a == [i64::from(STUB_METRIC_ID), 1]))
                }
                HostCall::Time => assert_eq!(args[0], &[i64::from(OUT_PTR)]),
            }
        }
    }

    #[test]
    fn a_host_call_that_fails_traps() {
        for call in HostCall::ALL {
            let (mut store, instance) = instantiate(call, 1); // NotFound
            assert!(
                on_request_headers(&mut store, &instance).is_err(),
                "{call:?}"
            );
            assert_eq!(store.data().calls.len(), 1, "{call:?}: stops at the first");
        }
    }
}
