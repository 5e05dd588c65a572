//! Token usage read from provider responses, per provider dialect, from a
//! whole JSON body or accumulated over a stream's events.
//!
//! Every dialect is mapped onto one [`Usage`] whose fields mean the same for
//! every provider: `input` counts all prompt tokens (cached ones included),
//! `output` all generated tokens (reasoning included), and `cached_input` and
//! `reasoning` are parts of those. Invariants:
//! - reading never fails as a whole because of one field: a count that is not
//!   a non-negative integer (a string, a float, a negative, `null`) and an
//!   object that is not an object are read as absent, and the other counts
//!   still count; unknown fields are skipped without being stored;
//! - cumulative counters (Anthropic `message_delta`, Gemini `usageMetadata`)
//!   are never summed across events: for each count the last value reported
//!   wins; for OpenAI dialects the last non-null `usage` object wins whole;
//! - `total` is the provider's when it reports one, else `input + output`
//!   when both are known (sums saturate, never overflow);
//! - a usage object with no readable count is treated as absent, so
//!   `Some(usage)` always carries at least one count;
//! - a JSON document with a duplicated key among the fields read is refused
//!   as a whole (serde's rule), giving `None` for a body and no update for an
//!   event.
//!
//! Only [`EventKind::UsageOnly`] marks an event that may be removed from the
//! client's stream: an OpenAI chat or completions chunk with an empty
//! `choices` array and a `usage` object, which the provider sends only when
//! `stream_options.include_usage` is on.

