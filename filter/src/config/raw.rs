//! The configuration exactly as written, for serde. No meaning is attached
//! here; [`super::compile`] turns it into typed, checked values.
//!
//! Invariant: every struct denies unknown fields, so a typo is an error and
//! never a silently ignored setting.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: RawMode,
    pub trust_domains: Vec<String>,
    pub credential_service: RawCredentialService,
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentialService {
    pub cluster: String,
    pub authority: String,
    pub protocol: RawProtocol,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub refresh_ahead: Option<String>,
    #[serde(default)]
    pub vault: Option<RawVault>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawProtocol {
    TollgateV1,
    VaultKv2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    #[serde(default)]
    pub mount: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: RawProviderKind,
    pub hosts: Vec<String>,
    pub credential: RawCredentialRef,
    /// Only for `kind: generic`.
    #[serde(default)]
    pub header: Option<RawHeader>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawProviderKind {
    Openai,
    Anthropic,
    Gemini,
    AzureOpenai,
    Generic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: String,
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentialRef {
    pub name: String,
    #[serde(default)]
    pub scope: RawScope,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawScope {
    #[default]
    Shared,
    PerWorkload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub workloads: Vec<String>,
    pub providers: Vec<String>,
    pub endpoints: Vec<String>,
}
