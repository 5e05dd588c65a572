//! The request-body policy: one JSON body against one rule's limits, for one
//! API. Decides allow or deny, and the byte-exact rewrite (output cap,
//! `stream_options.include_usage`) the provider must receive.
//!
//! Invariants:
//! - The body is read strictly ([`super::json`]): whatever a provider could
//!   read differently from us (duplicate keys, lone surrogates, trailing
//!   data, deep nesting, a cap that is not a plain integer) is `body_invalid`.
//! - The model checked is the model the provider reads: the decoded body
//!   `model`, or the path's model for Gemini and Azure deployments.
//! - A rewrite changes only the values it must; every other byte is the
//!   client's ([`super::splice`]).
//! - In dry_run a policy denial (`model_not_permitted`, `model_missing`,
//!   `max_tokens_exceeded`) is returned as a shadow reason and nothing is
//!   clamped: the provider receives what it would without Tollgate, except
//!   the usage option, which is metering, not policy.

use std::rc::Rc;

use super::dlp_scan::{self, DlpPolicy};
use super::json::{self, Found, Kind};
use super::splice::{self, Edit};
use crate::exchange::Exchange;
use crate::policy::limits::{CapAction, ExchangeLimits};
use crate::reason::DenyReason;

/// What one request's body is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPlan {
    pub exchange: Exchange,
    /// The rule's limits (a copy; `None` for a rule without any, read only
    /// for the usage option).
    pub limits: Option<ExchangeLimits>,
    /// Write `stream_options.include_usage: true` into OpenAI streams.
    pub inject_usage: bool,
    /// Policy denials are shadowed (dry_run).
    pub dry_run: bool,
    /// The rule's DLP policy: every string value is scanned.
    pub dlp: Option<Rc<DlpPolicy>>,
}

/// What the body check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyOutcome {
    pub model: Option<String>,
    /// The largest output cap the client asked for.
    pub requested_cap: Option<u64>,
    /// The cap the provider receives (`None`: no cap at all).
    pub effective_cap: Option<u64>,
    pub clamped: bool,
    /// The response will be a stream (body `stream: true`, or by path).
    pub stream: bool,
    /// `include_usage` was written in for a client that did not ask for it:
    /// the usage-only chunk is removed from what it receives.
    pub usage_injected: bool,
    /// dry_run: the policy denial that was not enforced.
    pub shadow: Option<DenyReason>,
    /// The body to send instead of the client's, if it changed.
    pub rewrite: Option<Vec<u8>>,
    /// What the rule's DLP detectors found (names and counts only).
    pub dlp: Option<DlpSummary>,
    /// `dlp_blocked`, enforced: returned as an outcome (not an error) so
    /// that what DLP found still reaches the audit record and the reply.
    pub denied: Option<DenyReason>,
}

/// DLP's findings in a body: detector names and counts, never the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlpSummary {
    pub counts: Vec<(Box<str>, u32)>,
    /// The detectors whose action is `block` that found something.
    pub blocked: Vec<Box<str>>,
    /// Matches replaced in the body (none in dry_run).
    pub redacted: u32,
}

// Paths inspected, by index.
const MODEL: usize = 0;
const STREAM: usize = 1;
const STREAM_OPTIONS: usize = 2;
const INCLUDE_USAGE: usize = 3;
const GENERATION_CONFIG: usize = 4;
/// The cap fields follow.
const CAPS: usize = 5;

