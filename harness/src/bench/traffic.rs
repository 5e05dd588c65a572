//! The body path's fixed traffic (`--body-path`): a ~2 KB OpenAI chat
//! request, as sent and as a clamping gateway must forward it; the ~4 KB
//! JSON answer with its `usage`; and the 50-chunk SSE answer to the same
//! request with `"stream":true`.
//!
//! Invariants (checked by the tests below):
//! - Every body is compact JSON (or SSE of compact JSON) in plain ASCII,
//!   with one `"max_tokens":5000` and one `"model"` in the request, so the
//!   clamped form differs from the sent form only in that value.
//! - The streamed request asks for usage itself
//!   (`stream_options.include_usage: true`): a gateway then neither writes
//!   the option in nor removes the usage chunk, so every gateway forwards
//!   the stream unchanged and only *reads* it.
//! - The usage figures below are the ones the answers carry, so the verify
//!   step can find them in each gateway's access-log record.

/// The model every request names, and the only one the body rules allow.
pub(crate) const MODEL: &str = "gpt-4o-mini";
/// A model the body rules refuse (the refusal check).
pub(crate) const DENIED_MODEL: &str = "gpt-4o";
/// What the client asks for, and the rules' cap.
pub(crate) const REQUESTED_MAX_TOKENS: u64 = 5000;
pub(crate) const MAX_OUTPUT_TOKENS: u64 = 2000;

/// Size of the non-streamed JSON answer, bytes.
pub(crate) const JSON_ANSWER_BYTES: usize = 4096;
/// Chat-completion chunks in the streamed answer (then `data: [DONE]`).
pub(crate) const STREAM_CHUNKS: usize = 50;

/// The JSON answer's usage: (input, output, cached input, total).
pub(crate) const JSON_USAGE: (u64, u64, u64, u64) = (517, 871, 128, 1388);
/// The streamed answer's usage (its last chunk): (input, output, total).
pub(crate) const STREAM_USAGE: (u64, u64, u64) = (523, 47, 570);

/// Which of the body path's two allowed requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Answered with the JSON body.
    Chat,
    /// `"stream":true`, answered with the SSE stream.
    Stream,
}

/// One request of the body path: what the client sends and what the
/// upstream must receive through each kind of gateway.
#[derive(Clone, Debug)]
pub(crate) struct ChatRequest {
    /// As sent (and as forwarded by a gateway that does not clamp).
    pub(crate) sent: String,
    /// As a gateway that clamps to [`MAX_OUTPUT_TOKENS`] must forward it.
    pub(crate) clamped: String,
}

/// The whole body-path traffic, built once.
#[derive(Clone, Debug)]
pub(crate) struct Traffic {
    pub(crate) chat: ChatRequest,
    pub(crate) stream: ChatRequest,
    /// `chat` with a model outside the allow-list.
    pub(crate) denied_model: String,
    /// The non-streamed answer.
    pub(crate) json_answer: String,
    /// The streamed answer, one element per write: the chunks, then
    /// `data: [DONE]`.
    pub(crate) sse_events: Vec<String>,
}

impl Traffic {
    pub(crate) fn build() -> Self {
        Traffic {
            chat: ChatRequest::new(MODEL, false),
            stream: ChatRequest::new(MODEL, true),
            denied_model: chat_request(DENIED_MODEL, false, REQUESTED_MAX_TOKENS),
            json_answer: json_answer(),
            sse_events: sse_events(),
        }
    }

    pub(crate) fn request(&self, kind: Kind) -> &ChatRequest {
        match kind {
            Kind::Chat => &self.chat,
            Kind::Stream => &self.stream,
        }
    }

    /// The streamed answer as the client must receive it.
    pub(crate) fn sse_answer(&self) -> String {
        self.sse_events.concat()
    }
}

impl ChatRequest {
    fn new(model: &str, stream: bool) -> Self {
        ChatRequest {
            sent: chat_request(model, stream, REQUESTED_MAX_TOKENS),
            clamped: chat_request(model, stream, MAX_OUTPUT_TOKENS),
        }
    }
}

