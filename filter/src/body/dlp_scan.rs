//! DLP on a request body: every string value of the JSON, decoded, through
//! a rule's detectors, with the rule's action per detector. The detectors
//! are `crate::dlp`'s; this module decides what their matches do to the
//! body.
//!
//! - **What is scanned:** every string value (object keys are not), decoded
//!   (`"\u0073k-…"` is `sk-…`). A decoded value that is itself JSON (tool
//!   calls' `arguments`, a JSON document pasted as text) is scanned as its
//!   own string values, recursively up to [`MAX_NESTING`] levels; other
//!   values are scanned whole.
//! - **Actions:** `block` refuses the request (`dlp_blocked`), naming the
//!   detectors; `redact` replaces each match with `[REDACTED:<detector>]`
//!   where it stands in the body: the edit covers exactly the raw bytes the
//!   match decoded from (escapes included, through every level of nesting),
//!   and the replacement is plain ASCII that needs no escaping at any level,
//!   so every other byte of the body is the client's and the JSON stays
//!   valid; `audit` changes nothing. Every finding is counted by detector.
//!
//! Invariants: the matched text is never copied out of this module (only
//! detector names and counts leave it); nothing here panics on any body.

use core::ops::Range;

use super::json;
use super::splice::Edit;
use crate::dlp::{DetectorId, DetectorSet, Match};

/// How deep JSON inside a string value is followed.
pub const MAX_NESTING: u8 = 3;

/// What a rule does with a detector's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlpAction {
    Block,
    Redact,
    Audit,
}

/// A named DLP policy (`dlp_policies[]`), compiled.
#[derive(Debug, Clone)]
pub struct DlpPolicy {
    pub name: Box<str>,
    pub set: DetectorSet,
    /// The action of every enabled detector.
    pub actions: Vec<(DetectorId, DlpAction)>,
    /// The `block` detectors alone, when the policy also has others: the
    /// scan keeps the longer of two overlapping matches, so a `block`
    /// match inside a longer `redact` or `audit` one would be lost; a
    /// value with a non-blocking match is scanned again with this set.
    pub block_set: Option<DetectorSet>,
    /// Model output is scanned too (`responses`); see `response::dlp`.
    pub responses: bool,
    /// Bytes of output text an SSE event waits behind (`response_holdback`).
    pub response_holdback: usize,
}

/// Policies are told apart by name (unique in a configuration).
impl PartialEq for DlpPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for DlpPolicy {}

impl DlpPolicy {
    /// The action for `id` (audit for one the policy does not list, which
    /// the set never reports).
    pub fn action(&self, id: DetectorId) -> DlpAction {
        self.actions
            .iter()
            .find(|(d, _)| *d == id)
            .map_or(DlpAction::Audit, |(_, a)| *a)
    }
}

/// What the scan found in one body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Matches by detector name, in first-seen order.
    pub counts: Vec<(Box<str>, u32)>,
    /// Detector names whose action is `block`, in first-seen order.
    pub blocked: Vec<Box<str>>,
    /// Redactions, as edits of the body (sorted, not overlapping).
    pub edits: Vec<Edit>,
}

impl Findings {
    fn note(&mut self, name: &str) {
        add_count(&mut self.counts, name, 1);
    }
}

/// Adds `n` findings of detector `name` to `counts` (first-seen order).
pub fn add_count(counts: &mut Vec<(Box<str>, u32)>, name: &str, n: u32) {
    match counts.iter_mut().find(|(d, _)| &**d == name) {
        Some((_, c)) => *c = c.saturating_add(n),
        None => counts.push((name.into(), n)),
    }
}

/// Scans the string values at `strings` (spans in `body`, quotes included).
pub fn scan_body(policy: &DlpPolicy, body: &[u8], strings: &[Range<usize>]) -> Findings {
    scan_strings(policy, body, strings, false)
}

/// [`scan_body`] for a response (model output): nothing can be refused
/// once the response has begun, so a `block` detector's match is redacted
/// like a `redact` one's, and `Findings::blocked` stays empty.
pub fn scan_response(policy: &DlpPolicy, body: &[u8], strings: &[Range<usize>]) -> Findings {
    scan_strings(policy, body, strings, true)
}

/// A response that is not JSON, scanned as one text (offsets are `text`'s),
/// with [`scan_response`]'s actions.
pub fn scan_response_text(policy: &DlpPolicy, text: &[u8]) -> Findings {
    let mut f = Findings::default();
    let mut scratch = Scratch {
        matches: Vec::new(),
        response: true,
    };
    record(policy, text, &Identity, &mut f, &mut scratch);
    f
}

#[inline(never)]
fn scan_strings(
    policy: &DlpPolicy,
    body: &[u8],
    strings: &[Range<usize>],
    response: bool,
) -> Findings {
    let mut f = Findings::default();
    let mut scratch = Scratch {
        matches: Vec::new(),
        response,
    };
    for span in strings {
        scan_string(
            policy,
            body,
            span,
            &Identity,
            MAX_NESTING,
            &mut f,
            &mut scratch,
        );
    }
    f
}

