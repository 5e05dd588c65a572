//! Redactor: an echo of the key never survives, however the body is chunked.
//!
//! Input layout: byte 0 picks the secret's length (8..=40), byte 1 seeds the
//! chunk sizes, then come the secret's bytes, then a script for the body:
//! `0xFF k` inserts form `k` of the secret whole, `0xFE k n` inserts its
//! first `n` bytes (a near miss), any other byte is itself.
//!
//! Checked against a naive search over `forms(secret)`: the output has the
//! input's length, never contains the secret, masks exactly the bytes some
//! form covers (all with one mask byte, absent from the secret) and leaves
//! every other byte unchanged; chunked output and counts equal the one-shot
//! ones and `redact_value`'s; after each chunk the held tail is exactly the
//! longest suffix that is a proper prefix of a form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::response::redact::{forms, Redactor};

fuzz_target!(|data: &[u8]| {
    let [len_byte, seed, rest @ ..] = data else {
        return;
    };
    let len = 8 + usize::from(*len_byte) % 33;
    let Some((secret, script)) = rest.split_at_checked(len) else {
        return;
    };
    let forms = forms(secret);
    let body = build_body(&forms, script);

    let (coverage, matches) = naive_coverage(&forms, &body);

    // One shot.
    let mut redactor = Redactor::new(secret).expect("8..=40 bytes is long enough");
    let mut whole = Vec::new();
    let mut whole_count = redactor.feed(&body, &mut whole);
    whole_count += redactor.finish(&mut whole);
    assert_eq!(whole.len(), body.len());
    assert_eq!(whole_count, matches);

    let mask = coverage
        .iter()
        .zip(&whole)
        .find_map(|(&covered, &b)| covered.then_some(b));
    if let Some(mask) = mask {
        assert!(!secret.contains(&mask));
        if !forms.iter().flatten().any(|&b| b == b'*') {
            assert_eq!(mask, b'*');
        }
    }
    for ((&covered, &input), &output) in coverage.iter().zip(&body).zip(&whole) {
        if covered {
            assert_eq!(Some(output), mask);
        } else {
            assert_eq!(output, input);
        }
    }
    assert!(!whole.windows(secret.len()).any(|w| w == secret));

    // Header-value redaction agrees.
    match redactor.redact_value(&body) {
        Some((value, count)) => assert_eq!((value, count), (whole.clone(), matches)),
        None => assert_eq!((&whole, matches), (&body, 0)),
    }

    // Chunked, reusing the finished redactor, checking the held tail.
    let mut chunked = Vec::new();
    let mut chunked_count = 0;
    let mut state = u64::from(*seed) | 0x9e37_79b9_0000_0000;
    let mut at = 0;
    while at < body.len() {
        let size = chunk_size(&mut state, *seed).min(body.len() - at);
        let piece = &body[at..at + size];
        // As the response tap does: a chunk `pass` takes goes on unchanged
        // (it must then hold no echo and end in no possible start of one).
        if redactor.pass(piece) {
            chunked.extend_from_slice(piece);
        } else {
            chunked_count += redactor.feed(piece, &mut chunked);
        }
        at += size;
        assert_eq!(chunked.len() + redactor.held(), at);
        assert_eq!(redactor.held(), naive_hold(&forms, &body[..at]));
    }
    chunked_count += redactor.finish(&mut chunked);
    assert_eq!(redactor.held(), 0);
    assert_eq!(chunked, whole);
    assert_eq!(chunked_count, matches);
});

fn build_body(forms: &[Vec<u8>], script: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut ops = script.iter().copied();
    while let Some(op) = ops.next() {
        match op {
            0xFF => {
                let k = usize::from(ops.next().unwrap_or(0));
                body.extend_from_slice(&forms[k % forms.len()]);
            }
            0xFE => {
                let form = &forms[usize::from(ops.next().unwrap_or(0)) % forms.len()];
                let n = usize::from(ops.next().unwrap_or(0)) % form.len();
                body.extend_from_slice(&form[..n]);
            }
            b => body.push(b),
        }
    }
    body
}

/// Chunk sizes: all 1-byte for some seeds, otherwise mostly small with the
/// occasional empty or large chunk.
fn chunk_size(state: &mut u64, seed: u8) -> usize {
    if seed.is_multiple_of(4) {
        return 1;
    }
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    match *state % 16 {
        0 => 0,
        1 => 200,
        r => usize::try_from(r).unwrap_or(1) * usize::from(seed % 7 + 1),
    }
}

/// Which input bytes some form covers, and how many end positions end a form.
fn naive_coverage(forms: &[Vec<u8>], body: &[u8]) -> (Vec<bool>, u32) {
    let mut coverage = vec![false; body.len()];
    let mut matches = 0;
    for end in 1..=body.len() {
        let mut any = false;
        for form in forms {
            // The last-byte test first keeps libFuzzer's memcmp hook quiet.
            if body.get(end - 1) == form.last() && body[..end].ends_with(form) {
                coverage[end - form.len()..end].fill(true);
                any = true;
            }
        }
        matches += u32::from(any);
    }
    (coverage, matches)
}

/// The longest suffix of `seen` that is a proper prefix of some form.
fn naive_hold(forms: &[Vec<u8>], seen: &[u8]) -> usize {
    forms
        .iter()
        .filter_map(|f| {
            (1..f.len())
                .rev()
                .find(|&k| seen.last() == f.get(k - 1) && seen.ends_with(&f[..k]))
        })
        .max()
        .unwrap_or(0)
}
