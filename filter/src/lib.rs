//! Tollgate: a proxy-wasm HTTP filter for egress gateways in front of LLM APIs.
//!
//! For each request the filter reads the caller's SPIFFE identity from the
//! mTLS peer certificate, decides by the operator's access policy whether that
//! workload may call that provider and endpoint, strips every credential the
//! client sent, and writes the real credential (fetched out of band, cached
//! process-wide) into the header the provider expects.
//!
//! Layout: everything except [`host`] is plain Rust with no host calls, and is
//! tested natively and on wasm32. [`host`] is the thin proxy-wasm glue that
//! maps the ABI's entry points and host calls onto [`worker`], which owns
//! per-worker state behind a `Host` trait and performs the steps [`flow`]
//! returns. ARCHITECTURE.md walks a request through these modules.

pub mod audit;
pub mod body;
pub mod budget;
pub mod config;
pub mod credential;
pub mod dlp;
pub mod exchange;
pub mod flow;
pub mod json_out;
pub mod metrics;
pub mod pairs;
pub mod policy;
pub mod provider;
pub mod reason;
pub mod reply;
pub mod request_path;
pub mod response;
pub mod sort;
pub mod spiffe;
pub mod string_run;
pub mod strip;
pub mod worker;

#[cfg(all(target_arch = "wasm32", feature = "host"))]
pub mod host;

#[cfg(all(target_arch = "wasm32", target_os = "wasi", feature = "host"))]
extern "C" {
    fn __wasm_call_ctors();
}

/// The reactor's initialiser: Envoy calls it once after instantiation.
#[cfg(all(target_arch = "wasm32", feature = "host"))]
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once, first, as the wasi reactor ABI requires.
    unsafe {
        __wasm_call_ctors();
    }
    host::start();
}
