//! Properties: `proxy_get_property`, `proxy_set_property`.
//!
//! Invariants:
//! - Paths are segments joined by NUL. Values use Envoy's encodings: strings
//!   raw, ints 8-byte little-endian, bools 1 byte, maps pair-encoded.
//! - Lookup order for a stream: what the guest set on it, what the test set
//!   for it (`RequestBuilder::property`, `mtls`, `peer_uri_san`), request
//!   attributes derived from its headers, then plugin-level properties
//!   (`plugin_root_id`, `plugin_name`, `plugin_vm_id`). Missing is NotFound.
//! - `proxy_set_property` stores on the effective stream (Ok); on a root
//!   context there is no stream info and Envoy returns NotFound.

use super::{mem, ok, HostResult, Status, ENV};
use crate::memory;
use crate::pairs;
use crate::state::WorkerHost;
use crate::stream::{headers, Stream};
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_get_property" => l.func_wrap(ENV, name, get_property)?,
        "proxy_set_property" => l.func_wrap(ENV, name, set_property)?,
        _ => return Ok(false),
    };
    Ok(true)
}

/// Joins path segments with NUL, as the SDK does.
pub fn path_key(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

fn derived(s: &Stream, path: &[u8]) -> Option<Vec<u8>> {
    let h = s.forwarded_headers.as_ref().unwrap_or(&s.request_headers);
    let header = |n: &str| headers::get(h, n.as_bytes()).map(<[u8]>::to_vec);
    let v = match path {
        b"request\0path" => header(":path")?,
        b"request\0url_path" => {
            let p = header(":path")?;
            p.split(|b| *b == b'?').next().unwrap_or_default().to_vec()
        }
        b"request\0host" => header(":authority")?,
        b"request\0method" => header(":method")?,
        b"request\0scheme" => header(":scheme")?,
        b"request\0id" => header("x-request-id")?,
        b"request\0protocol" => b"HTTP/1.1".to_vec(),
        b"request\0headers" => pairs::encode(h),
        b"response\0code" => {
            let r = s.response_headers.as_ref()?;
            let code: i64 = std::str::from_utf8(headers::get(r, b":status")?)
                .ok()?
                .parse()
                .ok()?;
            code.to_le_bytes().to_vec()
        }
        _ => return None,
    };
    Some(v)
}

fn lookup(host: &mut WorkerHost, path: &[u8]) -> Option<Vec<u8>> {
    if let Some(s) = host.effective_stream() {
        if let Some(v) = s
            .guest_properties
            .get(path)
            .or_else(|| s.properties.get(path))
        {
            return Some(v.clone());
        }
        if let Some(v) = derived(s, path) {
            return Some(v);
        }
    }
    let shared = &host.shared;
    match path {
        b"plugin_root_id" => Some(shared.root_id.clone().into_bytes()),
        b"plugin_name" => Some(shared.plugin_name.clone().into_bytes()),
        b"plugin_vm_id" => Some(shared.vm_id.clone().into_bytes()),
        _ => host.root_properties.get(path).cloned(),
    }
}

fn get_property(
    mut c: Caller<'_, WorkerHost>,
    ptr: i32,
    len: i32,
    vptr_ptr: i32,
    vsize_ptr: i32,
) -> HostResult {
    let path = mem!(memory::read_bytes(&mut c, ptr as u32, len as u32));
    let Some(value) = lookup(c.data_mut(), &path) else {
        return ok(Status::NotFound);
    };
    mem!(memory::return_bytes(
        &mut c,
        &value,
        vptr_ptr as u32,
        vsize_ptr as u32
    ));
    ok(Status::Ok)
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
            s.guest_properties.insert(path, value);
            ok(Status::Ok)
        }
        None => ok(Status::NotFound),
    }
}
