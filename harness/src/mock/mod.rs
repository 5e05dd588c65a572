//! Mock services that Tollgate's filter talks to out of band, for tests and
//! for operators' local runs.
//!
//! Job: give tests one mock per external dependency that can be used either
//! in-process (as a [`crate::call::CallHandler`] answering the guest's
//! `proxy_dispatch_http_call`) or as a real HTTP/1.1 server on tokio, with the
//! same protocol logic behind both.
//!
//! Invariants:
//! - A mock never prints or logs a secret value; every `Debug` impl that could
//!   reach one redacts it.
//! - No request, however malformed, makes a mock panic: bad requests get a 4xx.

pub mod credential_service;
mod keys_env;
pub mod llm;
pub mod ratelimit;
mod served;
mod time;

pub use credential_service::{
    Fault, MockAnswer, MockCredentialService, RecordedRequest, DEFAULT_EXPIRES_IN_S,
    DEFAULT_VAULT_FIELD, VAULT_REQUEST_HEADER, WORKLOAD_HEADER,
};
pub use keys_env::{KeysError, DEMO_KEY_NAMES, KEYS_FILE_VAR, KEY_VAR_PREFIX};
pub use llm::{LlmRequest, MockLlm, ProviderKind, ServedLlm};
pub use ratelimit::MockRateLimit;
pub use served::ServedMock;
