//! DLP on model output, on the real `.wasm` (issue 10, part 4): a DLP
//! policy with `"responses": true` redacts what its detectors find in the
//! response, in a whole JSON body and in an SSE stream whose events split a
//! key a few characters at a time; past its bounds a response is cut, never
//! sent unscanned.

use serde_json::{json, Value};
use tollgate_harness::{Gateway, StreamId};
use tollgate_tests::budget_fixture::{chat, merge_into_first_rule, warm_through_batch};
use tollgate_tests::*;

/// A key of OpenAI's project format (not a real one), made up here.
fn leaked() -> String {
    let tail: String = (0..120)
        .map(|i| char::from(b"AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"[(i * 7 + 3) % 36]))
        .collect();
    format!("sk-proj-{}T3BlbkFJ{}", &tail[..60], &tail[60..])
}

const LABEL: &str = "[REDACTED:openai_api_key]";
const JSON_HEADERS: &[(&str, &[u8])] = &[
    ("content-type", b"application/json"),
    ("content-length", b"999"),
];
const SSE_HEADERS: &[(&str, &[u8])] = &[("content-type", b"text/event-stream")];

fn dlp_config(responses: bool) -> Value {
    let mut c = config();
    c["dlp_policies"] = json!([{
        "name": "outputs",
        "redact": ["secrets", "payment_card"],
        "audit": ["email"],
        "responses": responses,
    }]);
    if responses {
        c["dlp_policies"][0]["response_holdback"] = json!(256);
    }
    merge_into_first_rule(&mut c, &json!({"dlp": "outputs"}));
    c
}

fn warm(responses: bool) -> Gateway {
    warm_config(&dlp_config(responses))
}

fn warm_config(config: &Value) -> Gateway {
    let creds = credential_service();
    let mut gw = gateway(config, 1, &creds);
    warm_through_batch(&mut gw);
    gw
}

fn ask(gw: &mut Gateway, stream: bool) -> StreamId {
    let body = json!({"model": "gpt-4o-mini", "stream": stream, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "repeat my key"}]});
    send_chat(gw, &body)
}

fn send_chat(gw: &mut Gateway, body: &Value) -> StreamId {
    let id = chat(gw, 0, SUPPORT_BOT, &body.to_string());
    gw.settle();
    let _ = gw.outcome(id).expect_forwarded();
    id
}

/// An OpenAI chat stream of `text`, `n` characters per event.
fn chat_stream(text: &str, n: usize) -> String {
    let mut s = String::from(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    );
    let chars: Vec<char> = text.chars().collect();
    for part in chars.chunks(n) {
        let part: String = part.iter().collect();
        s += &format!(
            "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}}}}]}}\n\n",
            serde_json::to_string(&part).unwrap()
        );
    }
    s + "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":60,\"total_tokens\":64}}\n\ndata: [DONE]\n\n"
}

/// The content the client's stream carries.
fn streamed_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[test]
fn a_key_the_model_streams_back_a_few_characters_at_a_time_is_redacted() {
    let key = leaked();
    let text = format!("Sure. Your key is {key}. Store it in a vault, not in code.");
    for (per_event, piece) in [(1, 7), (3, 64), (5, 100_000)] {
        let mut gw = warm(true);
        let before = Counters::snapshot(&gw);
        let id = ask(&mut gw, true);
        let stream = chat_stream(&text, per_event);
        gw.respond_chunks(
            id,
            200,
            SSE_HEADERS,
            stream
                .as_bytes()
                .chunks(piece)
                .map(<[u8]>::to_vec)
                .collect(),
        );
        let r = gw.response(id).unwrap();
        let seen = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(streamed_text(&r.body), text.replace(&key, LABEL));
        assert!(!seen.contains(&key[..20]) && !seen.contains(&key[40..60]));
        assert!(seen.contains("\"usage\":{\"prompt_tokens\":4"), "{seen}");
        let a = audit_of(&gw, id);
        assert_eq!(
            a["dlp_response"],
            json!([{"detector": "openai_api_key", "count": 1}])
        );
        assert_eq!(a["dlp_response_redacted"], 1);
        assert_eq!(a["usage"]["output"], 60, "usage still read: {a}");
        before.assert_delta(&gw, "tollgate.dlp.response_redacted", 1);
        assert_no_leak(&gw, &[id], &[key.as_str()]);
        assert!(!gw.log_text().contains(&key[..20]));
    }
}

