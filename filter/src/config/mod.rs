//! Operator configuration: parsed once from JSON (Istio's `pluginConfig`),
//! validated, and compiled into an immutable [`Config`].
//!
//! Invariants:
//! - Unknown fields are errors, at every level ([`read`] rejects them).
//! - Every problem carries the path of the offending value
//!   (`rules[2].workloads[0]: …`); [`read`] (shape: types, required and
//!   unknown fields) and [`compile`] (meaning) each report all of theirs,
//!   never just the first, and never drop a bad entry silently.
//! - A [`Config`] that exists is valid: the request path never re-checks it.
//! - The document is read from a [`Document`], twice, and never held whole
//!   (a 10,000-rule policy is 1.4 MB of text the VM would keep forever).

pub mod compile;
pub mod duration;
pub mod error;
pub mod raw;
pub mod read;
pub mod scan;

pub use compile::{parse, parse_document};
pub use error::{ConfigError, ConfigErrors};

use crate::credential::service::CredentialService;
use crate::policy::Policy;
use crate::provider::ProviderTable;
use crate::spiffe::TrustDomain;
use crate::strip::StripSet;

/// A configuration document that can be read from its start more than once.
pub trait Document {
    /// A reader over the whole document, from its first byte.
    fn open(&self) -> Box<dyn std::io::Read + '_>;
}

/// A document already in memory.
impl<T: AsRef<[u8]> + ?Sized> Document for &T {
    fn open(&self) -> Box<dyn std::io::Read + '_> {
        Box::new((*self).as_ref())
    }
}

/// Whether policy denials are enforced or only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Denials are replied to the caller.
    Enforce,
    /// Access-policy denials are logged as `shadow_deny` and the request is
    /// forwarded, like Envoy rbac's shadow engine.
    DryRun,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry_run",
        }
    }
}

/// Where the per-request audit record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditLog {
    /// Filter state `wasm.tollgate.audit`, for Envoy's access log (cheap).
    FilterState,
    /// Envoy's application log through `proxy_log` (costs 10–15 µs/request).
    ProxyLog,
    Both,
}

impl AuditLog {
    pub const fn to_filter_state(self) -> bool {
        matches!(self, AuditLog::FilterState | AuditLog::Both)
    }
    pub const fn to_proxy_log(self) -> bool {
        matches!(self, AuditLog::ProxyLog | AuditLog::Both)
    }
}

/// How a request whose body must be checked travels (README, "Bodies").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Headers and body are held until the body has passed; needs Envoy's
    /// `allow_on_headers_stop_iteration: true` in the Wasm plugin config.
    Held,
    /// Headers (with the credential, without Content-Length) go upstream
    /// first; the body is held; a denial resets the upstream stream. For a
    /// stock Istio WasmPlugin, which cannot set the option.
    Streamed,
}

impl BodyMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            BodyMode::Held => "held",
            BodyMode::Streamed => "streamed",
        }
    }
}

/// The compiled, immutable configuration every request reads.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub audit_log: AuditLog,
    pub body_mode: BodyMode,
    /// OpenAI streams get `stream_options.include_usage` written in (and the
    /// usage-only chunk removed for clients that did not ask for it).
    pub inject_stream_usage: bool,
    pub trust_domains: Vec<TrustDomain>,
    pub credential_service: CredentialService,
    pub providers: ProviderTable,
    pub policy: Policy,
    pub strip: StripSet,
    /// Every budget, by [`crate::budget::BudgetId`]; rules name theirs.
    pub budgets: Box<[crate::budget::Budget]>,
    /// Model prices for `cost` budgets.
    pub prices: crate::budget::price::PriceTable,
    /// Prompt-size anomaly guards; rules name theirs.
    pub guards: Box<[crate::budget::baseline::Guard]>,
    /// Where `global` budgets are kept (set when any budget is global).
    pub rate_limit_service: Option<crate::budget::global::Service>,
    /// DLP policies; rules name theirs.
    pub dlp: Box<[std::rc::Rc<crate::body::dlp_scan::DlpPolicy>]>,
}

impl Config {
    /// True when `td` is one of the configured trust domains.
    pub fn trusts(&self, td: &str) -> bool {
        self.trust_domains.iter().any(|t| t.as_str() == td)
    }
}