const SYSTEM: &str = "You are the support assistant of Northwind Cloud. Answer questions about \
billing, quotas and the managed Postgres service. Be concise, cite the relevant documentation \
page when you can, never invent prices, and ask for the account id before discussing a specific \
invoice. If the question is about an outage, point to the status page first.";

const TURNS: [(&str, &str); 5] = [
    (
        "user",
        "Hi, our nightly export job started failing two days ago with the error 'quota exceeded \
         for storage class standard' even though the dashboard shows we are at 61% of the quota. \
         Account id is acct-20931. What is going on and how do we get the exports running again?",
    ),
    (
        "assistant",
        "Thanks, I found account acct-20931. The dashboard shows the quota averaged over the day, \
         while exports are checked against the peak: your export writes a temporary copy before it \
         compacts it, so for about forty minutes each night usage reaches roughly 118% of the \
         standard quota. Two options: move the export target to the archive storage class, which \
         has its own quota, or request a temporary quota raise. Which would you prefer?",
    ),
    (
        "user",
        "Archive, probably. Before that: is the 118% peak also why last Tuesday's export took \
         three hours instead of the usual forty minutes, or was that something else?",
    ),
    (
        "assistant",
        "Something else: on Tuesday the export job ran during the maintenance window of your \
         primary instance, so it read from the replica, which was throttled to protect the \
         failover. The quota only makes the job fail; it does not slow it down.",
    ),
    (
        "user",
        "Moving to archive sounds right, but we restore from these exports during incidents and \
         cannot wait hours for a retrieval. Does archive have retrieval delays? Also, can you \
         write the exact CLI command to switch the target, and explain whether existing exports \
         are moved or stay where they are? Please list any billing impact for this month.",
    ),
];

