//! The audit record: one structured JSON log line per request.
//!
//! Invariants:
//! - Exactly one line per request, whatever its fate (see `flow`).
//! - No secret ever: the credential appears only as the service's key id and
//!   a 32-bit fingerprint; client credentials appear only as the boolean
//!   `client_key_seen`; the query string is never logged (it may carry `key=`).
//! - Untrusted request bytes (request id) are kept only if printable ASCII.

use serde::Serialize;

/// What happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not decided yet (never logged as such).
    #[default]
    Pending,
    /// Forwarded with a credential.
    Allow,
    /// Refused with a local reply.
    Deny,
    /// dry_run: the policy denied it, but it was forwarded.
    ShadowDeny,
    /// The client went away before a verdict.
    Abandoned,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub mode: &'static str,
    pub decision: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Box<str>>,
    /// The canonical upstream host the credential was written for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_fp: Option<String>,
    pub client_key_seen: bool,
    /// The model the provider reads (printable names only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The largest output cap the client asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_requested: Option<u64>,
    /// The output cap the provider received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_effective: Option<u64>,
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub clamped: bool,
    /// The response is a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// The provider's HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Tokens, as the provider reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageRecord>,
    /// From the request headers to the stream's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// From the request headers to the response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    /// False when the stream ended before the response did (the client left,
    /// or the upstream reset): usage is what was seen until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_complete: Option<bool>,
    /// Key echoes removed from the response.
    #[serde(skip_serializing_if = "is_zero")]
    pub key_echo_redacted: u32,
    /// Why the response was refused (reset) after it left the provider:
    /// `response_encoded`, a compressed body that could not be checked for
    /// the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_refused: Option<&'static str>,
    /// The budgets the request drew on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Box<str>>,
    /// Tokens held on the rule's token budgets at admission (each budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_reserved: Option<u64>,
    /// Tokens charged at settlement (each budget); the rest was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_charged: Option<u64>,
    /// Micro-dollars held on the rule's cost budgets at admission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_reserved_micros: Option<u64>,
    /// Micro-dollars charged at settlement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_charged_micros: Option<u64>,
    /// The workload's usual prompt size (bytes), when its prompt guard
    /// found this one far above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_anomaly_baseline: Option<u64>,
    /// What the rule's DLP detectors found in the request body: detector
    /// names and counts, never the text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dlp: Vec<DlpCount>,
    /// Matches replaced by `[REDACTED:<detector>]` in the body sent.
    #[serde(skip_serializing_if = "is_zero")]
    pub dlp_redacted: u32,
    /// What the DLP detectors found in the response (model output), when
    /// the rule's policy scans it: names and counts, never the text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dlp_response: Vec<DlpCount>,
    /// Matches replaced by `[REDACTED:<detector>]` in the response sent.
    #[serde(skip_serializing_if = "is_zero")]
    pub dlp_response_redacted: u32,
}

/// One detector's findings in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlpCount {
    pub detector: Box<str>,
    pub count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Token counts of one exchange (absent where the provider reports none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl AuditRecord {
    pub fn new(mode: &'static str) -> Self {
        AuditRecord {
            event: "tollgate.request",
            mode,
            ..Default::default()
        }
    }

    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| String::from("{\"event\":\"tollgate.request\"}"))
    }
}

/// Keeps untrusted bytes only when they are short printable ASCII.
pub fn printable(bytes: &[u8], max: usize) -> Option<String> {
    if bytes.is_empty() || bytes.len() > max || !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn serializes_only_known_fields() {
        let mut r = AuditRecord::new("enforce");
        r.decision = Verdict::Deny;
        r.reason = Some("identity_missing");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["event"], "tollgate.request");
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reason"], "identity_missing");
        assert_eq!(v["client_key_seen"], false);
        assert!(v.get("workload").is_none());
    }

    #[test]
    fn untrusted_bytes_must_be_printable() {
        assert_eq!(printable(b"abc-123", 64).as_deref(), Some("abc-123"));
        assert_eq!(printable(b"a\nb", 64), None);
        assert_eq!(printable(b"\xff", 64), None);
        assert_eq!(printable(&[b'a'; 65], 64), None);
    }
}
