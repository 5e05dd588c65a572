//! The WASI (`wasi_snapshot_preview1`) subset Envoy's host offers, written
//! here so that the clock is the gateway's virtual clock.
//!
//! Invariants:
//! - `fd_write` to fd 1 is an info log line, to fd 2 an error log line (one
//!   line per call, trailing newline removed); other fds are EBADF.
//! - `clock_time_get` reads the virtual clock (realtime: wall time;
//!   monotonic: a fixed base plus elapsed virtual time).
//! - `random_get` fills deterministically (per-worker seed).
//! - environment and arguments are empty; `proc_exit` traps.
//! - Any other WASI function the module imports returns ENOSYS (52).
//! - A bad guest pointer is EFAULT, never a host panic.

use crate::logs::LogLevel;
use crate::memory;
use crate::state::WorkerHost;
use wasmtime::{Caller, ExternType, Linker, Val};

pub const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
pub const ENOSYS: i32 = 52;

type WasiResult = wasmtime::Result<i32>;

macro_rules! fault {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err($crate::memory::MemError::Trap(t)) => return Err(t),
            Err(_) => return Ok(EFAULT),
        }
    };
}

pub fn define(l: &mut Linker<WorkerHost>, name: &str, ty: ExternType) -> anyhow::Result<bool> {
    match name {
        "fd_write" => l.func_wrap(MODULE, name, fd_write)?,
        "environ_get" | "args_get" => {
            l.func_wrap(MODULE, name, |_: Caller<'_, WorkerHost>, _: i32, _: i32| {
                Ok(ESUCCESS)
            })?
        }
        "environ_sizes_get" | "args_sizes_get" => l.func_wrap(MODULE, name, sizes_get)?,
        "proc_exit" => l.func_wrap(MODULE, name, proc_exit)?,
        "clock_time_get" => l.func_wrap(MODULE, name, clock_time_get)?,
        "random_get" => l.func_wrap(MODULE, name, random_get)?,
        _ => {
            let ExternType::Func(ft) = ty else {
                return Ok(false);
            };
            l.func_new(MODULE, name, ft, |_, _, results| {
                for r in results.iter_mut() {
                    *r = Val::I32(ENOSYS);
                }
                Ok(())
            })?
        }
    };
    Ok(true)
}

fn fd_write(
    mut c: Caller<'_, WorkerHost>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> WasiResult {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(EBADF),
    };
    let mut data = Vec::new();
    for i in 0..iovs_len as u32 {
        let Some(at) = (iovs as u32).checked_add(i.saturating_mul(8)) else {
            return Ok(EFAULT);
        };
        let iov = fault!(memory::read_bytes(&mut c, at, 8));
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        data.extend(fault!(memory::read_bytes(&mut c, ptr, len)));
    }
    let written = data.len() as u32;
    let text = data.strip_suffix(b"\n").unwrap_or(&data);
    if !text.is_empty() {
        c.data().log(level, text);
    }
    fault!(memory::write_u32(&mut c, nwritten as u32, written));
    Ok(ESUCCESS)
}

fn sizes_get(mut c: Caller<'_, WorkerHost>, count: i32, size: i32) -> WasiResult {
    fault!(memory::write_u32(&mut c, count as u32, 0));
    fault!(memory::write_u32(&mut c, size as u32, 0));
    Ok(ESUCCESS)
}

fn proc_exit(_c: Caller<'_, WorkerHost>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(format!(
        "guest called proc_exit({code})"
    )))
}

fn clock_time_get(mut c: Caller<'_, WorkerHost>, id: i32, _precision: i64, out: i32) -> WasiResult {
    let clock = &c.data().shared.clock;
    let nanos = match id {
        0 => clock.unix_nanos(),
        1..=3 => clock.monotonic_nanos(),
        _ => return Ok(EINVAL),
    };
    fault!(memory::write_u64(&mut c, out as u32, nanos));
    Ok(ESUCCESS)
}

fn random_get(mut c: Caller<'_, WorkerHost>, buf: i32, len: i32) -> WasiResult {
    let mut bytes = vec![0u8; len as u32 as usize];
    c.data_mut().random_fill(&mut bytes);
    fault!(memory::write_bytes(&mut c, buf as u32, &bytes));
    Ok(ESUCCESS)
}
