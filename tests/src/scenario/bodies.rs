//! The request-body part of the scenario table: every body reason and
//! rewrite under [`Policy::Bodies`], and what dry_run shadows and still
//! refuses under [`Policy::BodiesDryRun`].

use super::*;

/// What a request-body scenario's request must become.
enum Then {
    /// Forwarded with the real key and its body byte for byte.
    AsSent,
    /// Forwarded with the real key and exactly this body.
    Becomes(&'static str),
    /// Anything else (a refusal).
    Is(Expect),
}

impl From<Expect> for Then {
    fn from(e: Expect) -> Self {
        Then::Is(e)
    }
}

/// A request-body scenario under [`Policy::Bodies`].
fn b(name: &'static str, req: Req, then: impl Into<Then>) -> Scenario {
    let expect = match then.into() {
        Then::AsSent => arrives_unchanged(&req),
        Then::Becomes(body) => arrives(&req, body),
        Then::Is(e) => e,
    };
    Scenario {
        name,
        area: Area::RequestBody,
        policy: Policy::Bodies,
        creds: CredentialState::Normal,
        req,
        expect,
        expect_warm: None,
        shadow: None,
    }
}

/// A request-body scenario under [`Policy::BodiesDryRun`]; a forwarded one
/// is shadowed by `shadow` (or allowed).
fn dry(
    name: &'static str,
    req: Req,
    then: impl Into<Then>,
    shadow: Option<&'static str>,
) -> Scenario {
    Scenario {
        area: Area::DryRun,
        policy: Policy::BodiesDryRun,
        shadow,
        ..b(name, req, then)
    }
}

/// A chat body whose user message carries `key`.
fn key_body(key: &str) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":100,"messages":[{{"role":"user","content":"my key is {key}"}}]}}"#
    )
}

/// A body for [`CHATBOT_STRICT`] of exactly `n` bytes, with a model and a
/// cap it may use.
fn strict_body_of(n: usize) -> String {
    let head = r#"{"model":"gpt-4o-mini","max_tokens":100,"pad":""#;
    format!("{head}{}\"}}", "x".repeat(n - head.len() - 2))
}

