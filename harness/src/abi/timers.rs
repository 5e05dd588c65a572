//! Time: `proxy_get_current_time_nanoseconds` (the virtual clock) and
//! `proxy_set_tick_period_milliseconds`.
//!
//! Invariants: the tick period belongs to the calling VM's root context, also
//! when set from an HTTP context; the first tick is one period after the call;
//! a period of 0 stops ticks.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::state::WorkerHost;
use std::time::Duration;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_get_current_time_nanoseconds" => super::host(l, name, current_time)?,
        "proxy_set_tick_period_milliseconds" => super::host(l, name, set_tick_period)?,
        _ => return Ok(false),
    };
    Ok(true)
}

fn current_time(mut c: Caller<'_, WorkerHost>, out: i32) -> HostResult {
    let now = c.data().shared.clock.unix_nanos();
    mem!(memory::write_u64(&mut c, out as u32, now));
    ok(Status::Ok)
}

fn set_tick_period(mut c: Caller<'_, WorkerHost>, ms: i32) -> HostResult {
    let host = c.data_mut();
    let ms = ms as u32;
    if ms == 0 {
        host.tick_period = None;
        host.next_tick = None;
    } else {
        let period = Duration::from_millis(u64::from(ms));
        host.tick_period = Some(period);
        host.next_tick = Some(host.shared.clock.elapsed() + period);
    }
    ok(Status::Ok)
}
