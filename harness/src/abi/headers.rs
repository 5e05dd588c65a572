//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_get_header_map_value`,
//! `proxy_{add,replace,remove}_header_map_value`.
//!
//! Invariants (Envoy's `Context::getMap`/`getConstMap`):
//! - Request headers exist while Envoy's `request_headers_` pointer is set
//!   (`crate::flow`: from `on_request_headers` until it returns Continue or
//!   `continue_stream` is called; in allow_on_headers_stop_iteration mode
//!   also through the body callbacks). Response headers likewise. In
//!   `on_log` both are readable again (as they were sent).
//! - Trailers exist during their callback (and while paused there); a
//!   mutation in the last body callback of a stream without trailers adds
//!   them, as Envoy's `addDecodedTrailers`/`addEncodedTrailers` do.
//! - The call response headers/trailers exist only while a call response is
//!   being delivered, for every context of that VM.
//! - A map that does not exist: `get_header_map_pairs` returns Ok with an
//!   empty map; value reads and every mutation return BadArgument.
//! - Keys are lowercased; `get` returns the first value (NotFound if none);
//!   `remove` drops every value; `replace` collapses to one value (adds if
//!   absent); `add` appends; values are arbitrary bytes.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::pairs::{self, Pairs};
use crate::state::WorkerHost;
use crate::stream::headers;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_get_header_map_pairs" => super::host(l, name, get_pairs)?,
        "proxy_set_header_map_pairs" => super::host(l, name, set_pairs)?,
        "proxy_get_header_map_value" => super::host(l, name, get_value)?,
        "proxy_add_header_map_value" => super::host(l, name, add_value)?,
        "proxy_replace_header_map_value" => super::host(l, name, replace_value)?,
        "proxy_remove_header_map_value" => super::host(l, name, remove_value)?,
        _ => return Ok(false),
    };
    Ok(true)
}

const REQUEST_HEADERS: i32 = 0;
const REQUEST_TRAILERS: i32 = 1;
const RESPONSE_HEADERS: i32 = 2;
const RESPONSE_TRAILERS: i32 = 3;
const CALL_RESPONSE_HEADERS: i32 = 6;
const CALL_RESPONSE_TRAILERS: i32 = 7;

/// The map as the guest may read it now, or None when it does not exist.
fn readable(host: &WorkerHost, kind: i32) -> Option<&Pairs> {
    match kind {
        CALL_RESPONSE_HEADERS => return host.call_response.as_ref().map(|d| &d.headers),
        CALL_RESPONSE_TRAILERS => return host.call_response.as_ref().map(|d| &d.trailers),
        _ => {}
    }
    let s = host.effective_stream_ref()?;
    let resp = s.resp.as_ref();
    match kind {
        REQUEST_HEADERS if s.in_log => Some(s.request_headers_seen()),
        REQUEST_HEADERS if s.request_headers_available() => Some(&s.req.headers),
        // Envoy's access-log phase has no request trailers.
        REQUEST_TRAILERS if s.req.trailers_ptr && !s.in_log => s.req.trailers.as_ref(),
        RESPONSE_HEADERS if s.in_log => resp.map(|f| f.sent_headers.as_ref().unwrap_or(&f.headers)),
        RESPONSE_HEADERS if s.response_headers_available() => s.response_headers(),
        RESPONSE_TRAILERS if s.in_log => resp.and_then(|f| f.sent_trailers.as_ref()),
        RESPONSE_TRAILERS if resp.is_some_and(|f| f.trailers_ptr) => {
            resp.and_then(|f| f.trailers.as_ref())
        }
        _ => None,
    }
}

