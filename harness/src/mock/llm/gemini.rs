//! Gemini's (Generative Language API, `v1` and `v1beta`) bodies: generateContent,
//! streamGenerateContent, countTokens, embedContent, batchEmbedContents, the
//! model list, and errors.
//!
//! Job: validate the fields the mock needs and render replies the official
//! `google-genai` SDK parses, with realistic `usageMetadata`
//! (`promptTokenCount`, `candidatesTokenCount`, `totalTokenCount`).
//!
//! A stream is one chunk per word, each a whole `GenerateContentResponse`
//! whose `usageMetadata` counts the words so far, so the last one holds the
//! totals and the only `finishReason`. With `alt=sse` the chunks are
//! `data: {...}` events; without it they form one JSON array, streamed.
//!
//! Invariants:
//! - `contents` (non-empty) is required; `generationConfig.maxOutputTokens`
//!   caps the reply (`finishReason: MAX_TOKENS`).
//! - Errors are `{"error":{"code","message","status"}}` and never echo a
//!   credential (unless asked to: `Failure::KeyEchoed`).
//! - Pure: the request's JSON in, a [`Content`] out.

use serde_json::{json, Map, Value};

use super::embedding::{self, DEFAULT_DIMENSIONS, MAX_DIMENSIONS};
use super::model::{Completion, Prompt};
use super::sse::{self, Content};
use super::Failure;

type Object = Map<String, Value>;

/// The prompt of a request with `contents` (and maybe `systemInstruction`).
fn prompt(req: &Object) -> Result<Prompt<'_>, Failure> {
    let Some(Value::Array(contents)) = req.get("contents") else {
        return Err(Failure::BadRequest(
            "* GenerateContentRequest.contents: contents is not specified".into(),
        ));
    };
    if contents.is_empty() {
        return Err(Failure::BadRequest(
            "* GenerateContentRequest.contents: contents is not specified".into(),
        ));
    }
    let mut prompt = Prompt::default();
    if let Some(parts) = req.get("systemInstruction").and_then(|s| s.get("parts")) {
        prompt.add_content(parts, false);
    }
    for c in contents {
        let from_user = c
            .get("role")
            .and_then(Value::as_str)
            .is_none_or(|r| r == "user");
        if let Some(parts) = c.get("parts") {
            prompt.add_content(parts, from_user);
        }
    }
    Ok(prompt)
}

/// `:generateContent` (`stream` is `None`) or `:streamGenerateContent`
/// (`Some(true)` with `alt=sse`).
pub(crate) fn generate(
    req: &Object,
    model: &str,
    seq: u64,
    stream: Option<bool>,
) -> Result<Content, Failure> {
    let prompt = prompt(req)?;
    let cap = match req
        .get("generationConfig")
        .and_then(|g| g.get("maxOutputTokens"))
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            Failure::BadRequest(
                "generationConfig.maxOutputTokens must be a non-negative integer".into(),
            )
        })?),
    };
    let c = Completion::new(&prompt, cap);
    let response_id = format!("mock{seq:08}");
    let finish = if c.truncated { "MAX_TOKENS" } else { "STOP" };
    let chunk = |text: &str, output_tokens: u64, finish: Option<&str>| {
        let mut candidate = json!({
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0
        });
        if let Some(f) = finish {
            candidate["finishReason"] = Value::from(f);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": c.prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": c.prompt_tokens + output_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": c.prompt_tokens}]
            },
            "modelVersion": model,
            "responseId": response_id
        })
    };
    let Some(sse) = stream else {
        return Ok(Content::json(&chunk(
            c.text(),
            c.completion_tokens(),
            Some(finish),
        )));
    };
    let n = c.pieces().len();
    let mut chunks: Vec<Value> = c
        .pieces()
        .enumerate()
        .map(|(i, p)| chunk(p, i as u64 + 1, (i + 1 == n).then_some(finish)))
        .collect();
    if chunks.is_empty() {
        chunks.push(chunk("", 0, Some(finish)));
    }
    Ok(if sse {
        Content::Sse(chunks.iter().map(sse::data).collect())
    } else {
        Content::JsonStream(sse::json_array_pieces(&chunks))
    })
}

