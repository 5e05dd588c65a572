//! OpenAI's (and Azure OpenAI's) bodies: Chat Completions, Responses,
//! Embeddings, the model list, and errors.
//!
//! Job: validate the fields the mock needs and render replies the official
//! `openai` SDK parses, with realistic `usage`:
//! - Chat: `usage.prompt_tokens`, `completion_tokens`, `total_tokens`.
//!   Streamed as `data: {chunk}` events ending `data: [DONE]`; with
//!   `stream_options.include_usage` every chunk has `"usage": null` and a
//!   last chunk with empty `choices` carries the usage.
//! - Responses: `usage.input_tokens`, `output_tokens`, `total_tokens`.
//!   Streamed as named events from `response.created` to
//!   `response.completed`, which carries the usage.
//! - Embeddings: floats, or base64 when `encoding_format` is `base64` (the
//!   SDK's default).
//!
//! Invariants:
//! - Azure OpenAI differs only in naming the deployment in the path; its
//!   body's `model` is optional and defaults to the deployment.
//! - Errors are `{"error":{"message","type","param","code"}}` and never
//!   echo a credential (unless asked to: `Failure::KeyEchoed`) or the query
//!   string.
//! - Pure: the request's JSON in, a [`Content`] out.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::embedding::{self, DEFAULT_DIMENSIONS, MAX_DIMENSIONS};
use super::model::{count_words, Completion, Prompt};
use super::sse::{self, Content};
use super::Failure;
use crate::mock::time::MOCK_EPOCH_UNIX_S;

type Object = Map<String, Value>;

/// The model named in the body, or Azure's deployment.
fn model<'a>(req: &'a Object, deployment: Option<&'a str>) -> Result<&'a str, Failure> {
    match (req.get("model"), deployment) {
        (Some(Value::String(m)), _) if !m.is_empty() => Ok(m),
        (None | Some(Value::Null), Some(d)) => Ok(d),
        (None | Some(Value::Null), None) => Err(Failure::BadRequest(
            "you must provide a model parameter".into(),
        )),
        _ => Err(Failure::BadRequest(
            "'model' must be a non-empty string".into(),
        )),
    }
}

/// The first of `fields` present, as a token cap.
fn cap(req: &Object, fields: &[&str]) -> Result<Option<u64>, Failure> {
    for f in fields {
        match req.get(*f) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v.as_u64().map(Some).ok_or_else(|| {
                    Failure::BadRequest(format!("'{f}' must be a non-negative integer"))
                })
            }
        }
    }
    Ok(None)
}

fn flag(req: &Object, field: &str) -> Result<bool, Failure> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Failure::BadRequest(format!("'{field}' must be a boolean"))),
    }
}

// ------------------------------------------------------------ chat completions

