//! gRPC calls: `proxy_grpc_{call,stream,send,cancel,close}`, `proxy_get_status`.
//!
//! Invariants: this host has no gRPC clusters. Dispatching reports what Envoy
//! reports for an unknown cluster (ParseFailure); operations on a token are
//! NotFound (no such call); `proxy_get_status` reports code 0 with no message.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::state::WorkerHost;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_grpc_call" => super::host(l, name, grpc_call)?,
        "proxy_grpc_stream" => super::host(l, name, grpc_stream)?,
        "proxy_grpc_send" => super::host(
            l,
            name,
            |_: Caller<'_, WorkerHost>, _: i32, _: i32, _: i32, _: i32| ok(Status::NotFound),
        )?,
        "proxy_grpc_cancel" => super::host(l, name, |_: Caller<'_, WorkerHost>, _: i32| {
            ok(Status::NotFound)
        })?,
        "proxy_grpc_close" => super::host(l, name, |_: Caller<'_, WorkerHost>, _: i32| {
            ok(Status::NotFound)
        })?,
        "proxy_get_status" => super::host(l, name, get_status)?,
        _ => return Ok(false),
    };
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn grpc_call(
    _c: Caller<'_, WorkerHost>,
    _a: i32,
    _b: i32,
    _cc: i32,
    _d: i32,
    _e: i32,
    _f: i32,
    _g: i32,
    _h: i32,
    _i: i32,
    _j: i32,
    _timeout: i32,
    _token: i32,
) -> HostResult {
    ok(Status::ParseFailure)
}

#[allow(clippy::too_many_arguments)]
fn grpc_stream(
    _c: Caller<'_, WorkerHost>,
    _a: i32,
    _b: i32,
    _cc: i32,
    _d: i32,
    _e: i32,
    _f: i32,
    _g: i32,
    _h: i32,
    _token: i32,
) -> HostResult {
    ok(Status::ParseFailure)
}

fn get_status(
    mut c: Caller<'_, WorkerHost>,
    code_ptr: i32,
    msg_ptr_ptr: i32,
    msg_size_ptr: i32,
) -> HostResult {
    mem!(memory::write_u32(&mut c, code_ptr as u32, 0));
    mem!(memory::return_bytes(
        &mut c,
        &[],
        msg_ptr_ptr as u32,
        msg_size_ptr as u32
    ));
    ok(Status::Ok)
}
