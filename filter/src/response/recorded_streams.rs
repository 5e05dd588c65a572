//! Property tests of [`ResponseTap`] on one recorded response per provider
//! shape: however the body is cut into chunks (at every single split point,
//! and in many random multi-way splits, down to one byte per chunk), the
//! client receives the same bytes and the gateway learns the same usage as
//! from the body in one piece.
//!
//! The recordings follow the providers' documented wire formats, with the
//! fields real responses carry (ids, `null`s, pings, `\r\n` line ends for
//! Gemini, non-ASCII text so that splits fall inside UTF-8 characters).

use super::tap::ResponseTap;
use super::usage::{Dialect, Usage};

/// One recorded response and what must come of it.
struct Recording {
    name: &'static str,
    dialect: Dialect,
    sse: bool,
    /// The client did not ask for OpenAI's usage chunk (Tollgate did).
    drop_usage_chunk: bool,
    body: String,
    /// What the client must receive.
    client: String,
    usage: Usage,
}

fn usage(
    input: u64,
    output: u64,
    cached: Option<u64>,
    reasoning: Option<u64>,
    total: u64,
) -> Usage {
    Usage {
        input: Some(input),
        output: Some(output),
        cached_input: cached,
        reasoning,
        total: Some(total),
    }
}

const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-AbC1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1""#;

fn openai_chat(drop_usage_chunk: bool) -> Recording {
    let content = [
        r#""choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]"#,
        r#""choices":[{"index":0,"delta":{"content":"Grüß "},"logprobs":null,"finish_reason":null}]"#,
        r#""choices":[{"index":0,"delta":{"content":"dich 👋"},"logprobs":null,"finish_reason":null}]"#,
        r#""choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
    ];
    let usage_chunk = r#""choices":[],"usage":{"prompt_tokens":19,"completion_tokens":6,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;
    let event = |rest: &str| format!("data: {OPENAI_CHUNK},{rest}}}\n\n");
    // With include_usage on, every chunk carries "usage":null and a usage
    // chunk comes last; without it (what the client asked for), neither.
    let mut body: String = content
        .iter()
        .map(|c| event(&format!("{c},\"usage\":null")))
        .collect();
    body.push_str(&event(usage_chunk));
    body.push_str("data: [DONE]\n\n");
    let client = if drop_usage_chunk {
        let mut plain: String = content.iter().map(|c| event(c)).collect();
        plain.push_str("data: [DONE]\n\n");
        plain
    } else {
        body.clone()
    };
    Recording {
        name: if drop_usage_chunk {
            "openai chat stream, usage chunk removed"
        } else {
            "openai chat stream, include_usage asked"
        },
        dialect: Dialect::OpenAiChat,
        sse: true,
        drop_usage_chunk,
        body,
        client,
        usage: usage(19, 6, Some(0), Some(0), 25),
    }
}

fn openai_responses() -> Recording {
    let body = concat!(
        "event: response.created\n",
        r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"o4-mini","usage":null}}"#,
        "\n\n",
        "event: response.output_text.delta\n",
        r#"data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Ça va"}"#,
        "\n\n",
        "event: response.completed\n",
        r#"data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response","status":"completed","model":"o4-mini","usage":{"input_tokens":42,"input_tokens_details":{"cached_tokens":32},"output_tokens":150,"output_tokens_details":{"reasoning_tokens":128},"total_tokens":192}}}"#,
        "\n\n",
    )
    .to_string();
    Recording {
        name: "openai responses stream",
        dialect: Dialect::OpenAiResponses,
        sse: true,
        drop_usage_chunk: false,
        client: body.clone(),
        body,
        usage: usage(42, 150, Some(32), Some(128), 192),
    }
}

fn anthropic() -> Recording {
    let body = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
        "event: ping\n",
        r#"data: {"type": "ping"}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"こんにちは"}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    )
    .to_string();
    Recording {
        name: "anthropic messages stream",
        dialect: Dialect::Anthropic,
        sse: true,
        drop_usage_chunk: false,
        client: body.clone(),
        body,
        // input counts cache reads (25 + 0 + 100); output is the last
        // cumulative value, not a sum.
        usage: usage(125, 15, Some(100), None, 140),
    }
}

