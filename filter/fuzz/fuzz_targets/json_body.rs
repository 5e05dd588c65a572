//! body::json::inspect and body::splice::splice, checked against serde_json:
//! - inspect never accepts a document serde_json rejects (except a number
//!   too large for an f64, which RFC 8259 allows), and every value it finds
//!   is, byte for byte, the serde_json value at that path (decoded strings,
//!   bools and integers agree too); holders exist exactly when the parent is
//!   an object;
//! - when serde_json accepts, inspect rejects only for a duplicate key or
//!   nesting deeper than 64, and exactly when a simple reference scan finds one;
//! - replacing every found number by `123` and inserting `"key":true` for
//!   every missing path with a holder yields JSON that serde_json reads as the
//!   original value with exactly those changes, and every byte outside the
//!   edits is unchanged.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate::body::json::{inspect, Found, JsonError, Kind, MAX_DEPTH};
use tollgate::body::splice::{splice, Edit};

const PATHS: &[&[&str]] = &[
    &[],
    &["model"],
    &["max_tokens"],
    &["stream"],
    &["stream_options", "include_usage"],
    &["generationConfig", "maxOutputTokens"],
    &["a"],
    &["b"],
    &[""],
    &["a", "b"],
    &["a", "a"],
    &["b", "a", "b"],
];

fuzz_target!(|data: &[u8]| {
    let ours = inspect(data, PATHS);
    let json = serde_json::from_slice::<Value>(data);
    match (&ours, &json) {
        (Ok(_), Err(e)) => assert!(
            e.to_string().starts_with("number out of range"),
            "accepted a body serde_json rejects: {e}"
        ),
        (Err(err), Ok(_)) => {
            assert!(err.offset() <= data.len());
            let shape = shape(data);
            match err {
                JsonError::TooDeep { .. } => assert!(shape.depth > MAX_DEPTH),
                JsonError::DuplicateKey { .. } => assert!(shape.duplicate),
                // A cap of ours, not a syntax rule (unreachable under -max_len=512).
                JsonError::TooManyKeys { .. } => {}
                other => panic!("serde_json accepts what inspect calls {}", other.code()),
            }
        }
        (Ok(_), Ok(_)) => {
            let shape = shape(data);
            assert!(shape.depth <= MAX_DEPTH && !shape.duplicate);
        }
        (Err(err), Err(_)) => assert!(err.offset() <= data.len()),
    }
    let (Ok(got), Ok(value)) = (ours, json) else {
        return;
    };
    assert_eq!(got.root, kind_of(&value));
    for (i, path) in PATHS.iter().enumerate() {
        let expected = lookup(&value, path);
        let found = got.found(i);
        assert_eq!(found.is_some(), expected.is_some(), "{path:?}");
        if let (Some(found), Some(expected)) = (found, expected) {
            check_found(data, found, expected);
        }
        let parent = path
            .split_last()
            .and_then(|(_, parent)| lookup(&value, parent))
            .and_then(Value::as_object);
        assert_eq!(got.holder(i).is_some(), parent.is_some(), "{path:?}");
        if let (Some(holder), Some(parent)) = (got.holder(i), parent) {
            assert_eq!(data.get(holder.open), Some(&b'{'));
            assert_eq!(data.get(holder.close), Some(&b'}'));
            assert_eq!(holder.empty, parent.is_empty());
            let raw = data.get(holder.open..=holder.close).unwrap();
            assert_eq!(
                &serde_json::from_slice::<Value>(raw).unwrap(),
                &Value::Object(parent.clone())
            );
        }
    }

    // Each number on its own: byte-exact outside the span, 123 inside.
    let mut edits = Vec::new();
    let mut expected = value.clone();
    for (i, path) in PATHS.iter().enumerate() {
        let Some(found) = got.found(i).filter(|f| f.kind == Kind::Number) else {
            continue;
        };
        let span = found.span.clone();
        let out = splice(
            data,
            vec![Edit::Replace {
                span: span.clone(),
                with: b"123".to_vec(),
            }],
        )
        .unwrap();
        let mut want = data[..span.start].to_vec();
        want.extend_from_slice(b"123");
        want.extend_from_slice(&data[span.end..]);
        assert_eq!(out, want);
        let again = inspect(&out, PATHS).unwrap();
        assert_eq!(again.found(i).unwrap().strict_u64(&out), Ok(123));
        let mut one = value.clone();
        *lookup_mut(&mut one, path).unwrap() = Value::from(123);
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), one);
        *lookup_mut(&mut expected, path).unwrap() = Value::from(123);
        edits.push(Edit::Replace {
            span,
            with: b"123".to_vec(),
        });
    }

    // Then every replace and every insert at once.
    for (i, path) in PATHS.iter().enumerate() {
        let (Some(holder), None) = (got.holder(i), got.found(i)) else {
            continue;
        };
        let Some((key, parent)) = path.split_last() else {
            continue;
        };
        let object = lookup_mut(&mut expected, parent)
            .and_then(Value::as_object_mut)
            .unwrap();
        object.insert((*key).to_owned(), Value::Bool(true));
        edits.push(Edit::Insert {
            object: holder,
            key: (*key).to_owned(),
            raw_value: b"true".to_vec(),
        });
    }
    let out = splice(data, edits).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), expected);
    let again = inspect(&out, PATHS).unwrap();
    for (i, path) in PATHS.iter().enumerate() {
        if let (Some(_), None) = (got.holder(i), got.found(i)) {
            if !path.is_empty() {
                assert_eq!(
                    again.found(i).and_then(|f| f.as_bool(&out)),
                    Some(true),
                    "{path:?}"
                );
            }
        }
    }
});

