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
//! reads properties and headers, performs the steps [`flow`] returns, and owns
//! per-worker state. ARCHITECTURE.md walks a request through these modules.

pub mod audit;
pub mod config;
pub mod credential;
pub mod flow;
pub mod metrics;
pub mod pairs;
pub mod policy;
pub mod provider;
pub mod reason;
pub mod reply;
pub mod request_path;
pub mod spiffe;
pub mod strip;

#[cfg(all(target_arch = "wasm32", feature = "host"))]
pub mod host;

#[cfg(all(target_arch = "wasm32", feature = "host"))]
proxy_wasm::main! {{
    host::start();
}}