fn gemini_sse() -> Recording {
    let body = concat!(
        r#"data: {"candidates": [{"content": {"parts": [{"text": "Hola"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 1,"totalTokenCount": 10},"modelVersion": "gemini-2.0-flash"}"#,
        "\r\n\r\n",
        r#"data: {"candidates": [{"content": {"parts": [{"text": ", ¿qué tal?"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 7,"totalTokenCount": 26,"thoughtsTokenCount": 10},"modelVersion": "gemini-2.0-flash"}"#,
        "\r\n\r\n",
    )
    .to_string();
    Recording {
        name: "gemini streamGenerateContent?alt=sse",
        dialect: Dialect::Gemini,
        sse: true,
        drop_usage_chunk: false,
        client: body.clone(),
        body,
        // output = candidates + thoughts; the last chunk's counts win.
        usage: usage(9, 17, None, Some(10), 26),
    }
}

fn openai_embeddings() -> Recording {
    let body = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#.to_string();
    Recording {
        name: "openai embeddings JSON",
        dialect: Dialect::OpenAiEmbeddings,
        sse: false,
        drop_usage_chunk: false,
        client: body.clone(),
        body,
        // Embeddings generate nothing: output is 0, not unknown.
        usage: Usage {
            input: Some(8),
            output: Some(0),
            cached_input: None,
            reasoning: None,
            total: Some(8),
        },
    }
}

fn anthropic_json() -> Recording {
    let body = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"Grüß Gott"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":0,"output_tokens":4}}"#.to_string();
    Recording {
        name: "anthropic messages JSON",
        dialect: Dialect::Anthropic,
        sse: false,
        drop_usage_chunk: false,
        client: body.clone(),
        body,
        usage: usage(15, 4, Some(0), None, 19),
    }
}

fn recordings() -> Vec<Recording> {
    vec![
        openai_chat(true),
        openai_chat(false),
        openai_responses(),
        anthropic(),
        gemini_sse(),
        openai_embeddings(),
        anthropic_json(),
    ]
}

/// Feeds `chunks` to a fresh tap: what the client got, and the usage.
fn feed(r: &Recording, chunks: &[&[u8]]) -> (Vec<u8>, Option<Usage>) {
    let mut tap = ResponseTap::new(Some(r.dialect), r.sse, r.drop_usage_chunk, None, None);
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        out.extend_from_slice(tap.on_chunk(c, i + 1 == chunks.len()).bytes(c));
    }
    (out, tap.usage())
}

/// Cuts `body` at the sorted, distinct `cuts`.
fn cut<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &c in cuts {
        pieces.push(&body[at..c]);
        at = c;
    }
    pieces.push(&body[at..]);
    pieces
}

#[test]
fn each_recording_read_whole_gives_its_client_bytes_and_usage() {
    for r in recordings() {
        let (out, u) = feed(&r, &[r.body.as_bytes()]);
        assert_eq!(String::from_utf8_lossy(&out), r.client, "{}", r.name);
        assert_eq!(u, Some(r.usage), "{}", r.name);
    }
}

#[test]
fn every_split_point_gives_the_same_bytes_and_usage() {
    for r in recordings() {
        let body = r.body.as_bytes();
        for i in 0..=body.len() {
            let (out, u) = feed(&r, &cut(body, &[i]));
            assert!(
                out == r.client.as_bytes() && u == Some(r.usage),
                "{}: split at {i} gave {:?} and {u:?}",
                r.name,
                String::from_utf8_lossy(&out)
            );
        }
    }
}

#[test]
fn random_multi_way_splits_give_the_same_bytes_and_usage() {
    // xorshift64*: deterministic, so a failure names its seed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for r in recordings() {
        let body = r.body.as_bytes();
        for round in 0..300 {
            let n = match round {
                0 => body.len(),
                _ => (next() % 40) as usize + 2,
            };
            let mut cuts: Vec<usize> = (0..n)
                .map(|_| (next() % (body.len() as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            let (out, u) = feed(&r, &cut(body, &cuts));
            assert!(
                out == r.client.as_bytes() && u == Some(r.usage),
                "{}: cuts {cuts:?} gave {:?} and {u:?}",
                r.name,
                String::from_utf8_lossy(&out)
            );
        }
    }
}
