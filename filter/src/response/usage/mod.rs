//! Token usage read from provider responses, per provider dialect, from a
//! whole JSON body or accumulated over a stream's events.
//!
//! Every dialect is mapped onto one [`Usage`] whose fields mean the same for
//! every provider: `input` counts all prompt tokens (cached ones included),
//! `output` all generated tokens (reasoning included), and `cached_input` and
//! `reasoning` are parts of those. Invariants:
//! - reading never fails as a whole because of one field: a count that is not
//!   a non-negative integer that fits `u64` (a string, a float such as
//!   `12.0`, an exponent, a negative, `null`) and an object that is not an
//!   object are read as absent, and the other counts still count; unknown
//!   fields are skipped without being stored;
//! - cumulative counters (Anthropic `message_delta`, Gemini `usageMetadata`)
//!   are never summed across events: for each count the last value reported
//!   wins; for OpenAI dialects the last non-null `usage` object wins whole;
//! - `total` is the provider's when it reports one, else `input + output`
//!   when both are known (sums saturate, never overflow);
//! - a usage object with no readable count is treated as absent, so
//!   `Some(usage)` always carries at least one count;
//! - a document that is not one JSON object (for Gemini, or one JSON array)
//!   is refused as a whole, giving `None` for a body and no update for an
//!   event; so is a document with a duplicated key among the fields read, in
//!   an object that is read (keys are compared after decoding escapes, so
//!   `"us\u0061ge"` is `"usage"`); a key repeated among skipped fields is
//!   not checked.
//!
//! The JSON is read by [`reader`], a pull reader that visits only the
//! objects on a dialect's field paths and skips everything else without
//! recursion; `tests.rs` holds the recorded responses and hostile inputs.
//!
//! Only [`EventKind::UsageOnly`] marks an event that may be removed from the
//! client's stream: an OpenAI chat or completions chunk with an empty
//! `choices` array and a `usage` object, which the provider sends only when
//! `stream_options.include_usage` is on.

use super::sse::SseEvent;

mod reader;
use reader::{read, Value};

/// Token counts of one response; `None` means not reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached and cache-written ones included (OpenAI
    /// `prompt_tokens`; Anthropic input + cache creation + cache read).
    pub input: Option<u64>,
    /// All generated tokens, reasoning included (Gemini candidates +
    /// thoughts).
    pub output: Option<u64>,
    /// The part of `input` read from the provider's prompt cache.
    pub cached_input: Option<u64>,
    /// The part of `output` spent on reasoning (thinking) tokens.
    pub reasoning: Option<u64>,
    /// All tokens: the provider's total, else `input + output`.
    pub total: Option<u64>,
}

/// The shape of a provider's response, which says where usage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI `/v1/chat/completions`, legacy `/v1/completions`, and Azure
    /// OpenAI's equivalents.
    OpenAiChat,
    /// OpenAI `/v1/responses`.
    OpenAiResponses,
    /// OpenAI `/v1/embeddings` (no output tokens).
    OpenAiEmbeddings,
    /// Anthropic `/v1/messages`.
    Anthropic,
    /// Gemini `:generateContent` and `:streamGenerateContent` (SSE or JSON
    /// array).
    Gemini,
}

/// What an event of a stream is, for the caller deciding to drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An OpenAI chat chunk that carries only usage (empty `choices`, a
    /// `usage` object): present only because `include_usage` was on.
    UsageOnly,
    /// Any other event.
    Other,
}

/// Usage from a whole non-streamed JSON response body; `None` when it carries
/// none or is not JSON. For Gemini a JSON array of stream chunks (what
/// `:streamGenerateContent` returns without `alt=sse`) is read like a stream.
pub fn from_json(dialect: Dialect, body: &[u8]) -> Option<Usage> {
    match dialect {
        Dialect::OpenAiChat => openai_usage(&read(body, OPENAI_CHAT)?),
        Dialect::OpenAiEmbeddings => embeddings_usage(&read(body, OPENAI_EMBEDDINGS)?),
        Dialect::OpenAiResponses => openai_usage(&read(body, OPENAI_RESPONSES_BODY)?),
        Dialect::Anthropic => AnthropicCounts::read(&read(body, ANTHROPIC_BODY)?).usage(),
        Dialect::Gemini if first_non_space(body) == Some(b'[') => gemini_array(body),
        Dialect::Gemini => GeminiCounts::read(&read(body, GEMINI)?).usage(),
    }
}