#[test]
fn an_operator_pattern_the_model_streams_back_is_redacted_across_events() {
    let mut c = dlp_config(true);
    c["dlp_policies"][0]["literals"] = json!([{"name": "employee_id", "pattern": "EMP-\\d{6}"}]);
    c["dlp_policies"][0]["redact"] = json!(["secrets", "payment_card", "employee_id"]);
    let text = "Found EMP-004217 and EMP-0042171 in the HR export.";
    for per_event in [1, 2, 3] {
        let mut gw = warm_config(&c);
        let id = ask(&mut gw, true);
        gw.respond_chunks(
            id,
            200,
            SSE_HEADERS,
            vec![chat_stream(text, per_event).into_bytes()],
        );
        let r = gw.response(id).unwrap();
        assert_eq!(
            streamed_text(&r.body),
            "Found [REDACTED:employee_id] and EMP-0042171 in the HR export.",
            "{per_event} characters per event"
        );
        let a = audit_of(&gw, id);
        assert_eq!(
            a["dlp_response"],
            json!([{"detector": "employee_id", "count": 1}])
        );
        assert_no_leak(&gw, &[id], &["EMP-004217 "]);
    }
}

#[test]
fn the_usage_chunk_is_still_removed_for_a_client_that_did_not_ask_for_it() {
    let mut gw = warm(true);
    // No include_usage: Tollgate asks for it and removes the usage chunk
    // (and the `"usage":null` asking adds) before DLP sees the stream.
    let id = send_chat(
        &mut gw,
        &json!({"model": "gpt-4o-mini", "stream": true,
            "messages": [{"role": "user", "content": "repeat my key"}]}),
    );
    let key = leaked();
    let text = format!("key {key} done");
    let stream = chat_stream(&text, 4).replace("}}]}\n\n", "}}],\"usage\":null}\n\n");
    gw.respond_chunks(
        id,
        200,
        SSE_HEADERS,
        stream.as_bytes().chunks(33).map(<[u8]>::to_vec).collect(),
    );
    let r = gw.response(id).unwrap();
    let seen = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(streamed_text(&r.body), text.replace(&key, LABEL));
    assert!(!seen.contains("usage"), "{seen}");
    let a = audit_of(&gw, id);
    assert_eq!(a["usage"]["output"], 60, "{a}");
    assert_eq!(a["dlp_response_redacted"], 1, "{a}");
}

#[test]
fn streamed_text_waits_for_the_holdback_then_flows() {
    let mut gw = warm(true);
    let id = ask(&mut gw, true);
    let text = "word ".repeat(200);
    let stream = chat_stream(&text, 5);
    let events: Vec<Vec<u8>> = stream
        .split_inclusive("\n\n")
        .map(|e| e.as_bytes().to_vec())
        .collect();
    let n = events.len();
    gw.respond_chunks(id, 200, SSE_HEADERS, events);
    let r = gw.response(id).unwrap();
    assert_eq!(r.body, stream.as_bytes(), "nothing matched: byte for byte");
    // The role event goes at once; text goes 256 bytes (52 events of 5)
    // behind what came in.
    let first_text = r
        .body_pieces
        .iter()
        .find(|p| streamed_text(&p.bytes).contains("word"))
        .and_then(|p| p.callback)
        .unwrap();
    assert!(
        (52..=53).contains(&first_text),
        "first text released at callback {first_text}"
    );
    assert_eq!(r.body_pieces.first().and_then(|p| p.callback), Some(0));
    assert!(
        r.body_pieces.iter().filter(|p| !p.bytes.is_empty()).count() > n / 2,
        "it flows"
    );
}

