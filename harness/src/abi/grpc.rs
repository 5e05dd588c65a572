//! gRPC calls: `proxy_grpc_{call,stream,send,cancel,close}`, `proxy_get_status`.
//!
//! Invariants (Envoy's `Context::grpcCall`, `grpcCancel`, `grpcClose`,
//! `grpcSend`, `onGrpcReceiveWrapper`, `onGrpcCloseWrapper`, and
//! proxy-wasm-cpp-host's `exports.cc`):
//! - `proxy_grpc_call`'s `service` is a cluster name. (Envoy first tries to
//!   parse it as a serialized `GrpcService` proto; this host does not, so a
//!   proto-encoded service is an unknown cluster here.) An unknown cluster is
//!   ParseFailure, as Envoy still reports it for ABI 0.1 compatibility; any
//!   known cluster is accepted. Guest memory is read first: a bad pointer is
//!   InvalidMemoryAccess and dispatches nothing.
//! - Malformed metadata pairs are read as no metadata (cpp-host's
//!   `PairsUtil::toPairs` returns an empty list), never an error. Names are
//!   lowercased, as Envoy's header map does.
//! - The timeout is the guest's u32 milliseconds; zero means no deadline.
//! - Tokens are Envoy's `nextGrpcCallId`: 5, 9, 13, ... per worker (see
//!   `crate::state::CalloutKind`); they never collide with HTTP call tokens.
//! - The call belongs to the effective context at dispatch, like an HTTP
//!   call (`abi::http_call`); it is answered later, never inside this
//!   hostcall: status 0 with `proxy_on_grpc_receive(context, token, size)`
//!   (the message in `GrpcReceiveBuffer`, type 5), anything else with
//!   `proxy_on_grpc_close(context, token, code)` (the code and message in
//!   `proxy_get_status`). A unary call gets no metadata callbacks (Envoy's
//!   `GrpcCallClientHandler` has none). If the owning context is gone, or the
//!   guest exports no such callback, the answer is dropped.
//! - A gRPC call to an HTTP cluster (`cluster_handler`, `cluster_http`) is
//!   accepted and closes with UNAVAILABLE and the connect-error text, as a
//!   server that does not speak gRPC would leave it.
//! - `proxy_grpc_cancel` and `proxy_grpc_close` on a call token remove the
//!   pending call (Ok; no callback follows), or NotFound if this worker has
//!   no such call pending; on a stream token (no streams exist here)
//!   NotFound; on any other token BadArgument. `proxy_grpc_send` is
//!   NotFound for a stream token, else BadArgument.
//! - `proxy_grpc_stream` is not supported: ParseFailure for an unknown
//!   cluster (as Envoy), InternalFailure for a known one (as Envoy when the
//!   stream cannot start).
//! - `proxy_get_status` reports the VM's last call failure: the code stays
//!   until the next one, the message only during its callback (Envoy keeps
//!   both on the root context and clears only the message afterwards).

use super::{mem, ok, HostResult, Status};
use crate::call::{grpc_status, GrpcRequest, GrpcResponse};
use crate::memory;
use crate::pairs;
use crate::state::{
    lock, CallDelivery, CalloutKind, Cluster, GrpcCallRecord, GrpcDelivery, PendingCall,
    PendingKind, WorkerHost,
};
use crate::upstream::{CONNECT_ERROR_BODY, TIMEOUT_BODY};
use std::time::Duration;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_grpc_call" => super::host(l, name, grpc_call)?,
        "proxy_grpc_stream" => super::host(l, name, grpc_stream)?,
        "proxy_grpc_send" => super::host(l, name, grpc_send)?,
        "proxy_grpc_cancel" => super::host(l, name, grpc_cancel)?,
        "proxy_grpc_close" => super::host(l, name, grpc_cancel)?,
        "proxy_get_status" => super::host(l, name, get_status)?,
        _ => return Ok(false),
    };
    Ok(true)
}

/// What the guest receives for an in-process handler's answer, and when
/// (relative to dispatch): a delay beyond a non-zero timeout is Envoy's
/// router timeout, DEADLINE_EXCEEDED `upstream request timeout`, at the
/// timeout.
pub fn in_process_delivery(resp: &GrpcResponse, timeout: Duration) -> (Duration, GrpcDelivery) {
    if !timeout.is_zero() && resp.delay > timeout {
        return (
            timeout,
            GrpcDelivery::close(grpc_status::DEADLINE_EXCEEDED, TIMEOUT_BODY),
        );
    }
    let delivery = if resp.status == grpc_status::OK {
        GrpcDelivery::ok(resp.message.clone())
    } else {
        GrpcDelivery::close(resp.status, &resp.status_message)
    };
    (resp.delay, delivery)
}