use core::fmt;
use core::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::sse::SseEvent;

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
        Dialect::OpenAiChat => parse::<OpenAiChatBody>(body)?.usage.0?.usage(),
        Dialect::OpenAiEmbeddings => parse::<EmbeddingsBody>(body)?.usage.0?.usage(),
        Dialect::OpenAiResponses => parse::<ResponsesBody>(body)?.usage.0?.usage(),
        Dialect::Anthropic => AnthropicCounts::from(parse::<AnthropicBody>(body)?.usage.0?).usage(),
        Dialect::Gemini => {
            if first_non_space(body) == Some(b'[') {
                let chunks: Vec<Lenient<GeminiBody>> = serde_json::from_slice(body).ok()?;
                let mut counts = GeminiCounts::default();
                for chunk in chunks.iter().filter_map(|c| c.0.as_ref()) {
                    if let Some(metadata) = chunk.usage_metadata.0 {
                        counts.update(metadata.counts());
                    }
                }
                counts.usage()
            } else {
                parse::<GeminiBody>(body)?
                    .usage_metadata
                    .0?
                    .counts()
                    .usage()
            }
        }
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
                let Some(chunk) = parse::<OpenAiChatBody>(data) else {
                    return EventKind::Other;
                };
                let Some(usage) = chunk.usage.0 else {
                    return EventKind::Other;
                };
                if let Some(usage) = usage.usage() {
                    *last = Some(usage);
                }
                if chunk.choices.0 {
                    EventKind::UsageOnly
                } else {
                    EventKind::Other
                }
            }
            StreamState::OpenAiResponses(last) => {
                let usage = parse::<ResponsesEvent>(data)
                    .and_then(|e| e.response.0)
                    .and_then(|r| r.usage.0)
                    .and_then(|u| u.usage());
                if usage.is_some() {
                    *last = usage;
                }
                EventKind::Other
            }
            StreamState::OpenAiEmbeddings(last) => {
                let usage = parse::<EmbeddingsBody>(data)
                    .and_then(|b| b.usage.0)
                    .and_then(|u| u.usage());
                if usage.is_some() {
                    *last = usage;
                }
                EventKind::Other
            }
            StreamState::Anthropic(counts) => {
                if let Some(event) = parse::<AnthropicEvent>(data) {
                    // message_start nests usage in `message`; message_delta
                    // has it at the top. Either may come with or without an
                    // `event:` line, so the shape decides, not the name.
                    if let Some(usage) = event.message.0.and_then(|m| m.usage.0) {
                        counts.update(AnthropicCounts::from(usage));
                    }
                    if let Some(usage) = event.usage.0 {
                        counts.update(AnthropicCounts::from(usage));
                    }
                }
                EventKind::Other
            }
            StreamState::Gemini(counts) => {
                if let Some(metadata) = parse::<GeminiBody>(data).and_then(|b| b.usage_metadata.0) {
                    counts.update(metadata.counts());
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

/// Parses a JSON document leniently: `None` unless it is a JSON object.
fn parse<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Option<T> {
    serde_json::from_slice::<Lenient<T>>(json).ok()?.0
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

// --- OpenAI chat, completions, Azure ------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct OpenAiChatBody {
    usage: Lenient<OpenAiChatUsage>,
    choices: EmptyArray,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct OpenAiChatUsage {
    prompt_tokens: Count,
    completion_tokens: Count,
    total_tokens: Count,
    prompt_tokens_details: Lenient<CachedDetails>,
    completion_tokens_details: Lenient<ReasoningDetails>,
}

impl OpenAiChatUsage {
    fn usage(self) -> Option<Usage> {
        completed(Usage {
            input: self.prompt_tokens.0,
            output: self.completion_tokens.0,
            cached_input: self.prompt_tokens_details.0.and_then(|d| d.cached_tokens.0),
            reasoning: self
                .completion_tokens_details
                .0
                .and_then(|d| d.reasoning_tokens.0),
            total: self.total_tokens.0,
        })
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct CachedDetails {
    cached_tokens: Count,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct ReasoningDetails {
    reasoning_tokens: Count,
}

// --- OpenAI embeddings ----------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct EmbeddingsBody {
    usage: Lenient<EmbeddingsUsage>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct EmbeddingsUsage {
    prompt_tokens: Count,
    total_tokens: Count,
}

impl EmbeddingsUsage {
    fn usage(self) -> Option<Usage> {
        let input = self.prompt_tokens.0;
        completed(Usage {
            input,
            output: input.map(|_| 0),
            total: self.total_tokens.0,
            ..Usage::default()
        })
    }
}

// --- OpenAI Responses -------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponsesEvent {
    response: Lenient<ResponsesBody>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponsesBody {
    usage: Lenient<ResponsesUsage>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct ResponsesUsage {
    input_tokens: Count,
    output_tokens: Count,
    total_tokens: Count,
    input_tokens_details: Lenient<CachedDetails>,
    output_tokens_details: Lenient<ReasoningDetails>,
}

impl ResponsesUsage {
    fn usage(self) -> Option<Usage> {
        completed(Usage {
            input: self.input_tokens.0,
            output: self.output_tokens.0,
            cached_input: self.input_tokens_details.0.and_then(|d| d.cached_tokens.0),
            reasoning: self
                .output_tokens_details
                .0
                .and_then(|d| d.reasoning_tokens.0),
            total: self.total_tokens.0,
        })
    }
}

// --- Anthropic ----------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnthropicBody {
    usage: Lenient<AnthropicUsage>,
}

/// A stream event: `message_start` has `message.usage`, `message_delta` a
/// top-level `usage`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AnthropicEvent {
    message: Lenient<AnthropicBody>,
    usage: Lenient<AnthropicUsage>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct AnthropicUsage {
    input_tokens: Count,
    output_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
}

/// Anthropic's counts as reported (input excludes cache reads and writes).
#[derive(Debug, Default, Clone, Copy)]
struct AnthropicCounts {
    input: Option<u64>,
    output: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
}

impl From<AnthropicUsage> for AnthropicCounts {
    fn from(u: AnthropicUsage) -> Self {
        AnthropicCounts {
            input: u.input_tokens.0,
            output: u.output_tokens.0,
            cache_creation: u.cache_creation_input_tokens.0,
            cache_read: u.cache_read_input_tokens.0,
        }
    }
}

impl AnthropicCounts {
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

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GeminiBody {
    usage_metadata: Lenient<GeminiUsage>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default, rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: Count,
    candidates_token_count: Count,
    total_token_count: Count,
    cached_content_token_count: Count,
    thoughts_token_count: Count,
}

impl GeminiUsage {
    fn counts(self) -> GeminiCounts {
        GeminiCounts {
            prompt: self.prompt_token_count.0,
            candidates: self.candidates_token_count.0,
            total: self.total_token_count.0,
            cached: self.cached_content_token_count.0,
            thoughts: self.thoughts_token_count.0,
        }
    }
}

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

// --- Lenient reading --------------------------------------------------------

/// Visitor methods that read any scalar other than an integer as `$none`.
macro_rules! other_scalars_are {
    ($none:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            IgnoredAny::deserialize(d)?;
            Ok($none)
        }
    };
}

/// Skips an object without storing it.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips an array without storing it; says whether it was empty.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<bool, A::Error> {
    let empty = seq.next_element::<IgnoredAny>()?.is_none();
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(empty)
}

/// A token count: a non-negative integer, or absent for any other value.
#[derive(Debug, Default, Clone, Copy)]
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token count")
    }

    fn visit_u64<E>(self, n: u64) -> Result<Count, E> {
        Ok(Count(Some(n)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Count, E> {
        Ok(Count(u64::try_from(n).ok()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
        skip_seq(seq)?;
        Ok(Count(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
        skip_map(map)?;
        Ok(Count(None))
    }

    other_scalars_are!(Count(None));
}

/// An object read as `T`, or absent for any other value (`null` included).
#[derive(Debug, Clone, Copy)]
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq)?;
        Ok(Lenient(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
    }

    other_scalars_are!(Lenient(None));
}

/// Whether a value is an empty array (`false` for anything else).
#[derive(Debug, Default, Clone, Copy)]
struct EmptyArray(bool);

impl<'de> Deserialize<'de> for EmptyArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EmptyArrayVisitor)
    }
}

struct EmptyArrayVisitor;

impl<'de> Visitor<'de> for EmptyArrayVisitor {
    type Value = EmptyArray;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_u64<E>(self, _: u64) -> Result<EmptyArray, E> {
        Ok(EmptyArray(false))
    }

    fn visit_i64<E>(self, _: i64) -> Result<EmptyArray, E> {
        Ok(EmptyArray(false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EmptyArray, A::Error> {
        skip_seq(seq).map(EmptyArray)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EmptyArray, A::Error> {
        skip_map(map)?;
        Ok(EmptyArray(false))
    }

    other_scalars_are!(EmptyArray(false));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::response::sse::testing::{feed_cut, random_cuts, XorShift};
    use crate::response::sse::{SseDecoder, Verdict};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const BOUND: usize = 64 * 1024;

    const CHAT_USAGE_STREAM: &[u8] = include_bytes!("testdata/openai_chat_stream_usage.sse");
    const CHAT_PLAIN_STREAM: &[u8] = include_bytes!("testdata/openai_chat_stream_plain.sse");
    const RESPONSES_STREAM: &[u8] = include_bytes!("testdata/openai_responses_stream.sse");
    const ANTHROPIC_STREAM: &[u8] = include_bytes!("testdata/anthropic_stream.sse");
    const GEMINI_STREAM: &[u8] = include_bytes!("testdata/gemini_stream.sse");

    fn usage(input: u64, output: u64, cached: u64, reasoning: Option<u64>, total: u64) -> Usage {
        Usage {
            input: Some(input),
            output: Some(output),
            cached_input: Some(cached),
            reasoning,
            total: Some(total),
        }
    }

    fn chat_stream_usage() -> Usage {
        usage(1180, 9, 1024, Some(0), 1189)
    }

    fn responses_usage() -> Usage {
        usage(2306, 187, 2048, Some(128), 2493)
    }

    /// Anthropic: 21 input + 188 cache write + 1536 cache read; 15 output.
    fn anthropic_usage() -> Usage {
        usage(1745, 15, 1536, None, 1760)
    }

    /// Gemini: 16 candidates + 311 thoughts.
    fn gemini_stream_usage() -> Usage {
        usage(1207, 327, 1024, Some(311), 1534)
    }

    /// Every recorded stream, its dialect and the usage it reports.
    fn recorded() -> [(&'static str, Dialect, &'static [u8], Option<Usage>); 5] {
        [
            (
                "openai_chat_stream_usage",
                Dialect::OpenAiChat,
                CHAT_USAGE_STREAM,
                Some(chat_stream_usage()),
            ),
            (
                "openai_chat_stream_plain",
                Dialect::OpenAiChat,
                CHAT_PLAIN_STREAM,
                None,
            ),
            (
                "openai_responses_stream",
                Dialect::OpenAiResponses,
                RESPONSES_STREAM,
                Some(responses_usage()),
            ),
            (
                "anthropic_stream",
                Dialect::Anthropic,
                ANTHROPIC_STREAM,
                Some(anthropic_usage()),
            ),
            (
                "gemini_stream",
                Dialect::Gemini,
                GEMINI_STREAM,
                Some(gemini_stream_usage()),
            ),
        ]
    }

    /// What decoding a stream gave.
    #[derive(Debug, PartialEq)]
    struct Decoded {
        usage: Option<Usage>,
        out: Vec<u8>,
        kinds: Vec<EventKind>,
    }

    /// Decodes `input` cut at `cuts`; in filtering mode drops the usage-only
    /// chunks, as the filter does when the gateway turned `include_usage` on.
    fn decode(dialect: Dialect, input: &[u8], cuts: &[usize], filtering: bool) -> Decoded {
        let mut decoder = SseDecoder::new(BOUND, filtering);
        let mut stream = StreamUsage::new(dialect);
        let mut kinds = Vec::new();
        let out = feed_cut(&mut decoder, input, cuts, &mut |ev| {
            let kind = stream.on_event(ev);
            kinds.push(kind);
            match kind {
                EventKind::UsageOnly => Verdict::Drop,
                EventKind::Other => Verdict::Keep,
            }
        });
        assert_eq!(decoder.oversized, 0);
        Decoded {
            usage: stream.usage(),
            out,
            kinds,
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// The chat stream with the usage-only event's bytes cut out, found
    /// independently of the decoder: from the line holding `"choices":[]`
    /// through the blank line after it.
    fn chat_stream_without_usage_event() -> Vec<u8> {
        let input = CHAT_USAGE_STREAM;
        let at = find(input, b"\"choices\":[],\"usage\":{").unwrap();
        let start = input[..at].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let end = at + find(&input[at..], b"\n\n").unwrap() + 2;
        let mut expected = input[..start].to_vec();
        expected.extend_from_slice(&input[end..]);
        assert!(expected.ends_with(b"data: [DONE]\n\n"));
        expected
    }

    /// The output a stream must give in filtering mode.
    fn expected_out(name: &str, input: &[u8]) -> Vec<u8> {
        if name == "openai_chat_stream_usage" {
            chat_stream_without_usage_event()
        } else {
            input.to_vec()
        }
    }

    fn event(data: &str) -> SseEvent<'_> {
        SseEvent {
            event: b"",
            data: data.as_bytes(),
            id: None,
        }
    }

    fn stream_usage(dialect: Dialect, events: &[&str]) -> Option<Usage> {
        let mut stream = StreamUsage::new(dialect);
        for data in events {
            stream.on_event(&event(data));
        }
        stream.usage()
    }

    // --- whole bodies ---

    #[test]
    fn reads_openai_chat_body_with_cached_and_reasoning_details() {
        let body = include_bytes!("testdata/openai_chat.json");
        assert_eq!(
            from_json(Dialect::OpenAiChat, body),
            Some(usage(1391, 340, 1280, Some(320), 1731))
        );
    }

    #[test]
    fn reads_legacy_completions_and_azure_bodies_as_openai_chat() {
        let completions = include_bytes!("testdata/openai_completions.json");
        assert_eq!(
            from_json(Dialect::OpenAiChat, completions),
            Some(Usage {
                input: Some(5),
                output: Some(7),
                total: Some(12),
                ..Usage::default()
            })
        );
        let azure = include_bytes!("testdata/azure_chat.json");
        assert_eq!(
            from_json(Dialect::OpenAiChat, azure),
            Some(usage(12, 5, 0, Some(0), 17))
        );
    }

    #[test]
    fn reads_openai_responses_body() {
        let body = include_bytes!("testdata/openai_responses.json");
        assert_eq!(
            from_json(Dialect::OpenAiResponses, body),
            Some(responses_usage())
        );
    }

    #[test]
    fn reads_embeddings_body_with_zero_output() {
        let body = include_bytes!("testdata/openai_embeddings.json");
        assert_eq!(
            from_json(Dialect::OpenAiEmbeddings, body),
            Some(Usage {
                input: Some(8),
                output: Some(0),
                total: Some(8),
                ..Usage::default()
            })
        );
    }

    #[test]
    fn reads_anthropic_input_as_all_prompt_tokens_including_cache() {
        let body = include_bytes!("testdata/anthropic_message.json");
        assert_eq!(from_json(Dialect::Anthropic, body), Some(anthropic_usage()));
        assert_eq!(
            from_json(
                Dialect::Anthropic,
                br#"{"usage":{"input_tokens":10,"output_tokens":2}}"#
            ),
            Some(Usage {
                input: Some(10),
                output: Some(2),
                total: Some(12),
                ..Usage::default()
            }),
            "older responses without cache fields"
        );
    }

    #[test]
    fn reads_gemini_output_as_candidates_plus_thoughts() {
        let body = include_bytes!("testdata/gemini_generate.json");
        assert_eq!(
            from_json(Dialect::Gemini, body),
            Some(gemini_stream_usage())
        );
        let no_candidates = br#"{"usageMetadata":{"promptTokenCount":9,"totalTokenCount":109,"thoughtsTokenCount":100}}"#;
        assert_eq!(
            from_json(Dialect::Gemini, no_candidates),
            Some(Usage {
                input: Some(9),
                output: Some(100),
                reasoning: Some(100),
                total: Some(109),
                ..Usage::default()
            }),
            "a response cut while thinking has no candidatesTokenCount"
        );
    }

    #[test]
    fn reads_a_gemini_json_array_stream_by_its_last_counts() {
        let body = include_bytes!("testdata/gemini_stream_array.json");
        assert_eq!(
            from_json(Dialect::Gemini, body),
            Some(usage(1207, 12 + 311, 1024, Some(311), 1207 + 12 + 311))
        );
        assert_eq!(from_json(Dialect::Gemini, b"[]"), None);
        assert_eq!(from_json(Dialect::Gemini, b"[1, null, \"x\", []]"), None);
        assert_eq!(
            from_json(
                Dialect::Gemini,
                br#"[{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}, 7, {"candidates":[]}, {"usageMetadata":{"candidatesTokenCount":4}}]"#
            ),
            Some(Usage {
                input: Some(3),
                output: Some(4),
                total: Some(7),
                ..Usage::default()
            })
        );
    }

    #[test]
    fn gives_none_for_a_body_without_usage() {
        let bodies: &[&[u8]] = &[
            b"",
            b"not json",
            b"[DONE]",
            b"{}",
            b"[]",
            b"42",
            br#"{"usage":null}"#,
            br#"{"usage":"12"}"#,
            br#"{"usage":[1,2]}"#,
            br#"{"usage":{}}"#,
            br#"{"usage":{"prompt_tokens":"12","completion_tokens":null}}"#,
            br#"{"usage":{"prompt_tokens":1}} trailing"#,
            br#"{"usage":{"prompt_tokens":1}"#,
            br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
        ];
        for body in bodies {
            for dialect in [
                Dialect::OpenAiChat,
                Dialect::OpenAiResponses,
                Dialect::OpenAiEmbeddings,
                Dialect::Anthropic,
                Dialect::Gemini,
            ] {
                assert_eq!(
                    from_json(dialect, body),
                    None,
                    "{dialect:?} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn reads_a_malformed_count_as_absent_and_keeps_the_others() {
        let body = br#"{"usage":{"prompt_tokens":"12","completion_tokens":-1,"total_tokens":3.0,
            "prompt_tokens_details":"x","completion_tokens_details":{"reasoning_tokens":5},
            "extra":{"deep":[1,{"x":null}]}}}"#;
        assert_eq!(
            from_json(Dialect::OpenAiChat, body),
            Some(Usage {
                reasoning: Some(5),
                ..Usage::default()
            })
        );
        let body =
            br#"{"usage":{"prompt_tokens":12,"completion_tokens":[3],"prompt_tokens_details":null,
            "total_tokens":18446744073709551616}}"#;
        assert_eq!(
            from_json(Dialect::OpenAiChat, body),
            Some(Usage {
                input: Some(12),
                ..Usage::default()
            })
        );
        let body = br#"{"usageMetadata":{"promptTokenCount":true,"candidatesTokenCount":{"a":1},"totalTokenCount":7}}"#;
        assert_eq!(
            from_json(Dialect::Gemini, body),
            Some(Usage {
                total: Some(7),
                ..Usage::default()
            })
        );
    }

    #[test]
    fn fills_total_from_input_and_output_saturating() {
        assert_eq!(
            from_json(
                Dialect::OpenAiChat,
                br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#
            )
            .and_then(|u| u.total),
            Some(7)
        );
        let max = u64::MAX;
        let body = format!(r#"{{"usage":{{"input_tokens":{max},"output_tokens":1}}}}"#);
        assert_eq!(
            from_json(Dialect::Anthropic, body.as_bytes()).and_then(|u| u.total),
            Some(u64::MAX)
        );
    }

    #[test]
    fn prefers_the_reported_total() {
        let body = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":9}}"#;
        assert_eq!(
            from_json(Dialect::OpenAiChat, body).and_then(|u| u.total),
            Some(9)
        );
    }

    #[test]
    fn reads_escaped_keys_like_plain_ones() {
        let body = br#"{"us\u0061ge":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert_eq!(
            from_json(Dialect::OpenAiChat, body).and_then(|u| u.total),
            Some(7)
        );
    }

    #[test]
    fn refuses_a_body_with_a_duplicated_usage_key() {
        let body = br#"{"usage":{"prompt_tokens":3},"usage":{"prompt_tokens":300}}"#;
        assert_eq!(from_json(Dialect::OpenAiChat, body), None);
    }

    #[test]
    fn survives_deep_nesting_without_panicking() {
        let deep = format!(
            "{{\"usage\":{{\"x\":{}1{}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(from_json(Dialect::OpenAiChat, deep.as_bytes()), None);
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(from_json(Dialect::Gemini, deep.as_bytes()), None);
    }

    // --- streams: meaning of events ---

    #[test]
    fn marks_only_the_include_usage_chunk_as_usage_only() {
        let kinds = decode(Dialect::OpenAiChat, CHAT_USAGE_STREAM, &[], false).kinds;
        assert_eq!(
            kinds.iter().filter(|k| **k == EventKind::UsageOnly).count(),
            1
        );
        assert_eq!(
            kinds[kinds.len() - 2],
            EventKind::UsageOnly,
            "the chunk before [DONE]"
        );
        let cases = [
            (
                r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
                EventKind::UsageOnly,
            ),
            (r#"{"choices":[],"usage":{}}"#, EventKind::UsageOnly),
            (r#"{"choices":[],"usage":null}"#, EventKind::Other),
            (r#"{"choices":[]}"#, EventKind::Other),
            (
                r#"{"choices":[{"index":0}],"usage":{"prompt_tokens":1}}"#,
                EventKind::Other,
            ),
            (r#"{"usage":{"prompt_tokens":1}}"#, EventKind::Other),
            (
                r#"{"choices":{},"usage":{"prompt_tokens":1}}"#,
                EventKind::Other,
            ),
            ("[DONE]", EventKind::Other),
            ("", EventKind::Other),
        ];
        for (data, kind) in cases {
            assert_eq!(
                StreamUsage::new(Dialect::OpenAiChat).on_event(&event(data)),
                kind,
                "{data}"
            );
        }
    }

    #[test]
    fn never_marks_events_of_other_dialects_as_usage_only() {
        let data = r#"{"choices":[],"usage":{"prompt_tokens":1,"input_tokens":1}}"#;
        for dialect in [
            Dialect::OpenAiResponses,
            Dialect::OpenAiEmbeddings,
            Dialect::Anthropic,
            Dialect::Gemini,
        ] {
            assert_eq!(
                StreamUsage::new(dialect).on_event(&event(data)),
                EventKind::Other
            );
        }
    }

    #[test]
    fn does_not_take_an_azure_prompt_filter_chunk_for_usage() {
        let decoded = decode(Dialect::OpenAiChat, CHAT_PLAIN_STREAM, &[], true);
        assert!(decoded.kinds.iter().all(|k| *k == EventKind::Other));
        assert_eq!(decoded.usage, None);
        assert_eq!(decoded.out, CHAT_PLAIN_STREAM);
    }

    #[test]
    fn takes_the_last_non_null_openai_usage_whole() {
        let got = stream_usage(
            Dialect::OpenAiChat,
            &[
                r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":2}}}"#,
                r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#,
                r#"{"choices":[{"delta":{}}],"usage":null}"#,
                r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":"x"}}"#,
                "[DONE]",
            ],
        );
        assert_eq!(
            got,
            Some(Usage {
                input: Some(5),
                output: Some(3),
                total: Some(8),
                ..Usage::default()
            })
        );
    }

    #[test]
    fn reads_responses_usage_from_any_terminal_event() {
        for kind in [
            "response.completed",
            "response.incomplete",
            "response.failed",
        ] {
            let data = format!(
                r#"{{"type":"{kind}","response":{{"status":"x","usage":{{"input_tokens":4,"output_tokens":2}}}}}}"#
            );
            let got = stream_usage(
                Dialect::OpenAiResponses,
                &[
                    r#"{"type":"response.created","response":{"usage":null}}"#,
                    &data,
                ],
            );
            assert_eq!(got.and_then(|u| u.total), Some(6), "{kind}");
        }
    }

    #[test]
    fn takes_anthropic_cumulative_counts_last_never_summed() {
        let decoded = decode(Dialect::Anthropic, ANTHROPIC_STREAM, &[], false);
        assert_eq!(decoded.usage, Some(anthropic_usage()));
        // Summing the output_tokens of message_start and every message_delta
        // (1 + 6 + 11 + 15) is the known bug; it must differ from ours.
        let text = core::str::from_utf8(ANTHROPIC_STREAM).unwrap();
        let summed: u64 = text
            .split("\"output_tokens\":")
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(summed, 33);
        assert_ne!(decoded.usage.and_then(|u| u.output), Some(summed));
    }

    #[test]
    fn reads_anthropic_events_by_their_data_without_event_lines() {
        let text = core::str::from_utf8(ANTHROPIC_STREAM).unwrap();
        let without: String = text
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("event:"))
            .collect();
        assert!(!without.contains("event:"));
        let decoded = decode(Dialect::Anthropic, without.as_bytes(), &[], false);
        assert_eq!(decoded.usage, Some(anthropic_usage()));
    }

    #[test]
    fn keeps_an_anthropic_count_that_a_later_delta_leaves_out() {
        let got = stream_usage(
            Dialect::Anthropic,
            &[
                r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
                r#"{"type":"message_delta","usage":{"output_tokens":7,"input_tokens":null}}"#,
            ],
        );
        assert_eq!(
            got,
            Some(Usage {
                input: Some(15),
                output: Some(7),
                cached_input: Some(5),
                reasoning: None,
                total: Some(22),
            })
        );
    }

    #[test]
    fn takes_gemini_cumulative_counts_last_never_summed() {
        let decoded = decode(Dialect::Gemini, GEMINI_STREAM, &[], false);
        assert_eq!(decoded.usage, Some(gemini_stream_usage()));
        // Summing every chunk's promptTokenCount (4 chunks) would bill the
        // prompt four times.
        let chunks = decoded.kinds.len() as u64;
        assert_eq!(chunks, 4);
        assert_ne!(decoded.usage.and_then(|u| u.input), Some(1207 * chunks));
    }

    #[test]
    fn ignores_events_that_are_not_json_objects() {
        for dialect in [
            Dialect::OpenAiChat,
            Dialect::OpenAiResponses,
            Dialect::OpenAiEmbeddings,
            Dialect::Anthropic,
            Dialect::Gemini,
        ] {
            let got = stream_usage(
                dialect,
                &["", "[DONE]", "{", "[1]", "null", "\u{1F389}", "{\"a\":1}"],
            );
            assert_eq!(got, None, "{dialect:?}");
        }
    }

    // --- streams: split at every point ---

    #[test]
    fn recorded_streams_give_the_same_usage_and_bytes_in_every_two_way_split() {
        for (name, dialect, input, expected) in recorded() {
            let expected_out = expected_out(name, input);
            let whole = decode(dialect, input, &[], true);
            assert_eq!(whole.usage, expected, "{name}");
            assert_eq!(whole.out, expected_out, "{name}");
            for cut in 0..=input.len() {
                let split = decode(dialect, input, &[cut], true);
                assert_eq!(split, whole, "{name} cut at {cut}");
            }
        }
    }

    #[test]
    fn recorded_streams_give_the_same_usage_and_bytes_in_random_splits() {
        let mut rng = XorShift::new(0x7011_6A7E);
        for (name, dialect, input, expected) in recorded() {
            let whole = decode(dialect, input, &[], true);
            for _ in 0..300 {
                let cuts = random_cuts(&mut rng, input.len(), 32);
                assert_eq!(
                    decode(dialect, input, &cuts, true),
                    whole,
                    "{name} {cuts:?}"
                );
            }
            let bytewise: Vec<usize> = (1..input.len()).collect();
            assert_eq!(decode(dialect, input, &bytewise, true), whole, "{name}");
            assert_eq!(whole.usage, expected);
        }
    }

    #[test]
    fn observe_mode_learns_the_same_usage_and_writes_nothing() {
        let mut rng = XorShift::new(99);
        for (name, dialect, input, expected) in recorded() {
            for _ in 0..50 {
                let cuts = random_cuts(&mut rng, input.len(), 16);
                let observed = decode(dialect, input, &cuts, false);
                assert_eq!(observed.usage, expected, "{name}");
                assert_eq!(observed.out, b"", "{name}");
            }
        }
    }

    #[test]
    fn drops_exactly_the_usage_chunk_of_a_crlf_stream() {
        let crlf = CHAT_USAGE_STREAM
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|line| {
                let body = line.strip_suffix(b"\n").unwrap_or(line);
                [body, b"\r\n".as_slice()]
            })
            .flatten()
            .copied()
            .collect::<Vec<u8>>();
        let expected = chat_stream_without_usage_event()
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|line| [line.strip_suffix(b"\n").unwrap_or(line), b"\r\n".as_slice()])
            .flatten()
            .copied()
            .collect::<Vec<u8>>();
        for cut in 0..=crlf.len() {
            let decoded = decode(Dialect::OpenAiChat, &crlf, &[cut], true);
            assert_eq!(decoded.usage, Some(chat_stream_usage()), "cut at {cut}");
            assert_eq!(decoded.out, expected, "cut at {cut}");
        }
    }

    #[test]
    fn learns_usage_from_a_stream_without_a_final_blank_line() {
        for (name, dialect, input, expected) in recorded() {
            // The final event keeps its data line but loses the blank line
            // (or even its last line end).
            for trim in [1, 2] {
                let cut_input = &input[..input.len() - trim];
                let cut_input = cut_input.strip_suffix(b"\r").unwrap_or(cut_input);
                for cut in 0..=cut_input.len() {
                    let decoded = decode(dialect, cut_input, &[cut], true);
                    assert_eq!(decoded.usage, expected, "{name} trim {trim} cut at {cut}");
                    let expected_out = expected_out(name, input);
                    assert_eq!(
                        decoded.out,
                        &expected_out[..expected_out.len() - (input.len() - cut_input.len())]
                    );
                }
            }
        }
    }

    #[test]
    fn counts_and_emits_a_usage_chunk_that_the_stream_cuts_short() {
        let at = find(CHAT_USAGE_STREAM, b"data: [DONE]").unwrap();
        let cut_short = &CHAT_USAGE_STREAM[..at - 2];
        assert!(cut_short.ends_with(b"}}"));
        let decoded = decode(Dialect::OpenAiChat, cut_short, &[], true);
        assert_eq!(decoded.usage, Some(chat_stream_usage()));
        assert_eq!(decoded.kinds.last(), Some(&EventKind::UsageOnly));
        assert_eq!(
            decoded.out, cut_short,
            "an unterminated event is never removed"
        );
    }
}
