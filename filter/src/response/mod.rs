//! The response: usage read from JSON and SSE, the usage-only chunk removed
//! for clients that did not ask for it, model output through the rule's DLP
//! detectors, and the injected key redacted from everything that goes back
//! to the client.

pub mod dlp;
#[cfg(test)]
mod dlp_tests;
pub mod null_usage;
#[cfg(test)]
mod recorded_streams;
pub mod redact;
pub mod redactors;
pub mod sse;
pub mod tap;
pub mod usage;
