//! The response phase on the real `.wasm`: usage read from JSON and SSE into
//! the audit record, the usage-only chunk removed for clients that did not
//! ask for it, and the injected key never reaching the client.

use tollgate_harness::{Gateway, StreamId};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

fn chat(gw: &mut Gateway, body: &str) -> StreamId {
    let id = request_on(gw, 0, SUPPORT_BOT, "POST", "api.openai.com", CHAT)
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(body)
        .send();
    gw.settle();
    id
}

/// A streamed Anthropic messages request, forwarded.
fn anthropic_stream(gw: &mut Gateway) -> StreamId {
    let id = request_on(
        gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.anthropic.com",
        "/v1/messages",
    )
    .header("content-type", "application/json")
    .body(r#"{"model":"claude-3-5-haiku-latest","max_tokens":100,"stream":true}"#)
    .send();
    gw.settle();
    id
}

fn audit(gw: &Gateway, id: StreamId) -> serde_json::Value {
    audit_of(gw, id)
}

fn gw() -> Gateway {
    let creds = credential_service();
    gateway(&config(), 1, &creds)
}

const JSON_HEADERS: &[(&str, &[u8])] = &[("content-type", b"application/json")];
const SSE_HEADERS: &[(&str, &[u8])] = &[("content-type", b"text/event-stream")];

#[test]
fn usage_from_a_json_response_is_audited_and_the_body_passes_unchanged() {
    let mut gw = gw();
    let id = chat(&mut gw, r#"{"model":"gpt-4o-mini","messages":[]}"#);
    let f = gw.outcome(id).expect_forwarded().clone();
    assert_eq!(f.header_str("accept-encoding").as_deref(), Some("identity"));
    let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3}}}"#;
    gw.respond_chunks(
        id,
        200,
        JSON_HEADERS,
        body.chunks(5).map(|c| c.to_vec()).collect(),
    );
    assert_eq!(gw.response(id).unwrap().body, body);
    let a = audit(&gw, id);
    assert_eq!(a["upstream_status"], 200);
    assert_eq!(a["usage"]["input"], 11);
    assert_eq!(a["usage"]["output"], 7);
    assert_eq!(a["usage"]["cached_input"], 3);
    assert_eq!(a["usage"]["total"], 18);
    assert_eq!(a["response_complete"], true);
    assert!(a["duration_ms"].is_u64() && a["ttfb_ms"].is_u64(), "{a}");
}

#[test]
fn a_stream_without_include_usage_reaches_the_client_as_sent_and_usage_is_still_learnt() {
    let mut gw = gw();
    let id = chat(
        &mut gw,
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
    );
    let sent = gw.outcome(id).expect_forwarded().body_str();
    assert!(
        sent.contains(r#""stream_options":{"include_usage":true}"#),
        "{sent}"
    );
    let client_view = "data: {\"choices\":[{\"delta\":{\"content\":\"h\u{e9}\"}}]}\n\ndata: {\"choices\":[{\"delta\":{}}],\"finish_reason\":\"stop\"}\n\ndata: [DONE]\n\n";
    let upstream = client_view.replace(
        "data: [DONE]",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]",
    );
    for piece in [1usize, 3, 64] {
        let mut gw2 = self::gw();
        let id = chat(
            &mut gw2,
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
        );
        gw2.respond_chunks(
            id,
            200,
            SSE_HEADERS,
            upstream
                .as_bytes()
                .chunks(piece)
                .map(|c| c.to_vec())
                .collect(),
        );
        let r = gw2.response(id).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            client_view,
            "pieces of {piece}"
        );
        let a = audit(&gw2, id);
        assert_eq!(
            (a["usage"]["input"].clone(), a["usage"]["output"].clone()),
            (5.into(), 2.into())
        );
        assert_eq!(a["stream"], true);
    }
    let _ = id;
}

#[test]
fn anthropic_stream_usage_is_the_last_cumulative_value() {
    let mut gw = gw();
    let id = anthropic_stream(&mut gw);
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":10}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    gw.respond_chunks(
        id,
        200,
        SSE_HEADERS,
        stream.as_bytes().chunks(7).map(|c| c.to_vec()).collect(),
    );
    assert_eq!(
        gw.response(id).unwrap().body,
        stream.as_bytes(),
        "Anthropic streams pass unchanged"
    );
    let a = audit(&gw, id);
    assert_eq!(a["usage"]["input"], 20);
    assert_eq!(a["usage"]["output"], 15, "last value, not the sum");
}

