//! [`ProxyHost`]: the worker's [`Host`] over the raw proxy-wasm ABI.
//!
//! Invariant: a one-to-one mapping onto `abi`; nothing here decides.

use super::abi;
use crate::pairs::HeaderMap;
use crate::worker::{BodyBuffer, Host, HostError, LogLevel, MapType};

/// The host this VM runs in.
pub struct ProxyHost;

fn err(s: abi::Status) -> HostError {
    HostError(s.0)
}

impl Host for ProxyHost {
    fn now_ms(&self) -> Result<u64, HostError> {
        abi::now_ms().map_err(err)
    }

    fn set_tick_ms(&self, ms: u32) -> Result<(), HostError> {
        abi::set_tick_period_ms(ms).map_err(err)
    }

    fn random_u64(&self) -> u64 {
        // WASI random_get, through std's hasher keys.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x746f_6c6c_6761_7465);
        h.finish()
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        abi::get_shared(key).map_err(err)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        abi::set_shared(key, value, cas).map_err(err)
    }

    fn header_map(&self, map: MapType) -> Result<HeaderMap, HostError> {
        abi::get_header_map(map as u32).map_err(err)
    }

    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        abi::get_header(map as u32, name).map_err(err)
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
        abi::remove_header(map as u32, name).map_err(err)
    }

    fn replace_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        abi::replace_header(map as u32, name, value).map_err(err)
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        abi::get_property(path).map_err(err)
    }

    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        abi::set_property(path, value).map_err(err)
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        abi::http_call(cluster, headers, timeout_ms).map_err(err)
    }

    fn body(&self, which: BodyBuffer, max: usize) -> Result<Vec<u8>, HostError> {
        abi::get_buffer(which as u32, 0, max).map_err(err)
    }

    fn replace_body(&self, which: BodyBuffer, len: usize, new: &[u8]) -> Result<(), HostError> {
        abi::set_buffer(which as u32, 0, len, new).map_err(err)
    }

    fn call_response_body(&self, max: usize) -> Result<Vec<u8>, HostError> {
        abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, max).map_err(err)
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        abi::grpc_call(cluster, service, method, message, timeout_ms).map_err(err)
    }

    fn grpc_message(&self, max: usize) -> Result<Vec<u8>, HostError> {
        abi::get_buffer(abi::BUFFER_GRPC_RECEIVE, 0, max).map_err(err)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        abi::resume_request().map_err(err)
    }

    fn send_reply(
        &self,
        status: u32,
        details: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        abi::send_local_response(status, details, body, headers).map_err(err)
    }

    fn close_stream(&self) -> Result<(), HostError> {
        abi::close_request_stream().map_err(err)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        abi::set_effective_context(context_id).map_err(err)
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        abi::define_counter(name).map_err(err)
    }

    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        abi::define_gauge(name).map_err(err)
    }

    fn increment(&self, id: u32, by: i64) {
        abi::increment(id, by);
    }

    fn log(&self, level: LogLevel, message: &str) {
        abi::log(level as u32, message);
    }
}