/// Usage accumulated over a stream's events (feed it every dispatched event).
#[derive(Debug, Clone)]
pub struct StreamUsage {
    state: StreamState,
}

/// What a stream has reported so far, per dialect.
#[derive(Debug, Clone, Copy)]
enum StreamState {
    /// The last readable `usage` object.
    OpenAiChat(Option<Usage>),
    /// The last readable `response.usage` object.
    OpenAiResponses(Option<Usage>),
    /// The last readable `usage` object.
    OpenAiEmbeddings(Option<Usage>),
    /// Each count's last reported value.
    Anthropic(AnthropicCounts),
    /// Each count's last reported value.
    Gemini(GeminiCounts),
}

impl StreamUsage {
    /// Nothing seen yet, for a stream in `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        let state = match dialect {
            Dialect::OpenAiChat => StreamState::OpenAiChat(None),
            Dialect::OpenAiResponses => StreamState::OpenAiResponses(None),
            Dialect::OpenAiEmbeddings => StreamState::OpenAiEmbeddings(None),
            Dialect::Anthropic => StreamState::Anthropic(AnthropicCounts::default()),
            Dialect::Gemini => StreamState::Gemini(GeminiCounts::default()),
        };
        StreamUsage { state }
    }

    /// Reads one event's usage, and says whether it is a usage-only chunk.
    pub fn on_event(&mut self, event: &SseEvent<'_>) -> EventKind {
        let data = event.data;
        match &mut self.state {
            StreamState::OpenAiChat(last) => {
                let Some(values) = read(data, OPENAI_CHAT) else {
                    return EventKind::Other;
                };
                if values.get(CHAT_USAGE) != Some(&Value::Object) {
                    return EventKind::Other;
                }
                if let Some(usage) = openai_usage(&values) {
                    *last = Some(usage);
                }
                if values.get(CHAT_CHOICES) == Some(&Value::EmptyArray) {
                    EventKind::UsageOnly
                } else {
                    EventKind::Other
                }
            }
            StreamState::OpenAiResponses(last) => {
                if let Some(usage) =
                    read(data, OPENAI_RESPONSES_EVENT).and_then(|v| openai_usage(&v))
                {
                    *last = Some(usage);
                }
                EventKind::Other
            }
            StreamState::OpenAiEmbeddings(last) => {
                if let Some(usage) =
                    read(data, OPENAI_EMBEDDINGS).and_then(|v| embeddings_usage(&v))
                {
                    *last = Some(usage);
                }
                EventKind::Other
            }
            StreamState::Anthropic(counts) => {
                // message_start nests usage in `message`; message_delta has it
                // at the top. Either may come with or without an `event:`
                // line, so the shape decides, not the name.
                if let Some(values) = read(data, ANTHROPIC_EVENT) {
                    let (message, top) = values.split_at(ANTHROPIC_FIELDS);
                    counts.update(AnthropicCounts::read(message));
                    counts.update(AnthropicCounts::read(top));
                }
                EventKind::Other
            }
            StreamState::Gemini(counts) => {
                if let Some(values) = read(data, GEMINI) {
                    counts.update(GeminiCounts::read(&values));
                }
                EventKind::Other
            }
        }
    }

    /// The usage learnt so far; `None` when no event reported any.
    pub fn usage(&self) -> Option<Usage> {
        match self.state {
            StreamState::OpenAiChat(last)
            | StreamState::OpenAiResponses(last)
            | StreamState::OpenAiEmbeddings(last) => last,
            StreamState::Anthropic(counts) => counts.usage(),
            StreamState::Gemini(counts) => counts.usage(),
        }
    }
}

