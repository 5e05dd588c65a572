//! Tests for the mock LLM upstream (`tollgate_harness::mock::MockLlm`).
//!
//! Job: pin, over real HTTP/1.1, what each provider API returns whole and
//! streamed (OpenAI, Anthropic, Gemini, Azure OpenAI), the key check (fixed
//! keys, keys a `MockCredentialService` has handed out, one credential per
//! request), what gets recorded (and that it is bounded and redacted), the
//! delay headers and error shapes; and that the official Python SDKs parse
//! the mock's replies (`sdk_mock_llm.py`, run with the project venv).
//!
//! Invariants: servers bind 127.0.0.1:0; no test sleeps beyond about a
//! second of real time; no test touches process env vars (only reads
//! `TOLLGATE_PYTHON`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_harness::mock::llm::{LlmCounts, DEFAULT_LOG_CAPACITY};
use tollgate_harness::mock::{MockCredentialService, MockLlm, ProviderKind, ServedLlm};

const KEY: &str = "sk-mock-accepted";
const PROMPT: &str = "say hello to the mock";
const REPLY: &str = "Hello from the mock. You said: say hello to the mock";
const PROMPT_TOKENS: u64 = 5;
const REPLY_TOKENS: u64 = 11;

// --------------------------------------------------------------------- helpers

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON (status {}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as server-sent events: (event name, data).
    fn events(&self) -> Vec<(Option<String>, String)> {
        let text = String::from_utf8_lossy(&self.body);
        assert!(
            text.ends_with("\n\n"),
            "unterminated event stream: {text:?}"
        );
        text.split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|block| {
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        assert!(data.is_none(), "two data lines in {block:?}");
                        data = Some(d.to_owned());
                    } else {
                        panic!("unexpected line {line:?}");
                    }
                }
                (name, data.expect("a data line"))
            })
            .collect()
    }

    /// The `data` of every event, parsed as JSON (`[DONE]` excluded).
    fn event_json(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(_, d)| d != "[DONE]")
            .map(|(_, d)| serde_json::from_str(&d).expect("JSON event data"))
            .collect()
    }
}

