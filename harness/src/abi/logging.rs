//! Logging: `proxy_log`, `proxy_get_log_level`.
//!
//! Invariants: lines are captured with the worker index and the effective
//! context; lines below the gateway's level are dropped as Envoy drops them;
//! an invalid level is BadArgument.

use super::{mem, ok, HostResult, Status};
use crate::logs::LogLevel;
use crate::memory;
use crate::state::WorkerHost;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_log" => super::host(l, name, proxy_log)?,
        "proxy_get_log_level" => super::host(l, name, proxy_get_log_level)?,
        _ => return Ok(false),
    };
    Ok(true)
}

fn proxy_log(mut c: Caller<'_, WorkerHost>, level: i32, ptr: i32, len: i32) -> HostResult {
    let Some(level) = LogLevel::from_abi(level as u32) else {
        return ok(Status::BadArgument);
    };
    mem!(memory::with_bytes(
        &mut c,
        ptr as u32,
        len as u32,
        |host, msg| { host.log(level, msg) }
    ));
    ok(Status::Ok)
}

fn proxy_get_log_level(mut c: Caller<'_, WorkerHost>, out: i32) -> HostResult {
    let level = c.data().shared.log_level.to_abi();
    mem!(memory::write_u32(&mut c, out as u32, level));
    ok(Status::Ok)
}
