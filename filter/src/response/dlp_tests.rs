//! Tests of DLP on responses: whole bodies, and SSE streams whose output
//! text splits a key across events and chunks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    non_snake_case
)]

use std::rc::Rc;

use super::dlp::{Cut, ResponseDlp, MAX_HELD_BYTES, MAX_WHOLE_BYTES};
use super::sse::{SseDecoder, Verdict};
use crate::body::dlp_scan::{DlpAction, DlpPolicy};
use crate::dlp::{Detector, DetectorId, DetectorSet};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A key of OpenAI's project format, made up at run time so that the
/// source holds no key-shaped string.
static KEY_TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "sk-proj-{}T3BlbkFJ{}",
        "AbCdEfGhIj".repeat(6),
        "KlMnOpQrSt".repeat(6)
    )
});
const LABEL: &str = "[REDACTED:openai_api_key]";

fn policy(holdback: usize) -> Rc<DlpPolicy> {
    let actions = vec![
        (
            DetectorId::Builtin(Detector::OpenaiApiKey),
            DlpAction::Block,
        ),
        (
            DetectorId::Builtin(Detector::PaymentCard),
            DlpAction::Redact,
        ),
        (DetectorId::Builtin(Detector::Email), DlpAction::Audit),
    ];
    let ds = [
        Detector::OpenaiApiKey,
        Detector::PaymentCard,
        Detector::Email,
    ];
    Rc::new(DlpPolicy {
        name: "out".into(),
        set: DetectorSet::new(&ds, Vec::new()).unwrap(),
        actions,
        block_set: None,
        responses: true,
        response_holdback: holdback,
    })
}

/// Feeds `body` in pieces of `piece` bytes; the bytes sent on.
fn run(dlp: &mut ResponseDlp, body: &[u8], piece: usize) -> Result<Vec<u8>, Cut> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = body.chunks(piece.max(1)).collect();
    if chunks.is_empty() {
        dlp.feed(&[], true, &mut out)?;
    }
    for (i, c) in chunks.iter().enumerate() {
        dlp.feed(c, i + 1 == chunks.len(), &mut out)?;
    }
    Ok(out)
}

/// An OpenAI chat stream whose content is `text` in pieces of `n` chars.
fn chat_stream(text: &str, n: usize) -> String {
    let mut s = String::from(
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    );
    let chars: Vec<char> = text.chars().collect();
    for part in chars.chunks(n) {
        let part: String = part.iter().collect();
        let json = serde_json::to_string(&part).unwrap();
        s += &format!("data: {{\"id\":\"c1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{json}}}}}]}}\n\n");
    }
    s += "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n";
    s
}

/// The datas of a stream's events.
fn datas(stream: &[u8]) -> Vec<String> {
    let mut d = SseDecoder::new(1 << 20, false);
    let mut v = Vec::new();
    let mut on = |e: &super::sse::SseEvent<'_>| {
        v.push(String::from_utf8(e.data.to_vec()).unwrap());
        Verdict::Keep
    };
    d.feed(stream, &mut Vec::new(), &mut on);
    d.finish(&mut Vec::new(), &mut on);
    v
}

/// The output text of a chat stream (content deltas joined).
fn chat_text(stream: &[u8]) -> String {
    datas(stream)
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[test]
fn a_key_split_across_events_and_chunks_is_redacted_and_nothing_else_changes() {
    let KEY: &str = &KEY_TEXT;
    let text = format!("Here is the key you gave me: {KEY} — keep it safe. Anything else?");
    for per_event in [1, 3, 7, 40] {
        let stream = chat_stream(&text, per_event);
        for piece in [1, 2, 13, 100, stream.len()] {
            let mut dlp = ResponseDlp::new(policy(256), true, false);
            let out = run(&mut dlp, stream.as_bytes(), piece).unwrap();
            let out_s = String::from_utf8(out.clone()).unwrap();
            assert_eq!(
                chat_text(&out),
                text.replace(KEY, LABEL),
                "{per_event} chars per event, pieces of {piece}"
            );
            // The key does not survive in any form, not even in pieces
            // spread over the events.
            assert!(!out_s.contains("AbCdEfGhIj"), "{out_s}");
            assert!(!chat_text(&out).contains("sk-proj"));
            // Every event is still there, in order, with its framing.
            let (a, b) = (datas(stream.as_bytes()), datas(&out));
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                let (x, y): (serde_json::Value, serde_json::Value) = (
                    serde_json::from_str(x).unwrap_or(serde_json::Value::Null),
                    serde_json::from_str(y).unwrap_or(serde_json::Value::Null),
                );
                assert_eq!(x["id"], y["id"]);
                assert_eq!(x["usage"], y["usage"]);
            }
            assert_eq!(dlp.redacted, 1);
            assert_eq!(dlp.counts, vec![("openai_api_key".into(), 1)]);
        }
    }
}