async fn send(
    c: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c
        .request(req.body(Full::new(body.into())).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn post(
    c: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    send(c, addr, "POST", path, headers, body.to_string()).await
}

async fn start() -> (MockLlm, ServedLlm) {
    let mock = MockLlm::new();
    mock.accept_key(KEY);
    let served = mock.serve(localhost()).await.expect("serve");
    (mock, served)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn user_messages() -> Value {
    json!([{"role": "user", "content": PROMPT}])
}

// ---------------------------------------------------------------------- OpenAI

#[tokio::test]
async fn openai_chat_whole() {
    let (mock, served) = start().await;
    let auth = bearer(KEY);
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[("authorization", &auth), ("host", "api.openai.com")],
        &json!({"model": "gpt-4o-mini", "messages": user_messages()}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-request-id").is_some());
    let b = r.json();
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    assert_eq!(b["choices"][0]["message"]["content"], REPLY);
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(b["usage"]["completion_tokens"], REPLY_TOKENS);
    assert_eq!(b["usage"]["total_tokens"], PROMPT_TOKENS + REPLY_TOKENS);

    let req = mock.last_request().expect("recorded");
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.authority, "api.openai.com");
    assert_eq!(req.provider, Some(ProviderKind::OpenAi));
    assert_eq!(req.key.as_deref(), Some(KEY.as_bytes()));
    assert!(req.accepted && !req.stream && !req.key_in_query);
    assert_eq!(req.status, 200);
    assert_eq!(req.header("Authorization"), Some(auth.as_bytes()));
    assert_eq!(req.body_json().expect("json")["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn openai_chat_streamed_with_and_without_usage() {
    let (mock, served) = start().await;
    let auth = bearer(KEY);
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": user_messages(),
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    assert!(events.iter().all(|(name, _)| name.is_none()));
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("[DONE]"));
    let chunks = r.event_json();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, REPLY);
    let usage_chunk = chunks.last().expect("chunks");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], REPLY_TOKENS);
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null()));
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(mock.last_request().expect("recorded").stream);

    let mut body = body;
    body.as_object_mut()
        .expect("object")
        .remove("stream_options");
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    let chunks = r.event_json();
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().expect("chunks")["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn openai_token_cap_truncates() {
    let (_mock, served) = start().await;
    let auth = bearer(KEY);
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &json!({"model": "m", "messages": user_messages(), "max_completion_tokens": 3}),
    )
    .await;
    let b = r.json();
    assert_eq!(b["choices"][0]["message"]["content"], "Hello from the");
    assert_eq!(b["choices"][0]["finish_reason"], "length");
    assert_eq!(b["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn openai_responses_embeddings_and_models() {
    let (_mock, served) = start().await;
    let c = client();
    let auth = bearer(KEY);
    let h = [("authorization", auth.as_str())];

    let r = post(
        &c,
        served.addr,
        "/v1/responses",
        &h,
        &json!({"model": "gpt-4.1", "input": PROMPT}),
    )
    .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["object"], "response");
    assert_eq!(b["status"], "completed");
    assert_eq!(b["output"][0]["content"][0]["text"], REPLY);
    assert_eq!(b["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(b["usage"]["output_tokens"], REPLY_TOKENS);

    let r = post(
        &c,
        served.addr,
        "/v1/responses",
        &h,
        &json!({"model": "gpt-4.1", "input": PROMPT, "stream": true}),
    )
    .await;
    let events = r.events();
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.len(), events.len(), "every event is named");
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let data = r.event_json();
    let text: String = data
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .filter_map(|d| d["delta"].as_str())
        .collect();
    assert_eq!(text, REPLY);
    let last = data.last().expect("events");
    assert_eq!(last["response"]["usage"]["output_tokens"], REPLY_TOKENS);
    for (i, (d, name)) in data.iter().zip(&names).enumerate() {
        assert_eq!(d["type"], *name);
        assert_eq!(d["sequence_number"], i);
    }

    let r = post(
        &c,
        served.addr,
        "/v1/embeddings",
        &h,
        &json!({"model": "text-embedding-3-small", "input": ["a b", "c"], "dimensions": 4}),
    )
    .await;
    let b = r.json();
    assert_eq!(b["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(b["data"][1]["index"], 1);
    assert_eq!(b["data"][0]["embedding"].as_array().map(Vec::len), Some(4));
    assert_eq!(b["usage"]["prompt_tokens"], 3);
    let r = post(
        &c,
        served.addr,
        "/v1/embeddings",
        &h,
        &json!({"model": "e", "input": "a b", "encoding_format": "base64", "dimensions": 4}),
    )
    .await;
    // 4 f32s = 16 bytes = 24 base64 characters.
    assert_eq!(
        r.json()["data"][0]["embedding"].as_str().map(str::len),
        Some(24)
    );

    let r = send(&c, served.addr, "GET", "/v1/models", &h, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "list");
    assert_eq!(r.json()["data"][0]["object"], "model");
}

// ------------------------------------------------------------------- Anthropic

#[tokio::test]
async fn anthropic_messages_whole_and_streamed() {
    let (mock, served) = start().await;
    let c = client();
    let h = [
        ("x-api-key", KEY),
        ("anthropic-version", "2023-06-01"),
        ("host", "api.anthropic.com"),
    ];
    let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": user_messages()});
    let r = post(&c, served.addr, "/v1/messages", &h, &body).await;
    assert_eq!(r.status, 200);
    assert!(r.header("request-id").is_some());
    let b = r.json();
    assert_eq!(b["type"], "message");
    assert_eq!(b["content"], json!([{"type": "text", "text": REPLY}]));
    assert_eq!(b["stop_reason"], "end_turn");
    assert_eq!(b["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(b["usage"]["output_tokens"], REPLY_TOKENS);
    assert_eq!(b["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(b["usage"]["cache_read_input_tokens"], 0);
    let req = mock.last_request().expect("recorded");
    assert_eq!(req.provider, Some(ProviderKind::Anthropic));
    assert_eq!(req.authority, "api.anthropic.com");

    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let r = post(&c, served.addr, "/v1/messages", &h, &stream_body).await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_deref().expect("named"))
        .collect();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n(
        "content_block_delta",
        REPLY_TOKENS as usize,
    ));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want);
    let data = r.event_json();
    for (d, name) in data.iter().zip(&names) {
        assert_eq!(d["type"], *name);
    }
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], PROMPT_TOKENS);
    let text: String = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert_eq!(text, REPLY);
    let delta = &data[data.len() - 2];
    assert_eq!(delta["usage"]["output_tokens"], REPLY_TOKENS);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");

    // The Python SDK 2.x sends its key as a bearer token; one place only.
    let auth = bearer(KEY);
    let r = post(
        &c,
        served.addr,
        "/v1/messages",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        &c,
        served.addr,
        "/v1/messages",
        &[("authorization", &auth), ("x-api-key", KEY)],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);

    let r = post(&c, served.addr, "/v1/messages/count_tokens", &h, &body).await;
    assert_eq!(r.json(), json!({"input_tokens": PROMPT_TOKENS}));
    // `GET /v1/models` with Anthropic's headers is Anthropic's list.
    let r = send(&c, served.addr, "GET", "/v1/models", &h, "").await;
    assert_eq!(r.json()["data"][0]["type"], "model");
    assert_eq!(
        mock.last_request().expect("recorded").provider,
        Some(ProviderKind::Anthropic)
    );

    // max_tokens is required.
    let r = post(
        &c,
        served.addr,
        "/v1/messages",
        &h,
        &json!({"model": "claude-sonnet-4-6", "messages": user_messages()}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

// ---------------------------------------------------------------------- Gemini

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]})
}

#[tokio::test]
async fn gemini_generate_whole_and_streamed() {
    let (mock, served) = start().await;
    let c = client();
    let h = [
        ("x-goog-api-key", KEY),
        ("host", "generativelanguage.googleapis.com"),
    ];
    let base = "/v1beta/models/gemini-2.5-flash";
    let r = post(
        &c,
        served.addr,
        &format!("{base}:generateContent"),
        &h,
        &gemini_body(),
    )
    .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["candidates"][0]["content"]["parts"][0]["text"], REPLY);
    assert_eq!(b["candidates"][0]["content"]["role"], "model");
    assert_eq!(b["candidates"][0]["finishReason"], "STOP");
    assert_eq!(b["usageMetadata"]["promptTokenCount"], PROMPT_TOKENS);
    assert_eq!(b["usageMetadata"]["candidatesTokenCount"], REPLY_TOKENS);
    assert_eq!(
        b["usageMetadata"]["totalTokenCount"],
        PROMPT_TOKENS + REPLY_TOKENS
    );
    assert_eq!(b["modelVersion"], "gemini-2.5-flash");
    let req = mock.last_request().expect("recorded");
    assert_eq!(req.provider, Some(ProviderKind::Gemini));
    assert_eq!(req.authority, "generativelanguage.googleapis.com");
    assert!(!req.key_in_query);

    let r = post(
        &c,
        served.addr,
        &format!("{base}:streamGenerateContent?alt=sse"),
        &h,
        &gemini_body(),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let chunks = r.event_json();
    assert_eq!(chunks.len() as u64, REPLY_TOKENS);
    let text: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .expect("text")
                .to_owned()
        })
        .collect();
    assert_eq!(text, REPLY);
    for (i, c) in chunks.iter().enumerate() {
        let u = &c["usageMetadata"];
        assert_eq!(u["promptTokenCount"], PROMPT_TOKENS);
        assert_eq!(u["candidatesTokenCount"], i as u64 + 1);
        let last = i + 1 == chunks.len();
        assert_eq!(c["candidates"][0].get("finishReason").is_some(), last);
    }
    assert_eq!(
        chunks.last().expect("chunks")["usageMetadata"]["totalTokenCount"],
        PROMPT_TOKENS + REPLY_TOKENS
    );
    assert!(mock.last_request().expect("recorded").stream);

    // Without alt=sse the stream is one JSON array.
    let r = post(
        &c,
        served.addr,
        &format!("{base}:streamGenerateContent"),
        &h,
        &gemini_body(),
    )
    .await;
    assert_eq!(
        r.json().as_array().map(Vec::len),
        Some(REPLY_TOKENS as usize)
    );

    let r = post(
        &c,
        served.addr,
        &format!("{base}:countTokens"),
        &h,
        &gemini_body(),
    )
    .await;
    assert_eq!(r.json()["totalTokens"], PROMPT_TOKENS);
    let r = post(
        &c,
        served.addr,
        "/v1beta/models/gemini-embedding-001:embedContent",
        &h,
        &json!({"content": {"parts": [{"text": "a b"}]}, "outputDimensionality": 3}),
    )
    .await;
    assert_eq!(
        r.json()["embedding"]["values"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn gemini_query_key_is_accepted_and_recorded_as_such() {
    let (mock, served) = start().await;
    let r = post(
        &client(),
        served.addr,
        &format!("/v1beta/models/g:generateContent?key={KEY}"),
        &[],
        &gemini_body(),
    )
    .await;
    assert_eq!(r.status, 200);
    let req = mock.last_request().expect("recorded");
    assert!(req.key_in_query && req.accepted);
    assert_eq!(req.key.as_deref(), Some(KEY.as_bytes()));
    assert!(req.path.contains(KEY), "the path is recorded as sent");
    let debug = format!("{req:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains("key=<redacted>"), "{debug}");

    // Header and query together are two credentials: refused.
    let r = post(
        &client(),
        served.addr,
        &format!("/v1beta/models/g:generateContent?key={KEY}"),
        &[("x-goog-api-key", KEY)],
        &gemini_body(),
    )
    .await;
    assert_eq!(r.status, 401);
    let req = mock.last_request().expect("recorded");
    assert!(req.key_in_query && !req.accepted);
}

// ---------------------------------------------------------------- Azure OpenAI

#[tokio::test]
async fn azure_chat_and_embeddings() {
    let (mock, served) = start().await;
    let c = client();
    let h = [("api-key", KEY), ("host", "myres.openai.azure.com")];
    let path = "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21";
    let r = post(
        &c,
        served.addr,
        path,
        &h,
        &json!({"messages": user_messages()}),
    )
    .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["model"], "my-gpt4o", "model defaults to the deployment");
    assert_eq!(b["choices"][0]["message"]["content"], REPLY);
    assert_eq!(b["usage"]["total_tokens"], PROMPT_TOKENS + REPLY_TOKENS);
    let req = mock.last_request().expect("recorded");
    assert_eq!(req.provider, Some(ProviderKind::AzureOpenAi));
    assert_eq!(req.path, path);
    assert_eq!(req.authority, "myres.openai.azure.com");

    let r = post(
        &c,
        served.addr,
        path,
        &h,
        &json!({"messages": user_messages(), "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let chunks = r.event_json();
    assert_eq!(
        chunks.last().expect("chunks")["usage"]["completion_tokens"],
        REPLY_TOKENS
    );

    let r = post(
        &c,
        served.addr,
        "/openai/deployments/emb/embeddings?api-version=2024-10-21",
        &h,
        &json!({"input": "x"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["model"], "emb");

    // OpenAI's header is not Azure's key header, but a bearer token is
    // accepted there too; both at once are refused.
    let auth = bearer(KEY);
    let r = post(
        &c,
        served.addr,
        path,
        &[("authorization", &auth)],
        &json!({"messages": user_messages()}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        &c,
        served.addr,
        path,
        &[("authorization", &auth), ("api-key", KEY)],
        &json!({"messages": user_messages()}),
    )
    .await;
    assert_eq!(r.status, 401);
}

// -------------------------------------------------------------------- key check

/// A provider, a path it serves, and the headers that carry a key there.
type ProviderCase = (ProviderKind, &'static str, Vec<(&'static str, String)>);

/// One [`ProviderCase`] per provider, carrying `key`.
fn per_provider(key: &str) -> Vec<ProviderCase> {
    vec![
        (
            ProviderKind::OpenAi,
            "/v1/chat/completions",
            vec![("authorization", bearer(key))],
        ),
        (
            ProviderKind::Anthropic,
            "/v1/messages",
            vec![("x-api-key", key.to_owned())],
        ),
        (
            ProviderKind::Gemini,
            "/v1beta/models/g:generateContent",
            vec![("x-goog-api-key", key.to_owned())],
        ),
        (
            ProviderKind::AzureOpenAi,
            "/openai/deployments/d/chat/completions?api-version=2024-10-21",
            vec![("api-key", key.to_owned())],
        ),
    ]
}

fn body_for(provider: ProviderKind) -> Value {
    match provider {
        ProviderKind::Gemini => gemini_body(),
        _ => json!({"model": "m", "max_tokens": 16, "messages": user_messages()}),
    }
}

/// Asserts `r` is a 401 in `provider`'s error shape.
fn assert_unauthorized(provider: ProviderKind, r: &Reply) {
    assert_eq!(
        r.status,
        401,
        "{provider:?}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let b = r.json();
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi => {
            let e = &b["error"];
            assert!(e["message"].is_string(), "{b}");
            assert_eq!(e["type"], "invalid_request_error");
            assert!(e.get("param").is_some() && e.get("code").is_some(), "{b}");
            assert_eq!(e["code"], "invalid_api_key");
        }
        ProviderKind::Anthropic => {
            assert_eq!(b["type"], "error");
            assert_eq!(b["error"]["type"], "authentication_error");
            assert!(b["error"]["message"].is_string());
        }
        ProviderKind::Gemini => {
            assert_eq!(b["error"]["code"], 401);
            assert_eq!(b["error"]["status"], "UNAUTHENTICATED");
            assert!(b["error"]["message"].is_string());
        }
    }
}

#[tokio::test]
async fn a_wrong_missing_or_doubled_key_is_401_in_each_providers_shape() {
    let (mock, served) = start().await;
    let c = client();
    let wrong = "sk-wrong-key";
    for ((provider, path, good), (_, _, bad)) in
        per_provider(KEY).into_iter().zip(per_provider(wrong))
    {
        let body = body_for(provider);
        let send_with = |h: Vec<(&'static str, String)>| {
            let c = &c;
            let body = &body;
            async move {
                let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                post(c, served.addr, path, &refs, body).await
            }
        };
        assert_eq!(
            send_with(good.clone()).await.status,
            200,
            "{provider:?} good key"
        );

        let r = send_with(bad.clone()).await;
        assert_unauthorized(provider, &r);
        assert!(
            !String::from_utf8_lossy(&r.body).contains(wrong),
            "error echoes the key"
        );
        let req = mock.last_request().expect("recorded");
        assert_eq!(req.provider, Some(provider));
        assert_eq!(req.key.as_deref(), Some(wrong.as_bytes()));
        assert!(!req.accepted);
        assert_eq!(req.status, 401);

        assert_unauthorized(provider, &send_with(vec![]).await);
        // The good key twice, or the good key and a placeholder: refused.
        let mut twice = good.clone();
        twice.extend(good.clone());
        assert_unauthorized(provider, &send_with(twice).await);
        let mut mixed = bad.clone();
        mixed.extend(good.clone());
        assert_unauthorized(provider, &send_with(mixed).await);
        // Auth comes before the body: a bad key with a bad body is a 401.
        let bad_refs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(&c, served.addr, "POST", path, &bad_refs, "{nope").await;
        assert_unauthorized(provider, &r);
    }
    // OpenAI wants a bearer token, not the bare key.
    let r = post(
        &c,
        served.addr,
        "/v1/chat/completions",
        &[("authorization", KEY)],
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert_unauthorized(ProviderKind::OpenAi, &r);
    let counts = mock.counts();
    assert_eq!(counts.accepted, 4);
    assert_eq!(counts.unauthorized, counts.total - 4);
}

#[tokio::test]
async fn a_new_mock_accepts_no_key() {
    let mock = MockLlm::new();
    let served = mock.serve(localhost()).await.expect("serve");
    let auth = bearer(KEY);
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert_unauthorized(ProviderKind::OpenAi, &r);
    mock.accept_key(KEY);
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn issued_keys_are_accepted_only_once_the_credential_service_handed_them_out() {
    const WL: &str = "spiffe://cluster.local/ns/app/sa/chat";
    let creds = MockCredentialService::new();
    creds.set_key("openai", "sk-issued-1", "k1");
    creds.set_key("tollgate/anthropic", "sk-ant-vault", "k2");
    creds.set_workload_key("gemini", WL, "gk-workload", "k3");
    let mock = MockLlm::new();
    mock.accept_issued_by(&creds);
    let served = mock.serve(localhost()).await.expect("serve");
    let c = client();

    let openai = |key: &'static str| {
        let c = &c;
        let auth = bearer(key);
        async move {
            post(
                c,
                served.addr,
                "/v1/chat/completions",
                &[("authorization", &auth)],
                &body_for(ProviderKind::OpenAi),
            )
            .await
            .status
        }
    };
    assert_eq!(
        openai("sk-issued-1").await,
        401,
        "stored but not yet handed out"
    );
    // Handed out in process (tollgate_v1).
    let a = creds.answer(b"GET", b"/v1/credentials/openai", &[]);
    assert_eq!(a.status, 200);
    assert!(creds.has_issued(b"sk-issued-1"));
    assert_eq!(openai("sk-issued-1").await, 200);

    // A rotated value is not accepted until fetched; the old one still is.
    creds.rotate("openai", "sk-issued-2", "k1b");
    assert_eq!(openai("sk-issued-2").await, 401);
    assert_eq!(openai("sk-issued-1").await, 200);
    // Fetched over real HTTP from the served credential service.
    let cs = creds.serve(localhost()).await.expect("serve creds");
    let r = send(&c, cs.addr, "GET", "/v1/credentials/openai", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(openai("sk-issued-2").await, 200);

    // Vault KV v2 and per-workload answers count too; denials and 404s don't.
    let ant = |key: &'static str| {
        let c = &c;
        async move {
            post(
                c,
                served.addr,
                "/v1/messages",
                &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
                &body_for(ProviderKind::Anthropic),
            )
            .await
            .status
        }
    };
    assert_eq!(ant("sk-ant-vault").await, 401);
    let a = creds.answer(
        b"GET",
        b"/v1/secret/data/tollgate/anthropic",
        &[(b"x-vault-request".to_vec(), b"true".to_vec())],
    );
    assert_eq!(a.status, 200);
    assert_eq!(ant("sk-ant-vault").await, 200);

    assert!(!creds.has_issued(b"gk-workload"));
    let shared = creds.answer(b"GET", b"/v1/credentials/gemini", &[]);
    assert_eq!(shared.status, 404, "no shared gemini key");
    let a = creds.answer(
        b"GET",
        b"/v1/credentials/gemini",
        &[(b"x-tollgate-workload".to_vec(), WL.as_bytes().to_vec())],
    );
    assert_eq!(a.status, 200);
    assert!(creds.has_issued(b"gk-workload"));
    let r = post(
        &c,
        served.addr,
        "/v1beta/models/g:generateContent",
        &[("x-goog-api-key", "gk-workload")],
        &gemini_body(),
    )
    .await;
    assert_eq!(r.status, 200);

    creds.set_key("denied", "sk-denied", "k4");
    creds.deny("denied", None);
    assert_eq!(
        creds.answer(b"GET", b"/v1/credentials/denied", &[]).status,
        403
    );
    assert!(!creds.has_issued(b"sk-denied"));
    assert!(!creds.has_issued(b""));
    // Nothing about issued values leaks through Debug.
    let debug = format!("{creds:?} {mock:?}");
    assert!(
        !debug.contains("sk-issued") && !debug.contains("gk-workload"),
        "{debug}"
    );
}

// ------------------------------------------------------------------- recording

#[tokio::test]
async fn every_header_is_recorded_with_duplicates_and_debug_redacts_secrets() {
    let (mock, served) = start().await;
    let auth = bearer(KEY);
    let r = post(
        &client(),
        served.addr,
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("x-trace", "one"),
            ("x-trace", "two"),
            ("openai-project", "proj_1"),
            ("cookie", "session=s3cret"),
        ],
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert_eq!(r.status, 200);
    let req = mock.last_request().expect("recorded");
    assert_eq!(req.header_all("x-trace"), [&b"one"[..], &b"two"[..]]);
    assert_eq!(req.header("X-Trace"), Some(&b"one"[..]));
    assert_eq!(req.header("openai-project"), Some(&b"proj_1"[..]));
    assert!(req.header("x-missing").is_none());
    assert!(req
        .headers
        .iter()
        .all(|(k, _)| *k == k.to_ascii_lowercase()));
    let debug = format!("{req:?}");
    for secret in [KEY, "s3cret"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(
        debug.contains("proj_1") && debug.contains("<redacted>"),
        "{debug}"
    );
}

#[tokio::test]
async fn recording_is_bounded_and_counters_keep_counting() {
    let mock = MockLlm::with_log_capacity(5);
    mock.accept_key(KEY);
    let served = mock.serve(localhost()).await.expect("serve");
    let c = client();
    let auth = bearer(KEY);
    for i in 0..12 {
        let r = send(
            &c,
            served.addr,
            "GET",
            &format!("/v1/models?i={i}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        (7..12)
            .map(|i| format!("/v1/models?i={i}"))
            .collect::<Vec<_>>()
    );
    let counts = mock.counts();
    assert_eq!(
        counts,
        LlmCounts {
            total: 12,
            accepted: 12,
            unauthorized: 0,
            streams: 0,
            by_provider: [12, 0, 0, 0],
            unrouted: 0,
        }
    );
    assert_eq!(counts.for_provider(ProviderKind::OpenAi), 12);
    mock.clear();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.counts(), LlmCounts::default());
    // The default keeps ten thousand.
    assert_eq!(DEFAULT_LOG_CAPACITY, 10_000);
}

// ---------------------------------------------------------------------- delays

#[tokio::test]
async fn the_delay_header_holds_the_response_while_the_request_is_visible() {
    let (mock, served) = start().await;
    let addr = served.addr;
    let auth = bearer(KEY);
    let start = Instant::now();
    let pending = tokio::spawn(async move {
        let auth = auth;
        post(
            &client(),
            addr,
            "/v1/chat/completions",
            &[("authorization", &auth), ("x-mock-delay-ms", "400")],
            &body_for(ProviderKind::OpenAi),
        )
        .await
    });
    // Recorded on arrival, before the response.
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.requests().is_empty() {
        assert!(Instant::now() < deadline, "request never recorded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!pending.is_finished());
    let r = pending.await.expect("join");
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(400));

    // The mock-wide delay, and a header overriding it.
    mock.set_response_delay(Duration::from_millis(200));
    assert_eq!(mock.response_delay(), Duration::from_millis(200));
    let auth = bearer(KEY);
    let t = Instant::now();
    post(
        &client(),
        addr,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    let t = Instant::now();
    post(
        &client(),
        addr,
        "/v1/chat/completions",
        &[("authorization", &auth), ("x-mock-delay-ms", "0")],
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn streams_arrive_event_by_event() {
    let (_mock, served) = start().await;
    let auth = bearer(KEY);
    let mut body = body_for(ProviderKind::OpenAi);
    body["stream"] = json!(true);
    let req = hyper::Request::post(format!("http://{}/v1/chat/completions", served.addr))
        .header("authorization", &auth)
        .header("x-mock-chunk-delay-ms", "30")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let start = Instant::now();
    let resp = client().request(req).await.expect("response");
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames.push((start.elapsed(), data));
        }
    }
    // First chunk, one per word, the finish chunk, [DONE].
    assert_eq!(frames.len() as u64, REPLY_TOKENS + 3);
    assert!(frames.iter().all(|(_, d)| d.ends_with(b"\n\n")));
    let (first, last) = (frames[0].0, frames[frames.len() - 1].0);
    assert!(
        last - first >= Duration::from_millis(30 * (REPLY_TOKENS + 2) - 30),
        "{first:?} .. {last:?}"
    );
}

// ----------------------------------------------------------- errors and limits

#[tokio::test]
async fn malformed_bodies_unknown_paths_and_wrong_methods() {
    let (mock, served) = start().await;
    let c = client();
    let auth = bearer(KEY);
    for (provider, path, mut headers) in per_provider(KEY) {
        headers.push(("anthropic-version", "2023-06-01".into()));
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for bad in ["{not json", "[1, 2]", "", "\u{0}"] {
            let r = send(&c, served.addr, "POST", path, &h, bad).await;
            assert_eq!(r.status, 400, "{provider:?} {bad:?}");
            let b = r.json();
            match provider {
                ProviderKind::Anthropic => assert_eq!(b["error"]["type"], "invalid_request_error"),
                ProviderKind::Gemini => assert_eq!(b["error"]["status"], "INVALID_ARGUMENT"),
                _ => assert_eq!(b["error"]["type"], "invalid_request_error"),
            }
        }
        let r = send(&c, served.addr, "GET", path, &h, "").await;
        assert_eq!(r.status, 405, "{provider:?}");
        // Missing required fields.
        let r = post(&c, served.addr, path, &h, &json!({"model": "m"})).await;
        assert_eq!(r.status, 400, "{provider:?}");
    }
    let h = [("authorization", auth.as_str())];
    let r = send(&c, served.addr, "POST", "/v1/files", &h, "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Invalid URL (POST /v1/files)");
    let r = send(&c, served.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"].is_string());
    assert_eq!(mock.last_request().expect("recorded").provider, None);
    let r = send(
        &c,
        served.addr,
        "POST",
        "/v1beta/models/g:nope",
        &[("x-goog-api-key", KEY)],
        "{}",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    let r = send(
        &c,
        served.addr,
        "POST",
        "/v1/messages/batches",
        &[("x-api-key", KEY)],
        "{}",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");

    // A body over the limit is refused without being read whole.
    let big = vec![b' '; tollgate_harness::mock::llm::MAX_BODY_BYTES + 1];
    let r = send(&c, served.addr, "POST", "/v1/chat/completions", &h, big).await;
    assert_eq!(r.status, 413);
    // Non-UTF-8 header values don't hurt (raw HTTP/1.1: hyper's client
    // would refuse to send them).
    let mut raw = tokio::net::TcpStream::connect(served.addr)
        .await
        .expect("connect");
    raw.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\n\
          authorization: Bearer \xff\xfe\r\nx-odd: \x80\r\ncontent-length: 2\r\n\
          connection: close\r\n\r\n{}",
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    raw.read_to_end(&mut out).await.expect("read");
    assert!(
        out.starts_with(b"HTTP/1.1 401 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let req = mock.last_request().expect("recorded");
    assert_eq!(req.key.as_deref(), Some(&b"\xff\xfe"[..]));
    assert_eq!(req.header("x-odd"), Some(&b"\x80"[..]));
    // Still serving.
    let r = post(
        &c,
        served.addr,
        "/v1/chat/completions",
        &h,
        &body_for(ProviderKind::OpenAi),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let (_mock, served) = start().await;
    let addr = served.addr;
    assert_eq!(served.url(), format!("http://{addr}"));
    served.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let (_mock, served) = start().await;
    let addr = served.addr;
    drop(served);
    assert!(
        common::poll_until_async(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await,
        "still listening 5 s after drop"
    );
}

// ----------------------------------------------------------- official SDKs

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TOLLGATE_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdks_work_against_the_mock() {
    let python = python();
    assert!(
        python.exists(),
        "no Python at {} for the SDK check: run `make venv` (or set TOLLGATE_PYTHON)",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_mock_llm.py");
    let (mock, served) = start().await;
    let url = served.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .arg(&url)
            .arg(KEY)
            .output()
    })
    .await
    .expect("join")
    .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("SDK checks passed"), "{stdout}");
    println!("{stdout}{stderr}");
    // Every provider was reached, streaming included, through its own path.
    let counts = mock.counts();
    for p in [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::AzureOpenAi,
    ] {
        assert!(counts.for_provider(p) > 0, "{p:?}: {counts:?}");
    }
    assert!(counts.streams >= 5, "{counts:?}");
    assert!(counts.unauthorized >= 4, "{counts:?}");
    assert_eq!(counts.unrouted, 0, "{counts:?}");
    let reqs = mock.requests();
    // google-genai 3.x speaks v1 by default; the script also asks for v1beta.
    for prefix in ["/v1/models/", "/v1beta/models/"] {
        let stream = format!("{prefix}gemini-2.5-flash:streamGenerateContent?alt=sse");
        assert!(
            reqs.iter()
                .any(|r| r.path == stream && r.stream && r.accepted),
            "no {stream}"
        );
    }
    assert!(reqs
        .iter()
        .filter(|r| r.provider == Some(ProviderKind::Anthropic))
        .all(|r| r.header("anthropic-version").is_some()));
}