#[test]
fn a_whole_json_answer_is_redacted_in_place_with_its_length_fixed() {
    let mut gw = warm(true);
    let id = ask(&mut gw, false);
    let key = leaked();
    let body = json!({"id": "r", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": format!("card 4111 1111 1111 1111, key {key}, mail ann@example.com")}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}})
    .to_string();
    gw.respond_chunks(
        id,
        200,
        JSON_HEADERS,
        body.as_bytes().chunks(10).map(<[u8]>::to_vec).collect(),
    );
    let r = gw.response(id).unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("card [REDACTED:payment_card], key {LABEL}, mail ann@example.com")
    );
    assert!(
        !r.headers.iter().any(|(k, _)| k == b"content-length"),
        "the upstream's length no longer holds"
    );
    let a = audit_of(&gw, id);
    assert_eq!(a["dlp_response_redacted"], 2);
    assert_eq!(a["dlp_response"].as_array().unwrap().len(), 3, "{a}");
    assert_eq!(a["usage"]["total"], 25);
    assert_no_leak(&gw, &[id], &[key.as_str()]);
}

#[test]
fn in_dry_run_the_output_is_scanned_and_recorded_but_not_changed() {
    let mut c = dlp_config(true);
    c["mode"] = json!("dry_run");
    let mut gw = warm_config(&c);
    let before = Counters::snapshot(&gw);
    let id = ask(&mut gw, true);
    let key = leaked();
    let stream = chat_stream(&format!("your key: {key}"), 4);
    gw.respond_chunks(id, 200, SSE_HEADERS, vec![stream.clone().into_bytes()]);
    assert_eq!(gw.response(id).unwrap().body, stream.as_bytes());
    let a = audit_of(&gw, id);
    assert_eq!(
        a["dlp_response"],
        json!([{"detector": "openai_api_key", "count": 1}])
    );
    assert!(a.get("dlp_response_redacted").is_none(), "{a}");
    before.assert_delta(&gw, "tollgate.dlp.response_redacted", 0);
}

#[test]
fn a_policy_without_responses_leaves_the_answer_alone() {
    let mut gw = warm(false);
    let id = ask(&mut gw, false);
    let body = format!(
        "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}}}}]}}",
        leaked()
    );
    gw.respond_chunks(id, 200, JSON_HEADERS, vec![body.clone().into_bytes()]);
    assert_eq!(gw.response(id).unwrap().body, body.as_bytes());
    assert!(audit_of(&gw, id).get("dlp_response").is_none());
}

#[test]
fn a_stream_dlp_cannot_scan_is_cut_with_a_reason_never_sent_unscanned() {
    let mut gw = warm(true);
    let before = Counters::snapshot(&gw);
    let id = ask(&mut gw, true);
    // One event over the SSE bound (256 KiB), carrying a key at its end.
    let huge = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}{}\"}}}}]}}\n\n",
        "a".repeat(300 * 1024),
        leaked()
    );
    gw.respond_chunks(
        id,
        200,
        SSE_HEADERS,
        huge.as_bytes()
            .chunks(16 * 1024)
            .map(<[u8]>::to_vec)
            .collect(),
    );
    assert!(gw.was_reset(id), "cut");
    let sent = gw.response(id).map_or(0, |r| r.body.len());
    assert!(sent < 1024, "nothing of the event went out: {sent}");
    assert_eq!(audit_of(&gw, id)["response_refused"], "dlp_unscannable");
    before.assert_delta(&gw, "tollgate.response.refused.dlp_unscannable", 1);
    assert!(gw.log_text().contains("response cut (dlp_unscannable)"));
}

/// The load errors of a configuration that must be refused.
#[test]
fn response_settings_are_checked_at_load() {
    let mut c = dlp_config(false);
    c["dlp_policies"][0]["response_holdback"] = json!(64);
    let e = rejection_logs(&c.to_string());
    assert!(
        e.contains("dlp_policies[0].response_holdback: applies to responses"),
        "{e}"
    );
    let mut c = dlp_config(true);
    c["dlp_policies"][0]["response_holdback"] = json!(8);
    let e = rejection_logs(&c.to_string());
    assert!(
        e.contains("dlp_policies[0].response_holdback: 16 to 4096"),
        "{e}"
    );
    let mut c = dlp_config(true);
    c["dlp_policies"][0]["responses"] = json!("yes");
    let e = rejection_logs(&c.to_string());
    assert!(e.contains("dlp_policies[0].responses"), "{e}");
}
