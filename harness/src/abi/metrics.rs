//! Metrics: `proxy_define_metric`, `proxy_increment_metric`,
//! `proxy_record_metric`, `proxy_get_metric`.
//!
//! Invariants (Envoy's stat store and `Context::*Metric`):
//! - One store per gateway: the same (type, name) gets the same id on every
//!   worker. The low 2 bits of an id carry its type, as in Envoy.
//! - Counters only grow: incrementing by <= 0 is BadArgument; `record` adds.
//!   Gauges: increment adds (may be negative), record sets. Histograms:
//!   record appends a sample; increment and get are BadArgument.
//! - Unknown id: NotFound. Unknown type: BadArgument.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::state::{lock, Metric, MetricKind, WorkerHost};
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_define_metric" => super::host(l, name, define_metric)?,
        "proxy_increment_metric" => super::host(l, name, increment_metric)?,
        "proxy_record_metric" => super::host(l, name, record_metric)?,
        "proxy_get_metric" => super::host(l, name, get_metric)?,
        _ => return Ok(false),
    };
    Ok(true)
}

fn define_metric(
    mut c: Caller<'_, WorkerHost>,
    kind: i32,
    ptr: i32,
    len: i32,
    out: i32,
) -> HostResult {
    let metric_kind = match kind {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Histogram,
        _ => return ok(Status::BadArgument),
    };
    let name = mem!(memory::read_string(&mut c, ptr as u32, len as u32));
    let id = {
        let mut m = lock(&c.data().shared.metrics);
        let next = ((m.by_id.len() as u32 + 1) << 2) | kind as u32;
        let id = *m.ids.entry((kind as u8, name.clone())).or_insert(next);
        m.by_id.entry(id).or_insert(Metric {
            name,
            kind: metric_kind,
            value: 0,
            samples: Vec::new(),
        });
        id
    };
    mem!(memory::write_u32(&mut c, out as u32, id));
    ok(Status::Ok)
}

fn increment_metric(c: Caller<'_, WorkerHost>, id: i32, offset: i64) -> HostResult {
    let mut m = lock(&c.data().shared.metrics);
    let Some(metric) = m.by_id.get_mut(&(id as u32)) else {
        return ok(if id as u32 & 3 > 2 {
            Status::BadArgument
        } else {
            Status::NotFound
        });
    };
    match metric.kind {
        MetricKind::Counter if offset > 0 => metric.value = metric.value.saturating_add(offset),
        MetricKind::Counter => return ok(Status::BadArgument),
        MetricKind::Gauge => metric.value = metric.value.saturating_add(offset),
        MetricKind::Histogram => return ok(Status::BadArgument),
    }
    ok(Status::Ok)
}

fn record_metric(c: Caller<'_, WorkerHost>, id: i32, value: i64) -> HostResult {
    let mut m = lock(&c.data().shared.metrics);
    let Some(metric) = m.by_id.get_mut(&(id as u32)) else {
        return ok(Status::NotFound);
    };
    let value = value as u64;
    match metric.kind {
        MetricKind::Counter => metric.value = metric.value.saturating_add(value as i64),
        MetricKind::Gauge => metric.value = value as i64,
        MetricKind::Histogram => {
            metric.samples.push(value);
            metric.value = metric.value.saturating_add(value as i64);
        }
    }
    ok(Status::Ok)
}

fn get_metric(mut c: Caller<'_, WorkerHost>, id: i32, out: i32) -> HostResult {
    let value = {
        let m = lock(&c.data().shared.metrics);
        match m.by_id.get(&(id as u32)) {
            None => return ok(Status::NotFound),
            Some(metric) if metric.kind == MetricKind::Histogram => return ok(Status::BadArgument),
            Some(metric) => metric.value as u64,
        }
    };
    mem!(memory::write_u64(&mut c, out as u32, value));
    ok(Status::Ok)
}