/// Checks `body` against `plan`.
pub fn check(plan: &BodyPlan, body: &[u8]) -> Result<BodyOutcome, DenyReason> {
    let cap_fields = plan.exchange.cap_fields();
    let mut paths: Vec<&[&str]> = vec![
        &["model"],
        &["stream"],
        &["stream_options"],
        &["stream_options", "include_usage"],
        &["generationConfig"],
    ];
    if let Some(c) = cap_fields {
        paths.extend_from_slice(c.read);
    }
    let seen = match plan.dlp {
        Some(_) => json::inspect_strings(body, &paths),
        None => json::inspect(body, &paths),
    }
    .map_err(|_| DenyReason::BodyInvalid)?;
    if seen.root != Kind::Object {
        return Err(DenyReason::BodyInvalid);
    }
    let mut out = BodyOutcome::default();
    let mut edits = Vec::new();

    // 1. The model.
    out.model = match (&plan.exchange.path_model, seen.found(MODEL)) {
        (Some(m), _) => Some(m.clone()),
        (None, Some(f)) if plan.exchange.model_in_body() => {
            Some(f.string(body).ok_or(DenyReason::BodyInvalid)?)
        }
        _ => None,
    };
    let limits = plan.limits.as_ref();
    if let Some(l) = limits.filter(|l| l.models.is_some()) {
        match &out.model {
            None => policy_denial(plan, &mut out, DenyReason::ModelMissing)?,
            Some(m) if !l.permits_model(m) => {
                policy_denial(plan, &mut out, DenyReason::ModelNotPermitted)?
            }
            Some(_) => {}
        }
    }

    // 2. Streaming.
    let stream_flag = match seen.found(STREAM) {
        None => false,
        Some(f) if f.kind == Kind::Null => false,
        Some(f) => f.as_bool(body).ok_or(DenyReason::BodyInvalid)?,
    };
    out.stream = stream_flag || plan.exchange.streams_by_path();

    // 3. The output cap.
    if let Some(fields) = cap_fields {
        let mut present: Vec<(&Found, u64)> = Vec::new();
        for i in 0..fields.read.len() {
            if let Some(f) = seen.found(CAPS + i) {
                if f.kind == Kind::Null {
                    return Err(DenyReason::BodyInvalid);
                }
                let n = f.strict_u64(body).map_err(|_| DenyReason::BodyInvalid)?;
                present.push((f, n));
            }
        }
        out.requested_cap = present.iter().map(|(_, n)| *n).max();
        out.effective_cap = out.requested_cap;
        if let Some(cap) = limits.and_then(|l| l.max_output_tokens) {
            let limit = u64::from(cap.limit);
            match out.requested_cap {
                Some(n) if n > limit => match cap.action {
                    CapAction::Deny => {
                        policy_denial(plan, &mut out, DenyReason::MaxTokensExceeded)?
                    }
                    CapAction::Clamp if plan.dry_run => {}
                    CapAction::Clamp => {
                        for (f, n) in &present {
                            if *n > limit {
                                edits.push(Edit::Replace {
                                    span: f.span.clone(),
                                    with: limit.to_string().into_bytes(),
                                });
                            }
                        }
                        out.clamped = true;
                        out.effective_cap = Some(limit);
                    }
                },
                Some(_) => {}
                None if plan.dry_run => {}
                None => {
                    edits.push(insert_cap(&seen, fields.write, limit)?);
                    out.effective_cap = Some(limit);
                }
            }
        }
    }

    // 4. Usage for OpenAI streams.
    if plan.inject_usage && out.stream && plan.exchange.usage_needs_stream_option() {
        let asked = match seen.found(INCLUDE_USAGE) {
            Some(f) if f.kind == Kind::Bool => f.as_bool(body) == Some(true),
            Some(f) if f.kind == Kind::Null => false,
            Some(_) => return Err(DenyReason::BodyInvalid),
            None => false,
        };
        if !asked {
            edits.push(usage_edit(&seen)?);
            out.usage_injected = true;
        }
    }

    // 5. DLP: block names the detectors; redact edits where each match
    //    stands (not in dry_run, like every other rewrite of policy).
    if let Some(policy) = &plan.dlp {
        let found = dlp_scan::scan_body(policy, body, &seen.strings);
        let mut summary = DlpSummary {
            counts: found.counts,
            blocked: found.blocked,
            redacted: 0,
        };
        let block = !summary.blocked.is_empty();
        if !plan.dry_run {
            summary.redacted = found.edits.len() as u32;
            edits.extend(found.edits);
        }
        if !summary.counts.is_empty() {
            out.dlp = Some(summary);
        }
        if block {
            if plan.dry_run {
                out.shadow.get_or_insert(DenyReason::DlpBlocked);
            } else {
                out.denied = Some(DenyReason::DlpBlocked);
                return Ok(out);
            }
        }
    }

    if !edits.is_empty() {
        out.rewrite = Some(splice::splice(body, edits).map_err(|_| DenyReason::InternalError)?);
    }
    Ok(out)
}

