//! A proxy-wasm module that does nothing, encoded by hand: the diagnostic
//! gateway that measures what any v8 wasm filter costs. The small encoder
//! here ([`WasmModule`]) also builds `probe_wasm`'s host-call probes.

/// The value types the modules use.
pub(crate) const I32: u8 = 0x7f;
pub(crate) const I64: u8 = 0x7e;

/// One exported function of a [`WasmModule`]: its signature (value types)
/// and its body (instructions, without the final `end`; no locals).
#[derive(Clone)]
pub(crate) struct WasmFunc {
    pub(crate) export: &'static str,
    pub(crate) params: &'static [u8],
    pub(crate) results: &'static [u8],
    pub(crate) body: Vec<u8>,
}

/// A function a [`WasmModule`] imports from the host's module `env`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WasmImport {
    pub(crate) name: &'static str,
    pub(crate) params: &'static [u8],
    pub(crate) results: &'static [u8],
}

/// A module in the shape proxy-wasm needs: imported functions (function
/// indices `0..imports.len()`), exported functions (the indices after
/// them, in order), one page of memory exported as `memory` (no globals),
/// and optionally one active data segment.
#[derive(Clone, Default)]
pub(crate) struct WasmModule {
    pub(crate) imports: Vec<WasmImport>,
    pub(crate) funcs: Vec<WasmFunc>,
    /// `(offset, bytes)`: written to memory at `offset` on instantiation.
    pub(crate) data: Option<(u32, Vec<u8>)>,
}

/// A proxy-wasm (ABI 0.2.1) module that does nothing: every callback
/// returns at once (`Continue`, `true`). Encoded by hand, so the diagnostic
/// needs no extra crate or toolchain.
pub(crate) fn noop_wasm() -> Vec<u8> {
    WasmModule {
        funcs: noop_funcs(false),
        ..WasmModule::default()
    }
    .encode()
}

/// The body path's floor: a module that holds each request as Tollgate's
/// held mode does, and nothing more. Its request headers stop iteration
/// unless they end the stream; its request body is buffered
/// (`StopIterationAndBuffer`) until its end, which continues. It is called
/// for every response chunk and at the stream's log, like Tollgate, and
/// reads nothing: what any wasm filter that checks whole bodies costs in
/// Envoy's v8 before doing any work.
pub(crate) fn noop_held_wasm() -> Vec<u8> {
    WasmModule {
        funcs: noop_funcs(true),
        ..WasmModule::default()
    }
    .encode()
}

/// The no-op module's callbacks (`held`: [`noop_held_wasm`]'s).
pub(crate) fn noop_funcs(held: bool) -> Vec<WasmFunc> {
    const RETURN_0: &[u8] = &[0x41, 0]; // i32.const 0
    const RETURN_1: &[u8] = &[0x41, 1];
    const RETURN_16: &[u8] = &[0x41, 16];
    let f = |export, params, results, body: &[u8]| WasmFunc {
        export,
        params,
        results,
        body: body.to_vec(),
    };
    let mut funcs = vec![
        f("proxy_abi_version_0_2_1", &[], &[], &[]),
        f("proxy_on_memory_allocate", &[I32], &[I32], RETURN_16),
        f("proxy_on_vm_start", &[I32, I32], &[I32], RETURN_1),
        f("proxy_on_configure", &[I32, I32], &[I32], RETURN_1),
        f("proxy_on_context_create", &[I32, I32], &[], &[]),
        f(
            "proxy_on_request_headers",
            &[I32, I32, I32],
            &[I32],
            RETURN_0,
        ),
        f(
            "proxy_on_response_headers",
            &[I32, I32, I32],
            &[I32],
            RETURN_0,
        ),
        f("proxy_on_done", &[I32], &[I32], RETURN_1),
        f("proxy_on_delete", &[I32], &[], &[]),
    ];
    if held {
        // local.get 2 (end_of_stream); i32.eqz: 1 (StopIteration /
        // StopIterationAndBuffer) until the end, then 0 (Continue).
        const UNTIL_END: &[u8] = &[0x20, 2, 0x45];
        if let Some(headers) = funcs
            .iter_mut()
            .find(|f| f.export == "proxy_on_request_headers")
        {
            headers.body = UNTIL_END.to_vec();
        }
        funcs.extend([
            f("proxy_on_request_body", &[I32, I32, I32], &[I32], UNTIL_END),
            f("proxy_on_response_body", &[I32, I32, I32], &[I32], RETURN_0),
            f("proxy_on_log", &[I32], &[], &[]),
        ]);
    }
    funcs
}

