//! DLP on model output in a real Envoy 1.40 (issue 10, part 4): the mock
//! LLM echoes the prompt's first words, one SSE event per word when
//! streaming. The prompt carries a card number whose groups are separated by
//! newlines (not a card to the request-side detectors, so it is forwarded);
//! the mock's echo joins the groups with spaces, which is a card, split
//! over four events in a stream. What is proved, for a JSON answer and a
//! stream: the client gets `[REDACTED:payment_card]` and never the digits,
//! the answer is still valid JSON (Envoy sends it without the upstream's
//! length), the record in the access log counts the redaction, and the
//! counter moved.

use serde_json::{json, Value};
use tollgate_harness::envoy::Stack;
use tollgate_tests::run_envoy::*;
use tollgate_tests::tls_client::{self, HttpsRequest, HttpsResponse};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";
const CARD_ECHOED: &str = "4111 1111 1111 1111";

fn dlp_config() -> Value {
    let mut c = config();
    c["dlp_policies"] = json!([{
        "name": "outputs",
        "redact": ["payment_card"],
        "audit": ["secrets"],
        "responses": true,
        "response_holdback": 64
    }]);
    tollgate_tests::budget_fixture::merge_into_first_rule(&mut c, &json!({"dlp": "outputs"}));
    c
}

fn post(body: &Value) -> HttpsRequest {
    HttpsRequest {
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: CHAT.into(),
        headers: vec![("content-type".to_string(), b"application/json".to_vec())],
        body: body.to_string().into_bytes(),
    }
}

async fn send(stack: &Stack, req: &HttpsRequest) -> HttpsResponse {
    tls_client::send(stack.listen, client_for(stack, SUPPORT_BOT), req)
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.path))
}

fn audit_for(stack: &Stack, r: &HttpsResponse) -> Value {
    let id = r
        .header("x-request-id")
        .expect("Envoy returns x-request-id");
    let line = access_log_line(stack, &id);
    assert!(line["tollgate"].is_object(), "no audit record: {line}");
    line["tollgate"].clone()
}

/// The text of an OpenAI chat answer, streamed or not.
fn answer_text(body: &[u8], stream: bool) -> String {
    if !stream {
        let v: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_the_model_echoes_is_redacted_in_json_and_across_stream_events() {
    let stack = start_stack(&scratch_dir("dlp-responses"), &dlp_config(), |_| {}).await;
    let before = envoy_counters(&stack).expect("stats");
    for stream in [false, true] {
        let body = json!({"model": "gpt-4o-mini", "stream": stream,
            "messages": [{"role": "user", "content": "4111\n1111\n1111\n1111 is my card"}]});
        let r = send(&stack, &post(&body)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let text = answer_text(&r.body, stream);
        assert!(
            text.ends_with("You said: [REDACTED:payment_card] is my"),
            "stream {stream}: {text}"
        );
        let raw = String::from_utf8_lossy(&r.body);
        assert!(
            !raw.contains("4111") && !text.contains(CARD_ECHOED),
            "{raw}"
        );
        let a = audit_for(&stack, &r);
        assert_eq!(
            a["dlp_response"],
            json!([{"detector": "payment_card", "count": 1}]),
            "{a}"
        );
        assert_eq!(a["dlp_response_redacted"], 1, "{a}");
        assert_eq!(a["response_complete"], true, "{a}");
        assert!(
            a["usage"]["output"].as_u64().is_some_and(|n| n > 0),
            "usage still read: {a}"
        );
    }
    let after = envoy_counters(&stack).expect("stats");
    let moved = before.changes_under(&after, "tollgate.dlp");
    assert_eq!(
        moved.get("tollgate.dlp.response_redacted"),
        Some(&2),
        "{moved:?}"
    );
    assert_no_leak_in(&stack, &[]);
}