#[test]
fn a_stream_without_matches_goes_on_byte_for_byte_in_any_split() {
    let text = "Order 12345 shipped on 2026-11-30; ticket 987654321. UUID 123e4567-e89b-12d3-a456-426614174000. ".repeat(5);
    let stream = chat_stream(&text, 4);
    for piece in [1, 5, 64, stream.len()] {
        let mut dlp = ResponseDlp::new(policy(256), true, false);
        let out = run(&mut dlp, stream.as_bytes(), piece).unwrap();
        assert_eq!(out, stream.as_bytes(), "pieces of {piece}");
        assert_eq!(dlp.redacted, 0);
    }
}

#[test]
fn text_waits_for_the_holdback_and_events_without_text_do_not() {
    let text = "x".repeat(300);
    let stream = chat_stream(&text, 10);
    let mut dlp = ResponseDlp::new(policy(100), true, false);
    let mut out = Vec::new();
    let events: Vec<&str> = stream.split_inclusive("\n\n").collect();
    // The role event (no text) goes at once.
    dlp.feed(events[0].as_bytes(), false, &mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), events[0]);
    let mut sent_text = Vec::new();
    for (i, e) in events.iter().enumerate().skip(1).take(30) {
        dlp.feed(e.as_bytes(), false, &mut out).unwrap();
        let seen = chat_text(&out).len();
        let fed = 10 * i;
        assert!(
            seen + 100 <= fed.max(100),
            "after {fed} bytes of text, {seen} sent: less than 100 behind"
        );
        sent_text.push(seen);
    }
    // It does go on: at most one event's text more than the holdback held.
    assert!(*sent_text.last().unwrap() >= 300 - 100 - 10);
    for e in events.iter().skip(31) {
        dlp.feed(e.as_bytes(), false, &mut out).unwrap();
    }
    dlp.feed(&[], true, &mut out).unwrap();
    assert!(out == stream.as_bytes());
}

#[test]
fn a_whole_json_body_is_redacted_in_place_and_audit_only_counts() {
    let KEY: &str = &KEY_TEXT;
    let body = format!(
        r#"{{"id":"r","choices":[{{"message":{{"role":"assistant","content":"Your card 4111 1111 1111 1111, key {}, mail a.b@example.com"}}}}]}}"#,
        KEY.replacen('s', "\\u0073", 1)
    );
    for piece in [1, 9, body.len()] {
        let mut dlp = ResponseDlp::new(policy(256), false, false);
        let out = run(&mut dlp, body.as_bytes(), piece).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            r#"{"id":"r","choices":[{"message":{"role":"assistant","content":"Your card [REDACTED:payment_card], key [REDACTED:openai_api_key], mail a.b@example.com"}}]}"#
        );
        assert_eq!(dlp.redacted, 2);
        assert_eq!(dlp.counts.len(), 3, "{:?}", dlp.counts);
    }
}

#[test]
fn nothing_of_a_whole_body_goes_before_its_end() {
    let KEY: &str = &KEY_TEXT;
    let mut dlp = ResponseDlp::new(policy(256), false, false);
    let mut out = Vec::new();
    dlp.feed(b"{\"a\":\"", false, &mut out).unwrap();
    dlp.feed(KEY.as_bytes(), false, &mut out).unwrap();
    assert!(out.is_empty());
    dlp.feed(b"\"}", true, &mut out).unwrap();
    assert_eq!(out, format!("{{\"a\":\"{LABEL}\"}}").as_bytes());
}

#[test]
fn a_body_that_is_not_json_is_scanned_as_text() {
    let KEY: &str = &KEY_TEXT;
    let body = format!("upstream error: bad key {KEY}\n");
    let mut dlp = ResponseDlp::new(policy(256), false, false);
    let out = run(&mut dlp, body.as_bytes(), 5).unwrap();
    assert_eq!(out, format!("upstream error: bad key {LABEL}\n").as_bytes());
}

#[test]
fn other_strings_are_scanned_within_their_event() {
    let KEY: &str = &KEY_TEXT;
    let stream = format!(
        ": keep-alive\n\nevent: error\ndata: {{\"type\":\"error\",\"error\":{{\"message\":\"bad key {KEY}\"}}}}\n\n\n"
    );
    for piece in [1, 7, stream.len()] {
        let mut dlp = ResponseDlp::new(policy(256), true, false);
        let out = run(&mut dlp, stream.as_bytes(), piece).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            stream.replace(KEY, LABEL),
            "comments and blank lines keep their place"
        );
    }
}