impl WasmModule {
    /// The binary module: one type per function (imports' first), sizes
    /// and indices in LEB128. Without imports or data it has no import or
    /// data section, as the no-op modules always had.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (imports, funcs) = (&self.imports, &self.funcs);
        let signature = |out: &mut Vec<u8>, params: &[u8], results: &[u8]| {
            out.push(0x60);
            vector(out, params);
            vector(out, results);
        };
        let mut types = Vec::new();
        leb128(&mut types, imports.len() + funcs.len());
        let mut import_section = Vec::new();
        leb128(&mut import_section, imports.len());
        for (i, import) in imports.iter().enumerate() {
            signature(&mut types, import.params, import.results);
            vector(&mut import_section, b"env");
            vector(&mut import_section, import.name.as_bytes());
            import_section.push(0x00); // a function, of type i
            leb128(&mut import_section, i);
        }
        let (mut fidx, mut exports, mut code) = (Vec::new(), Vec::new(), Vec::new());
        leb128(&mut fidx, funcs.len());
        leb128(&mut exports, funcs.len() + 1);
        leb128(&mut code, funcs.len());
        for (i, func) in funcs.iter().enumerate() {
            let index = imports.len() + i; // its type's index too
            signature(&mut types, func.params, func.results);
            leb128(&mut fidx, index);
            vector(&mut exports, func.export.as_bytes());
            exports.push(0x00); // a function
            leb128(&mut exports, index);
            let mut entry = vec![0x00]; // no locals
            entry.extend_from_slice(&func.body);
            entry.push(0x0b); // end
            vector(&mut code, &entry);
        }
        vector(&mut exports, b"memory");
        exports.extend([0x02, 0x00]); // memory 0
        let memory = vec![1, 0x00, 1]; // one memory, min 1 page, no max
        let mut sections = vec![(1u8, types)];
        if !imports.is_empty() {
            sections.push((2, import_section));
        }
        sections.extend([(3, fidx), (5, memory), (7, exports), (10, code)]);
        if let Some((offset, bytes)) = &self.data {
            // One active segment in memory 0 at `i32.const offset`.
            let mut data = vec![1, 0x00, 0x41];
            sleb128(&mut data, i64::from(*offset));
            data.push(0x0b);
            vector(&mut data, bytes);
            sections.push((11, data));
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        for (id, section) in sections {
            module.push(id);
            vector(&mut module, &section);
        }
        module
    }
}

/// `bytes` with its length in front (LEB128), as every wasm vector and
/// size-prefixed item is encoded.
fn vector(out: &mut Vec<u8>, bytes: &[u8]) {
    leb128(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Unsigned LEB128 (sizes, counts, indices).
pub(crate) fn leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Signed LEB128 (the immediates of `i32.const` and `i64.const`).
pub(crate) fn sleb128(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7; // arithmetic: the sign stays
        let sign_bit = byte & 0x40 != 0;
        if (v == 0 && !sign_bit) || (v == -1 && sign_bit) {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noop_module_is_valid_wasm_with_the_proxy_wasm_exports() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, noop_wasm()).unwrap();
        let names: Vec<&str> = module.exports().map(|e| e.name()).collect();
        assert!(names.contains(&"proxy_abi_version_0_2_1"));
        assert!(names.contains(&"proxy_on_request_headers"));
        assert!(names.contains(&"memory"));
    }

    #[test]
    fn held_module_holds_until_the_end_of_the_body() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, noop_held_wasm()).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        for name in ["proxy_on_request_headers", "proxy_on_request_body"] {
            let f = instance
                .get_typed_func::<(i32, i32, i32), i32>(&mut store, name)
                .unwrap();
            assert_eq!(f.call(&mut store, (2, 10, 0)).unwrap(), 1, "{name}: held");
            assert_eq!(
                f.call(&mut store, (2, 10, 1)).unwrap(),
                0,
                "{name}: at its end"
            );
        }
        assert!(instance
            .get_func(&mut store, "proxy_on_response_body")
            .is_some());
        assert!(instance.get_func(&mut store, "proxy_on_log").is_some());
    }

    #[test]
    fn leb128_encodes_unsigned_and_signed_values() {
        let enc = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            out
        };
        assert_eq!(enc(&|o| leb128(o, 127)), [0x7f]);
        assert_eq!(enc(&|o| leb128(o, 300)), [0xac, 0x02]);
        assert_eq!(enc(&|o| sleb128(o, 63)), [0x3f]);
        assert_eq!(enc(&|o| sleb128(o, 64)), [0xc0, 0x00]);
        assert_eq!(enc(&|o| sleb128(o, -1)), [0x7f]);
        assert_eq!(enc(&|o| sleb128(o, -65)), [0xbf, 0x7f]);
        assert_eq!(enc(&|o| sleb128(o, 32768)), [0x80, 0x80, 0x02]);
    }
}
