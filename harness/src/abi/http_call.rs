//! Outgoing HTTP calls: `proxy_http_call` (the SDK's `dispatch_http_call`).
//!
//! Invariants (Envoy's `Context::httpCall`):
//! - BadArgument for a negative timeout, an unknown cluster, malformed pair
//!   encodings, or headers lacking `:method`, `:path` or `:authority`.
//! - Tokens are Envoy's `nextHttpCallId`: per worker, 4, 8, 12, ... (the
//!   low two bits 0 mark an HTTP call; see `crate::state::CalloutKind`).
//! - The call belongs to the effective context at dispatch; its response is
//!   delivered later (never inside this hostcall) to that context, and is
//!   dropped silently if that HTTP context is gone by then.
//! - In-process handlers run now, synchronously; their `delay` is virtual
//!   time, and a delay beyond the (non-zero) timeout becomes Envoy's local
//!   504 `upstream request timeout`, delivered at the timeout.
//! - A non-empty body gets a `content-length` header, as Envoy adds one.
//! - A gRPC cluster is a cluster too: a call to a `cluster_grpc` server is
//!   sent to it over HTTP/1.1 like any real call (and fails as that server
//!   fails); a call to a `cluster_grpc_handler` cluster gets the `503`
//!   connect-error reply, as there is no HTTP server behind it.

use super::{mem, ok, HostResult, Status};
use crate::call::CallRequest;
use crate::memory;
use crate::pairs::{self, Pairs};
use crate::state::{
    lock, CallDelivery, CallRecord, Cluster, Delivery, PendingCall, PendingKind, WorkerHost,
};
use crate::stream::headers;
use crate::upstream::{CONNECT_ERROR_BODY, TIMEOUT_BODY};
use std::time::Duration;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_http_call" => super::host(l, name, http_call)?,
        _ => return Ok(false),
    };
    Ok(true)
}

fn lowercased(p: Pairs) -> Pairs {
    p.into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// What the guest receives for an in-process handler's answer.
pub fn in_process_delivery(
    resp: &crate::call::CallResponse,
    timeout: Duration,
) -> (Duration, Delivery) {
    if !timeout.is_zero() && resp.delay > timeout {
        return (timeout, Delivery::local(504, TIMEOUT_BODY));
    }
    if resp.reset {
        return (resp.delay, Delivery::default());
    }
    let mut h = vec![(b":status".to_vec(), resp.status.to_string().into_bytes())];
    h.extend(
        resp.headers
            .iter()
            .filter(|(k, _)| k.as_slice() != b":status")
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
    );
    (
        resp.delay,
        Delivery {
            headers: h,
            body: resp.body.clone(),
            trailers: Vec::new(),
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn http_call(
    mut c: Caller<'_, WorkerHost>,
    cptr: i32,
    clen: i32,
    hptr: i32,
    hlen: i32,
    bptr: i32,
    blen: i32,
    tptr: i32,
    tlen: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> HostResult {
    let cluster = mem!(memory::read_string(&mut c, cptr as u32, clen as u32));
    let raw_headers = mem!(memory::read_bytes(&mut c, hptr as u32, hlen as u32));
    let body = mem!(memory::read_bytes(&mut c, bptr as u32, blen as u32));
    let raw_trailers = mem!(memory::read_bytes(&mut c, tptr as u32, tlen as u32));
    if timeout_ms < 0 {
        return ok(Status::BadArgument);
    }
    let (Ok(req_headers), Ok(trailers)) =
        (pairs::decode(&raw_headers), pairs::decode(&raw_trailers))
    else {
        return ok(Status::BadArgument);
    };
    let mut req_headers = lowercased(req_headers);
    let Some(route) = c.data().shared.clusters.get(&cluster).cloned() else {
        return ok(Status::BadArgument);
    };
    for required in [&b":method"[..], b":path", b":authority"] {
        if headers::get(&req_headers, required).is_none() {
            return ok(Status::BadArgument);
        }
    }
    if !body.is_empty() {
        headers::replace(
            &mut req_headers,
            b"content-length",
            body.len().to_string().as_bytes(),
        );
    }
    // Validate the out-param before anything is dispatched.
    mem!(memory::write_u32(&mut c, token_ptr as u32, 0));

    let host = c.data_mut();
    let token = host.next_http_token();
    let seq = host.next_seq;
    host.next_seq += 1;
    let owner = host.effective;
    let request = CallRequest {
        cluster,
        headers: req_headers,
        body,
        trailers: lowercased(trailers),
        timeout: Duration::from_millis(u64::from(timeout_ms as u32)),
    };
    lock(&host.shared.calls).push(CallRecord {
        worker: host.worker,
        context_id: owner,
        token,
        request: request.clone(),
    });
    let kind = match route {
        Cluster::Handler(handler) => {
            let response = handler(&request);
            let (delay, delivery) = in_process_delivery(&response, request.timeout);
            PendingKind::InProcess {
                due: host.shared.clock.elapsed() + delay,
                delivery: CallDelivery::Http(delivery),
            }
        }
        Cluster::GrpcHandler(_) => PendingKind::InProcess {
            due: host.shared.clock.elapsed(),
            delivery: CallDelivery::Http(Delivery::local(503, CONNECT_ERROR_BODY)),
        },
        Cluster::Http(addr) | Cluster::Grpc(addr) => {
            let Some(upstream) = host.shared.upstream.as_ref() else {
                return ok(Status::InternalFailure);
            };
            PendingKind::Remote {
                abort: upstream.spawn(host.worker, token, addr, request),
            }
        }
    };
    host.pending.push(PendingCall {
        token,
        owner,
        seq,
        kind,
    });
    mem!(memory::write_u32(&mut c, token_ptr as u32, token));
    ok(Status::Ok)
}