/// The found value agrees with serde_json's value at its path.
fn check_found(data: &[u8], found: &Found, expected: &Value) {
    assert_eq!(found.kind, kind_of(expected));
    let raw = found.raw(data).unwrap();
    assert_eq!(&serde_json::from_slice::<Value>(raw).unwrap(), expected);
    assert_eq!(found.string(data).as_deref(), expected.as_str());
    assert_eq!(found.as_bool(data), expected.as_bool());
    if let Ok(n) = found.strict_u64(data) {
        assert_eq!(expected.as_u64(), Some(n));
        assert!(n <= u64::from(u32::MAX));
        assert_eq!(raw, n.to_string().as_bytes());
    }
}

fn kind_of(value: &Value) -> Kind {
    match value {
        Value::Object(_) => Kind::Object,
        Value::Array(_) => Kind::Array,
        Value::String(_) => Kind::String,
        Value::Number(_) => Kind::Number,
        Value::Bool(_) => Kind::Bool,
        Value::Null => Kind::Null,
    }
}

fn lookup<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(*key))
}

fn lookup_mut<'v>(value: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object_mut()?.get_mut(*key))
}

/// What a plain reference scan of a body serde_json accepted finds.
struct Shape {
    depth: usize,
    duplicate: bool,
}

/// Scans valid JSON for its deepest nesting and any object with two equal
/// keys (decoded by serde_json).
fn shape(data: &[u8]) -> Shape {
    let mut stack: Vec<Option<HashSet<String>>> = Vec::new();
    let mut expect_key = false;
    let mut shape = Shape {
        depth: 0,
        duplicate: false,
    };
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'"' => {
                let mut end = i + 1;
                while data[end] != b'"' {
                    end += if data[end] == b'\\' { 2 } else { 1 };
                }
                if expect_key {
                    let key: String = serde_json::from_slice(&data[i..=end]).unwrap();
                    if let Some(Some(keys)) = stack.last_mut() {
                        shape.duplicate |= !keys.insert(key);
                    }
                }
                i = end;
            }
            b'{' => {
                stack.push(Some(HashSet::new()));
                expect_key = true;
            }
            b'[' => stack.push(None),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => expect_key = matches!(stack.last(), Some(Some(_))),
            b':' => expect_key = false,
            _ => {}
        }
        shape.depth = shape.depth.max(stack.len());
        i += 1;
    }
    shape
}
