//! A proxy-wasm module that does nothing, encoded by hand: the diagnostic
//! gateway that measures what any v8 wasm filter costs.

/// One exported function of [`noop_wasm`]: its signature (value types) and
/// its body, without the final `end`.
#[derive(Clone, Copy)]
struct WasmFunc {
    export: &'static str,
    params: &'static [u8],
    results: &'static [u8],
    body: &'static [u8],
}

/// A proxy-wasm (ABI 0.2.1) module that does nothing: every callback
/// returns at once (`Continue`, `true`). Encoded by hand, so the diagnostic
/// needs no extra crate or toolchain.
pub(crate) fn noop_wasm() -> Vec<u8> {
    encode(&noop_funcs(false))
}

/// The body path's floor: a module that holds each request as Tollgate's
/// held mode does, and nothing more. Its request headers stop iteration
/// unless they end the stream; its request body is buffered
/// (`StopIterationAndBuffer`) until its end, which continues. It is called
/// for every response chunk and at the stream's log, like Tollgate, and
/// reads nothing: what any wasm filter that checks whole bodies costs in
/// Envoy's v8 before doing any work.
pub(crate) fn noop_held_wasm() -> Vec<u8> {
    encode(&noop_funcs(true))
}

fn noop_funcs(held: bool) -> Vec<WasmFunc> {
    const I32: u8 = 0x7f;
    const RETURN_0: &[u8] = &[0x41, 0]; // i32.const 0
    const RETURN_1: &[u8] = &[0x41, 1];
    const RETURN_16: &[u8] = &[0x41, 16];
    let f = |export, params, results, body| WasmFunc {
        export,
        params,
        results,
        body,
    };
    let funcs = [
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
    let mut funcs = funcs.to_vec();
    if held {
        // local.get 2 (end_of_stream); i32.eqz: 1 (StopIteration /
        // StopIterationAndBuffer) until the end, then 0 (Continue).
        const UNTIL_END: &[u8] = &[0x20, 2, 0x45];
        if let Some(headers) = funcs
            .iter_mut()
            .find(|f| f.export == "proxy_on_request_headers")
        {
            headers.body = UNTIL_END;
        }
        funcs.extend([
            f("proxy_on_request_body", &[I32, I32, I32], &[I32], UNTIL_END),
            f("proxy_on_response_body", &[I32, I32, I32], &[I32], RETURN_0),
            f("proxy_on_log", &[I32], &[], &[]),
        ]);
    }
    funcs
}

fn encode(funcs: &[WasmFunc]) -> Vec<u8> {
    let n = funcs.len() as u8; // < 128: one-byte LEB128 everywhere below
    let (mut types, mut fidx, mut exports, mut code) = (vec![n], vec![n], vec![n + 1], vec![n]);
    for (i, func) in funcs.iter().enumerate() {
        types.extend([0x60, func.params.len() as u8]);
        types.extend_from_slice(func.params);
        types.push(func.results.len() as u8);
        types.extend_from_slice(func.results);
        fidx.push(i as u8); // one type per function, same index
        exports.push(func.export.len() as u8);
        exports.extend_from_slice(func.export.as_bytes());
        exports.extend([0x00, i as u8]); // a function
        code.extend([func.body.len() as u8 + 2, 0x00]); // size, no locals
        code.extend_from_slice(func.body);
        code.push(0x0b); // end
    }
    exports.extend([6, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00]);
    let memory = vec![1, 0x00, 1]; // one memory, min 1 page, no max
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    for (id, section) in [
        (1u8, types),
        (3, fidx),
        (5, memory),
        (7, exports),
        (10, code),
    ] {
        module.push(id);
        leb128(&mut module, section.len());
        module.extend(section);
    }
    module
}

fn leb128(out: &mut Vec<u8>, mut v: usize) {
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
}