/// `POST /v1/chat/completions` (and Azure's deployment form). The hot path
/// of load benchmarks: replies are typed structs serialised straight to
/// bytes, not built as `Value`s.
pub(crate) fn chat(req: &Object, deployment: Option<&str>, seq: u64) -> Result<Content, Failure> {
    let model = model(req, deployment)?;
    let Some(Value::Array(messages)) = req.get("messages") else {
        return Err(Failure::BadRequest(
            "Missing required parameter: 'messages'.".into(),
        ));
    };
    if messages.is_empty() {
        return Err(Failure::BadRequest("'messages' must not be empty".into()));
    }
    let mut prompt = Prompt::default();
    for (i, m) in messages.iter().enumerate() {
        let Some(role) = m.get("role").and_then(Value::as_str) else {
            return Err(Failure::BadRequest(format!(
                "messages[{i}].role is required"
            )));
        };
        if let Some(content) = m.get("content") {
            prompt.add_content(content, role == "user");
        }
    }
    let c = Completion::new(&prompt, cap(req, &["max_completion_tokens", "max_tokens"])?);
    let id = format!("chatcmpl-mock{seq:08}");
    let finish_reason = if c.truncated { "length" } else { "stop" };
    let usage = ChatUsage {
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens(),
        total_tokens: c.total_tokens(),
        prompt_tokens_details: PromptTokensDetails::default(),
        completion_tokens_details: CompletionTokensDetails::default(),
    };

    if !flag(req, "stream")? {
        return Ok(Content::json(&ChatCompletion {
            id: &id,
            object: "chat.completion",
            created: MOCK_EPOCH_UNIX_S,
            model,
            choices: [ChatChoice {
                index: 0,
                message: ChatMessage {
                    role: "assistant",
                    content: c.text(),
                    refusal: None,
                    annotations: [],
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
            service_tier: "default",
            system_fingerprint: "fp_mock",
        }));
    }

    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: ChatDelta<'_>, finish_reason: Option<&str>| {
        sse::data(&ChatChunk {
            id: &id,
            object: "chat.completion.chunk",
            created: MOCK_EPOCH_UNIX_S,
            model,
            service_tier: "default",
            system_fingerprint: "fp_mock",
            choices: &[ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: include_usage.then_some(None),
        })
    };
    let mut events = Vec::with_capacity(c.pieces().len() + 4);
    events.push(chunk(
        ChatDelta {
            role: Some("assistant"),
            content: Some(""),
            refusal: Some(None),
        },
        None,
    ));
    for p in c.pieces() {
        events.push(chunk(
            ChatDelta {
                content: Some(p),
                ..ChatDelta::default()
            },
            None,
        ));
    }
    events.push(chunk(ChatDelta::default(), Some(finish_reason)));
    if include_usage {
        events.push(sse::data(&ChatChunk {
            id: &id,
            object: "chat.completion.chunk",
            created: MOCK_EPOCH_UNIX_S,
            model,
            service_tier: "default",
            system_fingerprint: "fp_mock",
            choices: &[],
            usage: Some(Some(usage)),
        }));
    }
    events.push(sse::done());
    Ok(Content::Sse(events))
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChatChoice<'a>; 1],
    usage: ChatUsage,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
    annotations: [(); 0],
}

#[derive(Serialize, Clone, Copy)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

#[derive(Serialize, Clone, Copy, Default)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize, Clone, Copy, Default)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null` on content chunks with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<ChatUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: ChatDelta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct ChatDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// `null` in the first chunk, absent after.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<()>>,
}

// ------------------------------------------------------------------- responses

/// `POST /v1/responses`.
pub(crate) fn responses(req: &Object, seq: u64) -> Result<Content, Failure> {
    let model = model(req, None)?;
    let mut prompt = Prompt::default();
    if let Some(instructions) = req.get("instructions").and_then(Value::as_str) {
        prompt.add(instructions);
    }
    match req.get("input") {
        Some(Value::String(s)) => prompt.add_user(s),
        Some(Value::Array(items)) => {
            for item in items {
                let from_user = item.get("role").and_then(Value::as_str) == Some("user");
                match item.get("content") {
                    Some(content) => prompt.add_content(content, from_user),
                    // Items other than messages (e.g. a tool's output).
                    None => {
                        if let Some(out) = item.get("output").and_then(Value::as_str) {
                            prompt.add(out);
                        }
                    }
                }
            }
        }
        None | Some(Value::Null) => {
            return Err(Failure::BadRequest(
                "Missing required parameter: 'input'.".into(),
            ))
        }
        Some(_) => {
            return Err(Failure::BadRequest(
                "'input' must be a string or an array".into(),
            ))
        }
    }
    let max_output_tokens = cap(req, &["max_output_tokens"])?;
    let c = Completion::new(&prompt, max_output_tokens);
    let resp_id = format!("resp_mock{seq:08}");
    let msg_id = format!("msg_mock{seq:08}");
    let text = c.text();
    let usage = json!({
        "input_tokens": c.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": c.completion_tokens(),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": c.total_tokens()
    });
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let message = |status: &str, content: Value| json!({"id": msg_id, "type": "message", "status": status, "role": "assistant", "content": content});
    let status = if c.truncated {
        "incomplete"
    } else {
        "completed"
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": resp_id,
            "object": "response",
            "created_at": MOCK_EPOCH_UNIX_S,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": if status == "incomplete" {
                json!({"reason": "max_output_tokens"})
            } else {
                Value::Null
            },
            "instructions": req.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": max_output_tokens,
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": req.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": req.get("store").and_then(Value::as_bool).unwrap_or(true),
            "temperature": req.get("temperature").and_then(Value::as_f64).unwrap_or(1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": req.get("top_p").and_then(Value::as_f64).unwrap_or(1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {}
        })
    };
    let done_message = message("completed", json!([part(text)]));

    if !flag(req, "stream")? {
        return Ok(Content::json(&response(
            status,
            json!([done_message]),
            usage,
        )));
    }

    let mut events = Vec::with_capacity(c.pieces().len() + 9);
    let mut n = 0u64;
    let mut push = |name: &str, mut v: Value| {
        v["type"] = Value::from(name);
        v["sequence_number"] = Value::from(n);
        n += 1;
        events.push(sse::event(name, &v));
    };
    let in_progress = response("in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": in_progress}));
    push("response.in_progress", json!({"response": in_progress}));
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("in_progress", json!([]))}),
    );
    let at = json!({"item_id": msg_id, "output_index": 0, "content_index": 0});
    let with = |extra: Value| {
        let mut v = at.clone();
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };
    push(
        "response.content_part.added",
        with(json!({"part": part("")})),
    );
    for p in c.pieces() {
        push(
            "response.output_text.delta",
            with(json!({"delta": p, "logprobs": []})),
        );
    }
    push(
        "response.output_text.done",
        with(json!({"text": text, "logprobs": []})),
    );
    push(
        "response.content_part.done",
        with(json!({"part": part(text)})),
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_message}),
    );
    let last = if c.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(
        last,
        json!({"response": response(status, json!([done_message]), usage)}),
    );
    Ok(Content::Sse(events))
}

