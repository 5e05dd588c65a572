//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`.
//!
//! Invariants:
//! - A request/response body buffer is what the filter holds now
//!   (`crate::flow`): the chunk of the running body callback, or the data
//!   accumulated while it returns Pause (also readable from other callbacks
//!   then, and in the trailers callback). Otherwise it reads as empty, as in
//!   Envoy once the data has passed (`request_body_buffer_` cleared). It is
//!   writable exactly when it is visible.
//! - The call response body exists only during `proxy_on_http_call_response`;
//!   the plugin configuration only during `proxy_on_configure`; the VM
//!   configuration always. Otherwise NotFound.
//! - The gRPC receive buffer (type 5) holds the message during
//!   `proxy_on_grpc_receive`, from any context of the VM, and reads as
//!   empty (Ok) otherwise, as Envoy's root-context `grpc_receive_buffer_`
//!   does. It is not writable (NotFound).
//! - Writes follow Envoy's `Buffer::copyFrom`: start 0 replaces the first
//!   `size` bytes (prepends when size is 0); start at or past the end appends;
//!   anything else is BadArgument.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::state::WorkerHost;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_get_buffer_bytes" => super::host(l, name, get_buffer_bytes)?,
        "proxy_set_buffer_bytes" => super::host(l, name, set_buffer_bytes)?,
        _ => return Ok(false),
    };
    Ok(true)
}

const HTTP_REQUEST_BODY: i32 = 0;
const HTTP_RESPONSE_BODY: i32 = 1;
const HTTP_CALL_RESPONSE_BODY: i32 = 4;
const GRPC_RECEIVE_BUFFER: i32 = 5;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

/// Runs `f` on the buffer `kind` (empty while not visible to the guest),
/// without copying it: only what `f` returns is copied.
fn with_buffer<R>(
    host: &mut WorkerHost,
    kind: i32,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, Status> {
    match kind {
        HTTP_REQUEST_BODY => {
            let s = host.effective_stream().ok_or(Status::NotFound)?;
            Ok(f(if s.req.body_visible() {
                &s.req.buffer
            } else {
                &[]
            }))
        }
        HTTP_RESPONSE_BODY => {
            let s = host.effective_stream().ok_or(Status::NotFound)?;
            Ok(f(match s.resp.as_ref() {
                Some(r) if r.body_visible() => &r.buffer,
                _ => &[],
            }))
        }
        HTTP_CALL_RESPONSE_BODY => host
            .call_response
            .as_ref()
            .map(|d| f(&d.body))
            .ok_or(Status::NotFound),
        GRPC_RECEIVE_BUFFER => Ok(f(host.grpc_receive.as_deref().unwrap_or_default())),
        VM_CONFIGURATION => Ok(f(&host.vm_config)),
        PLUGIN_CONFIGURATION if host.configuring => Ok(f(&host.plugin_config)),
        2 | 3 | 7 | 8 => Err(Status::NotFound),
        _ => Err(Status::BadArgument),
    }
}

fn get_buffer_bytes(
    mut c: Caller<'_, WorkerHost>,
    kind: i32,
    start: i32,
    max: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    let (start, max) = (start as u32 as usize, max as u32 as usize);
    if start.checked_add(max).is_none() {
        return ok(Status::BadArgument);
    }
    // Only the window asked for is copied, as Envoy does.
    let piece = match with_buffer(c.data_mut(), kind, |data| {
        if start >= data.len() || max == 0 {
            None
        } else {
            Some(data[start..data.len().min(start + max)].to_vec())
        }
    }) {
        Ok(p) => p,
        Err(s) => return ok(s),
    };
    let Some(piece) = piece else {
        return ok(Status::Ok);
    };
    mem!(memory::return_bytes(
        &mut c,
        &piece,
        ptr_ptr as u32,
        size_ptr as u32
    ));
    ok(Status::Ok)
}

/// Envoy's `Buffer::copyFrom`.
pub fn copy_from(buf: &mut Vec<u8>, start: usize, size: usize, data: &[u8]) -> Status {
    if start == 0 {
        let drain = size.min(buf.len());
        buf.splice(0..drain, data.iter().copied());
        Status::Ok
    } else if start >= buf.len() {
        buf.extend_from_slice(data);
        Status::Ok
    } else {
        Status::BadArgument
    }
}

fn set_buffer_bytes(
    mut c: Caller<'_, WorkerHost>,
    kind: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> HostResult {
    let data = mem!(memory::read_bytes(&mut c, ptr as u32, len as u32));
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    let host = c.data_mut();
    let status = match kind {
        HTTP_REQUEST_BODY => match host.effective_stream() {
            Some(s) if s.req.body_visible() => copy_from(&mut s.req.buffer, start, size, &data),
            Some(_) => Status::BadArgument,
            None => Status::NotFound,
        },
        HTTP_RESPONSE_BODY => match host.effective_stream().map(|s| s.resp.as_mut()) {
            Some(Some(f)) if f.body_visible() => copy_from(&mut f.buffer, start, size, &data),
            Some(_) => Status::BadArgument,
            None => Status::NotFound,
        },
        2..=8 => Status::NotFound,
        _ => Status::BadArgument,
    };
    ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_follows_envoy() {
        let mut b = b"hello".to_vec();
        assert_eq!(copy_from(&mut b, 0, 5, b"bye"), Status::Ok);
        assert_eq!(b, b"bye");
        assert_eq!(copy_from(&mut b, 0, 0, b">"), Status::Ok);
        assert_eq!(b, b">bye");
        assert_eq!(copy_from(&mut b, 4, 0, b"!"), Status::Ok);
        assert_eq!(b, b">bye!");
        assert_eq!(copy_from(&mut b, 2, 1, b"x"), Status::BadArgument);
    }
}
