//! Properties: `proxy_get_property`, `proxy_set_property`.
//!
//! Invariants:
//! - Paths are segments joined by NUL. Values use Envoy's encodings: strings
//!   raw, ints 8-byte little-endian, bools 1 byte, maps pair-encoded.
//! - Lookup order for a stream: what the guest set on it, what the test set
//!   for it (`RequestBuilder::property`, `mtls`, `peer_uri_san`), request
//!   attributes derived from its headers, then plugin-level properties
//!   (`plugin_root_id`, `plugin_name`, `plugin_vm_id`). Missing is NotFound.
//! - `proxy_set_property` stores filter state `wasm.<path>` on the effective
//!   stream (Ok), the path bytes verbatim (Envoy's `Context::setProperty`,
//!   source/extensions/common/wasm/context.cc); on a root context there is
//!   no stream info and Envoy returns NotFound. It works in `on_log` and
//!   `on_done` too (the stream info is still there). `proxy_get_property`
//!   finds it by its first path segment, as Envoy's `findValue` does.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::pairs;
use crate::state::WorkerHost;
use crate::stream::{headers, Stream};
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_get_property" => super::host(l, name, get_property)?,
        "proxy_set_property" => super::host(l, name, set_property)?,
        _ => return Ok(false),
    };
    Ok(true)
}

/// Joins path segments with NUL, as the SDK does.
pub fn path_key(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// Appends a request attribute derived from the stream to `out`; false if
/// `path` is not one (or the stream lacks it).
fn derived(s: &Stream, path: &[u8], out: &mut Vec<u8>) -> bool {
    let h = s.request_headers_seen();
    let header = |n: &str| headers::get(h, n.as_bytes());
    let v: Option<&[u8]> = match path {
        b"request\0path" => header(":path"),
        b"request\0url_path" => {
            header(":path").map(|p| p.split(|b| *b == b'?').next().unwrap_or_default())
        }
        b"request\0host" => header(":authority"),
        b"request\0method" => header(":method"),
        b"request\0scheme" => header(":scheme"),
        b"request\0id" => header("x-request-id"),
        b"request\0protocol" => Some(&b"HTTP/1.1"[..]),
        b"request\0headers" => {
            pairs::encode_into(h, out);
            return true;
        }
        b"response\0code" => {
            let code: Option<i64> = s
                .response_headers()
                .and_then(|r| headers::get(r, b":status"))
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
            let Some(code) = code else { return false };
            out.extend_from_slice(&code.to_le_bytes());
            return true;
        }
        _ => None,
    };
    match v {
        Some(v) => {
            out.extend_from_slice(v);
            true
        }
        None => false,
    }
}

/// Appends the property's value to `out`; false if it is missing.
fn lookup(host: &WorkerHost, path: &[u8], out: &mut Vec<u8>) -> bool {
    if let Some(s) = host.effective_stream_ref() {
        // Envoy's getProperty: a top-level name it does not know is the
        // filter state `wasm.<name>`; a value set there is bytes, so a path
        // going deeper into it is NotFound.
        let top = path.split(|b| *b == 0).next().unwrap_or_default();
        if let Some(v) = s.filter_state.get(top) {
            if top.len() != path.len() {
                return false;
            }
            out.extend_from_slice(v);
            return true;
        }
        if let Some(v) = s.properties.get(path) {
            out.extend_from_slice(v);
            return true;
        }
        if derived(s, path, out) {
            return true;
        }
    }
    let shared = &host.shared;
    let v = match path {
        b"plugin_root_id" => shared.root_id.as_bytes(),
        b"plugin_name" => shared.plugin_name.as_bytes(),
        b"plugin_vm_id" => shared.vm_id.as_bytes(),
        _ => match host.root_properties.get(path) {
            Some(v) => v,
            None => return false,
        },
    };
    out.extend_from_slice(v);
    true
}

fn get_property(
    mut c: Caller<'_, WorkerHost>,
    ptr: i32,
    len: i32,
    vptr_ptr: i32,
    vsize_ptr: i32,
) -> HostResult {
    ok(mem!(memory::return_scratch(
        &mut c,
        vptr_ptr as u32,
        vsize_ptr as u32,
        |c, buf| {
            memory::with_bytes(c, ptr as u32, len as u32, |host, path| {
                if lookup(host, path, buf) {
                    Status::Ok
                } else {
                    Status::NotFound
                }
            })
        }
    )))
}

fn set_property(
    mut c: Caller<'_, WorkerHost>,
    ptr: i32,
    len: i32,
    vptr: i32,
    vlen: i32,
) -> HostResult {
    let path = mem!(memory::read_bytes(&mut c, ptr as u32, len as u32));
    let value = mem!(memory::read_bytes(&mut c, vptr as u32, vlen as u32));
    match c.data_mut().effective_stream() {
        Some(s) => {
            s.filter_state.set(&path, &value);
            ok(Status::Ok)
        }
        None => ok(Status::NotFound),
    }
}