/// Enforces a policy denial, or records it as the shadow reason in dry_run.
fn policy_denial(
    plan: &BodyPlan,
    out: &mut BodyOutcome,
    reason: DenyReason,
) -> Result<(), DenyReason> {
    if plan.dry_run {
        out.shadow.get_or_insert(reason);
        Ok(())
    } else {
        Err(reason)
    }
}

/// Writes the cap where none was given: `write` is one key (in the root) or
/// `generationConfig.maxOutputTokens`.
fn insert_cap(seen: &json::Inspected, write: &[&str], limit: u64) -> Result<Edit, DenyReason> {
    let value = limit.to_string().into_bytes();
    match write {
        [key] => Ok(Edit::Insert {
            object: seen.holder(MODEL).ok_or(DenyReason::BodyInvalid)?,
            key: (*key).to_string(),
            raw_value: value,
        }),
        [parent, key] => match seen.found(GENERATION_CONFIG) {
            Some(f) if f.kind == Kind::Object => Ok(Edit::Insert {
                object: seen.holder(CAPS).ok_or(DenyReason::BodyInvalid)?,
                key: (*key).to_string(),
                raw_value: value,
            }),
            Some(f) if f.kind == Kind::Null => Ok(Edit::Replace {
                span: f.span.clone(),
                with: format!("{{\"{key}\":{limit}}}").into_bytes(),
            }),
            Some(_) => Err(DenyReason::BodyInvalid),
            None => Ok(Edit::Insert {
                object: seen.holder(MODEL).ok_or(DenyReason::BodyInvalid)?,
                key: (*parent).to_string(),
                raw_value: format!("{{\"{key}\":{limit}}}").into_bytes(),
            }),
        },
        _ => Err(DenyReason::InternalError),
    }
}

