//! Tollgate in a real Envoy: configuration, process control, a development
//! PKI, and a whole local gateway stack.
//!
//! - `pki`: a CA, gateway and SPIFFE workload certificates (rcgen).
//! - `bootstrap`: the Envoy configuration, rendered from a `GatewaySpec`.
//! - `process`: starting, querying and stopping one Envoy.
//! - `stack`: Envoy plus the mock credential service and mock LLM.

pub mod bootstrap;
pub mod local_run;
pub mod pki;
pub mod process;
pub mod stack;

pub use bootstrap::{
    AccessLogSink, ClientCertDetails, GatewaySpec, HttpFilters, ListenerSource, Upstream,
    AUDIT_LOG_FORMAT,
};
pub use pki::{DevCa, Pem, PemFiles, PkiError};
pub use process::{envoy_binary, EnvoyError, EnvoyOptions, EnvoyProcess};
pub use stack::{free_port, Stack, StackOptions, StackPki, UpstreamChoice};
