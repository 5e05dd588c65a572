//! Byte-exact rewrites of a JSON body that [`crate::body::json::inspect`]
//! accepted.
//!
//! The filter forwards the bytes the client sent, changing only the values it
//! must: re-serialising a tree would reorder keys and respell numbers and
//! escapes, so the request sent upstream would differ from the one checked.
//! [`splice`] guarantees:
//! - every byte outside a replaced span is copied unchanged and in order;
//! - an [`Edit::Insert`] adds `"key":value` as the last member of its object,
//!   just before the `}`, with a `,` first unless the object was empty and
//!   nothing was inserted into it yet; the key is JSON-escaped, so the result
//!   stays well formed when the inserted values are;
//! - inserts into the same object keep their given order, and an insert at the
//!   offset where a replaced span starts goes before the replacement;
//! - overlapping or out-of-range edits, and an insert whose object does not
//!   match the body, are refused before anything is written;
//! - the output is allocated once, at its exact final size.
//!
//! Replacement bytes and inserted values are written as given: the caller
//! supplies valid JSON.

use core::fmt;
use core::ops::Range;

use super::json::ObjectSpan;

/// One change to a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the bytes in `span` with `with`.
    Replace { span: Range<usize>, with: Vec<u8> },
    /// Add `"key":raw_value` as the last member of `object`.
    Insert {
        object: ObjectSpan,
        key: String,
        raw_value: Vec<u8>,
    },
}

impl Edit {
    /// The bytes of the body this edit consumes (empty for an insert, at the
    /// object's `}`).
    fn range(&self) -> Range<usize> {
        match self {
            Self::Replace { span, .. } => span.clone(),
            Self::Insert { object, .. } => object.close..object.close,
        }
    }

    /// The number of bytes this edit writes, when a comma precedes it or not.
    fn written_len(&self, comma: bool) -> usize {
        match self {
            Self::Replace { with, .. } => with.len(),
            Self::Insert { key, raw_value, .. } => usize::from(comma)
                .saturating_add(escaped_len(key))
                .saturating_add(3) // two quotes and the colon
                .saturating_add(raw_value.len()),
        }
    }
}

/// Why a set of edits was refused; `edit` and `other` are indices into the
/// edits as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpliceError {
    /// A replaced span ends before it starts or past the end of the body, or
    /// an insert's object closes past the end of the body.
    OutOfRange { edit: usize },
    /// Two edits touch the same bytes (or an insert falls inside a replaced
    /// span).
    Overlap { edit: usize, other: usize },
    /// An insert's object does not match the body: no `{` at its open offset,
    /// no `}` at its close offset, or an `empty` flag that disagrees.
    NotAnObject { edit: usize },
}

impl SpliceError {
    /// A stable snake_case name for logs and counters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::OutOfRange { .. } => "edit_out_of_range",
            Self::Overlap { .. } => "edits_overlap",
            Self::NotAnObject { .. } => "insert_not_in_object",
        }
    }
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { edit } => write!(f, "body edit {edit} is outside the body"),
            Self::Overlap { edit, other } => {
                write!(f, "body edits {edit} and {other} overlap")
            }
            Self::NotAnObject { edit } => {
                write!(
                    f,
                    "body edit {edit} inserts into something that is not that object"
                )
            }
        }
    }
}

impl std::error::Error for SpliceError {}

