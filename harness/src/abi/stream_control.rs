//! Stream control and context switching: `proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_send_local_response`,
//! `proxy_set_effective_context`, `proxy_done`, `proxy_call_foreign_function`.
//!
//! Invariants (Envoy's `Context::continueStream` and friends):
//! - Continue, close and local replies are deferred: they are recorded as
//!   `AfterAction`s and take effect once the current callback returns. A
//!   pending local reply makes the guest's returned Action irrelevant.
//! - `continue_stream(Request)` clears the request-header map at once, even
//!   inside the same callback: later header edits are BadArgument.
//! - Acting on a root context (no HTTP stream) is accepted and does nothing.
//! - `set_effective_context` accepts any live context of this VM (root or
//!   HTTP), else BadArgument; it lasts until the callback returns.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::outcome::LocalReply;
use crate::pairs;
use crate::state::{AfterAction, WorkerHost};
use crate::stream::{headers, Direction};
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_continue_stream" => super::host(l, name, continue_stream)?,
        "proxy_close_stream" => super::host(l, name, close_stream)?,
        "proxy_send_local_response" => super::host(l, name, send_local_response)?,
        "proxy_set_effective_context" => super::host(l, name, set_effective_context)?,
        "proxy_done" => super::host(l, name, done)?,
        "proxy_call_foreign_function" => super::host(l, name, call_foreign_function)?,
        _ => return Ok(false),
    };
    Ok(true)
}

const UNIMPLEMENTED: i32 = 12;

fn direction(kind: i32) -> Result<Option<Direction>, i32> {
    match kind {
        0 => Ok(Some(Direction::Request)),
        1 => Ok(Some(Direction::Response)),
        2 => Ok(None),
        3 => Err(UNIMPLEMENTED),
        _ => Err(Status::BadArgument as i32),
    }
}

fn continue_stream(mut c: Caller<'_, WorkerHost>, kind: i32) -> HostResult {
    let dir = match direction(kind) {
        Ok(Some(d)) => d,
        Ok(None) => return ok(Status::Ok),
        Err(s) => return Ok(s),
    };
    let host = c.data_mut();
    let ctx = host.effective;
    if let Some(s) = host.effective_stream() {
        // Envoy's Context::continueStream clears the request pointers at
        // once (for either direction): later edits in this callback fail.
        s.req.headers_ptr = false;
        s.req.trailers_ptr = false;
        host.after.push(AfterAction::Continue(ctx, dir));
    }
    ok(Status::Ok)
}

fn close_stream(mut c: Caller<'_, WorkerHost>, kind: i32) -> HostResult {
    let dir = match kind {
        0 => Direction::Request,
        1 => Direction::Response,
        2 | 3 => return ok(Status::Ok),
        _ => return ok(Status::BadArgument),
    };
    let host = c.data_mut();
    let ctx = host.effective;
    if host.effective_stream().is_some() {
        host.after.push(AfterAction::Close(ctx, dir));
    }
    ok(Status::Ok)
}

/// Envoy's `StringUtil::replaceAllEmptySpace`.
pub fn details_text(details: &str) -> String {
    details
        .chars()
        .map(|ch| {
            if ch.is_ascii_whitespace() || ch == '\x0b' {
                '_'
            } else {
                ch
            }
        })
        .collect()
}

/// The headers of a local reply as Envoy sends it.
pub fn local_reply_headers(status: u16, body: &[u8], extra: pairs::Pairs) -> pairs::Pairs {
    let mut h = vec![(b":status".to_vec(), status.to_string().into_bytes())];
    if !body.is_empty() {
        h.push((
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ));
        // Envoy's default, used only when the filter sets no content-type
        // of its own (seen on Envoy 1.40: a filter's application/json
        // replaces it, it is not added beside it).
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
        {
            h.push((b"content-type".to_vec(), b"text/plain".to_vec()));
        }
    }
    for (k, v) in extra {
        headers::add(&mut h, &k, &v);
    }
    h
}

#[allow(clippy::too_many_arguments)]
fn send_local_response(
    mut c: Caller<'_, WorkerHost>,
    status: i32,
    dptr: i32,
    dlen: i32,
    bptr: i32,
    blen: i32,
    hptr: i32,
    hlen: i32,
    _grpc_status: i32,
) -> HostResult {
    let details = mem!(memory::read_string(&mut c, dptr as u32, dlen as u32));
    let body = mem!(memory::read_bytes(&mut c, bptr as u32, blen as u32));
    let raw_headers = mem!(memory::read_bytes(&mut c, hptr as u32, hlen as u32));
    let Ok(extra) = pairs::decode(&raw_headers) else {
        return ok(Status::BadArgument);
    };
    let status = u16::try_from(status as u32).unwrap_or(500);
    let host = c.data_mut();
    let ctx = host.effective;
    let Some(s) = host.effective_stream() else {
        return ok(Status::Ok);
    };
    if s.local_reply_sent {
        // Envoy queues a second reply too, but the stream has already ended by then.
        return ok(Status::Ok);
    }
    s.local_reply_sent = true;
    let reply = LocalReply {
        status,
        headers: local_reply_headers(status, &body, extra),
        body,
        details: details_text(&details),
    };
    host.after.push(AfterAction::LocalReply(ctx, reply));
    ok(Status::Ok)
}

fn set_effective_context(mut c: Caller<'_, WorkerHost>, id: i32) -> HostResult {
    let host = c.data_mut();
    if !host.is_known_context(id as u32) {
        return ok(Status::BadArgument);
    }
    host.effective = id as u32;
    ok(Status::Ok)
}

fn done(_c: Caller<'_, WorkerHost>) -> HostResult {
    ok(Status::Ok)
}

fn call_foreign_function(
    _c: Caller<'_, WorkerHost>,
    _n: i32,
    _nl: i32,
    _a: i32,
    _al: i32,
    _r: i32,
    _rl: i32,
) -> HostResult {
    ok(Status::NotFound)
}