/// A chat request as an OpenAI SDK sends it (compact, one line).
fn chat_request(model: &str, stream: bool, max_tokens: u64) -> String {
    let mut messages = vec![format!(r#"{{"role":"system","content":"{SYSTEM}"}}"#)];
    for (role, content) in TURNS {
        let content = content.split_whitespace().collect::<Vec<_>>().join(" ");
        messages.push(format!(r#"{{"role":"{role}","content":"{content}"}}"#));
    }
    let stream = if stream {
        r#","stream":true,"stream_options":{"include_usage":true}"#
    } else {
        ""
    };
    format!(
        r#"{{"model":"{model}","messages":[{}],"max_tokens":{max_tokens},"temperature":0.2,"top_p":1,"user":"support-chatbot"{stream}}}"#,
        messages.join(",")
    )
}

/// The usage object of an OpenAI chat completion.
fn usage_json(input: u64, output: u64, cached: u64, total: u64) -> String {
    format!(
        r#"{{"prompt_tokens":{input},"completion_tokens":{output},"total_tokens":{total},"prompt_tokens_details":{{"cached_tokens":{cached},"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#
    )
}

const ANSWER_WORDS: &str = "Archive storage has no retrieval delay on Northwind Cloud: objects \
are read at the same latency as standard storage, and only the price per gigabyte read differs. \
To switch the export target run the export update command with the new storage class; existing \
exports stay where they are and keep their class until they expire under the retention policy. \
For this month the change lowers storage cost for new exports by about forty percent, and each \
restore is billed per gigabyte read.";

/// The non-streamed answer, exactly [`JSON_ANSWER_BYTES`] long.
fn json_answer() -> String {
    let (input, output, cached, total) = JSON_USAGE;
    let head = r#"{"id":"chatcmpl-bench0001","object":"chat.completion","created":1767225600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":""#;
    let tail = format!(
        r#"","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{},"service_tier":"default","system_fingerprint":"fp_bench01"}}"#,
        usage_json(input, output, cached, total)
    );
    let room = JSON_ANSWER_BYTES.saturating_sub(head.len() + tail.len());
    let words = ANSWER_WORDS
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut content = String::with_capacity(room);
    while content.len() < room {
        if !content.is_empty() {
            content.push(' ');
        }
        content.push_str(&words);
    }
    content.truncate(room);
    format!("{head}{content}{tail}")
}

/// The streamed answer: a role chunk, content chunks, a finish chunk and
/// the usage chunk ([`STREAM_CHUNKS`] in all), then `data: [DONE]`.
fn sse_events() -> Vec<String> {
    let chunk = |choices: &str, usage: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench0002\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_bench01\",\"choices\":{choices},\"usage\":{usage}}}\n\n"
        )
    };
    let choice = |delta: &str, finish: &str| {
        format!(r#"[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]"#)
    };
    let mut events = vec![chunk(
        &choice(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        "null",
    )];
    let mut words = ANSWER_WORDS.split_whitespace().cycle();
    for _ in 0..STREAM_CHUNKS - 3 {
        let word = words.next().unwrap_or("word");
        events.push(chunk(
            &choice(&format!(r#"{{"content":" {word}"}}"#), "null"),
            "null",
        ));
    }
    events.push(chunk(&choice("{}", r#""stop""#), "null"));
    let (input, output, total) = STREAM_USAGE;
    events.push(chunk("[]", &usage_json(input, output, 0, total)));
    events.push("data: [DONE]\n\n".to_string());
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn requests_are_about_two_kilobytes_and_differ_only_in_the_cap() {
        let t = Traffic::build();
        for r in [&t.chat, &t.stream] {
            assert!((1900..=2300).contains(&r.sent.len()), "{}", r.sent.len());
            assert!(r.sent.is_ascii());
            let v = parse(&r.sent);
            assert_eq!(v["model"], MODEL);
            assert_eq!(v["max_tokens"], REQUESTED_MAX_TOKENS);
            assert_eq!(v["messages"].as_array().unwrap().len(), 6);
            assert_eq!(r.sent.matches(r#""max_tokens":5000"#).count(), 1);
            assert_eq!(
                r.sent
                    .replace(r#""max_tokens":5000"#, r#""max_tokens":2000"#),
                r.clamped
            );
            assert_eq!(parse(&r.clamped)["max_tokens"], MAX_OUTPUT_TOKENS);
        }
        assert_eq!(parse(&t.stream.sent)["stream"], true);
        assert_eq!(
            parse(&t.stream.sent)["stream_options"]["include_usage"],
            true
        );
        assert!(parse(&t.chat.sent).get("stream").is_none());
        assert_eq!(parse(&t.denied_model)["model"], DENIED_MODEL);
    }

    #[test]
    fn json_answer_is_four_kilobytes_with_usage() {
        let a = json_answer();
        assert_eq!(a.len(), JSON_ANSWER_BYTES);
        let v = parse(&a);
        assert_eq!(v["usage"]["prompt_tokens"], JSON_USAGE.0);
        assert_eq!(v["usage"]["completion_tokens"], JSON_USAGE.1);
        assert_eq!(
            v["usage"]["prompt_tokens_details"]["cached_tokens"],
            JSON_USAGE.2
        );
        assert_eq!(v["usage"]["total_tokens"], JSON_USAGE.3);
    }

    #[test]
    fn sse_answer_is_fifty_chunks_then_done() {
        let events = sse_events();
        assert_eq!(events.len(), STREAM_CHUNKS + 1);
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
        for e in &events[..STREAM_CHUNKS] {
            let data = e
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            assert_eq!(parse(data)["object"], "chat.completion.chunk");
        }
        let last = parse(
            events[STREAM_CHUNKS - 1]
                .strip_prefix("data: ")
                .unwrap()
                .trim_end(),
        );
        assert_eq!(last["choices"].as_array().unwrap().len(), 0);
        assert_eq!(last["usage"]["completion_tokens"], STREAM_USAGE.1);
        assert_eq!(last["usage"]["total_tokens"], STREAM_USAGE.2);
    }
}
