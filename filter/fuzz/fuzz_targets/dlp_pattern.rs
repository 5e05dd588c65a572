//! Operator DLP patterns: the compiler and the matcher, on any bytes.
//!
//! The input is a pattern and a text, split at the first NUL byte (the
//! seeds are identifier shapes and texts holding them). Checked:
//! - compiling any pattern never panics: it is accepted or refused with an
//!   offset inside the source;
//! - an accepted pattern, scanned over any text (with and without case
//!   folding), never panics; its matches are in bounds, sorted, not
//!   overlapping, start and end on character boundaries of a UTF-8 text,
//!   and are not glued to a letter or digit where their own edge is one;
//! - a second scan of the same text finds the same matches (the memo of a
//!   scan never leaks into the next).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::dlp::{DetectorSet, DetectorSetError, Literal};

fuzz_target!(|data: &[u8]| {
    let (src, text) = match data.iter().position(|&b| b == 0) {
        Some(k) => (&data[..k], &data[k + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    for fold in [false, true] {
        let lit = Literal {
            name: "p".into(),
            text: src.into(),
            ignore_ascii_case: fold,
            pattern: true,
        };
        let set = match DetectorSet::new(&[], vec![lit]) {
            Ok(set) => set,
            Err(DetectorSetError::PatternInvalid { at, .. }) => {
                assert!(at <= src.len(), "offset {at} inside {src:?}");
                continue;
            }
            Err(DetectorSetError::EmptyLiteral { .. }) => {
                assert!(src.is_empty());
                continue;
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        };
        let mut out = Vec::new();
        set.scan(text, &mut out);
        let utf8 = std::str::from_utf8(text).ok();
        let alnum = |p: usize| text.get(p).is_some_and(u8::is_ascii_alphanumeric);
        let mut last = 0;
        for m in &out {
            assert!(m.start < m.end && m.end <= text.len());
            assert!(m.start >= last, "sorted, not overlapping");
            last = m.end;
            if let Some(s) = utf8 {
                assert!(s.is_char_boundary(m.start) && s.is_char_boundary(m.end));
            }
            if alnum(m.end - 1) {
                assert!(!alnum(m.end), "glued after: {:?}", &text[m.start..]);
            }
            if alnum(m.start) && m.start > 0 {
                assert!(!alnum(m.start - 1), "glued before");
            }
        }
        let mut again = Vec::new();
        set.scan(text, &mut again);
        assert_eq!(out, again);
    }
});
