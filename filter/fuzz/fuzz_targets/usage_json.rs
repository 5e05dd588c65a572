//! usage::from_json and StreamUsage: never panic on any body or event, in
//! any dialect; the same input always gives the same answer; `Some` always
//! carries a count; a reported total is kept and a missing one is the sum of
//! input and output; Anthropic's cached input is part of its input and
//! Gemini's reasoning part of its output; a single-event stream reads the
//! same usage as the body for dialects whose stream chunks are bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::response::sse::{SseDecoder, SseEvent, Verdict};
use tollgate::response::usage::{from_json, Dialect, EventKind, StreamUsage, Usage};

const DIALECTS: [Dialect; 5] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::OpenAiEmbeddings,
    Dialect::Anthropic,
    Dialect::Gemini,
];

fn check(dialect: Dialect, usage: &Usage) {
    let any = [
        usage.input,
        usage.output,
        usage.cached_input,
        usage.reasoning,
        usage.total,
    ]
    .iter()
    .any(Option::is_some);
    assert!(any, "Some(usage) carries a count");
    if let (Some(input), Some(output), None) = (usage.input, usage.output, usage.total) {
        panic!("total missing though input {input} and output {output} are known");
    }
    match dialect {
        Dialect::Anthropic => {
            if let (Some(input), Some(cached)) = (usage.input, usage.cached_input) {
                assert!(cached <= input);
            }
            if let (Some(i), Some(o)) = (usage.input, usage.output) {
                assert_eq!(usage.total, Some(i.saturating_add(o)));
            }
        }
        Dialect::Gemini => {
            if let (Some(output), Some(reasoning)) = (usage.output, usage.reasoning) {
                assert!(reasoning <= output);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let single = SseEvent {
        event: b"",
        data,
        id: None,
        raw: data,
        end: data.len() as u64,
    };
    let is_array = data
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'[');
    for dialect in DIALECTS {
        let body = from_json(dialect, data);
        assert_eq!(body, from_json(dialect, data), "deterministic");
        if let Some(usage) = &body {
            check(dialect, usage);
        }

        let mut stream = StreamUsage::new(dialect);
        let kind = stream.on_event(&single);
        if dialect != Dialect::OpenAiChat {
            assert_eq!(kind, EventKind::Other);
        }
        if let Some(usage) = &stream.usage() {
            check(dialect, usage);
        }
        let same_shape = matches!(dialect, Dialect::OpenAiChat | Dialect::OpenAiEmbeddings)
            || (dialect == Dialect::Gemini && !is_array);
        if same_shape {
            assert_eq!(stream.usage(), body, "one chunk reads like the body");
        }

        // The same bytes as an event stream, every event read in this dialect.
        let mut decoder = SseDecoder::new(4096, false);
        let mut stream = StreamUsage::new(dialect);
        let mut on_event = |ev: &SseEvent<'_>| {
            stream.on_event(ev);
            Verdict::Keep
        };
        decoder.feed(data, &mut Vec::new(), &mut on_event);
        decoder.finish(&mut Vec::new(), &mut on_event);
        if let Some(usage) = &stream.usage() {
            check(dialect, usage);
        }
    }
});
