//! The `"usage":null` member that OpenAI adds to every chat chunk once
//! `stream_options.include_usage` is on, cut out again for a client that
//! did not ask for usage (Tollgate asked for it), so that the client gets the
//! chunk it would have had without Tollgate.
//!
//! Invariants:
//! - Only a top-level member named `usage` (after decoding escapes) whose
//!   value is `null` is cut, with exactly one comma next to it: the member
//!   before it keeps its bytes, the whitespace OpenAI never writes is kept
//!   as it was, and every other byte of the event is unchanged.
//! - Anything doubtful leaves the event as it came: more than one data line,
//!   JSON the strict inspector refuses (a duplicate `usage`, say), a `usage`
//!   that is not `null`.

use core::ops::Range;

use crate::body::json::{self, Kind};

/// `raw` (one SSE event's bytes) without its data's top-level
/// `"usage":null` member, or `None` to leave the event unchanged. `data` is
/// the event's data, which must lie inside `raw` (one data line).
pub fn strip(raw: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let offset = (data.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    let end = offset.checked_add(data.len())?;
    if raw.get(offset..end)? != data {
        return None;
    }
    let cut = member_span(data)?;
    let mut out = Vec::with_capacity(raw.len().saturating_sub(cut.len()));
    out.extend_from_slice(raw.get(..offset.checked_add(cut.start)?)?);
    out.extend_from_slice(raw.get(offset.checked_add(cut.end)?..)?);
    Some(out)
}

/// The bytes of `json` to remove: the top-level `usage` member whose value
/// is `null`, with the comma before it (or, for the first member, after it).
fn member_span(json: &[u8]) -> Option<Range<usize>> {
    let inspected = json::inspect(json, &[&["usage"]]).ok()?;
    if inspected.root != Kind::Object {
        return None;
    }
    let value = inspected.found(0)?;
    if value.kind != Kind::Null {
        return None;
    }
    let holder = inspected.holder(0)?;
    let key_start = key_start(json, value.span.start)?;
    // The comma before the key, past whitespace, belongs to this member…
    let before = skip_space_back(json, key_start);
    if before > holder.open.checked_add(1)? {
        let comma = before.checked_sub(1)?;
        return (json.get(comma) == Some(&b',')).then_some(comma..value.span.end);
    }
    // …unless it is the first member: then the comma after it does.
    let after = skip_space(json, value.span.end);
    match json.get(after) {
        Some(b',') => Some(key_start..skip_space(json, after.checked_add(1)?)),
        Some(b'}') => Some(key_start..value.span.end),
        _ => None,
    }
}

/// Where the key of the member whose value starts at `value` begins (its
/// opening quote), walking back over `:` and whitespace.
fn key_start(json: &[u8], value: usize) -> Option<usize> {
    let colon = skip_space_back(json, value).checked_sub(1)?;
    if json.get(colon) != Some(&b':') {
        return None;
    }
    let close = skip_space_back(json, colon).checked_sub(1)?;
    if json.get(close) != Some(&b'"') {
        return None;
    }
    // The opening quote: the nearest quote before the closing one that is
    // not escaped (preceded by an even number of backslashes).
    let mut i = close;
    while i > 0 {
        i -= 1;
        if json.get(i) == Some(&b'"') {
            let backslashes = json
                .get(..i)?
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first index at or after `at` that is not JSON whitespace.
fn skip_space(json: &[u8], at: usize) -> usize {
    let mut i = at;
    while json.get(i).is_some_and(|&b| is_space(b)) {
        i += 1;
    }
    i
}

/// The index just after the last non-whitespace byte before `at`.
fn skip_space_back(json: &[u8], at: usize) -> usize {
    let mut i = at;
    while i > 0 && json.get(i - 1).is_some_and(|&b| is_space(b)) {
        i -= 1;
    }
    i
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `strip` on `data: <json>\n\n`, as text.
    fn stripped(json: &str) -> Option<String> {
        let raw = format!("data: {json}\n\n");
        let data = &raw.as_bytes()[6..6 + json.len()];
        strip(raw.as_bytes(), data).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn openai_chunks_lose_exactly_their_null_usage() {
        let chunk = r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}"#;
        let want = r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert_eq!(stripped(chunk), Some(format!("data: {want}\n\n")));
    }

    #[test]
    fn the_member_goes_with_one_comma_wherever_it_is() {
        let cases = [
            (r#"{"usage":null,"a":1}"#, r#"{"a":1}"#),
            (r#"{"a":1,"usage":null,"b":2}"#, r#"{"a":1,"b":2}"#),
            (r#"{"usage":null}"#, r#"{}"#),
            (r#"{ "a" : 1 , "usage" : null }"#, r#"{ "a" : 1  }"#),
            (r#"{"us\u0061ge":null,"a":1}"#, r#"{"a":1}"#),
            (r#"{"a":"x\"","usage":null}"#, r#"{"a":"x\""}"#),
        ];
        for (json, want) in cases {
            assert_eq!(stripped(json), Some(format!("data: {want}\n\n")), "{json}");
        }
    }

    #[test]
    fn anything_doubtful_is_left_alone() {
        for json in [
            r#"{"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"usage":null}]}"#,
            r#"{"usage":null,"usage":null}"#,
            r#"{"usage":0}"#,
            r#"[{"usage":null}]"#,
            r#"{"usage":null"#,
            "not json",
        ] {
            assert_eq!(stripped(json), None, "{json}");
        }
        // Data that does not lie inside the raw bytes (two data lines).
        let raw = b"data: {\"usage\":\ndata: null}\n\n";
        assert_eq!(strip(raw, b"{\"usage\":\nnull}"), None);
    }
}