// ------------------------------------------------------------------ embeddings

/// `POST /v1/embeddings` (and Azure's deployment form).
pub(crate) fn embeddings(req: &Object, deployment: Option<&str>) -> Result<Content, Failure> {
    let model = model(req, deployment)?;
    // (text to embed, tokens it counts as)
    let inputs: Vec<(String, u64)> = match req.get("input") {
        Some(Value::String(s)) => vec![(s.clone(), count_words(s))],
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => {
            vec![(Value::Array(items.clone()).to_string(), items.len() as u64)]
        }
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|it| match it {
                Value::String(s) => Ok((s.clone(), count_words(s))),
                Value::Array(toks) if toks.iter().all(Value::is_u64) => {
                    Ok((it.to_string(), toks.len() as u64))
                }
                _ => Err(Failure::BadRequest(
                    "'input' must be a string, an array of strings, or token arrays".into(),
                )),
            })
            .collect::<Result<_, _>>()?,
        None | Some(Value::Null) => {
            return Err(Failure::BadRequest(
                "Missing required parameter: 'input'.".into(),
            ))
        }
        Some(_) => {
            return Err(Failure::BadRequest(
                "'input' must be a string, an array of strings, or token arrays".into(),
            ))
        }
    };
    let dimensions = match req.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MAX_DIMENSIONS as u64).contains(&d) => d as usize,
            _ => {
                return Err(Failure::BadRequest(format!(
                    "'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}"
                )))
            }
        },
    };
    let base64 = match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(Failure::BadRequest(
                "'encoding_format' must be 'float' or 'base64'".into(),
            ))
        }
    };
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let v = embedding::vector(text, dimensions);
            let e = if base64 {
                Value::from(embedding::as_base64(&v))
            } else {
                embedding::as_json(&v)
            };
            json!({"object": "embedding", "index": i, "embedding": e})
        })
        .collect();
    Ok(Content::json(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    })))
}

// ---------------------------------------------------------------------- models

/// Model ids `GET /v1/models` lists.
pub(crate) const MODELS: &[&str] = &["gpt-4o-mini", "gpt-4.1", "text-embedding-3-small"];

/// `GET /v1/models`.
pub(crate) fn models() -> Content {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": MOCK_EPOCH_UNIX_S, "owned_by": "openai"}))
        .collect();
    Content::json(&json!({"object": "list", "data": data}))
}

// ---------------------------------------------------------------------- errors

/// `{"error":{"message","type","param","code"}}` for `f`; `path` is the
/// request path without its query.
pub(crate) fn error(f: &Failure, method: &str, path: &str) -> Content {
    let (message, kind, code) = match f {
        Failure::Unauthorized(reason) => (
            format!("Incorrect API key provided ({reason})."),
            "invalid_request_error",
            Value::from("invalid_api_key"),
        ),
        Failure::BadRequest(m) => (m.clone(), "invalid_request_error", Value::Null),
        Failure::NotFound => (
            format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
            Value::Null,
        ),
        Failure::MethodNotAllowed => (
            format!("Method not allowed ({method} {path})"),
            "invalid_request_error",
            Value::Null,
        ),
        Failure::TooLarge => (
            "Request too large.".to_owned(),
            "invalid_request_error",
            Value::from("request_too_large"),
        ),
        Failure::KeyEchoed(key) => (
            format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            Value::from("invalid_api_key"),
        ),
    };
    Content::json(&json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    }))
}