struct Scratch {
    matches: Vec<Match>,
    /// Scanning a response: `block` acts as `redact`.
    response: bool,
}

impl Scratch {
    fn action(&self, policy: &DlpPolicy, id: DetectorId) -> DlpAction {
        match policy.action(id) {
            DlpAction::Block if self.response => DlpAction::Redact,
            a => a,
        }
    }
}

/// Maps an offset in some text to the body's offset.
trait ToBody {
    fn at(&self, i: usize) -> usize;
}

struct Identity;

impl ToBody for Identity {
    fn at(&self, i: usize) -> usize {
        i
    }
}

/// Offsets in a decoded string, to the body: through the decoding map
/// (offsets in the raw string, relative to `base`), then the outer level.
struct Decoded<'a> {
    map: &'a [u32],
    base: usize,
    outer: &'a dyn ToBody,
}

impl ToBody for Decoded<'_> {
    fn at(&self, i: usize) -> usize {
        let raw = self
            .map
            .get(i)
            .or(self.map.last())
            .map_or(0, |r| *r as usize);
        self.outer.at(self.base + raw)
    }
}

/// Scans the string at `span` of `text` (quotes included), where `text`'s
/// offsets map to the body through `to_body`.
fn scan_string(
    policy: &DlpPolicy,
    text: &[u8],
    span: &Range<usize>,
    to_body: &dyn ToBody,
    depth: u8,
    f: &mut Findings,
    scratch: &mut Scratch,
) {
    let (start, end) = (span.start.saturating_add(1), span.end.saturating_sub(1));
    let Some(inner) = text.get(start..end) else {
        return;
    };
    let mut decoded = Vec::new();
    let mut map = Vec::new();
    let escaped = inner.contains(&b'\\');
    // The offset map (four bytes per byte) is built only when a match may
    // have to be redacted where it stands.
    let redacts = policy
        .actions
        .iter()
        .any(|(id, _)| scratch.action(policy, *id) == DlpAction::Redact);
    if escaped {
        let mapped = if redacts { Some(&mut map) } else { None };
        if json::decode_into(inner, &mut decoded, mapped).is_none() {
            return;
        }
    }
    let value: &[u8] = if escaped { &decoded } else { inner };
    let identity;
    let mapped;
    let here: &dyn ToBody = if escaped {
        mapped = Decoded {
            map: &map,
            base: start,
            outer: to_body,
        };
        &mapped
    } else {
        identity = Offset {
            base: start,
            outer: to_body,
        };
        &identity
    };
    // JSON inside the string: its own string values, each decoded.
    if depth > 0 && looks_like_json(value) {
        if let Ok(nested) = json::inspect_strings(value, &[]) {
            for s in &nested.strings {
                scan_string(policy, value, s, here, depth - 1, f, scratch);
            }
            return;
        }
    }
    record(policy, value, here, f, scratch);
}

/// Scans one decoded value and records its findings.
#[inline(never)]
fn record(
    policy: &DlpPolicy,
    value: &[u8],
    here: &dyn ToBody,
    f: &mut Findings,
    scratch: &mut Scratch,
) {
    policy.set.scan(value, &mut scratch.matches);
    let lenient = scratch
        .matches
        .iter()
        .any(|m| policy.action(m.detector) != DlpAction::Block);
    if let (true, false, Some(block)) = (lenient, scratch.response, &policy.block_set) {
        let mut hidden = Vec::new();
        block.scan(value, &mut hidden);
        for m in hidden {
            let name = block.name(m.detector);
            if !f.blocked.iter().any(|b| &**b == name) {
                f.note(name);
                f.blocked.push(name.into());
            }
        }
    }
    for m in &scratch.matches {
        let name = policy.set.name(m.detector);
        f.note(name);
        match scratch.action(policy, m.detector) {
            DlpAction::Block => {
                if !f.blocked.iter().any(|b| &**b == name) {
                    f.blocked.push(name.into());
                }
            }
            DlpAction::Redact => f.edits.push(Edit::Replace {
                span: here.at(m.start)..here.at(m.end),
                with: format!("[REDACTED:{name}]").into_bytes(),
            }),
            DlpAction::Audit => {}
        }
    }
}

/// Offsets in an unescaped string: shifted by `base`, then the outer level.
struct Offset<'a> {
    base: usize,
    outer: &'a dyn ToBody,
}

impl ToBody for Offset<'_> {
    fn at(&self, i: usize) -> usize {
        self.outer.at(self.base + i)
    }
}