/// Applies `edits` to `body` (see the module guarantees) and returns the new
/// body. The edits may be given in any order.
pub fn splice(body: &[u8], edits: Vec<Edit>) -> Result<Vec<u8>, SpliceError> {
    let mut order: Vec<(usize, Edit)> = edits.into_iter().enumerate().collect();
    for (n, edit) in &order {
        check(body, *n, edit)?;
    }
    // Stable: inserts at one offset keep their given order (the position
    // given is part of the key).
    crate::sort::sort_by_key(&mut order, |(n, edit)| {
        let range = edit.range();
        (range.start, range.end, *n)
    });
    let mut size = body.len();
    let mut last_insert: Option<usize> = None;
    let mut previous: Option<(usize, Range<usize>)> = None;
    for (n, edit) in &order {
        let range = edit.range();
        if let Some((other, prev)) = &previous {
            if prev.end > range.start {
                return Err(SpliceError::Overlap {
                    edit: *n,
                    other: *other,
                });
            }
        }
        let comma = needs_comma(edit, &mut last_insert);
        size = size
            .saturating_sub(range.len())
            .saturating_add(edit.written_len(comma));
        previous = Some((*n, range));
    }

    let mut out = Vec::with_capacity(size);
    let mut copied = 0;
    let mut last_insert = None;
    for (_, edit) in &order {
        let range = edit.range();
        out.extend_from_slice(body.get(copied..range.start).unwrap_or_default());
        match edit {
            Edit::Replace { with, .. } => out.extend_from_slice(with),
            Edit::Insert { key, raw_value, .. } => {
                if needs_comma(edit, &mut last_insert) {
                    out.push(b',');
                }
                out.push(b'"');
                escape_into(key, &mut out);
                out.extend_from_slice(b"\":");
                out.extend_from_slice(raw_value);
            }
        }
        copied = range.end;
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    Ok(out)
}

/// Checks one edit against the body on its own.
fn check(body: &[u8], edit_index: usize, edit: &Edit) -> Result<(), SpliceError> {
    let out_of_range = SpliceError::OutOfRange { edit: edit_index };
    match edit {
        Edit::Replace { span, .. } => {
            if span.start > span.end || span.end > body.len() {
                return Err(out_of_range);
            }
        }
        Edit::Insert { object, .. } => {
            if object.close >= body.len() {
                return Err(out_of_range);
            }
            let brackets =
                body.get(object.open) == Some(&b'{') && body.get(object.close) == Some(&b'}');
            if !brackets || object.open >= object.close || is_empty(body, *object) != object.empty {
                return Err(SpliceError::NotAnObject { edit: edit_index });
            }
        }
    }
    Ok(())
}

/// Whether the object has no members: only whitespace between its brackets.
/// (In valid JSON the last byte before a non-empty object's `}`, whitespace
/// aside, ends a value and so is never its `{`.)
fn is_empty(body: &[u8], object: ObjectSpan) -> bool {
    let inside = body.get(object.open + 1..object.close).unwrap_or_default();
    inside
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Whether an insert needs a leading comma: its object had members, or
/// something was inserted into it already. `last_insert` is the close offset
/// of the previous insert, in output order.
fn needs_comma(edit: &Edit, last_insert: &mut Option<usize>) -> bool {
    let Edit::Insert { object, .. } = edit else {
        return false;
    };
    let comma = !object.empty || *last_insert == Some(object.close);
    *last_insert = Some(object.close);
    comma
}

/// The JSON escape of `c`, if it needs one.
fn escape_of(c: char) -> Option<&'static str> {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        _ => CONTROL.get(usize::try_from(u32::from(c)).ok()?).copied(),
    }
}

/// The length of `key` once JSON-escaped (without quotes).
fn escaped_len(key: &str) -> usize {
    key.chars()
        .map(|c| escape_of(c).map_or(c.len_utf8(), str::len))
        .sum()
}

