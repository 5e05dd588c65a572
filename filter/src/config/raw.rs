//! The configuration exactly as written, as [`super::read`] reads it. No
//! meaning is attached here; [`super::compile`] turns it into typed, checked
//! values. The settings are read whole ([`RawConfig`]); the rules one
//! [`RawRule`] at a time, each compiled before the next is read.
//!
//! Invariant: these hold only fields the policy reference documents; the
//! reader rejects any other field, so a typo is an error and never a
//! silently ignored setting. `Option` fields are absent (or `null`) when
//! unset; the defaults noted are applied by the reader.

#[derive(Debug)]
pub struct RawConfig {
    /// Default `enforce`.
    pub mode: RawMode,
    /// Default `filter_state`.
    pub audit_log: RawAuditLog,
    /// Default `held`.
    pub body_mode: RawBodyMode,
    /// Default `inject`.
    pub stream_usage: RawStreamUsage,
    pub trust_domains: Vec<String>,
    pub credential_service: RawCredentialService,
    pub providers: Vec<RawProvider>,
    /// Default none.
    pub budgets: Vec<RawBudget>,
    /// Default none.
    pub prices: Vec<RawPrice>,
    /// Default none.
    pub prompt_guards: Vec<RawGuard>,
    /// Needed by `global` budgets only.
    pub rate_limit_service: Option<RawRateLimitService>,
    /// Default none.
    pub dlp_policies: Vec<RawDlpPolicy>,
}

/// One element of `dlp_policies`: detector names (built-ins, the groups
/// `secrets`, `personal_data` and `all`, or this policy's literals) by action.
#[derive(Debug)]
pub struct RawDlpPolicy {
    pub name: String,
    pub block: Vec<String>,
    pub redact: Vec<String>,
    pub audit: Vec<String>,
    pub literals: Vec<RawLiteral>,
    /// Model output is scanned too.
    pub responses: bool,
    /// Bytes of output text an SSE event waits behind (absent: the default).
    pub response_holdback: Option<u64>,
}

/// An operator's literal: found exactly (`ignore_case`: ASCII letters in
/// either case), or with `pattern`, a shape (`dlp::pattern`).
#[derive(Debug)]
pub struct RawLiteral {
    pub name: String,
    /// The `text`, or the `pattern`.
    pub text: String,
    pub pattern: bool,
    pub ignore_case: Option<bool>,
}

/// `rate_limit_service`: where `global` budgets are kept.
#[derive(Debug)]
pub struct RawRateLimitService {
    pub cluster: String,
    /// Default `tollgate`.
    pub domain: Option<String>,
    /// Default `250ms`.
    pub timeout: Option<String>,
    /// `fail_closed` (default) or `fail_open`.
    pub failure_mode: Option<String>,
}

/// One element of `prompt_guards`.
#[derive(Debug)]
pub struct RawGuard {
    pub name: String,
    pub factor: Option<u64>,
    pub min_bytes: Option<u64>,
    pub warmup: Option<u64>,
    /// `deny` (default) or `record`.
    pub action: Option<String>,
    pub slots: Option<u64>,
}

/// One element of `prices`: USD per million tokens, as written (a decimal
/// string or an integer).
#[derive(Debug)]
pub struct RawPrice {
    pub model: String,
    pub input: String,
    /// Default: the input price.
    pub cached_input: Option<String>,
    pub output: String,
}

/// One element of `budgets`.
#[derive(Debug)]
pub struct RawBudget {
    pub name: String,
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    /// USD, as written (a decimal string or an integer).
    pub cost: Option<String>,
    pub window: String,
    /// Default `per_workload`.
    pub scope: RawScope,
    /// Only for `per_workload`.
    pub slots: Option<u64>,
    /// `local` (default) or `global`.
    pub tier: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
pub enum RawMode {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Debug, Default, Clone, Copy)]
pub enum RawAuditLog {
    #[default]
    FilterState,
    ProxyLog,
    Both,
}

#[derive(Debug, Default, Clone, Copy)]
pub enum RawBodyMode {
    #[default]
    Held,
    Streamed,
}

#[derive(Debug, Default, Clone, Copy)]
pub enum RawStreamUsage {
    #[default]
    Inject,
    Leave,
}

#[derive(Debug)]
pub struct RawCredentialService {
    pub cluster: String,
    pub authority: String,
    pub protocol: RawProtocol,
    pub timeout: Option<String>,
    pub ttl: Option<String>,
    pub refresh_ahead: Option<String>,
    pub vault: Option<RawVault>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawProtocol {
    TollgateV1,
    VaultKv2,
}

#[derive(Debug)]
pub struct RawVault {
    pub mount: Option<String>,
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct RawProvider {
    pub name: String,
    pub kind: RawProviderKind,
    pub hosts: Vec<String>,
    pub credential: RawCredentialRef,
    /// Only for `kind: generic`.
    pub header: Option<RawHeader>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawProviderKind {
    Openai,
    Anthropic,
    Gemini,
    AzureOpenai,
    Generic,
}

#[derive(Debug)]
pub struct RawHeader {
    pub name: String,
    /// Default empty.
    pub prefix: String,
}

#[derive(Debug)]
pub struct RawCredentialRef {
    pub name: String,
    /// Default `shared`.
    pub scope: RawScope,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RawScope {
    #[default]
    Shared,
    PerWorkload,
}

/// One element of `rules` (default: no rules).
#[derive(Debug, Default, Clone)]
pub struct RawRule {
    pub name: String,
    pub workloads: Vec<String>,
    pub providers: Vec<String>,
    pub endpoints: Vec<String>,
    /// Absent: any model.
    pub models: Option<Vec<String>>,
    pub max_output_tokens: Option<u64>,
    /// `clamp` (default) or `deny`; only with `max_output_tokens`.
    pub max_output_tokens_action: Option<String>,
    pub max_body_bytes: Option<u64>,
    /// Names of `budgets` entries; absent: none.
    pub budgets: Option<Vec<String>>,
    /// The name of a `prompt_guards` entry; absent: none.
    pub prompt_guard: Option<String>,
    /// The name of a `dlp_policies` entry; absent: none.
    pub dlp: Option<String>,
}