/// The first byte that is not JSON whitespace.
fn first_non_space(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// `total` filled from `input + output` when not reported; `None` when no
/// count is known.
fn completed(mut usage: Usage) -> Option<Usage> {
    if usage.total.is_none() {
        if let (Some(input), Some(output)) = (usage.input, usage.output) {
            usage.total = Some(input.saturating_add(output));
        }
    }
    let any = [
        usage.input,
        usage.output,
        usage.cached_input,
        usage.reasoning,
        usage.total,
    ]
    .iter()
    .any(Option::is_some);
    any.then_some(usage)
}

/// The sum of the known parts; `None` when none is known.
fn sum_known(parts: &[Option<u64>]) -> Option<u64> {
    parts.iter().flatten().fold(None, |sum: Option<u64>, &n| {
        Some(sum.unwrap_or(0).saturating_add(n))
    })
}

/// `newer` where it is known, else `older`.
fn latest(older: Option<u64>, newer: Option<u64>) -> Option<u64> {
    newer.or(older)
}

/// The count read at `values[i]`, if any.
fn count(values: &[Value], i: usize) -> Option<u64> {
    match values.get(i) {
        Some(Value::Count(n)) => Some(*n),
        _ => None,
    }
}

// --- OpenAI chat, completions, Azure, Responses ---------------------------
//
// The OpenAI tables list the counts in one order: input, output, total,
// cached input, reasoning.

/// A chat or completions body or chunk: its usage counts, then the `usage`
/// object itself and `choices` (for the usage-only chunk).
const OPENAI_CHAT: &[&[&str]] = &[
    &["usage", "prompt_tokens"],
    &["usage", "completion_tokens"],
    &["usage", "total_tokens"],
    &["usage", "prompt_tokens_details", "cached_tokens"],
    &["usage", "completion_tokens_details", "reasoning_tokens"],
    &["usage"],
    &["choices"],
];
/// Where [`OPENAI_CHAT`] has the `usage` object.
const CHAT_USAGE: usize = 5;
/// Where [`OPENAI_CHAT`] has `choices`.
const CHAT_CHOICES: usize = 6;

/// A `/v1/responses` body.
const OPENAI_RESPONSES_BODY: &[&[&str]] = &[
    &["usage", "input_tokens"],
    &["usage", "output_tokens"],
    &["usage", "total_tokens"],
    &["usage", "input_tokens_details", "cached_tokens"],
    &["usage", "output_tokens_details", "reasoning_tokens"],
];

/// A `/v1/responses` stream event, which nests the response.
const OPENAI_RESPONSES_EVENT: &[&[&str]] = &[
    &["response", "usage", "input_tokens"],
    &["response", "usage", "output_tokens"],
    &["response", "usage", "total_tokens"],
    &["response", "usage", "input_tokens_details", "cached_tokens"],
    &[
        "response",
        "usage",
        "output_tokens_details",
        "reasoning_tokens",
    ],
];

/// Usage from values read in the OpenAI order.
fn openai_usage(values: &[Value]) -> Option<Usage> {
    completed(Usage {
        input: count(values, 0),
        output: count(values, 1),
        total: count(values, 2),
        cached_input: count(values, 3),
        reasoning: count(values, 4),
    })
}

/// An embeddings body or chunk: prompt tokens, then total.
const OPENAI_EMBEDDINGS: &[&[&str]] = &[&["usage", "prompt_tokens"], &["usage", "total_tokens"]];

fn embeddings_usage(values: &[Value]) -> Option<Usage> {
    let input = count(values, 0);
    completed(Usage {
        input,
        output: input.map(|_| 0),
        total: count(values, 1),
        ..Usage::default()
    })
}

// --- Anthropic ----------------------------------------------------------

/// How many counts an Anthropic usage object has.
const ANTHROPIC_FIELDS: usize = 4;

/// A message body: input, output, cache creation, cache read.
const ANTHROPIC_BODY: &[&[&str]] = &[
    &["usage", "input_tokens"],
    &["usage", "output_tokens"],
    &["usage", "cache_creation_input_tokens"],
    &["usage", "cache_read_input_tokens"],
];

/// A stream event: `message_start` has `message.usage`, `message_delta` a
/// top-level `usage`; each in the order of [`ANTHROPIC_BODY`].
const ANTHROPIC_EVENT: &[&[&str]] = &[
    &["message", "usage", "input_tokens"],
    &["message", "usage", "output_tokens"],
    &["message", "usage", "cache_creation_input_tokens"],
    &["message", "usage", "cache_read_input_tokens"],
    &["usage", "input_tokens"],
    &["usage", "output_tokens"],
    &["usage", "cache_creation_input_tokens"],
    &["usage", "cache_read_input_tokens"],
];

/// Anthropic's counts as reported (input excludes cache reads and writes).
#[derive(Debug, Default, Clone, Copy)]
struct AnthropicCounts {
    input: Option<u64>,
    output: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
}

impl AnthropicCounts {
    /// The counts read in the order of [`ANTHROPIC_BODY`].
    fn read(values: &[Value]) -> Self {
        AnthropicCounts {
            input: count(values, 0),
            output: count(values, 1),
            cache_creation: count(values, 2),
            cache_read: count(values, 3),
        }
    }

    /// Takes each count `newer` reports (cumulative: replace, never add).
    fn update(&mut self, newer: AnthropicCounts) {
        self.input = latest(self.input, newer.input);
        self.output = latest(self.output, newer.output);
        self.cache_creation = latest(self.cache_creation, newer.cache_creation);
        self.cache_read = latest(self.cache_read, newer.cache_read);
    }

    fn usage(self) -> Option<Usage> {
        completed(Usage {
            input: sum_known(&[self.input, self.cache_creation, self.cache_read]),
            output: self.output,
            cached_input: self.cache_read,
            reasoning: None,
            total: None,
        })
    }
}

// --- Gemini ---------------------------------------------------------------

/// A response or stream chunk: prompt, candidates, total, cached, thoughts.
const GEMINI: &[&[&str]] = &[
    &["usageMetadata", "promptTokenCount"],
    &["usageMetadata", "candidatesTokenCount"],
    &["usageMetadata", "totalTokenCount"],
    &["usageMetadata", "cachedContentTokenCount"],
    &["usageMetadata", "thoughtsTokenCount"],
];

/// Gemini's counts as reported (candidates exclude thoughts).
#[derive(Debug, Default, Clone, Copy)]
struct GeminiCounts {
    prompt: Option<u64>,
    candidates: Option<u64>,
    total: Option<u64>,
    cached: Option<u64>,
    thoughts: Option<u64>,
}

impl GeminiCounts {
    /// The counts read in the order of [`GEMINI`].
    fn read(values: &[Value]) -> Self {
        GeminiCounts {
            prompt: count(values, 0),
            candidates: count(values, 1),
            total: count(values, 2),
            cached: count(values, 3),
            thoughts: count(values, 4),
        }
    }

    /// Takes each count `newer` reports (cumulative: replace, never add).
    fn update(&mut self, newer: GeminiCounts) {
        self.prompt = latest(self.prompt, newer.prompt);
        self.candidates = latest(self.candidates, newer.candidates);
        self.total = latest(self.total, newer.total);
        self.cached = latest(self.cached, newer.cached);
        self.thoughts = latest(self.thoughts, newer.thoughts);
    }

    fn usage(self) -> Option<Usage> {
        completed(Usage {
            input: self.prompt,
            output: sum_known(&[self.candidates, self.thoughts]),
            cached_input: self.cached,
            reasoning: self.thoughts,
            total: self.total,
        })
    }
}

/// A JSON array of Gemini chunks, read like a stream: each count's last
/// value wins. Elements that are not objects are skipped.
fn gemini_array(json: &[u8]) -> Option<Usage> {
    let mut counts = GeminiCounts::default();
    reader::read_each(json, GEMINI, |values| {
        counts.update(GeminiCounts::read(values))
    })?;
    counts.usage()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
