//! The body path's fixed traffic (`--body-path`, `--dlp`): a ~2 KB OpenAI
//! chat request, as sent and as a clamping gateway must forward it; the
//! ~4 KB JSON answer with its `usage`; the 50-chunk SSE answer to the same
//! request with `"stream":true`; and (`--dlp`) a 64 KB chat request, the
//! same conversation continued with the export job's config and a week
//! of its log pasted in.
//!
//! Invariants (checked by the tests below):
//! - Every body is compact JSON (or SSE of compact JSON) in plain ASCII,
//!   with one `"max_tokens":5000` and one `"model"` in the request, so the
//!   clamped form differs from the sent form only in that value.
//! - No request holds a secret or personal data (no key, e-mail address,
//!   phone, card, SSN or IBAN), so a DLP rule forwards each one as the
//!   body rule does; the 64 KB one is full of what DLP must read past on
//!   its way: `\n` and `\"` escapes, timestamps, byte counts, UUIDs and
//!   hex digests (the `--dlp` verify step proves no detector fires).
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

/// The long chat request's target size (`--dlp`), bytes; it ends within a
/// log line of this.
pub(crate) const LONG_CHAT_BYTES: usize = 64 * 1024;

/// Which of the body path's allowed requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Answered with the JSON body.
    Chat,
    /// `"stream":true`, answered with the SSE stream.
    Stream,
    /// `--dlp`: the 64 KB chat, answered with the JSON body.
    LongChat,
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
    /// The 64 KB chat (`--dlp`).
    pub(crate) long_chat: ChatRequest,
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
            long_chat: ChatRequest::long(),
            denied_model: chat_request(DENIED_MODEL, false, REQUESTED_MAX_TOKENS, &[]),
            json_answer: json_answer(),
            sse_events: sse_events(),
        }
    }

    pub(crate) fn request(&self, kind: Kind) -> &ChatRequest {
        match kind {
            Kind::Chat => &self.chat,
            Kind::Stream => &self.stream,
            Kind::LongChat => &self.long_chat,
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
            sent: chat_request(model, stream, REQUESTED_MAX_TOKENS, &[]),
            clamped: chat_request(model, stream, MAX_OUTPUT_TOKENS, &[]),
        }
    }

    /// The 64 KB chat: the conversation, the assistant asking for the job's
    /// config and logs, and the user pasting them.
    fn long() -> Self {
        let base = chat_request(MODEL, false, REQUESTED_MAX_TOKENS, &[]).len();
        let overhead = r#",{"role":"assistant","content":""},{"role":"user","content":""}"#.len()
            + escaped_len(ASK_FOR_LOGS)
            + escaped_len(PASTE_END);
        let room = LONG_CHAT_BYTES.saturating_sub(base + overhead);
        let paste = format!("{}{PASTE_END}", pasted_material(room));
        let turns = [("assistant", ASK_FOR_LOGS), ("user", paste.as_str())];
        ChatRequest {
            sent: chat_request(MODEL, false, REQUESTED_MAX_TOKENS, &turns),
            clamped: chat_request(MODEL, false, MAX_OUTPUT_TOKENS, &turns),
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

const ASK_FOR_LOGS: &str = "Archive has no retrieval delay, so restores during incidents are \
not affected. Before I write the command: could you paste the export job's configuration and its \
log for the last week? I want to check that the failure is the peak and not something else.";

const PASTE_END: &str = "```\n\nSo: is it the quota peak every night, and is anything else in \
there we should fix while we move the target to archive?";

/// The export job's configuration, as the user pastes it.
const JOB_CONFIG: &str = r##"export:
  job: "nightly-export"
  source: "db-prod-eu1"
  snapshot: true
  target: "nw-exports/acct-20931"
  storage_class: "standard"
  compression: "zstd:6"
  parts: 40
  part_size_mib: 256
  schedule: "0 2 * * *"
  retention_days: 30
  notify: "#ops-exports"
"##;

/// Length of `s` once written as the inside of a JSON string.
fn escaped_len(s: &str) -> usize {
    s.len() + s.chars().filter(|c| matches!(c, '"' | '\\' | '\n')).count()
}

/// The pasted configuration and log, `room` bytes long or a log line less
/// once JSON-escaped: a week of nights of an export job writing 40 parts,
/// with checkpoints, quota warnings and the failure.
fn pasted_material(room: usize) -> String {
    let mut text = String::from("Sure, here is the job's configuration:\n\n```yaml\n");
    text.push_str(JOB_CONFIG);
    text.push_str(
        "```\n\nand its log since the 21st (trimmed to the export's own lines):\n\n```\n",
    );
    let mut used = escaped_len(&text);
    // splitmix64 from a fixed seed, so the log is the same on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % m
    };
    let mut lines = Vec::new();
    for night in 0u64.. {
        let date = format!("2026-11-{:02}", 21 + night % 10);
        let pid = 4000 + next(900);
        let snap = next(1 << 32);
        lines.push(format!(
            "{date}T02:00:0{}.{:03}Z INFO  export[{pid}]: starting nightly-export of db-prod-eu1 (snapshot snap-{snap:08x}) to nw-exports/acct-20931, class standard, 40 parts",
            next(10),
            next(1000)
        ));
        let mut used_pct = 55.0 + next(80) as f64 / 10.0;
        for part in 1..=40u64 {
            let (m, s, ms) = (part * 40 / 60, (part * 40 + next(20)) % 60, next(1000));
            let bytes = 268_435_456 - next(4_000_000);
            let secs = 20 + next(30);
            let id = (
                next(1 << 32),
                next(1 << 16),
                next(1 << 12),
                next(1 << 14),
                next(1 << 48),
            );
            lines.push(format!(
                "{date}T02:{m:02}:{s:02}.{ms:03}Z INFO  export[{pid}]: part {part:04}/0040 written, {bytes} bytes in {secs}.{} s ({}.{} MB/s), object exports/{date}/part-{part:04}.zst, request {:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                next(10),
                bytes / 1_000_000 / secs,
                next(10),
                id.0, id.1, id.2, id.3 | 0x8000, id.4
            ));
            used_pct += 1.6;
            if part % 8 == 0 {
                lines.push(format!(
                    "{date}T02:{m:02}:{s:02}.{:03}Z INFO  export[{pid}]: checkpoint {part:04}, sha256 {:016x}{:016x}{:016x}{:016x}",
                    next(1000),
                    next(u64::MAX),
                    next(u64::MAX),
                    next(u64::MAX),
                    next(u64::MAX)
                ));
            }
            if used_pct > 95.0 && part % 4 == 0 {
                lines.push(format!(
                    "{date}T02:{m:02}:{s:02}.{:03}Z WARN  storage: class standard at {used_pct:.1}% of quota for acct-20931 ({:.2} TiB of 10.00 TiB)",
                    next(1000),
                    used_pct / 10.0
                ));
            }
            if used_pct > 118.0 {
                lines.push(format!(
                    "{date}T02:{m:02}:{s:02}.{:03}Z ERROR export[{pid}]: part {part:04}/0040 refused: \"quota exceeded for storage class standard\" (HTTP 507), export aborted after {part} parts; temporary copy kept for compaction",
                    next(1000)
                ));
                break;
            }
        }
        for line in lines.drain(..) {
            let len = escaped_len(&line) + 2;
            if used + len > room {
                return text;
            }
            text.push_str(&line);
            text.push('\n');
            used += len;
        }
    }
    text
}

/// A chat request as an OpenAI SDK sends it (compact, one line): the system
/// prompt, [`TURNS`], then `more`.
fn chat_request(model: &str, stream: bool, max_tokens: u64, more: &[(&str, &str)]) -> String {
    let mut messages = vec![format!(r#"{{"role":"system","content":"{SYSTEM}"}}"#)];
    for (role, content) in TURNS {
        let content = content.split_whitespace().collect::<Vec<_>>().join(" ");
        messages.push(format!(r#"{{"role":"{role}","content":"{content}"}}"#));
    }
    for (role, content) in more {
        let content = serde_json::Value::from(*content).to_string();
        messages.push(format!(r#"{{"role":"{role}","content":{content}}}"#));
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
    fn long_request_is_64_kilobytes_of_pasted_config_and_log() {
        let r = Traffic::build().long_chat;
        assert!(
            (LONG_CHAT_BYTES - 400..=LONG_CHAT_BYTES).contains(&r.sent.len()),
            "{}",
            r.sent.len()
        );
        assert!(r.sent.is_ascii());
        let v = parse(&r.sent);
        assert_eq!(v["model"], MODEL);
        let messages = v["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 8);
        let paste = messages[7]["content"].as_str().unwrap();
        assert!(
            paste.contains("storage_class: \"standard\""),
            "{paste:.300}"
        );
        assert!(paste.contains("quota exceeded for storage class standard"));
        assert!(paste.matches('\n').count() > 300);
        assert!(paste.ends_with("move the target to archive?"));
        assert_eq!(r.sent.matches(r#""max_tokens":5000"#).count(), 1);
        assert_eq!(
            r.sent
                .replace(r#""max_tokens":5000"#, r#""max_tokens":2000"#),
            r.clamped
        );
        // The conversation before the paste is the 2 KB request's.
        let short = Traffic::build().chat.sent;
        let head = short.split(r#"],"max_tokens""#).next().unwrap();
        assert!(r.sent.starts_with(head));
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
