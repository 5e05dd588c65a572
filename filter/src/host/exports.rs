//! The proxy-wasm ABI 0.2.1 entry points: the functions Envoy calls.
//!
//! Tollgate exports only the callbacks it uses, instead of the SDK's full
//! set: Envoy skips a callback the module does not export (no VM crossing
//! for request bodies or response phases we do not read; a missing
//! `proxy_on_vm_start` or `proxy_on_done` counts as `true`), and no SDK
//! dispatcher sits in between. The SDK's dispatcher panics on an unknown
//! call token, on a duplicate token and on any status it does not expect
//! from `set_effective_context`, and a panic kills the VM for every later
//! request; these entry points hand every status to the worker instead.
//!
//! Invariants:
//! - One [`Worker`] per root context (plugin); each HTTP context is routed
//!   to its root's worker. Unknown context ids are ignored, never a panic.
//! - No entry point panics; a request callback for an unknown context
//!   fails closed (pause and local reply).
#![allow(unsafe_code)]

use core::cell::RefCell;
use std::io;
use std::rc::Rc;

use hashbrown::HashMap;

use super::abi;
use super::proxy_host::ProxyHost;
use crate::config::Document;
use crate::worker::{Action, Worker};

const ACTION_CONTINUE: u32 = 0;
const ACTION_PAUSE: u32 = 1;

#[derive(Default)]
struct Contexts {
    roots: HashMap<u32, Rc<Worker<ProxyHost>>>,
    /// HTTP context id → its root's worker.
    streams: HashMap<u32, Rc<Worker<ProxyHost>>>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
}

fn root(id: u32) -> Option<Rc<Worker<ProxyHost>>> {
    CONTEXTS.with(|c| c.borrow().roots.get(&id).cloned())
}

fn stream(id: u32) -> Option<Rc<Worker<ProxyHost>>> {
    CONTEXTS.with(|c| c.borrow().streams.get(&id).cloned())
}

fn action(a: Action) -> u32 {
    match a {
        Action::Continue => ACTION_CONTINUE,
        Action::Pause => ACTION_PAUSE,
    }
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Host-to-guest memory: a boxed slice of exactly `size` bytes, reclaimed by
/// `abi::take` with `Vec::from_raw_parts(ptr, size, size)`.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let slice = vec![0u8; size].into_boxed_slice();
    Box::into_raw(slice) as *mut u8
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    CONTEXTS.with(|c| {
        let mut c = c.borrow_mut();
        if parent_id == 0 {
            c.roots
                .insert(context_id, Rc::new(Worker::new(ProxyHost, context_id)));
        } else if let Some(w) = c.roots.get(&parent_id).cloned() {
            c.streams.insert(context_id, w);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, size: usize) -> u32 {
    let Some(w) = root(context_id) else { return 0 };
    u32::from(w.on_configure(PluginConfiguration { size }))
}

/// The plugin configuration, left in the host: each reader fetches it in
/// windows, so the VM never holds the whole text (a read failure is an
/// `io::Error`, which the configuration reports as a problem).
struct PluginConfiguration {
    size: usize,
}

impl Document for PluginConfiguration {
    fn open(&self) -> Box<dyn io::Read + '_> {
        Box::new(PluginConfigurationReader {
            at: 0,
            size: self.size,
        })
    }
}

struct PluginConfigurationReader {
    at: usize,
    size: usize,
}

impl io::Read for PluginConfigurationReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.size.saturating_sub(self.at));
        if want == 0 {
            return Ok(0);
        }
        let bytes =
            abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, self.at, want).map_err(|s| {
                io::Error::other(format!("cannot read the plugin configuration: {s:?}"))
            })?;
        let n = bytes.len().min(want);
        if let (Some(to), Some(from)) = (buf.get_mut(..n), bytes.get(..n)) {
            to.copy_from_slice(from);
        }
        self.at += n;
        Ok(n)
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    if let Some(w) = root(context_id) {
        w.on_tick();
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    // Fetches are dispatched from the root context, so answers come there.
    if let Some(w) = root(context_id).or_else(|| stream(context_id)) {
        w.on_http_call_response(token, num_headers, body_size);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(context_id: u32, token: u32, size: usize) {
    // Rate-limit calls are dispatched from the root context too.
    if let Some(w) = root(context_id).or_else(|| stream(context_id)) {
        w.on_grpc_receive(token, size);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(context_id: u32, token: u32, status: u32) {
    if let Some(w) = root(context_id).or_else(|| stream(context_id)) {
        w.on_grpc_close(token, status);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, eos: u32) -> u32 {
    match stream(context_id) {
        Some(w) => action(w.on_request_headers(context_id, eos != 0)),
        None => {
            // A stream without a worker: never forward it.
            log::error!("tollgate: request on an unknown context {context_id}");
            ACTION_PAUSE
        }
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, size: usize, eos: u32) -> u32 {
    match stream(context_id) {
        Some(w) => action(w.on_request_body(context_id, size, eos != 0)),
        None => ACTION_PAUSE,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _trailers: usize) -> u32 {
    match stream(context_id) {
        Some(w) => action(w.on_request_trailers(context_id)),
        None => ACTION_PAUSE,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: usize, eos: u32) -> u32 {
    match stream(context_id) {
        Some(w) => action(w.on_response_headers(context_id, eos != 0)),
        None => ACTION_CONTINUE,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context_id: u32, size: usize, eos: u32) -> u32 {
    match stream(context_id) {
        Some(w) => action(w.on_response_body(context_id, size, eos != 0)),
        None => ACTION_CONTINUE,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    if let Some(w) = stream(context_id) {
        w.on_log(context_id);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let w = CONTEXTS.with(|c| {
        let mut c = c.borrow_mut();
        c.roots.remove(&context_id);
        c.streams.remove(&context_id)
    });
    if let Some(w) = w {
        w.on_delete(context_id);
    }
}