#[test]
fn a_401_echoing_the_key_never_shows_it_to_the_client() {
    let bodies = [
        format!("{{\"error\":{{\"message\":\"Incorrect API key provided: {OPENAI_KEY}\"}}}}"),
        format!("event: error\ndata: {{\"error\":\"bad key {OPENAI_KEY}\"}}\n\n"),
    ];
    for (i, body) in bodies.iter().enumerate() {
        for piece in [1usize, 4, 9, 1000] {
            let mut gw = gw();
            let before = Counters::snapshot(&gw);
            let id = chat(&mut gw, r#"{"model":"gpt-4o-mini","messages":[]}"#);
            let headers: &[(&str, &[u8])] = if i == 0 { JSON_HEADERS } else { SSE_HEADERS };
            let mut h = headers.to_vec();
            let echo = format!("Bearer {OPENAI_KEY}");
            h.push(("x-echo", echo.as_bytes()));
            gw.respond_chunks(
                id,
                401,
                &h,
                body.as_bytes().chunks(piece).map(|c| c.to_vec()).collect(),
            );
            let r = gw.response(id).unwrap();
            let seen = format!("{r:?} {}", String::from_utf8_lossy(&r.body));
            assert!(!seen.contains(OPENAI_KEY), "key reached the client: {seen}");
            assert_eq!(r.body.len(), body.len(), "same length");
            assert!(r.headers.iter().any(|(k, _)| k == b"x-echo"));
            before.assert_delta(&gw, "tollgate.key_echo_redacted", 2);
            assert_eq!(audit(&gw, id)["key_echo_redacted"], 2);
            assert_no_leak(&gw, &[id], &all_keys());
        }
    }
}

#[test]
fn usage_seen_before_an_unfinished_final_event_is_kept() {
    let mut gw = gw();
    let id = request_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "generativelanguage.googleapis.com",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
    )
    .header("content-type", "application/json")
    .body(r#"{"contents":[]}"#)
    .send();
    gw.settle();
    let part = "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":3,\"totalTokenCount\":11}}\n\n";
    gw.respond_with(
        id,
        200,
        SSE_HEADERS,
        vec![part.as_bytes().to_vec(), b"data: {\"cand".to_vec()],
        &[("x-end", b"1")],
    );
    let a = audit(&gw, id);
    assert_eq!(a["usage"]["input"], 8);
    assert_eq!(a["usage"]["total"], 11);
}

/// A client that leaves mid-stream: the record says the response was not
/// complete and keeps the usage the stream had reported until then
/// (Anthropic's cumulative `message_delta`, last value), however the bytes
/// were split.
#[test]
fn a_client_leaving_mid_stream_leaves_an_incomplete_record_with_the_usage_seen() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12}}\n\n\
event: message_delta\ndata: {\"type\":\"message_d";
    for piece in [1usize, 5, 64, 4096] {
        let mut gw = gw();
        let id = anthropic_stream(&mut gw);
        gw.respond_partial(
            id,
            200,
            SSE_HEADERS,
            stream
                .as_bytes()
                .chunks(piece)
                .map(|c| c.to_vec())
                .collect(),
        );
        assert!(gw.is_live(id), "the response is still arriving");
        gw.cancel(id);
        let a = audit(&gw, id);
        assert_eq!(a["response_complete"], false, "pieces of {piece}: {a}");
        assert_eq!(a["upstream_status"], 200, "{a}");
        assert_eq!(a["stream"], true, "{a}");
        assert_eq!(a["usage"]["input"], 20, "pieces of {piece}: {a}");
        assert_eq!(a["usage"]["output"], 12, "pieces of {piece}: {a}");
    }
}

/// The same for an OpenAI stream that ends before its usage chunk: no
/// usage was reported, and the record says so rather than inventing one.
#[test]
fn a_client_leaving_before_the_usage_chunk_leaves_no_usage() {
    let mut gw = gw();
    let id = chat(
        &mut gw,
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
    );
    gw.respond_partial(
        id,
        200,
        SSE_HEADERS,
        vec![b"data: {\"choices\":[{\"delta\":{\"content\":\"h\"}}]}\n\n".to_vec()],
    );
    gw.cancel(id);
    let a = audit(&gw, id);
    assert_eq!(a["response_complete"], false, "{a}");
    assert!(a["usage"].is_null(), "{a}");
    assert_eq!(a["model"], "gpt-4o-mini", "{a}");
}

/// Tollgate asks for `identity`; a response that comes compressed anyway
/// cannot be checked for the injected key, so it never reaches the client:
/// the stream is reset, counted, and the record says why. An explicit
/// `identity` passes.
#[test]
fn a_compressed_response_is_refused_because_it_cannot_be_checked_for_the_key() {
    let echo = format!("{{\"error\":\"bad key {OPENAI_KEY}\"}}");
    for (encoding, refused) in [
        (&b"gzip"[..], true),
        (b"br", true),
        (b" GZIP ", true),
        (b"identity", false),
        (b"Identity", false),
    ] {
        let mut gw = gw();
        let before = Counters::snapshot(&gw);
        let id = chat(&mut gw, r#"{"model":"gpt-4o-mini","messages":[]}"#);
        let mut headers = JSON_HEADERS.to_vec();
        headers.push(("content-encoding", encoding));
        gw.respond(id, 401, &headers, echo.as_bytes());
        let label = String::from_utf8_lossy(encoding);
        before.assert_delta(
            &gw,
            "tollgate.response.refused.response_encoded",
            i64::from(refused),
        );
        let a = audit(&gw, id);
        if refused {
            assert!(gw.was_reset(id), "{label}");
            assert_eq!(a["response_refused"], "response_encoded", "{label}: {a}");
            assert_ne!(a["response_complete"], true, "{label}: {a}");
        } else {
            let r = gw.response(id).unwrap();
            assert!(
                !String::from_utf8_lossy(&r.body).contains(OPENAI_KEY),
                "{label}"
            );
            assert!(a["response_refused"].is_null(), "{label}: {a}");
        }
        assert_no_leak(&gw, &[id], &all_keys());
    }
}

/// Every response that carries the injected key's risk is asked for
/// uncompressed, also from a provider whose usage is not read.
#[test]
fn a_generic_provider_is_asked_for_identity_too() {
    let mut gw = gw();
    let id = request_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.search.example.com",
        "/v1/search",
    )
    .header("accept-encoding", "gzip, br")
    .send();
    gw.settle();
    let f = gw.outcome(id).expect_forwarded().clone();
    assert_eq!(f.header_str("accept-encoding").as_deref(), Some("identity"));
}