/// Whether a decoded value could be a JSON object or array.
fn looks_like_json(v: &[u8]) -> bool {
    let t = v.trim_ascii();
    matches!(
        (t.first(), t.last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::body::splice::splice;
    use crate::dlp::Detector;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpT3BlbkFJQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxyz0123";

    fn policy(action: DlpAction) -> DlpPolicy {
        let ds = [Detector::OpenaiApiKey, Detector::Email];
        DlpPolicy {
            name: "p".into(),
            set: DetectorSet::new(&ds, Vec::new()).unwrap(),
            actions: ds
                .iter()
                .map(|d| (DetectorId::Builtin(*d), action))
                .collect(),
            block_set: None,
            responses: false,
            response_holdback: 0,
        }
    }

    fn run(action: DlpAction, body: &str) -> (Findings, Option<String>) {
        let seen = json::inspect_strings(body.as_bytes(), &[]).unwrap();
        let f = scan_body(&policy(action), body.as_bytes(), &seen.strings);
        let out = (!f.edits.is_empty())
            .then(|| String::from_utf8(splice(body.as_bytes(), f.edits.clone()).unwrap()).unwrap());
        if let Some(o) = &out {
            json::inspect(o.as_bytes(), &[]).expect("still valid JSON");
        }
        (f, out)
    }

    #[test]
    fn keys_are_found_decoded_and_redacted_where_they_stand() {
        let escaped = KEY.replacen('s', "\\u0073", 1);
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"caf\u00e9 {escaped} mail bob@example.com"}}]}}"#
        );
        let (f, out) = run(DlpAction::Redact, &body);
        assert_eq!(
            f.counts,
            vec![("openai_api_key".into(), 1), ("email".into(), 1)]
        );
        let out = out.unwrap();
        assert_eq!(
            out,
            r#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9 [REDACTED:openai_api_key] mail [REDACTED:email]"}]}"#,
            "every byte but the matches is the client's, escapes included"
        );
        assert!(!out.contains("AbCdEf"));
    }

    #[test]
    fn tool_arguments_are_json_inside_a_string_and_are_followed() {
        let body = format!(
            r#"{{"tool_calls":[{{"function":{{"name":"f","arguments":"{{\"token\":\"{KEY}\",\"n\":1}}"}}}}]}}"#
        );
        let (f, out) = run(DlpAction::Redact, &body);
        assert_eq!(f.counts, vec![("openai_api_key".into(), 1)]);
        let out = out.unwrap();
        assert!(
            out.contains(r#"{\"token\":\"[REDACTED:openai_api_key]\",\"n\":1}"#),
            "{out}"
        );
        // Double-escaped: the arguments' own string holds an escape.
        let twice = KEY.replacen('s', "\\\\u0073", 1);
        let body = format!(r#"{{"arguments":"{{\"t\":\"{twice}\"}}"}}"#);
        let (f, out) = run(DlpAction::Redact, &body);
        assert_eq!(f.counts, vec![("openai_api_key".into(), 1)]);
        assert_eq!(
            out.unwrap(),
            r#"{"arguments":"{\"t\":\"[REDACTED:openai_api_key]\"}"}"#
        );
    }

    #[test]
    fn block_names_the_detectors_and_audit_changes_nothing() {
        let body = format!(r#"{{"a":"{KEY}","b":"{KEY}","c":"x@example.org"}}"#);
        let (f, out) = run(DlpAction::Block, &body);
        assert_eq!(f.blocked, vec!["openai_api_key".into(), "email".into()]);
        assert_eq!(f.counts[0], ("openai_api_key".into(), 2));
        assert!(out.is_none());
        let (f, out) = run(DlpAction::Audit, &body);
        assert!(f.blocked.is_empty() && out.is_none());
        assert_eq!(f.counts.len(), 2);
        // Keys of objects are not values; numbers are not strings.
        let (f, _) = run(DlpAction::Block, r#"{"x@example.org":4111111111111111}"#);
        assert!(f.counts.is_empty());
    }

    #[test]
    fn a_block_match_inside_a_longer_lenient_one_still_blocks() {
        // A literal (audit) that contains a key (block): the scan keeps the
        // longer literal; the block set finds the key anyway.
        let literal = crate::dlp::Literal {
            name: "snippet".into(),
            text: format!("export KEY={KEY} # prod"),
            ignore_ascii_case: false,
            pattern: false,
        };
        let set = DetectorSet::new(&[Detector::OpenaiApiKey], vec![literal]).unwrap();
        let policy = DlpPolicy {
            name: "p".into(),
            set,
            actions: vec![
                (
                    DetectorId::Builtin(Detector::OpenaiApiKey),
                    DlpAction::Block,
                ),
                (DetectorId::Literal(0), DlpAction::Audit),
            ],
            block_set: Some(DetectorSet::new(&[Detector::OpenaiApiKey], Vec::new()).unwrap()),
            responses: false,
            response_holdback: 0,
        };
        let body = format!(r#"{{"c":"export KEY={KEY} # prod"}}"#);
        let seen = json::inspect_strings(body.as_bytes(), &[]).unwrap();
        let f = scan_body(&policy, body.as_bytes(), &seen.strings);
        assert_eq!(f.blocked, vec!["openai_api_key".into()]);
    }
}
