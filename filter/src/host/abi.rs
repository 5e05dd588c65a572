//! Raw proxy-wasm host calls, each returning `Result<_, Status>`.
//!
//! Invariants:
//! - Never panics: every status the host may return is handed to the caller.
//! - Header names and values are bytes; nothing assumes UTF-8.
//! - Memory the host returns was allocated through Tollgate's
//!   `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes), so
//!   it is reclaimed with `Vec::from_raw_parts(ptr, size, size)`.
#![allow(unsafe_code, clashing_extern_declarations)]

use core::ptr::null_mut;

/// A host status other than Ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

pub const NOT_FOUND: u32 = 1;

pub const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
pub const BUFFER_HTTP_RESPONSE_BODY: u32 = 1;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_GRPC_RECEIVE: u32 = 5;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const STREAM_HTTP_REQUEST: u32 = 0;

use crate::pairs::encode_pairs;
pub use crate::pairs::HeaderMap;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        t: u32,
        start: usize,
        max: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(t: u32, start: usize, size: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_get_header_map_pairs(t: u32, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        t: u32,
        k: *const u8,
        ks: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        t: u32,
        k: *const u8,
        ks: usize,
        v: *const u8,
        vs: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(t: u32, k: *const u8, ks: usize) -> u32;
    fn proxy_get_property(p: *const u8, ps: usize, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_set_property(p: *const u8, ps: usize, v: *const u8, vs: usize) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_grpc_call(
        service: *const u8,
        service_size: usize,
        service_name: *const u8,
        service_name_size: usize,
        method: *const u8,
        method_size: usize,
        initial_metadata: *const u8,
        initial_metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_get_shared_data(
        k: *const u8,
        ks: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(k: *const u8, ks: usize, v: *const u8, vs: usize, cas: u32) -> u32;
    fn proxy_continue_stream(t: u32) -> u32;
    fn proxy_close_stream(t: u32) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(id: u32) -> u32;
    fn proxy_define_metric(t: u32, name: *const u8, name_size: usize, ret_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    if status == 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}

/// Takes ownership of a host-returned buffer.
fn take(ptr: *mut u8, size: usize) -> Vec<u8> {
    if ptr.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes at `ptr` through
    // `proxy_on_memory_allocate`, which leaks a boxed slice of that size.
    unsafe { Vec::from_raw_parts(ptr, size, size) }
}

pub fn log(level: u32, msg: &str) {
    // SAFETY: pointer and length of a live str.
    let _ = unsafe { proxy_log(level, msg.as_ptr(), msg.len()) };
}

/// Milliseconds since the Unix epoch, by the host's clock.
pub fn now_ms() -> Result<u64, Status> {
    let mut ns = 0u64;
    // SAFETY: out-pointer to a live u64.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut ns) })?;
    Ok(ns / 1_000_000)
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    // SAFETY: plain value call.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn get_buffer(t: u32, start: usize, max: usize) -> Result<Vec<u8>, Status> {
    let (mut ptr, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers to live locals.
    let s = unsafe { proxy_get_buffer_bytes(t, start, max, &mut ptr, &mut size) };
    match s {
        0 => Ok(take(ptr, size)),
        // Envoy answers NotFound/Empty for an empty buffer.
        1 | 7 => Ok(Vec::new()),
        s => Err(Status(s)),
    }
}

/// Replaces `size` bytes from `start` of buffer `t` (Envoy: only the whole
/// buffer, `start` 0 and `size` its length, is accepted).
pub fn set_buffer(t: u32, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the value slice is live for the call.
    check(unsafe { proxy_set_buffer_bytes(t, start, size, value.as_ptr(), value.len()) })
}

pub fn get_header_map(t: u32) -> Result<HeaderMap, Status> {
    let (mut ptr, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers to live locals.
    check(unsafe { proxy_get_header_map_pairs(t, &mut ptr, &mut size) })?;
    HeaderMap::parse(take(ptr, size)).ok_or(Status(3))
}

pub fn get_header(t: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut ptr, mut size) = (null_mut(), 0usize);
    // SAFETY: in-pointer to a live str, out-pointers to live locals.
    match unsafe { proxy_get_header_map_value(t, name.as_ptr(), name.len(), &mut ptr, &mut size) } {
        0 => Ok(Some(take(ptr, size))),
        NOT_FOUND => Ok(None),
        s => Err(Status(s)),
    }
}

pub fn replace_header(t: u32, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: in-pointers to live slices.
    check(unsafe {
        proxy_replace_header_map_value(t, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Removes every value of `name`.
pub fn remove_header(t: u32, name: &str) -> Result<(), Status> {
    // SAFETY: in-pointer to a live str.
    match unsafe { proxy_remove_header_map_value(t, name.as_ptr(), name.len()) } {
        0 | NOT_FOUND => Ok(()),
        s => Err(Status(s)),
    }
}

/// A property; `None` when the host has no such property.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let mut encoded = Vec::with_capacity(64);
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            encoded.push(0);
        }
        encoded.extend_from_slice(seg.as_bytes());
    }
    let (mut ptr, mut size) = (null_mut(), 0usize);
    // SAFETY: in-pointer to a live vec, out-pointers to live locals.
    match unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut ptr, &mut size) } {
        0 => Ok(Some(take(ptr, size))),
        NOT_FOUND | 7 => Ok(None),
        s => Err(Status(s)),
    }
}

/// Stores filter state `wasm.<path>` on the effective stream.
pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: in-pointers to live slices.
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Dispatches an HTTP call from the effective context; returns its token.
pub fn http_call(cluster: &str, headers: &[(&str, &str)], timeout_ms: u32) -> Result<u32, Status> {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let encoded = encode_pairs(&pairs);
    let trailers = encode_pairs(&[]);
    let mut token = 0u32;
    // SAFETY: in-pointers to live slices (an empty body), out-pointer to a live local.
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            encoded.as_ptr(),
            encoded.len(),
            core::ptr::null(),
            0,
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// A unary gRPC call to `cluster` (Envoy reads a plain cluster name as an
/// `envoy_grpc` service); the token.
pub fn grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let metadata = encode_pairs(&[]);
    let mut token = 0u32;
    // SAFETY: in-pointers to live slices, out-pointer to a live local.
    check(unsafe {
        proxy_grpc_call(
            cluster.as_ptr(),
            cluster.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Shared data: `None` when absent, else the value and its CAS.
pub fn get_shared(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (mut ptr, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: in-pointer to a live str, out-pointers to live locals.
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut size, &mut cas) } {
        0 => Ok(Some((take(ptr, size), cas))),
        NOT_FOUND => Ok(None),
        s => Err(Status(s)),
    }
}

pub fn set_shared(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: in-pointers to live slices.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Lets the (effective) request stream continue.
pub fn resume_request() -> Result<(), Status> {
    // SAFETY: plain value call.
    check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

/// Resets the (effective) stream.
pub fn close_request_stream() -> Result<(), Status> {
    // SAFETY: plain value call.
    check(unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) })
}

pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Result<(), Status> {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let encoded = encode_pairs(&pairs);
    // SAFETY: in-pointers to live slices.
    check(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    })
}

pub fn set_effective_context(id: u32) -> Result<(), Status> {
    // SAFETY: plain value call.
    check(unsafe { proxy_set_effective_context(id) })
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: in-pointer to a live str, out-pointer to a live local.
    check(unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn define_gauge(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: in-pointer to a live str, out-pointer to a live local.
    check(unsafe { proxy_define_metric(1, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment(id: u32, by: i64) {
    // SAFETY: plain value call.
    let _ = unsafe { proxy_increment_metric(id, by) };
}
