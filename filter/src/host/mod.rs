//! The proxy-wasm glue: the only code that talks to the host.
//!
//! - [`abi`]: raw host calls that return every status as a `Result`.
//! - [`proxy_host`]: the worker's `Host` trait over [`abi`].
//! - [`exports`]: the ABI entry points Envoy calls, routed to the worker.
//! - [`logger`]: the `log` backend and the panic hook.
//!
//! Invariant: nothing here decides anything. Decisions live in the pure
//! modules (`worker`, `flow` and below); this layer only maps calls.

pub mod abi;
pub mod exports;
pub mod logger;
pub mod proxy_host;

/// Called once by `_initialize`.
pub fn start() {
    logger::install();
}