/// Applies `edit` to the map if it exists and may be changed now.
fn mutate(host: &mut WorkerHost, kind: i32, edit: impl FnOnce(&mut Pairs)) -> Status {
    match kind {
        CALL_RESPONSE_HEADERS | CALL_RESPONSE_TRAILERS => {
            let Some(d) = host.call_response.as_mut() else {
                return Status::BadArgument;
            };
            edit(if kind == CALL_RESPONSE_HEADERS {
                &mut d.headers
            } else {
                &mut d.trailers
            });
            return Status::Ok;
        }
        _ => {}
    }
    let Some(s) = host.effective_stream() else {
        return Status::BadArgument;
    };
    if s.in_log {
        return Status::BadArgument;
    }
    let flow = match kind {
        REQUEST_HEADERS | REQUEST_TRAILERS => &mut s.req,
        RESPONSE_HEADERS | RESPONSE_TRAILERS => match s.resp.as_mut() {
            Some(f) => f,
            None => return Status::BadArgument,
        },
        _ => return Status::BadArgument,
    };
    match kind {
        REQUEST_HEADERS | RESPONSE_HEADERS if flow.headers_ptr => edit(&mut flow.headers),
        REQUEST_TRAILERS | RESPONSE_TRAILERS => {
            // Envoy's getMap: in the last body callback of a stream without
            // trailers, a mutation adds trailers (`addDecodedTrailers`);
            // they go on with the body, without a trailers callback.
            if flow.trailers.is_none() && flow.in_body && flow.eos_delivered {
                flow.trailers = Some(Vec::new());
                flow.trailers_delivered = true;
                flow.trailers_ptr = true;
            }
            match flow.trailers.as_mut() {
                Some(t) if flow.trailers_ptr => edit(t),
                _ => return Status::BadArgument,
            }
        }
        _ => return Status::BadArgument,
    }
    Status::Ok
}

fn get_pairs(mut c: Caller<'_, WorkerHost>, kind: i32, ptr_ptr: i32, size_ptr: i32) -> HostResult {
    ok(mem!(memory::return_scratch(
        &mut c,
        ptr_ptr as u32,
        size_ptr as u32,
        |c, buf| {
            if let Some(map) = readable(c.data(), kind).filter(|m| !m.is_empty()) {
                pairs::encode_into(map, buf);
            }
            Ok(Status::Ok)
        }
    )))
}

fn set_pairs(mut c: Caller<'_, WorkerHost>, kind: i32, ptr: i32, len: i32) -> HostResult {
    let bytes = mem!(memory::read_bytes(&mut c, ptr as u32, len as u32));
    let Ok(new) = pairs::decode(&bytes) else {
        return ok(Status::BadArgument);
    };
    ok(mutate(c.data_mut(), kind, |m| headers::set_all(m, new)))
}

fn get_value(
    mut c: Caller<'_, WorkerHost>,
    kind: i32,
    kptr: i32,
    klen: i32,
    vptr_ptr: i32,
    vsize_ptr: i32,
) -> HostResult {
    ok(mem!(memory::return_scratch(
        &mut c,
        vptr_ptr as u32,
        vsize_ptr as u32,
        |c, buf| {
            memory::with_bytes(c, kptr as u32, klen as u32, |host, key| {
                let Some(map) = readable(host, kind) else {
                    let in_log = host.effective_stream_ref().is_some_and(|s| s.in_log);
                    return if in_log {
                        Status::NotFound
                    } else {
                        Status::BadArgument
                    };
                };
                match headers::get(map, key) {
                    Some(v) => {
                        buf.extend_from_slice(v);
                        Status::Ok
                    }
                    None => Status::NotFound,
                }
            })
        }
    )))
}

fn add_value(
    mut c: Caller<'_, WorkerHost>,
    kind: i32,
    kptr: i32,
    klen: i32,
    vptr: i32,
    vlen: i32,
) -> HostResult {
    ok(mem!(memory::with_two(
        &mut c,
        (kptr as u32, klen as u32),
        (vptr as u32, vlen as u32),
        |host, key, value| mutate(host, kind, |m| headers::add(m, key, value))
    )))
}

fn replace_value(
    mut c: Caller<'_, WorkerHost>,
    kind: i32,
    kptr: i32,
    klen: i32,
    vptr: i32,
    vlen: i32,
) -> HostResult {
    ok(mem!(memory::with_two(
        &mut c,
        (kptr as u32, klen as u32),
        (vptr as u32, vlen as u32),
        |host, key, value| mutate(host, kind, |m| headers::replace(m, key, value))
    )))
}

fn remove_value(mut c: Caller<'_, WorkerHost>, kind: i32, kptr: i32, klen: i32) -> HostResult {
    ok(mem!(memory::with_bytes(
        &mut c,
        kptr as u32,
        klen as u32,
        |host, key| mutate(host, kind, |m| headers::remove(m, key))
    )))
}
