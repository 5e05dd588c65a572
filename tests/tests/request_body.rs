//! The request body phase on the real `.wasm`: a request is held (headers
//! and body) until the filter has decided, in both of Envoy's header-pause
//! modes, and nothing goes upstream without its credential.

use tollgate_harness::{Gateway, StreamId};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";
const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn held_gateway(
    config: &serde_json::Value,
) -> (Gateway, tollgate_harness::mock::MockCredentialService) {
    let creds = credential_service();
    let gw = Gateway::builder(module())
        .workers(1)
        .plugin_config(config.to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .allow_on_headers_stop_iteration(true)
        .build()
        .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"));
    (gw, creds)
}

fn post_chat(gw: &mut Gateway, chunks: Vec<Vec<u8>>) -> StreamId {
    request_on(gw, 0, SUPPORT_BOT, "POST", "api.openai.com", CHAT)
        .header("content-type", "application/json")
        .body_chunks(chunks)
        .send()
}

/// Measured in Envoy before this phase existed: with
/// `allow_on_headers_stop_iteration`, a body callback that returned
/// Continue while the credential was being fetched released the held
/// headers upstream without any credential.
#[test]
fn a_cold_cache_post_is_held_until_its_credential_is_written() {
    let (mut gw, _creds) = held_gateway(&config());
    let body = CHAT_BODY.as_bytes();
    let id = post_chat(&mut gw, vec![body[..10].to_vec(), body[10..].to_vec()]);
    // The fetch has not been answered yet: nothing may have gone upstream.
    assert_eq!(
        gw.upstream_headers(id),
        None,
        "headers left before the credential"
    );
    assert!(gw.upstream_body_pieces(id).is_empty());
    gw.settle();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_str("authorization").as_deref(),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(f.body, body);
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn a_cold_cache_post_with_trailers_is_held_until_its_credential_is_written() {
    let (mut gw, _creds) = held_gateway(&config());
    let id = request_on(&mut gw, 0, SUPPORT_BOT, "POST", "api.openai.com", CHAT)
        .header("content-type", "application/json")
        .body(CHAT_BODY)
        .trailer("x-checksum", "abc")
        .send();
    assert_eq!(
        gw.upstream_headers(id),
        None,
        "headers left before the credential"
    );
    gw.settle();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_str("authorization").as_deref(),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(f.body, CHAT_BODY.as_bytes());
    assert_eq!(f.trailer("x-checksum"), Some(&b"abc"[..]));
}

#[test]
fn a_denied_requests_body_never_goes_upstream_in_either_pause_mode() {
    for allow in [false, true] {
        let creds = credential_service();
        let mut gw = Gateway::builder(module())
            .workers(1)
            .plugin_config(config().to_string())
            .cluster_handler(CREDS_CLUSTER, creds.handler())
            .allow_on_headers_stop_iteration(allow)
            .build()
            .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"));
        let id = request_on(&mut gw, 0, STRANGER, "POST", "api.openai.com", CHAT)
            .body_chunks(vec![b"{\"model\":".to_vec(), b"\"x\"}".to_vec()])
            .send();
        gw.settle();
        assert_denied_reply(&gw, id, 403, "workload_not_permitted");
        assert_eq!(gw.upstream_headers(id), None, "allow={allow}");
        assert!(gw.upstream_body_pieces(id).is_empty(), "allow={allow}");
    }
}

// ---------------------------------------------------------------------------
// The request-body policy: models, output caps, strict JSON, size limits.

/// A workload whose rule limits models and output tokens, and one whose cap
/// denies instead of clamping.
const LIMITED: &str = "spiffe://cluster.local/ns/support/sa/limited";
const STRICT: &str = "spiffe://cluster.local/ns/support/sa/strict";
const LIMIT: usize = 4096;

fn limits_config() -> serde_json::Value {
    let mut c = config();
    let rules = c["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        serde_json::json!({
            "name": "limited-chat",
            "workloads": [LIMITED],
            "providers": ["openai", "anthropic", "gemini", "azure"],
            "endpoints": ["POST /v1/chat/completions", "POST /v1/messages",
                          "POST /v1beta/models/*:generateContent",
                          "POST /openai/deployments/*/chat/completions"],
            "models": ["gpt-4o-mini", "claude-3-5-haiku-*", "gemini-2.0-flash", "support-4o"],
            "max_output_tokens": 2000,
            "max_body_bytes": LIMIT
        }),
    );
    rules.insert(
        0,
        serde_json::json!({
            "name": "strict-chat",
            "workloads": [STRICT],
            "providers": ["openai"],
            "endpoints": ["POST /v1/chat/completions"],
            "max_output_tokens": 2000,
            "max_output_tokens_action": "deny"
        }),
    );
    c
}

