//! The audit record: one structured JSON log line per request.
//!
//! Invariants:
//! - Exactly one line per request, whatever its fate (see `flow`).
//! - No secret ever: the credential appears only as the service's key id and
//!   a 32-bit fingerprint; client credentials appear only as the boolean
//!   `client_key_seen`; the query string is never logged (it may carry `key=`).
//! - Untrusted request bytes (request id) are kept only if printable ASCII.

use crate::json_out::Obj;

/// What happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    pub event: &'static str,
    pub request_id: Option<String>,
    pub mode: &'static str,
    pub decision: Verdict,
    pub reason: Option<&'static str>,
    pub workload: Option<String>,
    pub provider: Option<Box<str>>,
    /// The canonical upstream host the credential was written for.
    pub host: Option<String>,
    pub rule: Option<Box<str>>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub credential_id: Option<String>,
    pub credential_fp: Option<String>,
    pub client_key_seen: bool,
    /// The model the provider reads (printable names only).
    pub model: Option<String>,
    /// The largest output cap the client asked for.
    pub max_tokens_requested: Option<u64>,
    /// The output cap the provider received.
    pub max_tokens_effective: Option<u64>,
    pub clamped: bool,
    /// The response is a stream.
    pub stream: Option<bool>,
    /// The provider's HTTP status.
    pub upstream_status: Option<u16>,
    /// Tokens, as the provider reported them.
    pub usage: Option<UsageRecord>,
    /// From the request headers to the stream's end.
    pub duration_ms: Option<u64>,
    /// From the request headers to the response headers.
    pub ttfb_ms: Option<u64>,
    /// False when the stream ended before the response did (the client left,
    /// or the upstream reset): usage is what was seen until then.
    pub response_complete: Option<bool>,
    /// Key echoes removed from the response.
    pub key_echo_redacted: u32,
    /// Why the response was refused (reset) after it left the provider:
    /// `response_encoded`, a compressed body that could not be checked for
    /// the key.
    pub response_refused: Option<&'static str>,
    /// The budgets the request drew on.
    pub budgets: Vec<Box<str>>,
    /// Tokens held on the rule's token budgets at admission (each budget).
    pub tokens_reserved: Option<u64>,
    /// Tokens charged at settlement (each budget); the rest was released.
    pub tokens_charged: Option<u64>,
    /// Micro-dollars held on the rule's cost budgets at admission.
    pub cost_reserved_micros: Option<u64>,
    /// Micro-dollars charged at settlement.
    pub cost_charged_micros: Option<u64>,
    /// The workload's usual prompt size (bytes), when its prompt guard
    /// found this one far above it.
    pub prompt_anomaly_baseline: Option<u64>,
    /// What the rule's DLP detectors found in the request body: detector
    /// names and counts, never the text.
    pub dlp: Vec<DlpCount>,
    /// Matches replaced by `[REDACTED:<detector>]` in the body sent.
    pub dlp_redacted: u32,
    /// What the DLP detectors found in the response (model output), when
    /// the rule's policy scans it: names and counts, never the text.
    pub dlp_response: Vec<DlpCount>,
    /// Matches replaced by `[REDACTED:<detector>]` in the response sent.
    pub dlp_response_redacted: u32,
}

/// One detector's findings in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlpCount {
    pub detector: Box<str>,
    pub count: u32,
}

impl DlpCount {
    /// The record's form of a scan's `(detector, count)` list.
    pub fn list(counts: &[(Box<str>, u32)]) -> Vec<DlpCount> {
        counts
            .iter()
            .map(|(n, c)| DlpCount {
                detector: n.clone(),
                count: *c,
            })
            .collect()
    }
}

/// Token counts of one exchange (absent where the provider reports none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageRecord {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cached_input: Option<u64>,
    pub reasoning: Option<u64>,
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

    /// The JSON line: every field in declaration order, absent ones (and
    /// zero counts, empty lists, `clamped: false`) left out.
    pub fn to_json(&self) -> String {
        let mut o = Obj::new();
        o.str("event", self.event);
        o.opt_str("request_id", self.request_id.as_deref());
        o.str("mode", self.mode);
        o.str("decision", self.decision.as_str());
        o.opt_str("reason", self.reason);
        o.opt_str("workload", self.workload.as_deref());
        o.opt_str("provider", self.provider.as_deref());
        o.opt_str("host", self.host.as_deref());
        o.opt_str("rule", self.rule.as_deref());
        o.opt_str("method", self.method.as_deref());
        o.opt_str("path", self.path.as_deref());
        o.opt_str("credential_id", self.credential_id.as_deref());
        o.opt_str("credential_fp", self.credential_fp.as_deref());
        o.bool("client_key_seen", self.client_key_seen);
        o.opt_str("model", self.model.as_deref());
        o.opt_u64("max_tokens_requested", self.max_tokens_requested);
        o.opt_u64("max_tokens_effective", self.max_tokens_effective);
        if self.clamped {
            o.bool("clamped", true);
        }
        if let Some(s) = self.stream {
            o.bool("stream", s);
        }
        o.opt_u64("upstream_status", self.upstream_status.map(u64::from));
        if let Some(u) = &self.usage {
            o.obj("usage", |o| {
                o.opt_u64("input", u.input);
                o.opt_u64("output", u.output);
                o.opt_u64("cached_input", u.cached_input);
                o.opt_u64("reasoning", u.reasoning);
                o.opt_u64("total", u.total);
            });
        }
        o.opt_u64("duration_ms", self.duration_ms);
        o.opt_u64("ttfb_ms", self.ttfb_ms);
        if let Some(c) = self.response_complete {
            o.bool("response_complete", c);
        }
        count(&mut o, "key_echo_redacted", self.key_echo_redacted);
        o.opt_str("response_refused", self.response_refused);
        if !self.budgets.is_empty() {
            o.strs("budgets", &self.budgets);
        }
        o.opt_u64("tokens_reserved", self.tokens_reserved);
        o.opt_u64("tokens_charged", self.tokens_charged);
        o.opt_u64("cost_reserved_micros", self.cost_reserved_micros);
        o.opt_u64("cost_charged_micros", self.cost_charged_micros);
        o.opt_u64("prompt_anomaly_baseline", self.prompt_anomaly_baseline);
        counts(&mut o, "dlp", &self.dlp);
        count(&mut o, "dlp_redacted", self.dlp_redacted);
        counts(&mut o, "dlp_response", &self.dlp_response);
        count(&mut o, "dlp_response_redacted", self.dlp_response_redacted);
        o.finish()
    }
}