/// The request-body policy: every reason it refuses with, every rewrite it
/// makes, and the bodies a provider could read differently from Tollgate.
/// Expected bodies are the exact bytes upstream: a rewrite changes only the
/// values it must, anything else arrives byte for byte. A refusal of the
/// body comes after the cold credential fetch began ([`Stage::Body`]); one
/// decided by the headers (content type and encoding, declared length,
/// path model) before it.
pub(super) fn body_scenarios() -> Vec<Scenario> {
    use Then::{AsSent, Becomes};
    let gemini_x = "/v1beta/models/gemini-x:generateContent";
    let azure_other = "/openai/deployments/gpt35/chat/completions?api-version=2024-10-21";
    let azure_long = format!(
        "/openai/deployments/{}/chat/completions?api-version=2024-10-21",
        "d".repeat(257)
    );
    let at_limit = strict_body_of(STRICT_MAX_BODY_BYTES);
    let over_limit = strict_body_of(STRICT_MAX_BODY_BYTES + 1);
    let json_as = |ct: &[u8]| {
        with(
            without(
                chat(CHATBOT, r#"{"model":"gpt-4o-mini","max_tokens":100}"#),
                "content-type",
            ),
            "content-type",
            ct,
        )
    };
    let encoded = |r: Req, ce: &[u8]| with(r, "content-encoding", ce);
    vec![
        // Passed as sent.
        b(
            "listed_model_passes_byte_for_byte",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","max_tokens":100,  "messages":[{"role":"user","content":"h\u00e9llo"}]}"#,
            ),
            AsSent,
        ),
        b(
            "escaped_model_name_of_a_listed_model_passes_as_sent",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-m\u0069ni","max_tokens":100,"messages":[]}"#,
            ),
            AsSent,
        ),
        b(
            "json_content_type_with_parameters_is_read",
            json_as(b"Application/JSON; charset=utf-8"),
            AsSent,
        ),
        b(
            "identity_content_encoding_is_read",
            encoded(
                chat(CHATBOT, r#"{"model":"gpt-4o-mini","max_tokens":100}"#),
                b"identity",
            ),
            AsSent,
        ),
        b(
            "azure_deployment_path_decides_not_the_body_model",
            post(
                CHATBOT,
                AZURE_HOST,
                AZURE_PATH,
                r#"{"model":"gpt-4o","max_tokens":100,"messages":[]}"#,
            ),
            AsSent,
        ),
        b(
            "a_body_no_rule_needs_is_not_read",
            post(
                SUPPORT_BOT,
                ANTHROPIC,
                "/v1/messages",
                r#"{"model":"a","model":"b"}"#,
            ),
            AsSent,
        ),
        b(
            "body_of_exactly_max_body_bytes_passes",
            chat(CHATBOT_STRICT, &at_limit),
            AsSent,
        ),
        b(
            "cap_at_the_limit_passes_in_deny_mode",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":2000}"#,
            ),
            AsSent,
        ),
        // Rewrites: the cap clamped or written in, the usage option written in.
        b(
            "cap_over_the_limit_is_clamped",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini", "max_tokens": 5000, "messages":[{"role":"user","content":"hi"}]}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini", "max_tokens": 2000, "messages":[{"role":"user","content":"hi"}]}"#,
            ),
        ),
        b(
            "every_cap_field_over_the_limit_is_clamped",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","max_tokens":5000,"max_completion_tokens":2500,"messages":[]}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","max_tokens":2000,"max_completion_tokens":2000,"messages":[]}"#,
            ),
        ),
        b(
            "missing_cap_is_written_in",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":2000}"#,
            ),
        ),
        b(
            "anthropic_cap_is_clamped",
            post(
                CHATBOT,
                ANTHROPIC,
                "/v1/messages",
                r#"{"model":"claude-3-5-haiku-latest","max_tokens":5000,"messages":[]}"#,
            ),
            Becomes(r#"{"model":"claude-3-5-haiku-latest","max_tokens":2000,"messages":[]}"#),
        ),
        b(
            "gemini_cap_is_written_in",
            post(
                CHATBOT,
                GEMINI_HOST,
                GEMINI_PATH,
                r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
            ),
            Becomes(
                r#"{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":2000}}"#,
            ),
        ),
        b(
            "gemini_cap_is_clamped",
            post(
                CHATBOT,
                GEMINI_HOST,
                GEMINI_PATH,
                r#"{"contents":[],"generationConfig":{"temperature":0.5,"maxOutputTokens":5000}}"#,
            ),
            Becomes(
                r#"{"contents":[],"generationConfig":{"temperature":0.5,"maxOutputTokens":2000}}"#,
            ),
        ),
        b(
            "azure_deployment_gets_max_tokens_written_in",
            post(
                CHATBOT,
                AZURE_HOST,
                AZURE_PATH,
                r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            ),
            Becomes(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2000}"#),
        ),
        b(
            "openai_stream_gets_include_usage_written_in",
            chat(
                SUPPORT_BOT,
                r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#,
            ),
        ),
        b(
            "openai_stream_include_usage_false_is_set",
            chat(
                SUPPORT_BOT,
                r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false}}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
        ),
        b(
            "openai_stream_that_asks_for_usage_is_untouched",
            chat(
                SUPPORT_BOT,
                r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            AsSent,
        ),
        b(
            "stream_cap_clamped_and_usage_written_in",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","stream":true,"max_tokens":5000}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","stream":true,"max_tokens":2000,"stream_options":{"include_usage":true}}"#,
            ),
        ),
        // model_not_permitted / model_missing: from the body at its end,
        // from the path (or a body that never comes) at the headers.
        b(
            "model_off_the_list",
            chat(CHATBOT, r#"{"model":"gpt-4o","messages":[]}"#),
            denied_at_body(403, "model_not_permitted"),
        ),
        b(
            "escaped_model_name_of_an_unlisted_model",
            chat(CHATBOT, r#"{"model":"gpt-4\u006f","messages":[]}"#),
            denied_at_body(403, "model_not_permitted"),
        ),
        b(
            "anthropic_model_off_the_list",
            post(
                CHATBOT,
                ANTHROPIC,
                "/v1/messages",
                r#"{"model":"claude-3-opus-latest","max_tokens":100}"#,
            ),
            denied_at_body(403, "model_not_permitted"),
        ),
        b(
            "gemini_path_model_off_the_list",
            post(CHATBOT, GEMINI_HOST, gemini_x, r#"{"contents":[]}"#),
            denied(403, "model_not_permitted"),
        ),
        b(
            "azure_deployment_off_the_list",
            post(CHATBOT, AZURE_HOST, azure_other, r#"{"messages":[]}"#),
            denied(403, "model_not_permitted"),
        ),
        b(
            "model_missing_from_the_body",
            chat(CHATBOT, r#"{"messages":[{"role":"user","content":"hi"}]}"#),
            denied_at_body(403, "model_missing"),
        ),
        b(
            "model_rule_refuses_a_request_without_a_body",
            chat(CHATBOT, ""),
            denied(403, "model_missing"),
        ),
        b(
            "azure_deployment_name_too_long_to_be_a_model",
            post(CHATBOT, AZURE_HOST, &azure_long, r#"{"messages":[]}"#),
            denied(403, "model_missing"),
        ),
        // max_tokens_exceeded, and caps that are not plain integers.
        b(
            "cap_over_the_limit_is_refused_in_deny_mode",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":4096}"#,
            ),
            denied_at_body(403, "max_tokens_exceeded"),
        ),
        b(
            "largest_readable_cap_is_refused_in_deny_mode",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_completion_tokens":4294967295}"#,
            ),
            denied_at_body(403, "max_tokens_exceeded"),
        ),
        b(
            "cap_past_u32_is_invalid",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":4294967296}"#,
            ),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "cap_as_float_is_invalid",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":4096.0}"#,
            ),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "cap_as_string_is_invalid",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":"4096"}"#,
            ),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "negative_cap_is_invalid",
            chat(CHATBOT_STRICT, r#"{"model":"gpt-4o-mini","max_tokens":-1}"#),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "cap_in_exponent_form_is_invalid",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":1e9}"#,
            ),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "float_cap_is_refused_not_clamped",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini","max_tokens":4096.0}"#),
            denied_at_body(400, "body_invalid"),
        ),
        // body_invalid: what a provider could read differently.
        b(
            "duplicate_model_allowed_first",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "duplicate_model_denied_first",
            chat(CHATBOT, r#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "duplicate_model_key_spelled_with_an_escape",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini","mod\u0065l":"gpt-4o"}"#),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "trailing_second_json_value",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini"} {"model":"gpt-4o"}"#),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "lone_surrogate_escape",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini","x":"\ud800"}"#),
            denied_at_body(400, "body_invalid"),
        ),
        b(
            "duplicate_stream_flag_in_a_rule_without_limits",
            chat(
                SUPPORT_BOT,
                r#"{"model":"gpt-4o-mini","stream":false,"stream":true}"#,
            ),
            denied_at_body(400, "body_invalid"),
        ),
        // body_unsupported: a body Tollgate cannot read is not forwarded.
        b(
            "gzip_content_encoding",
            encoded(chat(CHATBOT, r#"{"model":"gpt-4o-mini"}"#), b"gzip"),
            denied(415, "body_unsupported"),
        ),
        b(
            "text_plain_with_a_json_body",
            json_as(b"text/plain"),
            denied(415, "body_unsupported"),
        ),
        b(
            "no_content_type",
            without(chat(CHATBOT, r#"{"model":"gpt-4o-mini"}"#), "content-type"),
            denied(415, "body_unsupported"),
        ),
        b(
            "two_content_types",
            with(
                chat(CHATBOT, r#"{"model":"gpt-4o-mini"}"#),
                "content-type",
                b"application/json",
            ),
            denied(415, "body_unsupported"),
        ),
        // body_too_large: declared, at the headers; chunked, as the body
        // passes the limit.
        b(
            "body_one_byte_over_max_body_bytes",
            chat(CHATBOT_STRICT, &over_limit),
            denied(413, "body_too_large"),
        ),
        b(
            "chunked_body_one_byte_over_max_body_bytes",
            with(
                chat(CHATBOT_STRICT, &over_limit),
                "transfer-encoding",
                b"chunked",
            ),
            denied_at_body(413, "body_too_large"),
        ),
        // DLP on the body rule ("prompts"): every decoded string value.
        b(
            "dlp_blocks_a_key_in_a_message",
            chat(CHATBOT, &key_body(&fake_openai_key())),
            denied_at_body(403, "dlp_blocked"),
        ),
        b(
            "dlp_finds_a_key_behind_a_json_escape",
            chat(
                CHATBOT,
                &key_body(&fake_openai_key().replacen('s', "\\u0073", 1)),
            ),
            denied_at_body(403, "dlp_blocked"),
        ),
        b(
            "dlp_redacts_a_card_where_it_stands",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"pay with 4111 1111 1111 1111, caf\u00e9"}]}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"pay with [REDACTED:payment_card], caf\u00e9"}]}"#,
            ),
        ),
        b(
            "dlp_redacts_an_operator_pattern_but_not_a_longer_number",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"EMP-123456 asks about EMP-1234567"}]}"#,
            ),
            Becomes(
                r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"[REDACTED:employee_id] asks about EMP-1234567"}]}"#,
            ),
        ),
        b(
            "dlp_blocks_an_operator_pattern",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"use acme_tok_0123456789abcdefghijklmn"}]}"#,
            ),
            denied_at_body(403, "dlp_blocked"),
        ),
        b(
            "dlp_audits_an_email_and_sends_it_as_is",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"mail ann@example.com"}]}"#,
            ),
            AsSent,
        ),
        // dry_run: model and cap denials are shadowed and the body goes as
        // sent (nothing clamped or written in, except the usage option,
        // which is metering); unreadable bodies are refused as in enforce.
        dry(
            "dry_run_forwards_an_unlisted_model_as_sent",
            chat(
                CHATBOT,
                r#"{"model":"gpt-4o","max_tokens":100,"messages":[]}"#,
            ),
            AsSent,
            Some("model_not_permitted"),
        ),
        dry(
            "dry_run_forwards_a_key_dlp_would_block_as_sent",
            chat(CHATBOT, &key_body(&fake_openai_key())),
            AsSent,
            Some("dlp_blocked"),
        ),
        dry(
            "dry_run_forwards_a_missing_model_as_sent",
            chat(CHATBOT, r#"{"messages":[]}"#),
            AsSent,
            Some("model_missing"),
        ),
        dry(
            "dry_run_forwards_a_bodiless_request_to_a_model_rule",
            chat(CHATBOT, ""),
            AsSent,
            Some("model_missing"),
        ),
        dry(
            "dry_run_forwards_a_cap_over_a_deny_limit_as_sent",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":4096}"#,
            ),
            AsSent,
            Some("max_tokens_exceeded"),
        ),
        dry(
            "dry_run_forwards_an_unlisted_gemini_path_model",
            post(CHATBOT, GEMINI_HOST, gemini_x, r#"{"contents":[]}"#),
            AsSent,
            Some("model_not_permitted"),
        ),
        dry(
            "dry_run_does_not_clamp",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini","max_tokens":5000}"#),
            AsSent,
            None,
        ),
        dry(
            "dry_run_does_not_write_a_cap_in",
            post(
                CHATBOT,
                ANTHROPIC,
                "/v1/messages",
                r#"{"model":"claude-3-5-haiku-latest","messages":[]}"#,
            ),
            AsSent,
            None,
        ),
        dry(
            "dry_run_still_writes_stream_usage",
            chat(CHATBOT, r#"{"model":"gpt-4o","stream":true}"#),
            Becomes(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#),
            Some("model_not_permitted"),
        ),
        dry(
            "dry_run_still_refuses_duplicate_models",
            chat(CHATBOT, r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#),
            denied_at_body(400, "body_invalid"),
            None,
        ),
        dry(
            "dry_run_still_refuses_a_cap_in_exponent_form",
            chat(
                CHATBOT_STRICT,
                r#"{"model":"gpt-4o-mini","max_tokens":1e9}"#,
            ),
            denied_at_body(400, "body_invalid"),
            None,
        ),
        dry(
            "dry_run_still_refuses_gzip",
            encoded(chat(CHATBOT, r#"{"model":"gpt-4o-mini"}"#), b"gzip"),
            denied(415, "body_unsupported"),
            None,
        ),
        dry(
            "dry_run_still_refuses_a_body_over_max_body_bytes",
            chat(CHATBOT_STRICT, &over_limit),
            denied(413, "body_too_large"),
            None,
        ),
        // A path model shadowed at the headers, then a body Tollgate
        // refuses: one verdict, the refusal.
        dry(
            "dry_run_refuses_an_invalid_body_after_a_shadowed_path_model",
            post(
                CHATBOT,
                GEMINI_HOST,
                gemini_x,
                r#"{"contents":[],"contents":[]}"#,
            ),
            denied_at_body(400, "body_invalid"),
            None,
        ),
        dry(
            "dry_run_refuses_gzip_after_a_shadowed_path_model",
            encoded(
                post(CHATBOT, GEMINI_HOST, gemini_x, r#"{"contents":[]}"#),
                b"gzip",
            ),
            denied(415, "body_unsupported"),
            None,
        ),
    ]
}
