//! SseDecoder: never panics; feeding the input in fuzz-chosen chunks gives
//! the same events, verdict calls, output and oversized count as feeding it
//! whole; keeping every event reproduces the input byte for byte; observe
//! mode sees the same events and writes nothing; the held bytes never exceed
//! the bound; dropping events only removes bytes; replacing every event by
//! its own raw bytes (`SseEvent::raw`) also reproduces the input.
//!
//! Input layout: byte 0 picks the bound, byte 1 the events to drop (bit k of
//! it drops every event whose index is k mod 8), byte 2 the number of chunk
//! lengths that follow (mod 8); the rest is the stream, cut cyclically at
//! those lengths (a zero length feeds an empty chunk).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::response::sse::{SseDecoder, SseEvent, Verdict};

type Seen = Vec<(Vec<u8>, Vec<u8>, Option<Vec<u8>>)>;

/// Decodes `stream` fed as `chunks`; returns events, output and oversized.
fn decode(bound: usize, filtering: bool, drop_mask: u8, chunks: &[&[u8]]) -> (Seen, Vec<u8>, u32) {
    decode_with(bound, filtering, drop_mask, false, chunks)
}

/// [`decode`], or with `replace_rest` every event not dropped is replaced by
/// its own raw bytes.
fn decode_with(
    bound: usize,
    filtering: bool,
    drop_mask: u8,
    replace_rest: bool,
    chunks: &[&[u8]],
) -> (Seen, Vec<u8>, u32) {
    let mut decoder = SseDecoder::new(bound, filtering);
    let mut seen = Seen::new();
    let mut out = Vec::new();
    let mut on_event = |ev: &SseEvent<'_>| {
        let index = seen.len();
        seen.push((
            ev.event.to_vec(),
            ev.data.to_vec(),
            ev.id.map(<[u8]>::to_vec),
        ));
        if drop_mask & (1 << (index % 8)) != 0 {
            Verdict::Drop
        } else if replace_rest {
            Verdict::Replace(ev.raw.to_vec())
        } else {
            Verdict::Keep
        }
    };
    for chunk in chunks {
        decoder.feed(chunk, &mut out, &mut on_event);
        assert!(decoder.held_bytes() <= bound);
    }
    decoder.finish(&mut out, &mut on_event);
    assert_eq!(decoder.held_bytes(), 0);
    (seen, out, decoder.oversized)
}

fuzz_target!(|data: &[u8]| {
    let [bound_pick, drop_mask, n_lengths, rest @ ..] = data else {
        return;
    };
    let bound = match bound_pick % 4 {
        0 => usize::from(*bound_pick),
        1 => 16 + usize::from(*bound_pick),
        2 => 4096,
        _ => 1 << 20,
    };
    let n_lengths = usize::from(n_lengths % 8).min(rest.len());
    let (lengths, stream) = rest.split_at(n_lengths);

    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut left = stream;
    let mut turn = 0usize;
    while !left.is_empty() {
        let len = match lengths.get(turn % lengths.len().max(1)) {
            Some(&l) => usize::from(l).min(left.len()),
            None => left.len(),
        };
        let (chunk, after) = left.split_at(len);
        chunks.push(chunk);
        left = after;
        turn += 1;
        if turn > 4 * stream.len() + 8 {
            chunks.push(left);
            break;
        }
    }

    let whole = decode(bound, true, *drop_mask, &[stream]);
    let split = decode(bound, true, *drop_mask, &chunks);
    assert_eq!(split, whole, "chunking changed the result");
    assert!(whole.1.len() <= stream.len(), "dropping only removes bytes");

    let kept = decode(bound, true, 0, &chunks);
    assert_eq!(kept.1, stream, "keeping every event changes nothing");
    assert_eq!(kept.0, whole.0, "verdicts do not change the events seen");

    let replaced = decode_with(bound, true, 0, true, &chunks);
    assert_eq!(
        replaced.1, stream,
        "an event replaced by its raw bytes is unchanged"
    );
    let dropped_and_replaced = decode_with(bound, true, *drop_mask, true, &chunks);
    assert_eq!(dropped_and_replaced.1, whole.1);

    let observed = decode(bound, false, *drop_mask, &chunks);
    assert_eq!(observed.0, whole.0);
    assert!(observed.1.is_empty(), "observe mode writes nothing");
    assert_eq!(observed.2, whole.2);

    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode(bound, true, *drop_mask, &bytewise), whole);
});