struct Post<'a> {
    workload: &'a str,
    authority: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, Vec<u8>)>,
    chunks: Vec<Vec<u8>>,
}

impl<'a> Post<'a> {
    fn chat(workload: &'a str, body: &str) -> Self {
        Post {
            workload,
            authority: "api.openai.com",
            path: CHAT,
            headers: vec![("content-type", b"application/json".to_vec())],
            chunks: vec![body.as_bytes().to_vec()],
        }
    }
    fn to(mut self, authority: &'a str, path: &'a str) -> Self {
        self.authority = authority;
        self.path = path;
        self
    }
    fn header(mut self, name: &'a str, value: &str) -> Self {
        self.headers.push((name, value.as_bytes().to_vec()));
        self
    }
    fn without_content_type(mut self) -> Self {
        self.headers.retain(|(n, _)| *n != "content-type");
        self
    }
    fn in_chunks_of(mut self, n: usize) -> Self {
        let body: Vec<u8> = self.chunks.concat();
        self.chunks = body.chunks(n).map(|c| c.to_vec()).collect();
        self
    }
    fn send(self, gw: &mut Gateway) -> StreamId {
        let mut r = request_on(gw, 0, self.workload, "POST", self.authority, self.path);
        for (n, v) in &self.headers {
            r = r.header(n, v);
        }
        let id = r.body_chunks(self.chunks).send();
        gw.settle();
        id
    }
}

fn limits_gateway() -> Gateway {
    let creds = credential_service();
    gateway(&limits_config(), 1, &creds)
}

/// The record of `id` once its stream ended (the upstream answers 200).
fn audit(gw: &mut Gateway, id: StreamId) -> serde_json::Value {
    end_stream(gw, id);
    audit_of(gw, id)
}

#[track_caller]
fn forwarded_body(gw: &Gateway, id: StreamId) -> String {
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    if let Some(len) = f.header_str("content-length") {
        assert_eq!(
            len,
            f.body.len().to_string(),
            "Content-Length matches the body sent"
        );
    }
    f.body_str()
}

#[track_caller]
fn refused(gw: &Gateway, id: StreamId, status: u16, reason: &str) {
    assert_denied_reply(gw, id, status, reason);
    assert_eq!(
        gw.upstream_headers(id),
        None,
        "nothing went upstream for {reason}"
    );
    assert!(gw.upstream_body_pieces(id).is_empty());
}