fn count(o: &mut Obj, name: &str, n: u32) {
    if n != 0 {
        o.u64(name, u64::from(n));
    }
}

fn counts(o: &mut Obj, name: &str, list: &[DlpCount]) {
    if !list.is_empty() {
        o.list(name, list, |o, c| {
            o.str("detector", &c.detector);
            o.u64("count", u64::from(c.count));
        });
    }
}

impl Verdict {
    /// The name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::ShadowDeny => "shadow_deny",
            Verdict::Abandoned => "abandoned",
        }
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
    fn every_field_is_written_under_its_name() {
        let r = AuditRecord {
            event: "tollgate.request",
            request_id: Some("id-\"1".into()),
            mode: "dry_run",
            decision: Verdict::ShadowDeny,
            reason: Some("model_not_permitted"),
            workload: Some("spiffe://t/ns/a/sa/b".into()),
            provider: Some("openai".into()),
            host: Some("api.openai.com".into()),
            rule: Some("chat".into()),
            method: Some("POST".into()),
            path: Some("/v1/chat/completions".into()),
            credential_id: Some("k1".into()),
            credential_fp: Some("abcd1234".into()),
            client_key_seen: true,
            model: Some("gpt-4o".into()),
            max_tokens_requested: Some(9000),
            max_tokens_effective: Some(2000),
            clamped: true,
            stream: Some(false),
            upstream_status: Some(200),
            usage: Some(UsageRecord {
                input: Some(1),
                output: Some(2),
                cached_input: None,
                reasoning: Some(0),
                total: Some(3),
            }),
            duration_ms: Some(12),
            ttfb_ms: Some(0),
            response_complete: Some(true),
            key_echo_redacted: 1,
            response_refused: Some("dlp_unscannable"),
            budgets: vec!["team".into(), "global".into()],
            tokens_reserved: Some(2100),
            tokens_charged: Some(3),
            cost_reserved_micros: Some(5),
            cost_charged_micros: Some(u64::MAX),
            prompt_anomaly_baseline: Some(77),
            dlp: vec![DlpCount {
                detector: "payment_card".into(),
                count: 2,
            }],
            dlp_redacted: 2,
            dlp_response: vec![DlpCount {
                detector: "email".into(),
                count: 1,
            }],
            dlp_response_redacted: 0,
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let want = serde_json::json!({
            "event": "tollgate.request", "request_id": "id-\"1", "mode": "dry_run",
            "decision": "shadow_deny", "reason": "model_not_permitted",
            "workload": "spiffe://t/ns/a/sa/b", "provider": "openai",
            "host": "api.openai.com", "rule": "chat", "method": "POST",
            "path": "/v1/chat/completions", "credential_id": "k1",
            "credential_fp": "abcd1234", "client_key_seen": true, "model": "gpt-4o",
            "max_tokens_requested": 9000, "max_tokens_effective": 2000, "clamped": true,
            "stream": false, "upstream_status": 200,
            "usage": {"input": 1, "output": 2, "reasoning": 0, "total": 3},
            "duration_ms": 12, "ttfb_ms": 0, "response_complete": true,
            "key_echo_redacted": 1, "response_refused": "dlp_unscannable",
            "budgets": ["team", "global"], "tokens_reserved": 2100, "tokens_charged": 3,
            "cost_reserved_micros": 5, "cost_charged_micros": u64::MAX,
            "prompt_anomaly_baseline": 77,
            "dlp": [{"detector": "payment_card", "count": 2}], "dlp_redacted": 2,
            "dlp_response": [{"detector": "email", "count": 1}]
        });
        assert_eq!(v, want);
    }

    #[test]
    fn untrusted_bytes_must_be_printable() {
        assert_eq!(printable(b"abc-123", 64).as_deref(), Some("abc-123"));
        assert_eq!(printable(b"a\nb", 64), None);
        assert_eq!(printable(b"\xff", 64), None);
        assert_eq!(printable(&[b'a'; 65], 64), None);
    }
}