/// `:countTokens`, with `contents` or a whole `generateContentRequest`.
pub(crate) fn count_tokens(req: &Object) -> Result<Content, Failure> {
    let words = match req.get("generateContentRequest") {
        Some(Value::Object(inner)) => prompt(inner)?.words,
        _ => prompt(req)?.words,
    };
    Ok(Content::json(&json!({
        "totalTokens": words,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": words}]
    })))
}

/// The vector for one `EmbedContentRequest`.
fn embed_one(req: &Value) -> Result<Value, Failure> {
    let Some(parts) = req.get("content").and_then(|c| c.get("parts")) else {
        return Err(Failure::BadRequest(
            "* EmbedContentRequest.content: content is not specified".into(),
        ));
    };
    let mut text = String::new();
    super::model::each_text(parts, |t| text.push_str(t));
    let dims = match req.get("outputDimensionality") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MAX_DIMENSIONS as u64).contains(&d) => d as usize,
            _ => {
                return Err(Failure::BadRequest(format!(
                    "outputDimensionality must be an integer from 1 to {MAX_DIMENSIONS}"
                )))
            }
        },
    };
    Ok(json!({"values": embedding::as_json(&embedding::vector(&text, dims))}))
}

/// `:embedContent`.
pub(crate) fn embed(req: &Object) -> Result<Content, Failure> {
    let e = embed_one(&Value::Object(req.clone()))?;
    Ok(Content::json(&json!({"embedding": e})))
}

/// `:batchEmbedContents`.
pub(crate) fn batch_embed(req: &Object) -> Result<Content, Failure> {
    let Some(Value::Array(requests)) = req.get("requests") else {
        return Err(Failure::BadRequest(
            "* BatchEmbedContentsRequest.requests: requests is not specified".into(),
        ));
    };
    let embeddings = requests
        .iter()
        .map(embed_one)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Content::json(&json!({"embeddings": embeddings})))
}

/// Model names `GET /v1beta/models` lists.
pub(crate) const MODELS: &[(&str, &str)] = &[
    ("gemini-2.5-flash", "Gemini 2.5 Flash"),
    ("gemini-embedding-001", "Gemini Embedding 001"),
];

/// `GET /v1beta/models`.
pub(crate) fn models() -> Content {
    let models: Vec<Value> = MODELS
        .iter()
        .map(|(id, name)| {
            json!({
                "name": format!("models/{id}"),
                "version": "001",
                "displayName": name,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["generateContent", "countTokens", "embedContent"]
            })
        })
        .collect();
    Content::json(&json!({"models": models}))
}

/// `{"error":{"code","message","status"}}` for `f`.
pub(crate) fn error(f: &Failure) -> Content {
    let (message, status) = match f {
        Failure::Unauthorized(reason) => (
            format!("API key not valid. Please pass a valid API key. ({reason})"),
            "UNAUTHENTICATED",
        ),
        Failure::BadRequest(m) => (m.clone(), "INVALID_ARGUMENT"),
        Failure::NotFound => ("Requested entity was not found.".to_owned(), "NOT_FOUND"),
        Failure::MethodNotAllowed => ("Method not allowed.".to_owned(), "UNIMPLEMENTED"),
        Failure::TooLarge => (
            "Request payload size exceeds the limit.".to_owned(),
            "INVALID_ARGUMENT",
        ),
        Failure::KeyEchoed(key) => (
            format!("API key not valid: {key}. Please pass a valid API key."),
            "UNAUTHENTICATED",
        ),
    };
    Content::json(&json!({"error": {"code": f.status(), "message": message, "status": status}}))
}