/// Appends `key`, JSON-escaped (without quotes), to `out`.
fn escape_into(key: &str, out: &mut Vec<u8>) {
    let mut buf = [0u8; 4];
    for c in key.chars() {
        match escape_of(c) {
            Some(escape) => out.extend_from_slice(escape.as_bytes()),
            None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::body::json::{inspect, Inspected};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MODEL: &[&str] = &["model"];
    const MAX_TOKENS: &[&str] = &["max_tokens"];
    const INCLUDE_USAGE: &[&str] = &["stream_options", "include_usage"];

    fn look(body: &str) -> Inspected {
        inspect(body.as_bytes(), &[MODEL, MAX_TOKENS, INCLUDE_USAGE]).unwrap()
    }

    fn apply(body: &str, edits: Vec<Edit>) -> String {
        let out = splice(body.as_bytes(), edits).unwrap();
        let text = String::from_utf8(out).unwrap();
        inspect(text.as_bytes(), &[]).unwrap_or_else(|e| panic!("{text}: {e}"));
        text
    }

    fn replace(span: Range<usize>, with: &str) -> Edit {
        Edit::Replace {
            span,
            with: with.as_bytes().to_vec(),
        }
    }

    fn insert(object: ObjectSpan, key: &str, raw_value: &str) -> Edit {
        Edit::Insert {
            object,
            key: key.to_owned(),
            raw_value: raw_value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn replaces_a_value_and_keeps_every_other_byte() {
        let body = "{ \"model\" :\t\"gpt-4\\u006f\" ,\r\n  \"max_tokens\": 1e3 , \"x\":[1.50,\"\\u00e9\"]}\n";
        let got = look(body);
        let span = got.found(1).unwrap().span.clone();
        let out = apply(body, vec![replace(span, "256")]);
        assert_eq!(
            out,
            "{ \"model\" :\t\"gpt-4\\u006f\" ,\r\n  \"max_tokens\": 256 , \"x\":[1.50,\"\\u00e9\"]}\n"
        );
    }

    #[test]
    fn inserts_into_an_empty_object_without_a_comma() {
        let body = "{\"stream_options\": {  }, \"model\":\"m\"}";
        let holder = look(body).holder(2).unwrap();
        let out = apply(body, vec![insert(holder, "include_usage", "true")]);
        assert_eq!(
            out,
            "{\"stream_options\": {  \"include_usage\":true}, \"model\":\"m\"}"
        );
        assert_eq!(
            apply("{}", vec![insert(look("{}").holder(0).unwrap(), "a", "1")]),
            "{\"a\":1}"
        );
    }

    #[test]
    fn inserts_into_a_non_empty_object_as_its_last_member() {
        let body = "{\"model\":\"m\" ,\n \"stream_options\":{\"a\":1 }\n}";
        let got = look(body);
        let out = apply(
            body,
            vec![
                insert(got.holder(2).unwrap(), "include_usage", "true"),
                insert(got.holder(1).unwrap(), "max_tokens", "4096"),
            ],
        );
        assert_eq!(
            out,
            "{\"model\":\"m\" ,\n \"stream_options\":{\"a\":1 ,\"include_usage\":true}\n,\"max_tokens\":4096}"
        );
    }

    #[test]
    fn keeps_the_given_order_of_several_inserts_into_one_object() {
        let root = look("{ }").holder(0).unwrap();
        let out = apply(
            "{ }",
            vec![
                insert(root, "b", "2"),
                insert(root, "a", "1"),
                insert(root, "c", "[]"),
            ],
        );
        assert_eq!(out, "{ \"b\":2,\"a\":1,\"c\":[]}");
        let root = look("{\"z\":0}").holder(0).unwrap();
        let out = apply(
            "{\"z\":0}",
            vec![insert(root, "b", "2"), insert(root, "a", "1")],
        );
        assert_eq!(out, "{\"z\":0,\"b\":2,\"a\":1}");
    }

    #[test]
    fn combines_replaces_and_inserts_given_in_any_order() {
        let body = r#"{"model":"a","max_tokens":9,"stream_options":{}}"#;
        let got = look(body);
        let out = apply(
            body,
            vec![
                insert(got.holder(2).unwrap(), "include_usage", "true"),
                replace(got.found(1).unwrap().span.clone(), "100"),
                replace(got.found(0).unwrap().span.clone(), "\"gpt-4o\""),
            ],
        );
        assert_eq!(
            out,
            r#"{"model":"gpt-4o","max_tokens":100,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn escapes_inserted_keys() {
        let root = look("{}").holder(0).unwrap();
        let out = apply("{}", vec![insert(root, "a\"b\\c\nd\u{1}é", "0")]);
        assert_eq!(out, "{\"a\\\"b\\\\c\\nd\\u0001é\":0}");
        let got = inspect(out.as_bytes(), &[&["a\"b\\c\nd\u{1}é"]]).unwrap();
        assert!(got.found(0).is_some());
    }

    #[test]
    fn rejects_overlapping_edits() {
        let body = r#"{"model":"a","max_tokens":9}"#;
        let got = look(body);
        let model = got.found(0).unwrap().span.clone();
        let err = splice(
            body.as_bytes(),
            vec![
                replace(model.clone(), "1"),
                replace(model.start + 1..model.end + 2, "2"),
            ],
        )
        .unwrap_err();
        assert_eq!(err, SpliceError::Overlap { edit: 1, other: 0 });
        assert_eq!(err.code(), "edits_overlap");
        // The same span twice.
        let err = splice(
            body.as_bytes(),
            vec![replace(model.clone(), "1"), replace(model, "2")],
        );
        assert_eq!(err.map_err(|e| e.code()), Err("edits_overlap"));
        // An insert into an object that is being replaced whole.
        let root = got.holder(0).unwrap();
        let err = splice(
            body.as_bytes(),
            vec![insert(root, "k", "1"), replace(0..body.len(), "{}")],
        );
        assert_eq!(err, Err(SpliceError::Overlap { edit: 0, other: 1 }));
    }

    #[test]
    fn allows_edits_that_only_touch() {
        let out = splice(
            b"[1,2]",
            vec![replace(1..2, "3"), replace(2..3, ";"), replace(3..4, "4")],
        );
        assert_eq!(out.unwrap(), b"[3;4]");
        let out = splice(b"[1]", vec![replace(1..1, "0,"), replace(1..2, "2")]);
        assert_eq!(out.unwrap(), b"[0,2]");
    }

    #[test]
    fn rejects_out_of_range_edits_and_mismatched_objects() {
        let body = br#"{"a":{}}"#;
        let err = splice(body, vec![replace(2..body.len() + 1, "")]);
        assert_eq!(err, Err(SpliceError::OutOfRange { edit: 0 }));
        #[allow(clippy::reversed_empty_ranges)]
        let err = splice(body, vec![replace(1..1, ""), replace(3..2, "")]);
        assert_eq!(err, Err(SpliceError::OutOfRange { edit: 1 }));
        let object = |open, close, empty| ObjectSpan { open, close, empty };
        let cases = [
            (object(0, 8, false), "edit_out_of_range"),
            (object(1, 7, false), "insert_not_in_object"),
            (object(5, 7, true), "insert_not_in_object"),
            (object(5, 6, false), "insert_not_in_object"),
            (object(0, 7, true), "insert_not_in_object"),
            (object(7, 7, true), "insert_not_in_object"),
        ];
        for (object, want) in cases {
            let err = splice(body, vec![insert(object, "k", "1")]).unwrap_err();
            assert_eq!(err.code(), want, "{object:?}");
        }
        assert_eq!(
            splice(body, vec![insert(object(5, 6, true), "k", "1")]).unwrap(),
            br#"{"a":{"k":1}}"#
        );
    }

    #[test]
    fn with_no_edits_returns_the_body_unchanged() {
        let body = b" {\"a\" : 1 }\t";
        assert_eq!(splice(body, Vec::new()).unwrap(), body);
    }

    #[test]
    fn allocates_the_output_exactly_once() {
        let body = r#"{"model":"a","stream_options":{}}"#;
        let got = look(body);
        let out = splice(
            body.as_bytes(),
            vec![
                replace(got.found(0).unwrap().span.clone(), "\"longer-model\""),
                insert(got.holder(2).unwrap(), "include_usage\n", "true"),
                insert(got.holder(1).unwrap(), "max_tokens", "4096"),
            ],
        )
        .unwrap();
        assert_eq!(out.capacity(), out.len());
    }
}
