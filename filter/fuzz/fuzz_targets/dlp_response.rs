//! DLP on a response: the SSE stage and the whole-body stage, on any bytes
//! split anywhere.
//!
//! The first byte picks the mode and a holdback, the next ones the split
//! points; the rest is the body. Checked:
//! - nothing panics, whatever the bytes and the holdback;
//! - with a holdback longer than any text the input can hold, the output
//!   does not depend on how the body is split into chunks: cut either way,
//!   or the same bytes and redactions, fed whole or in pieces. With a shorter one a
//!   match longer than the holdback can be caught or not depending on the
//!   split (by design: the holdback bounds what is held);
//! - a response in which nothing was redacted goes on byte for byte.
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use tollgate::body::dlp_scan::{DlpAction, DlpPolicy};
use tollgate::dlp::{Detector, DetectorId, DetectorSet};
use tollgate::response::dlp::ResponseDlp;

fn run(policy: &Rc<DlpPolicy>, sse: bool, body: &[u8], cuts: &[usize]) -> (Vec<u8>, u32, bool) {
    let mut dlp = ResponseDlp::new(policy.clone(), sse, false);
    let mut out = Vec::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(body.len());
    for (i, end) in ends.iter().enumerate() {
        let end = (*end).max(at);
        if dlp
            .feed(&body[at..end], i + 1 == ends.len(), &mut out)
            .is_err()
        {
            return (out, dlp.redacted, true);
        }
        at = end;
    }
    (out, dlp.redacted, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((cuts, body)) = rest.split_at_checked(4.min(rest.len())) else {
        return;
    };
    let sse = mode & 1 == 0;
    let small = 16 + usize::from(mode >> 1) * 16;
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * 17).collect();
    for holdback in [4096, small] {
        let policy = Rc::new(DlpPolicy {
            name: "out".into(),
            set: DetectorSet::all_builtins(),
            actions: Detector::ALL
                .iter()
                .map(|d| {
                    let a = if d.is_secret() { DlpAction::Block } else { DlpAction::Redact };
                    (DetectorId::Builtin(*d), a)
                })
                .collect(),
            block_set: None,
            responses: true,
            response_holdback: holdback,
        });
        let whole = run(&policy, sse, body, &[]);
        let split = run(&policy, sse, body, &cuts);
        if holdback == 4096 {
            // A cut response is cut either way (what was counted before
            // the cut may differ); one that is not is the same bytes.
            assert_eq!(whole.2, split.2, "the split changed whether it is cut");
            if !whole.2 {
                assert_eq!(whole, split, "the split changed the output");
            }
        }
        for (out, redacted, cut) in [whole, split] {
            if !cut && redacted == 0 {
                assert_eq!(out, body, "nothing redacted: byte for byte");
            }
        }
    }
});