#[allow(clippy::too_many_arguments)]
fn grpc_call(
    mut c: Caller<'_, WorkerHost>,
    service_ptr: i32,
    service_len: i32,
    service_name_ptr: i32,
    service_name_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    message_ptr: i32,
    message_len: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> HostResult {
    let service = mem!(memory::read_bytes(
        &mut c,
        service_ptr as u32,
        service_len as u32
    ));
    let service_name = mem!(memory::read_bytes(
        &mut c,
        service_name_ptr as u32,
        service_name_len as u32
    ));
    let method = mem!(memory::read_bytes(
        &mut c,
        method_ptr as u32,
        method_len as u32
    ));
    let raw_metadata = mem!(memory::read_bytes(
        &mut c,
        metadata_ptr as u32,
        metadata_len as u32
    ));
    let message = mem!(memory::read_bytes(
        &mut c,
        message_ptr as u32,
        message_len as u32
    ));
    let cluster = String::from_utf8_lossy(&service).into_owned();
    let Some(route) = c.data().shared.clusters.get(&cluster).cloned() else {
        return ok(Status::ParseFailure);
    };
    let metadata = pairs::decode(&raw_metadata)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    // Validate the out-param before anything is dispatched (as `http_call`).
    mem!(memory::write_u32(&mut c, token_ptr as u32, 0));

    let host = c.data_mut();
    let token = host.next_grpc_token();
    let seq = host.next_seq;
    host.next_seq += 1;
    let owner = host.effective;
    let request = GrpcRequest {
        cluster,
        service: String::from_utf8_lossy(&service_name).into_owned(),
        method: String::from_utf8_lossy(&method).into_owned(),
        metadata,
        message,
        timeout: Duration::from_millis(u64::from(timeout_ms as u32)),
    };
    lock(&host.shared.grpc_calls).push(GrpcCallRecord {
        worker: host.worker,
        context_id: owner,
        token,
        request: request.clone(),
    });
    let now = host.shared.clock.elapsed();
    let kind = match route {
        Cluster::GrpcHandler(handler) => {
            let response = handler(&request);
            let (delay, delivery) = in_process_delivery(&response, request.timeout);
            PendingKind::InProcess {
                due: now + delay,
                delivery: CallDelivery::Grpc(delivery),
            }
        }
        Cluster::Handler(_) | Cluster::Http(_) => PendingKind::InProcess {
            due: now,
            delivery: CallDelivery::Grpc(GrpcDelivery::close(
                grpc_status::UNAVAILABLE,
                CONNECT_ERROR_BODY,
            )),
        },
        Cluster::Grpc(addr) => {
            let Some(upstream) = host.shared.upstream.as_ref() else {
                return ok(Status::InternalFailure);
            };
            PendingKind::Remote {
                abort: upstream.spawn_grpc(host.worker, token, addr, request),
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

#[allow(clippy::too_many_arguments)]
fn grpc_stream(
    mut c: Caller<'_, WorkerHost>,
    service_ptr: i32,
    service_len: i32,
    service_name_ptr: i32,
    service_name_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    _token_ptr: i32,
) -> HostResult {
    let service = mem!(memory::read_bytes(
        &mut c,
        service_ptr as u32,
        service_len as u32
    ));
    mem!(memory::read_bytes(
        &mut c,
        service_name_ptr as u32,
        service_name_len as u32
    ));
    mem!(memory::read_bytes(
        &mut c,
        method_ptr as u32,
        method_len as u32
    ));
    mem!(memory::read_bytes(
        &mut c,
        metadata_ptr as u32,
        metadata_len as u32
    ));
    let cluster = String::from_utf8_lossy(&service).into_owned();
    if c.data().shared.clusters.contains_key(&cluster) {
        ok(Status::InternalFailure)
    } else {
        ok(Status::ParseFailure)
    }
}

fn grpc_send(
    mut c: Caller<'_, WorkerHost>,
    token: i32,
    message_ptr: i32,
    message_len: i32,
    _end_stream: i32,
) -> HostResult {
    mem!(memory::read_bytes(
        &mut c,
        message_ptr as u32,
        message_len as u32
    ));
    match CalloutKind::of(token as u32) {
        CalloutKind::GrpcStream => ok(Status::NotFound),
        _ => ok(Status::BadArgument),
    }
}

/// `proxy_grpc_cancel` and, for calls, `proxy_grpc_close` (the same in Envoy).
fn grpc_cancel(mut c: Caller<'_, WorkerHost>, token: i32) -> HostResult {
    let token = token as u32;
    match CalloutKind::of(token) {
        CalloutKind::GrpcCall => {}
        CalloutKind::GrpcStream => return ok(Status::NotFound),
        CalloutKind::Http | CalloutKind::None => return ok(Status::BadArgument),
    }
    let host = c.data_mut();
    let Some(i) = host.pending.iter().position(|p| p.token == token) else {
        return ok(Status::NotFound);
    };
    if let PendingKind::Remote { abort } = host.pending.remove(i).kind {
        abort.abort();
    }
    ok(Status::Ok)
}

fn get_status(
    mut c: Caller<'_, WorkerHost>,
    code_ptr: i32,
    msg_ptr_ptr: i32,
    msg_size_ptr: i32,
) -> HostResult {
    let (code, message) = {
        let h = c.data();
        (h.status_code, h.status_message.clone())
    };
    mem!(memory::write_u32(&mut c, code_ptr as u32, code));
    mem!(memory::return_bytes(
        &mut c,
        &message,
        msg_ptr_ptr as u32,
        msg_size_ptr as u32
    ));
    ok(Status::Ok)
}
