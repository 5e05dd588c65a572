//! Anthropic's bodies: Messages (whole and streamed), token counting, the
//! model list, and errors.
//!
//! Job: validate the fields the mock needs and render replies the official
//! `anthropic` SDK parses (`messages.create`, `messages.stream`), with
//! realistic `usage`: `input_tokens`, `output_tokens`,
//! `cache_creation_input_tokens`, `cache_read_input_tokens`.
//!
//! A stream is, in order: `message_start` (with `usage.input_tokens`),
//! `content_block_start`, `ping`, one `content_block_delta` (`text_delta`)
//! per word, `content_block_stop`, `message_delta` (with the cumulative
//! `usage.output_tokens`), `message_stop`.
//!
//! Invariants:
//! - `model`, `messages` (non-empty) and `max_tokens` are required, as in
//!   the real API; the reply never exceeds `max_tokens` words.
//! - Errors are `{"type":"error","error":{"type","message"}}` and never echo
//!   a credential (unless asked to: `Failure::KeyEchoed`).
//! - Pure: the request's JSON in, a [`Content`] out.

use serde_json::{json, Map, Value};

use super::model::{Completion, Prompt};
use super::sse::{self, Content};
use super::Failure;

type Object = Map<String, Value>;

/// The input side of a Messages request: model and prompt.
fn prompt(req: &Object) -> Result<(&str, Prompt<'_>), Failure> {
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        _ => return Err(Failure::BadRequest("model: Field required".into())),
    };
    let Some(Value::Array(messages)) = req.get("messages") else {
        return Err(Failure::BadRequest("messages: Field required".into()));
    };
    if messages.is_empty() {
        return Err(Failure::BadRequest(
            "messages: at least one message is required".into(),
        ));
    }
    let mut prompt = Prompt::default();
    if let Some(system) = req.get("system") {
        prompt.add_content(system, false);
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(Failure::BadRequest(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        match m.get("content") {
            Some(content) => prompt.add_content(content, role == Some("user")),
            None => {
                return Err(Failure::BadRequest(format!(
                    "messages.{i}.content: Field required"
                )))
            }
        }
    }
    Ok((model, prompt))
}

/// `POST /v1/messages`.
pub(crate) fn messages(req: &Object, seq: u64) -> Result<Content, Failure> {
    let (model, prompt) = prompt(req)?;
    let max_tokens = match req.get("max_tokens") {
        Some(v) => v.as_u64().ok_or_else(|| {
            Failure::BadRequest("max_tokens: Input should be a valid integer".into())
        })?,
        None => return Err(Failure::BadRequest("max_tokens: Field required".into())),
    };
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Failure::BadRequest(
                "stream: Input should be a valid boolean".into(),
            ))
        }
    };
    let c = Completion::new(&prompt, Some(max_tokens));
    let id = format!("msg_mock{seq:08}");
    let stop_reason = if c.truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    let usage = |output_tokens: u64| {
        json!({
            "input_tokens": c.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard"
        })
    };
    let message = |content: Value, stop: Value, usage: Value| {
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": usage
        })
    };

    if !stream {
        return Ok(Content::json(&message(
            json!([{"type": "text", "text": c.text()}]),
            Value::from(stop_reason),
            usage(c.completion_tokens()),
        )));
    }

    let mut events = Vec::with_capacity(c.pieces().len() + 6);
    let mut push = |name: &str, v: Value| events.push(sse::event(name, &v));
    // The real API reports one output token before any is generated.
    push(
        "message_start",
        json!({"type": "message_start", "message": message(json!([]), Value::Null, usage(1))}),
    );
    push(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    push("ping", json!({"type": "ping"}));
    for p in c.pieces() {
        push(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
        );
    }
    push(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    push(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {
                "input_tokens": c.prompt_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": c.completion_tokens()
            }
        }),
    );
    push("message_stop", json!({"type": "message_stop"}));
    Ok(Content::Sse(events))
}

/// `POST /v1/messages/count_tokens`.
pub(crate) fn count_tokens(req: &Object) -> Result<Content, Failure> {
    let (_, prompt) = prompt(req)?;
    Ok(Content::json(&json!({"input_tokens": prompt.words})))
}

/// Model ids `GET /v1/models` lists for Anthropic.
pub(crate) const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
];

/// `GET /v1/models` (with Anthropic's headers).
pub(crate) fn models() -> Content {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, name)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    Content::json(&json!({
        "data": data,
        "has_more": false,
        "first_id": MODELS.first().map(|m| m.0),
        "last_id": MODELS.last().map(|m| m.0)
    }))
}

/// `{"type":"error","error":{"type","message"}}` for `f`.
pub(crate) fn error(f: &Failure) -> Content {
    let (kind, message) = match f {
        Failure::Unauthorized(reason) => (
            "authentication_error",
            format!("invalid x-api-key ({reason})"),
        ),
        Failure::BadRequest(m) => ("invalid_request_error", m.clone()),
        Failure::NotFound => ("not_found_error", "Not found".to_owned()),
        Failure::MethodNotAllowed => ("invalid_request_error", "Method not allowed".to_owned()),
        Failure::TooLarge => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.".to_owned(),
        ),
        Failure::KeyEchoed(key) => ("authentication_error", format!("invalid x-api-key: {key}")),
    };
    Content::json(&json!({"type": "error", "error": {"type": kind, "message": message}}))
}
