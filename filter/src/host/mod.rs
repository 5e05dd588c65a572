//! The proxy-wasm glue: the only code that talks to the host.
//!
//! - [`abi`]: raw host calls that return every status as a `Result`, so no
//!   unexpected status can panic the VM (the SDK's helpers panic on many).
//! - [`logger`]: the `log` backend and the panic hook.
//! - [`store`]: shared data as a `credential::cache::SharedStore`.
//! - [`worker`]: per-worker (per-VM) state: config, metrics, waiting
//!   requests, fetches in flight; it performs the steps `flow` returns.
//! - [`root`], [`http`]: the SDK contexts, a few lines each.
//!
//! Invariant: nothing here decides anything. Decisions live in the pure
//! modules; this layer reads inputs and performs outputs.

pub mod abi;
pub mod logger;
pub mod root;
pub mod store;
pub mod worker;

mod http;

/// Called once by `_initialize`.
pub fn start() {
    logger::install();
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}