#[test]
fn anthropic_and_gemini_output_strings_are_joined_too() {
    let KEY: &str = &KEY_TEXT;
    let half = KEY.len() / 2;
    let (a, b) = (&KEY[..half], &KEY[half..]);
    let anthropic = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"content\":[]}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"key: {a}\"}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{b} ok\"}}}}\n\n\
event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let gemini = format!(
        "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"key: {a}\"}}],\"role\":\"model\"}}}}]}}\r\n\r\n\
data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{b} ok\"}}],\"role\":\"model\"}}}}],\"usageMetadata\":{{\"totalTokenCount\":9}}}}\r\n\r\n"
    );
    for stream in [anthropic, gemini] {
        for piece in [1, 11, stream.len()] {
            let mut dlp = ResponseDlp::new(policy(256), true, false);
            let out = String::from_utf8(run(&mut dlp, stream.as_bytes(), piece).unwrap()).unwrap();
            let want = stream
                .replace(&format!("key: {a}"), &format!("key: {LABEL}"))
                .replace(&format!("{b} ok"), " ok");
            assert_eq!(out, want);
        }
    }
}

#[test]
fn an_event_of_several_data_lines_is_scanned_and_cut_if_it_needs_an_edit() {
    let KEY: &str = &KEY_TEXT;
    // Joined, its data is JSON: scanned. Clean, it goes on as it came.
    let clean = "id: 7\ndata: {\"content\":\ndata: \"hello\"}\nevent: x\n\n";
    let mut dlp = ResponseDlp::new(policy(256), true, false);
    assert_eq!(
        run(&mut dlp, clean.as_bytes(), 3).unwrap(),
        clean.as_bytes()
    );
    // With a match, the edit cannot be placed in its lines (providers send
    // one `data:` line per event): cut, never sent with the key.
    let stream = format!("id: 7\ndata: {{\"content\":\ndata: \"{KEY}\"}}\nevent: x\n\n");
    let mut dlp = ResponseDlp::new(policy(256), true, false);
    assert_eq!(run(&mut dlp, stream.as_bytes(), 3), Err(Cut::Unscannable));
}

#[test]
fn past_its_bounds_a_response_is_cut_never_sent_unscanned() {
    let mut dlp = ResponseDlp::new(policy(256), false, false);
    let big = vec![b' '; MAX_WHOLE_BYTES];
    let mut out = Vec::new();
    dlp.feed(&big, false, &mut out).unwrap();
    assert_eq!(dlp.feed(b"{}", true, &mut out), Err(Cut::TooLarge));
    assert!(out.is_empty());

    // Text that never reaches the holdback, behind which events pile up.
    let mut dlp = ResponseDlp::new(policy(256), true, false);
    let mut out = Vec::new();
    dlp.feed(b"data: {\"content\":\"a\"}\n\n", false, &mut out)
        .unwrap();
    let filler = "data: {\"id\":\"x\"}\n\n".repeat(4096);
    let mut result = Ok(());
    for _ in 0..(MAX_HELD_BYTES / filler.len() + 2) {
        result = dlp.feed(filler.as_bytes(), false, &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(Cut::Unscannable));
    assert!(out.is_empty(), "nothing after the held text went out");

    // An event over the decoder's bound.
    let mut dlp = ResponseDlp::new(policy(256), true, false);
    let huge = format!("data: {{\"x\":\"{}\"}}\n\n", "y".repeat(300 * 1024));
    assert_eq!(run(&mut dlp, huge.as_bytes(), 4096), Err(Cut::Unscannable));
}

#[test]
fn any_split_of_any_stream_gives_the_same_output() {
    let KEY: &str = &KEY_TEXT;
    let text = format!("mail x@example.com card 4111-1111-1111-1111 and {KEY} end");
    let stream = chat_stream(&text, 2);
    let mut whole = ResponseDlp::new(policy(200), true, false);
    let want = run(&mut whole, stream.as_bytes(), stream.len()).unwrap();
    let mut seed = 0x1234_5678_u64;
    for _ in 0..200 {
        let mut dlp = ResponseDlp::new(policy(200), true, false);
        let mut out = Vec::new();
        let mut rest = stream.as_bytes();
        while !rest.is_empty() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 40) as usize + 1;
            let (c, r) = rest.split_at(n.min(rest.len()));
            rest = r;
            dlp.feed(c, rest.is_empty(), &mut out).unwrap();
        }
        assert!(out == want, "a split changed the output");
    }
    assert_eq!(
        chat_text(&want),
        text.replace(KEY, LABEL)
            .replace("4111-1111-1111-1111", "[REDACTED:payment_card]")
    );
}

#[test]
fn in_dry_run_matches_are_counted_and_nothing_changes() {
    let KEY: &str = &KEY_TEXT;
    let text = format!("the key {KEY} again, card 4111 1111 1111 1111");
    let stream = chat_stream(&text, 3);
    let json = format!("{{\"content\":\"{text}\"}}");
    for (body, sse) in [(&stream, true), (&json, false)] {
        let mut dlp = ResponseDlp::new(policy(256), sse, true);
        let out = run(&mut dlp, body.as_bytes(), 9).unwrap();
        assert!(out == body.as_bytes(), "dry_run changes nothing");
        assert_eq!(dlp.redacted, 0);
        assert_eq!(
            dlp.counts,
            vec![("openai_api_key".into(), 1), ("payment_card".into(), 1)]
        );
    }
}