/// Sets `stream_options.include_usage` to true, creating what is missing.
fn usage_edit(seen: &json::Inspected) -> Result<Edit, DenyReason> {
    const OPTION: &[u8] = br#"{"include_usage":true}"#;
    if let Some(f) = seen.found(INCLUDE_USAGE) {
        return Ok(Edit::Replace {
            span: f.span.clone(),
            with: b"true".to_vec(),
        });
    }
    match seen.found(STREAM_OPTIONS) {
        Some(f) if f.kind == Kind::Object => Ok(Edit::Insert {
            object: seen.holder(INCLUDE_USAGE).ok_or(DenyReason::BodyInvalid)?,
            key: "include_usage".into(),
            raw_value: b"true".to_vec(),
        }),
        Some(f) if f.kind == Kind::Null => Ok(Edit::Replace {
            span: f.span.clone(),
            with: OPTION.to_vec(),
        }),
        Some(_) => Err(DenyReason::BodyInvalid),
        None => Ok(Edit::Insert {
            object: seen.holder(MODEL).ok_or(DenyReason::BodyInvalid)?,
            key: "stream_options".into(),
            raw_value: OPTION.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::limits::{OutputCap, DEFAULT_MAX_BODY_BYTES};
    use crate::policy::model_pattern::ModelPattern;
    use crate::provider::ProviderKind;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn plan(
        kind: ProviderKind,
        path: &str,
        models: &[&str],
        cap: Option<(u32, CapAction)>,
    ) -> BodyPlan {
        BodyPlan {
            exchange: Exchange::classify(kind, path),
            limits: Some(ExchangeLimits {
                models: (!models.is_empty()).then(|| {
                    models
                        .iter()
                        .map(|m| ModelPattern::parse(m).unwrap())
                        .collect()
                }),
                max_output_tokens: cap.map(|(limit, action)| OutputCap { limit, action }),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            }),
            inject_usage: true,
            dry_run: false,
            dlp: None,
        }
    }

    fn chat(models: &[&str], cap: Option<(u32, CapAction)>) -> BodyPlan {
        plan(ProviderKind::OpenAi, "/v1/chat/completions", models, cap)
    }

    fn text(out: &BodyOutcome) -> &str {
        core::str::from_utf8(out.rewrite.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_model_on_the_list_passes_untouched() {
        let out = check(
            &chat(&["gpt-4o-mini"], None),
            br#"{"model":"gpt-4o-mini","messages":[]}"#,
        )
        .unwrap();
        assert_eq!(out.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(out.rewrite, None);
    }

    #[test]
    fn models_off_the_list_or_missing_are_denied() {
        let p = chat(&["gpt-4o-mini"], None);
        assert_eq!(
            check(&p, br#"{"model":"gpt-4o"}"#),
            Err(DenyReason::ModelNotPermitted)
        );
        assert_eq!(
            check(&p, br#"{"messages":[]}"#),
            Err(DenyReason::ModelMissing)
        );
        assert_eq!(check(&p, br#"{"model":7}"#), Err(DenyReason::BodyInvalid));
    }

    #[test]
    fn escaped_model_names_are_decoded_before_matching() {
        let p = chat(&["gpt-4o"], None);
        assert!(check(&p, br#"{"model":"gpt-4\u006f"}"#).is_ok());
        let p = chat(&["gpt-4o-mini"], None);
        assert_eq!(
            check(&p, br#"{"model":"gpt-4\u006f"}"#),
            Err(DenyReason::ModelNotPermitted)
        );
    }

    #[test]
    fn duplicate_models_are_invalid_in_either_order() {
        let p = chat(&["allowed"], None);
        assert_eq!(
            check(&p, br#"{"model":"allowed","model":"denied"}"#),
            Err(DenyReason::BodyInvalid)
        );
        assert_eq!(
            check(&p, br#"{"model":"denied","model":"allowed"}"#),
            Err(DenyReason::BodyInvalid)
        );
    }

    #[test]
    fn gemini_and_azure_deployments_are_checked_by_their_path_model() {
        let p = plan(
            ProviderKind::Gemini,
            "/v1beta/models/gemini-2.0-flash:generateContent",
            &["gemini-2.0-*"],
            None,
        );
        let out = check(&p, br#"{"contents":[],"model":"ignored"}"#).unwrap();
        assert_eq!(out.model.as_deref(), Some("gemini-2.0-flash"));
        let p = plan(
            ProviderKind::AzureOpenAi,
            "/openai/deployments/prod-4o/chat/completions",
            &["other"],
            None,
        );
        assert_eq!(
            check(&p, br#"{"model":"other"}"#),
            Err(DenyReason::ModelNotPermitted)
        );
    }

    #[test]
    fn a_cap_over_the_limit_is_clamped_in_place() {
        let p = chat(&[], Some((2000, CapAction::Clamp)));
        let out = check(&p, br#"{ "model" : "m",  "max_tokens":  4096 , "x":1}"#).unwrap();
        assert_eq!(
            text(&out),
            r#"{ "model" : "m",  "max_tokens":  2000 , "x":1}"#
        );
        assert_eq!(
            (out.requested_cap, out.effective_cap, out.clamped),
            (Some(4096), Some(2000), true)
        );
        let out = check(&p, br#"{"max_tokens":100,"max_completion_tokens":9000}"#).unwrap();
        assert_eq!(
            text(&out),
            r#"{"max_tokens":100,"max_completion_tokens":2000}"#
        );
    }

    #[test]
    fn a_cap_over_the_limit_is_denied_in_deny_mode() {
        let p = chat(&[], Some((2000, CapAction::Deny)));
        assert_eq!(
            check(&p, br#"{"max_tokens":2001}"#),
            Err(DenyReason::MaxTokensExceeded)
        );
        assert!(check(&p, br#"{"max_tokens":2000}"#)
            .unwrap()
            .rewrite
            .is_none());
    }

    #[test]
    fn a_missing_cap_is_written_in_where_the_provider_reads_it() {
        let p = chat(&[], Some((500, CapAction::Clamp)));
        let out = check(&p, br#"{"model":"m"}"#).unwrap();
        assert_eq!(text(&out), r#"{"model":"m","max_completion_tokens":500}"#);
        let p = plan(
            ProviderKind::Anthropic,
            "/v1/messages",
            &[],
            Some((500, CapAction::Clamp)),
        );
        assert_eq!(text(&check(&p, br#"{}"#).unwrap()), r#"{"max_tokens":500}"#);
        let p = plan(
            ProviderKind::Gemini,
            "/v1beta/models/g:generateContent",
            &[],
            Some((500, CapAction::Clamp)),
        );
        assert_eq!(
            text(&check(&p, br#"{"contents":[]}"#).unwrap()),
            r#"{"contents":[],"generationConfig":{"maxOutputTokens":500}}"#
        );
        assert_eq!(
            text(&check(&p, br#"{"generationConfig":{"temperature":0}}"#).unwrap()),
            r#"{"generationConfig":{"temperature":0,"maxOutputTokens":500}}"#
        );
        assert_eq!(
            text(&check(&p, br#"{"generationConfig":{"maxOutputTokens":9999}}"#).unwrap()),
            r#"{"generationConfig":{"maxOutputTokens":500}}"#
        );
    }

    #[test]
    fn odd_cap_forms_are_invalid() {
        let p = chat(&[], Some((2000, CapAction::Clamp)));
        for bad in ["1e9", "4096.0", "\"4096\"", "-1", "null", "1e400", "true"] {
            let body = format!(r#"{{"max_tokens":{bad}}}"#);
            assert_eq!(
                check(&p, body.as_bytes()),
                Err(DenyReason::BodyInvalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn openai_streams_get_include_usage_unless_they_asked() {
        let p = chat(&[], None);
        let out = check(&p, br#"{"model":"m","stream":true}"#).unwrap();
        assert_eq!(
            text(&out),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert!(out.usage_injected && out.stream);
        let out = check(
            &p,
            br#"{"stream":true,"stream_options":{"include_usage":false}}"#,
        )
        .unwrap();
        assert_eq!(
            text(&out),
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert!(out.usage_injected);
        let out = check(&p, br#"{"stream":true,"stream_options":{}}"#).unwrap();
        assert_eq!(
            text(&out),
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let out = check(
            &p,
            br#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(!out.usage_injected && out.rewrite.is_none());
        let out = check(&p, br#"{"stream":false}"#).unwrap();
        assert!(!out.stream && out.rewrite.is_none());
        assert_eq!(
            check(&p, br#"{"stream":"yes"}"#),
            Err(DenyReason::BodyInvalid)
        );
    }

    #[test]
    fn dry_run_shadows_policy_denials_and_clamps_nothing() {
        let mut p = chat(&["gpt-4o-mini"], Some((10, CapAction::Clamp)));
        p.dry_run = true;
        let out = check(&p, br#"{"model":"gpt-4o","max_tokens":50}"#).unwrap();
        assert_eq!(out.shadow, Some(DenyReason::ModelNotPermitted));
        assert_eq!(out.rewrite, None);
        assert_eq!(
            check(&p, br#"{"model":"a","model":"b"}"#),
            Err(DenyReason::BodyInvalid)
        );
    }

    #[test]
    fn non_object_bodies_and_trailing_data_are_invalid() {
        let p = chat(&[], None);
        for bad in [&b"[]"[..], b"\"x\"", b"{} {}", b"{\"a\":1}x", b""] {
            assert_eq!(check(&p, bad), Err(DenyReason::BodyInvalid));
        }
    }
}
