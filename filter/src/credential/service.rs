//! The compiled settings of the out-of-band credential service.
//!
//! Invariant: `refresh_ahead_ms < ttl_ms`, `timeout_ms > 0`, and the timeout
//! fits `dispatch_http_call`'s u32 milliseconds (checked at load).

/// Which wire protocol the service speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Tollgate's own: `GET /v1/credentials/{name}`.
    TollgateV1,
    /// HashiCorp Vault KV v2 through a Vault Agent with auto-auth:
    /// `GET /v1/{mount}/data/{path}`, reading `field` of the secret.
    VaultKv2 { mount: Box<str>, field: Box<str> },
}

impl Protocol {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Protocol::TollgateV1 => "tollgate_v1",
            Protocol::VaultKv2 { .. } => "vault_kv2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialService {
    /// The gateway cluster the calls go to (for Istio, `outbound|port||host`).
    pub cluster: Box<str>,
    /// The `:authority` of the calls.
    pub authority: Box<str>,
    pub protocol: Protocol,
    /// Per-call timeout.
    pub timeout_ms: u32,
    /// Upper bound on how long a fetched value is used.
    pub ttl_ms: u64,
    /// Refresh this long before a value expires.
    pub refresh_ahead_ms: u64,
}

impl CredentialService {
    /// How long a fetch may hold the single-flight lease before another
    /// worker may take over: the call timeout plus a margin for delivery.
    pub fn lease_ms(&self) -> u64 {
        u64::from(self.timeout_ms) + 1_000
    }

    /// How long a request may wait for a credential before it gets 503:
    /// long enough for a dead lease to expire and one more fetch to run.
    pub fn wait_limit_ms(&self) -> u64 {
        self.lease_ms() + u64::from(self.timeout_ms) + 500
    }
}