#[test]
fn a_listed_model_passes_with_its_bytes_untouched_and_is_audited() {
    let mut gw = limits_gateway();
    let body = r#"{"model":"gpt-4o-mini","max_tokens":100,  "messages":[{"role":"user","content":"héllo"}]}"#;
    let id = Post::chat(LIMITED, body)
        .header("content-length", &body.len().to_string())
        .send(&mut gw);
    assert_eq!(forwarded_body(&gw, id), body);
    // Warm now: the held body makes a second lookup once it has passed, but
    // a request counts one cache hit or miss.
    let before = Counters::snapshot(&gw);
    let again = Post::chat(LIMITED, body).send(&mut gw);
    assert_eq!(forwarded_body(&gw, again), body);
    before.assert_delta(&gw, "tollgate.cache.hit", 1);
    before.assert_delta(&gw, "tollgate.cache.miss", 0);
    let a = audit(&mut gw, id);
    assert_eq!(a["model"], "gpt-4o-mini");
    assert_eq!(a["max_tokens_requested"], 100);
    assert_eq!(a["max_tokens_effective"], 100);
    assert_eq!(a["stream"], false);
    assert!(a.get("clamped").is_none());
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn a_model_off_the_list_is_refused_before_anything_goes_upstream() {
    let mut gw = limits_gateway();
    let before = Counters::snapshot(&gw);
    let id = Post::chat(LIMITED, r#"{"model":"gpt-4o","messages":[]}"#).send(&mut gw);
    refused(&gw, id, 403, "model_not_permitted");
    before.assert_decisions(&gw, &[("tollgate.decision.deny.model_not_permitted", 1)]);
    let id = Post::chat(LIMITED, r#"{"messages":[]}"#).send(&mut gw);
    refused(&gw, id, 403, "model_missing");
    // An escape spells the same name: decoded before matching.
    let id = Post::chat(LIMITED, r#"{"model":"gpt-4o-m\u0069ni"}"#).send(&mut gw);
    assert_eq!(audit(&mut gw, id)["model"], "gpt-4o-mini");
    let id = Post::chat(LIMITED, r#"{"model":"gpt-4\u006f"}"#).send(&mut gw);
    refused(&gw, id, 403, "model_not_permitted");
}

#[test]
fn duplicate_models_are_refused_in_both_orders() {
    let mut gw = limits_gateway();
    for body in [
        r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#,
        r#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#,
    ] {
        let id = Post::chat(LIMITED, body).send(&mut gw);
        refused(&gw, id, 400, "body_invalid");
    }
}

#[test]
fn path_models_are_checked_for_gemini_anthropic_and_azure_deployments() {
    let mut gw = limits_gateway();
    let host = "generativelanguage.googleapis.com";
    let id = Post::chat(LIMITED, r#"{"contents":[]}"#)
        .to(host, "/v1beta/models/gemini-2.0-flash:generateContent")
        .send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":2000}}"#
    );
    let id = Post::chat(LIMITED, r#"{"contents":[]}"#)
        .to(host, "/v1beta/models/gemini-1.5-pro:generateContent")
        .send(&mut gw);
    refused(&gw, id, 403, "model_not_permitted");
    let id = Post::chat(
        LIMITED,
        r#"{"model":"claude-3-5-haiku-latest","max_tokens":10}"#,
    )
    .to("api.anthropic.com", "/v1/messages")
    .send(&mut gw);
    assert_eq!(audit(&mut gw, id)["model"], "claude-3-5-haiku-latest");
    let id = Post::chat(LIMITED, r#"{"messages":[]}"#)
        .to(
            "myres.openai.azure.com",
            "/openai/deployments/other/chat/completions",
        )
        .send(&mut gw);
    refused(&gw, id, 403, "model_not_permitted");
    let id = Post::chat(LIMITED, r#"{"messages":[]}"#)
        .to(
            "myres.openai.azure.com",
            "/openai/deployments/support-4o/chat/completions",
        )
        .send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"messages":[],"max_tokens":2000}"#
    );
}

#[test]
fn an_output_cap_over_the_limit_is_clamped_and_a_missing_one_written_in() {
    let mut gw = limits_gateway();
    let body = r#"{"model":"gpt-4o-mini", "max_tokens": 4096, "messages":[]}"#;
    let id = Post::chat(LIMITED, body)
        .header("content-length", &body.len().to_string())
        .send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"model":"gpt-4o-mini", "max_tokens": 2000, "messages":[]}"#
    );
    let a = audit(&mut gw, id);
    assert_eq!(
        (
            a["max_tokens_requested"].clone(),
            a["max_tokens_effective"].clone(),
            a["clamped"].clone()
        ),
        (4096.into(), 2000.into(), true.into())
    );
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    let id = Post::chat(LIMITED, body)
        .header("content-length", &body.len().to_string())
        .send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"model":"gpt-4o-mini","messages":[],"max_completion_tokens":2000}"#
    );
    assert!(audit(&mut gw, id)["max_tokens_requested"].is_null());
}

#[test]
fn an_output_cap_over_the_limit_is_refused_in_deny_mode() {
    let mut gw = limits_gateway();
    let id = Post::chat(STRICT, r#"{"model":"m","max_completion_tokens":2001}"#).send(&mut gw);
    refused(&gw, id, 403, "max_tokens_exceeded");
    let id = Post::chat(STRICT, r#"{"model":"m","max_completion_tokens":2000}"#).send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"model":"m","max_completion_tokens":2000}"#
    );
}

#[test]
fn max_tokens_in_every_odd_form_is_invalid() {
    let mut gw = limits_gateway();
    for odd in ["1e9", "4096.0", "\"4096\"", "-1", "null", "1e400"] {
        let body = format!(r#"{{"model":"gpt-4o-mini","max_tokens":{odd}}}"#);
        let id = Post::chat(LIMITED, &body).send(&mut gw);
        refused(&gw, id, 400, "body_invalid");
    }
}

#[test]
fn strict_json_refuses_what_a_provider_could_read_differently() {
    let mut gw = limits_gateway();
    let deep = format!(
        "{{\"model\":\"gpt-4o-mini\",\"x\":{}{}}}",
        "[".repeat(64),
        "]".repeat(64)
    );
    for bad in [
        r#"{"model":"gpt-4o-mini"} {"model":"gpt-4o"}"#.to_string(),
        "{\"model\":\"gpt-4o-mini\",\"x\":\"\\ud800\"}".to_string(),
        deep,
        "{\"model\":\"gpt-4o-mini\",\"x\":\"\u{0}\"}".to_string(),
    ] {
        let id = Post::chat(LIMITED, &bad).send(&mut gw);
        refused(&gw, id, 400, "body_invalid");
    }
    let mut invalid_utf8 = br#"{"model":"gpt-4o-mini","x":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\"}");
    let mut post = Post::chat(LIMITED, "");
    post.chunks = vec![invalid_utf8];
    let id = post.send(&mut gw);
    refused(&gw, id, 400, "body_invalid");
    // 100k nested arrays stay within the body limit of an ordinary rule.
    let mut post = Post::chat(SUPPORT_BOT, "");
    post.chunks = vec![format!("{{\"x\":{}", "[".repeat(100_000)).into_bytes()];
    let id = post.send(&mut gw);
    refused(&gw, id, 400, "body_invalid");
}

#[test]
fn only_plain_json_bodies_are_inspected() {
    let mut gw = limits_gateway();
    let body = r#"{"model":"gpt-4o-mini"}"#;
    for post in [
        Post::chat(LIMITED, body)
            .without_content_type()
            .header("content-type", "text/plain"),
        Post::chat(LIMITED, body).without_content_type(),
        Post::chat(LIMITED, body).header("content-type", "application/json"),
        Post::chat(LIMITED, body).header("content-encoding", "gzip"),
        Post::chat(LIMITED, body).header("content-encoding", "deflate"),
        Post::chat(LIMITED, body).header("content-encoding", "br"),
        Post::chat(LIMITED, body).header("content-encoding", "identity, gzip"),
        Post::chat(LIMITED, body)
            .header("content-encoding", "identity")
            .header("content-encoding", "identity"),
    ] {
        let id = post.send(&mut gw);
        refused(&gw, id, 415, "body_unsupported");
    }
    for ok in [
        Post::chat(LIMITED, body).header("content-encoding", "identity"),
        Post::chat(LIMITED, body)
            .without_content_type()
            .header("content-type", "Application/JSON; charset=utf-8"),
    ] {
        let id = ok.send(&mut gw);
        assert!(forwarded_body(&gw, id).len() > body.len(), "cap written in");
    }
}

#[test]
fn the_body_limit_is_exact_and_answered_by_tollgate() {
    let mut gw = limits_gateway();
    let body_of = |n: usize| {
        let head = r#"{"model":"gpt-4o-mini","max_tokens":5,"pad":""#;
        format!("{head}{}\"}}", "x".repeat(n - head.len() - 2))
    };
    let at_limit = body_of(LIMIT);
    assert_eq!(at_limit.len(), LIMIT);
    let id = Post::chat(LIMITED, &at_limit)
        .in_chunks_of(1000)
        .send(&mut gw);
    assert_eq!(forwarded_body(&gw, id), at_limit);
    let over = body_of(LIMIT + 1);
    // Declared too large: refused at the headers.
    let id = Post::chat(LIMITED, &over)
        .header("content-length", &over.len().to_string())
        .send(&mut gw);
    refused(&gw, id, 413, "body_too_large");
    // Chunked: refused as soon as the held body passes the limit.
    let id = Post::chat(LIMITED, &over).in_chunks_of(1).send(&mut gw);
    refused(&gw, id, 413, "body_too_large");
}

#[test]
fn any_chunking_gives_the_same_rewrite() {
    let body = r#"{"model":"gpt-4o-mini","max_tokens":4096,"messages":[{"role":"user","content":"日本語 🎉"}]}"#;
    let want = body.replace("4096", "2000");
    for n in [1, 2, 3, 7, 64] {
        let mut gw = limits_gateway();
        let id = Post::chat(LIMITED, body).in_chunks_of(n).send(&mut gw);
        assert_eq!(forwarded_body(&gw, id), want, "chunks of {n}");
    }
}

#[test]
fn openai_streams_get_include_usage_written_in() {
    let mut gw = limits_gateway();
    let id = Post::chat(
        SUPPORT_BOT,
        r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
    )
    .send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#
    );
    assert_eq!(audit(&mut gw, id)["stream"], true);
    let id = Post::chat(
        SUPPORT_BOT,
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false}}"#,
    )
    .send(&mut gw);
    assert_eq!(
        forwarded_body(&gw, id),
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#
    );
}

#[test]
fn a_rule_with_models_refuses_a_request_without_a_body() {
    let mut gw = limits_gateway();
    let id = request_on(&mut gw, 0, LIMITED, "POST", "api.openai.com", CHAT).send();
    gw.settle();
    refused(&gw, id, 403, "model_missing");
}

#[test]
fn dry_run_shadows_body_denials_and_forwards_the_body_as_sent() {
    let mut c = limits_config();
    c["mode"] = "dry_run".into();
    let creds = credential_service();
    let mut gw = gateway(&c, 1, &creds);
    let before = Counters::snapshot(&gw);
    let body = r#"{"model":"gpt-4o","max_tokens":9999}"#;
    let id = Post::chat(LIMITED, body).send(&mut gw);
    assert_eq!(forwarded_body(&gw, id), body, "nothing clamped in dry_run");
    let a = audit(&mut gw, id);
    assert_eq!(
        (a["decision"].as_str(), a["reason"].as_str()),
        (Some("shadow_deny"), Some("model_not_permitted"))
    );
    before.assert_delta(&gw, "tollgate.decision.shadow_deny.model_not_permitted", 1);
    // Malformed JSON is not a policy verdict: refused even in dry_run.
    let id = Post::chat(LIMITED, r#"{"model":"a","model":"b"}"#).send(&mut gw);
    refused(&gw, id, 400, "body_invalid");
}

#[test]
fn held_mode_without_the_envoy_option_answers_body_timeout_instead_of_hanging() {
    let creds = credential_service();
    let mut gw = Gateway::builder(module())
        .workers(1)
        .plugin_config(limits_config().to_string())
        .cluster_handler(CREDS_CLUSTER, creds.handler())
        .allow_on_headers_stop_iteration(false)
        .build()
        .unwrap();
    let id = Post::chat(LIMITED, r#"{"model":"gpt-4o-mini"}"#).send(&mut gw);
    gw.outcome(id).expect_pending();
    gw.advance(std::time::Duration::from_secs(12));
    refused(&gw, id, 408, "body_timeout");
    assert!(gw.log_text().contains("allow_on_headers_stop_iteration"));
}

#[test]
fn streamed_mode_sends_headers_first_without_content_length_and_resets_on_denial() {
    let mut c = limits_config();
    c["body_mode"] = "streamed".into();
    for allow in [false, true] {
        let creds = credential_service();
        let mut gw = Gateway::builder(module())
            .workers(1)
            .plugin_config(c.to_string())
            .cluster_handler(CREDS_CLUSTER, creds.handler())
            .allow_on_headers_stop_iteration(allow)
            .build()
            .unwrap();
        let body = r#"{"model":"gpt-4o-mini","max_tokens":4096}"#;
        let before = Counters::snapshot(&gw);
        let id = Post::chat(LIMITED, body)
            .header("content-length", &body.len().to_string())
            .send(&mut gw);
        // One decision per request, counted when the body completed it.
        before
            .check_decisions(&Counters::snapshot(&gw), &[("tollgate.decision.allow", 1)])
            .unwrap();
        let out = gw.outcome(id);
        let f = out.expect_forwarded();
        assert_eq!(f.header("content-length"), None, "allow={allow}");
        assert_eq!(f.body_str(), body.replace("4096", "2000"), "allow={allow}");
        assert_eq!(
            f.header_str("authorization"),
            Some(format!("Bearer {OPENAI_KEY}"))
        );
        let before = Counters::snapshot(&gw);
        let id = Post::chat(LIMITED, r#"{"model":"gpt-4o"}"#).send(&mut gw);
        // The headers went upstream first, but the request's one decision
        // is the body's deny, not an allow and a deny.
        before
            .check_decisions(
                &Counters::snapshot(&gw),
                &[("tollgate.decision.deny.model_not_permitted", 1)],
            )
            .unwrap();
        let reply = gw.outcome(id);
        assert_eq!(
            reply
                .expect_reply()
                .header_str("x-tollgate-reason")
                .as_deref(),
            Some("model_not_permitted"),
            "allow={allow}"
        );
        assert!(
            gw.upstream_body_pieces(id).is_empty(),
            "the denied body never went upstream"
        );
    }
}

/// A 10 MB string in a body: over the default limit it is refused at the
/// headers (413, nothing read); under a rule that allows 16 MiB it is read
/// in 64 KiB chunks, checked and clamped, and every other byte reaches the
/// provider as sent.
#[test]
fn a_ten_megabyte_string_is_refused_by_default_and_read_whole_when_allowed() {
    let content = "a".repeat(10 * 1024 * 1024);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":5000,"messages":[{{"role":"user","content":"{content}"}}]}}"#
    );
    let mut c = limits_config();
    c["rules"][1]["max_body_bytes"] = (16 * 1024 * 1024).into();
    let creds = credential_service();
    let mut gw = gateway(&c, 1, &creds);
    let id = Post::chat(LIMITED, &body)
        .header("content-length", &body.len().to_string())
        .in_chunks_of(64 * 1024)
        .send(&mut gw);
    let sent = forwarded_body(&gw, id);
    assert_eq!(sent.len(), body.len());
    assert_eq!(sent, body.replacen("5000", "2000", 1));
    assert_eq!(audit(&mut gw, id)["clamped"], true);

    // The default limit (512 KiB): refused from the declared length.
    let mut c = limits_config();
    c["rules"][1]
        .as_object_mut()
        .map(|r| r.remove("max_body_bytes"));
    let mut gw = gateway(&c, 1, &credential_service());
    let id = Post::chat(LIMITED, &body)
        .header("content-length", &body.len().to_string())
        .send(&mut gw);
    refused(&gw, id, 413, "body_too_large");
}
