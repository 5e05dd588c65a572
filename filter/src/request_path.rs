//! The request target (`:path`), checked and normalised before policy matching.
//!
//! Policy decides on the path that will actually be routed upstream, so any
//! path that two parsers could read differently is refused here (reason
//! `path_invalid`) rather than guessed at. [`RequestTarget::parse`] accepts an
//! origin-form target only, and guarantees for every value it returns:
//! - the raw target started with `/` and held only printable ASCII other than
//!   space, `\` and `#` (no fragment can hide a suffix, CVE-2021-32779);
//! - the path (before the first `?`) has no `%2E`, `%2F`, `%5C` or `%00` in
//!   any case, no malformed escape, no `.` or `..` segment and no empty
//!   segment except one final empty segment (a single trailing `/`);
//! - [`RequestTarget::path`] is the path with escapes of unreserved characters
//!   (`A-Za-z0-9-._~`) decoded and the hex of every other escape uppercased,
//!   so one resource has one spelling;
//! - the query has no malformed escape, and every parameter whose name,
//!   percent-decoded and compared ASCII-case-insensitively, is one of the
//!   credential parameters asked for (`key` by default: the Gemini API key;
//!   the caller adds `access_token` for Google hosts and `api-key` for
//!   Azure) has been removed; all other parameters are kept verbatim and in
//!   order;
//! - [`RequestTarget::upstream_target`] is `Some` exactly when the value to send
//!   upstream differs from the raw input.
//!
//! Parsing allocates once (the normalised target) and never echoes the input
//! in errors.

use core::fmt;

/// Why a request target was refused: one variant per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathError {
    /// The target does not start with `/` (not origin-form, or empty).
    MissingLeadingSlash,
    /// The target contains a NUL byte.
    Nul,
    /// The target contains a control byte (below 0x20, or 0x7F).
    ControlByte,
    /// The target contains a byte at or above 0x80 (must be percent-encoded).
    NonAscii,
    /// The target contains a backslash.
    Backslash,
    /// The target contains a space.
    Space,
    /// The target contains `#` (a fragment).
    Fragment,
    /// The path contains `%2E` (an encoded `.`), in any case.
    EncodedDot,
    /// The path contains `%2F` (an encoded `/`), in any case.
    EncodedSlash,
    /// The path contains `%5C` (an encoded `\`), in any case.
    EncodedBackslash,
    /// The path contains `%00` (an encoded NUL).
    EncodedNul,
    /// The path contains `%` not followed by two hex digits.
    MalformedEscape,
    /// The path contains a `.` or `..` segment.
    DotSegment,
    /// The path contains an empty segment (`//`) other than a single trailing `/`.
    EmptySegment,
    /// The query contains `%` not followed by two hex digits.
    MalformedQueryEscape,
}

impl PathError {
    /// A stable snake_case name for logs and counters (the reply reason for
    /// every variant is `path_invalid`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingLeadingSlash => "missing_leading_slash",
            Self::Nul => "nul_byte",
            Self::ControlByte => "control_byte",
            Self::NonAscii => "non_ascii_byte",
            Self::Backslash => "backslash",
            Self::Space => "space",
            Self::Fragment => "fragment",
            Self::EncodedDot => "encoded_dot",
            Self::EncodedSlash => "encoded_slash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::EncodedNul => "encoded_nul",
            Self::MalformedEscape => "malformed_escape",
            Self::DotSegment => "dot_segment",
            Self::EmptySegment => "empty_segment",
            Self::MalformedQueryEscape => "malformed_query_escape",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self {
            Self::MissingLeadingSlash => "the request path must start with '/'",
            Self::Nul => "the request path must not contain a NUL byte",
            Self::ControlByte => "the request path must not contain control bytes",
            Self::NonAscii => "the request path must not contain raw bytes >= 0x80",
            Self::Backslash => "the request path must not contain '\\'",
            Self::Space => "the request path must not contain a space",
            Self::Fragment => "the request path must not contain '#'",
            Self::EncodedDot => "the request path must not contain an encoded '.' (%2E)",
            Self::EncodedSlash => "the request path must not contain an encoded '/' (%2F)",
            Self::EncodedBackslash => "the request path must not contain an encoded '\\' (%5C)",
            Self::EncodedNul => "the request path must not contain an encoded NUL (%00)",
            Self::MalformedEscape => {
                "every '%' in the request path must be followed by two hex digits"
            }
            Self::DotSegment => "the request path must not contain a '.' or '..' segment",
            Self::EmptySegment => "the request path must not contain an empty segment ('//')",
            Self::MalformedQueryEscape => {
                "every '%' in the query must be followed by two hex digits"
            }
        };
        f.write_str(rule)
    }
}

impl std::error::Error for PathError {}

/// A checked, normalised request target (see the module invariants).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestTarget {
    /// The normalised path, then `?` and the kept query when one goes upstream.
    target: String,
    /// Length of the path part of `target`.
    path_len: usize,
    /// Whether at least one credential parameter was removed from the query.
    removed_key: bool,
    /// Whether a removed parameter's value looks like a real provider key.
    removed_real_key: bool,
    /// Whether `target` differs from the raw input.
    changed: bool,
}

impl RequestTarget {
    /// Checks and normalises a raw `:path` value, removing `key` parameters.
    pub fn parse(raw: &[u8]) -> Result<RequestTarget, PathError> {
        Self::parse_removing(raw, &["key"])
    }

    /// Checks and normalises a raw `:path` value, removing every query
    /// parameter named in `secret_params` (lowercase ASCII names).
    pub fn parse_removing(raw: &[u8], secret_params: &[&str]) -> Result<RequestTarget, PathError> {
        if raw.first() != Some(&b'/') {
            return Err(PathError::MissingLeadingSlash);
        }
        for &b in raw {
            match b {
                0 => return Err(PathError::Nul),
                0x01..=0x1f | 0x7f => return Err(PathError::ControlByte),
                0x80..=0xff => return Err(PathError::NonAscii),
                b'\\' => return Err(PathError::Backslash),
                b' ' => return Err(PathError::Space),
                b'#' => return Err(PathError::Fragment),
                _ => {}
            }
        }
        let (path, query) = match raw.iter().position(|&b| b == b'?') {
            Some(at) => (
                raw.get(..at).unwrap_or_default(),
                Some(raw.get(at + 1..).unwrap_or_default()),
            ),
            None => (raw, None),
        };
        check_segments(path)?;

        // Built as bytes: every byte pushed is printable ASCII (checked above,
        // or a decoded unreserved character), so the UTF-8 check cannot fail.
        let mut target = Vec::with_capacity(raw.len());
        let mut changed = normalise_path(path, &mut target)?;
        let path_len = target.len();
        let mut removed = Removed::default();
        if let Some(query) = query {
            check_query_escapes(query)?;
            removed = write_query(query, secret_params, &mut target);
            changed |= removed.any;
        }
        let target = String::from_utf8(target).map_err(|_| PathError::NonAscii)?;
        Ok(RequestTarget {
            target,
            path_len,
            removed_key: removed.any,
            removed_real_key: removed.looks_real,
            changed,
        })
    }

    /// The normalised path, without the query.
    pub fn path(&self) -> &str {
        self.target.get(..self.path_len).unwrap_or("")
    }

    /// The path segments in order. A trailing `/` yields a final empty
    /// segment, so `/v1/models/` is `["v1", "models", ""]` and `/` is `[""]`.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.path().get(1..).unwrap_or("").split('/')
    }

    /// The query that goes upstream (without `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.get(self.path_len..)?.strip_prefix('?')
    }

    /// The whole normalised target: path, then `?` and query if any.
    pub fn as_str(&self) -> &str {
        &self.target
    }

    /// Whether a credential query parameter was removed.
    pub fn removed_query_key(&self) -> bool {
        self.removed_key
    }

    /// Whether a removed credential parameter's value looked like a real
    /// provider key (the leaked-key tripwire; placeholders do not count).
    pub fn removed_real_key(&self) -> bool {
        self.removed_real_key
    }

    /// The `:path` to send upstream when it must differ from the raw input
    /// (the path was normalised or a `key` parameter removed); `None` when the
    /// raw value is already exactly right.
    pub fn upstream_target(&self) -> Option<String> {
        self.changed.then(|| self.target.clone())
    }
}

impl fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)
    }
}

/// `path` starts with `/`. Rejects `.`/`..` and non-final empty segments.
fn check_segments(path: &[u8]) -> Result<(), PathError> {
    let body = path.get(1..).unwrap_or_default();
    let mut segments = body.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
        if segment == b"." || segment == b".." {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

/// Writes the normalised `path` to `out`; returns whether it differs from the
/// input. `path` holds only printable ASCII (checked by the caller).
fn normalise_path(path: &[u8], out: &mut Vec<u8>) -> Result<bool, PathError> {
    let mut changed = false;
    let mut rest = path;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        let (run, escape) = rest.split_at_checked(at).unwrap_or((rest, &[]));
        out.extend_from_slice(run);
        let [_percent, hi, lo, after @ ..] = escape else {
            return Err(PathError::MalformedEscape);
        };
        let (Some(h), Some(l)) = (hex_value(*hi), hex_value(*lo)) else {
            return Err(PathError::MalformedEscape);
        };
        let decoded = (h << 4) | l;
        match decoded {
            b'.' => return Err(PathError::EncodedDot),
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::EncodedBackslash),
            0 => return Err(PathError::EncodedNul),
            _ => {}
        }
        if is_unreserved(decoded) {
            out.push(decoded);
            changed = true;
        } else {
            let (h, l) = (hi.to_ascii_uppercase(), lo.to_ascii_uppercase());
            changed |= (h, l) != (*hi, *lo);
            out.extend_from_slice(&[b'%', h, l]);
        }
        rest = after;
    }
    out.extend_from_slice(rest);
    Ok(changed)
}

fn check_query_escapes(query: &[u8]) -> Result<(), PathError> {
    let mut rest = query;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        match rest.get(at + 1..at + 3) {
            Some(&[h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                rest = rest.get(at + 3..).unwrap_or_default();
            }
            _ => return Err(PathError::MalformedQueryEscape),
        }
    }
    Ok(())
}

/// What [`write_query`] removed.
#[derive(Default)]
struct Removed {
    any: bool,
    looks_real: bool,
}

/// Appends `?` and the query without its credential parameters to `out`
/// (nothing when no parameter is left after a removal). Escapes in `query`
/// are already known to be well formed.
fn write_query(query: &[u8], secret: &[&str], out: &mut Vec<u8>) -> Removed {
    let is_secret = |p: &[u8]| secret.iter().any(|name| param_named(p, name.as_bytes()));
    if !query.split(|&b| b == b'&').any(is_secret) {
        out.push(b'?');
        out.extend_from_slice(query);
        return Removed::default();
    }
    let mut removed = Removed {
        any: true,
        looks_real: false,
    };
    let mark = out.len();
    out.push(b'?');
    let mut first = true;
    for param in query.split(|&b| b == b'&') {
        if is_secret(param) {
            let value = param
                .iter()
                .position(|&b| b == b'=')
                .and_then(|i| param.get(i + 1..))
                .unwrap_or_default();
            removed.looks_real |= crate::strip::looks_like_provider_key(&percent_decode(value));
            continue;
        }
        if !first {
            out.push(b'&');
        }
        first = false;
        out.extend_from_slice(param);
    }
    if out.len() == mark + 1 {
        out.truncate(mark);
    }
    removed
}

/// Percent-decodes a well-formed query component (`+` stays `+`).
fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut rest = v;
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'%', [h, l, after @ ..]) => match (hex_value(*h), hex_value(*l)) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    rest = after;
                }
                _ => {
                    out.push(b);
                    rest = tail;
                }
            },
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    out
}

/// Whether the parameter's name, percent-decoded, is `want` (lowercase) in
/// any ASCII case.
fn param_named(param: &[u8], want: &[u8]) -> bool {
    let name_len = param.iter().position(|&b| b == b'=').unwrap_or(param.len());
    let mut name = param.get(..name_len).unwrap_or_default();
    let mut want = want.iter();
    while let Some((&b, tail)) = name.split_first() {
        let (byte, after) = match (b, tail) {
            (b'%', [h, l, after @ ..]) => match (hex_value(*h), hex_value(*l)) {
                (Some(h), Some(l)) => ((h << 4) | l, after),
                _ => return false,
            },
            _ => (b, tail),
        };
        match want.next() {
            Some(&w) if byte.to_ascii_lowercase() == w => {}
            _ => return false,
        }
        name = after;
    }
    want.next().is_none()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn parse(raw: &str) -> RequestTarget {
        RequestTarget::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn accepts_provider_paths_unchanged() {
        let cases = [
            "/v1/chat/completions",
            "/v1/models/",
            "/",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            "/v1/files/file-abc~1_x.y",
            "/v1/.well-known/...",
            "/v1/a%20b",
            "/v1?",
            "/v1?keys=1",
            "/v1?monkey=1&key2=x&akey=3",
            "/v1?a=%41=1",
        ];
        for raw in cases {
            let t = parse(raw);
            assert_eq!(t.as_str(), raw);
            assert_eq!(t.upstream_target(), None, "{raw}");
            assert!(!t.removed_query_key(), "{raw}");
        }
    }

    #[test]
    fn splits_path_query_and_segments() {
        let t = parse("/v1beta/models/gemini-2.0-flash:generateContent?alt=sse");
        assert_eq!(t.path(), "/v1beta/models/gemini-2.0-flash:generateContent");
        assert_eq!(t.query(), Some("alt=sse"));
        assert_eq!(
            t.segments().collect::<Vec<_>>(),
            ["v1beta", "models", "gemini-2.0-flash:generateContent"]
        );
        assert_eq!(
            parse("/v1/models/").segments().collect::<Vec<_>>(),
            ["v1", "models", ""]
        );
        assert_eq!(parse("/").segments().collect::<Vec<_>>(), [""]);
        assert_eq!(parse("/v1").query(), None);
        assert_eq!(parse("/v1?").query(), Some(""));
    }

    #[test]
    fn rejects_ambiguous_paths_with_their_rule() {
        use PathError::*;
        let cases: &[(&[u8], PathError)] = &[
            (b"", MissingLeadingSlash),
            (b"v1/chat", MissingLeadingSlash),
            (b"*", MissingLeadingSlash),
            (b"https://api.openai.com/v1/chat", MissingLeadingSlash),
            (b"/v1/chat\0", Nul),
            (b"/v1/\0/chat", Nul),
            (b"/v1/chat\r\n", ControlByte),
            (b"/v1/\tchat", ControlByte),
            (b"/v1/chat\x7f", ControlByte),
            (b"/v1/caf\xc3\xa9", NonAscii),
            (b"/v1/\xff", NonAscii),
            (b"/v1\\chat", Backslash),
            (b"/v1/ chat", Space),
            (b"/v1/chat#frag", Fragment),
            (b"/v1/chat?x=1#frag", Fragment),
            (b"/v1/chat?x=#", Fragment),
            (b"/v1/%2e%2e/x", EncodedDot),
            (b"/v1/%2E/x", EncodedDot),
            (b"/v1/a%2eb", EncodedDot),
            (b"/v1%2fchat", EncodedSlash),
            (b"/v1%2Fchat", EncodedSlash),
            (b"/v1%5cchat", EncodedBackslash),
            (b"/v1%5Cchat", EncodedBackslash),
            (b"/v1%00", EncodedNul),
            (b"/v1%", MalformedEscape),
            (b"/v1%4", MalformedEscape),
            (b"/v1%4g", MalformedEscape),
            (b"/v1%%41", MalformedEscape),
            (b"/v1%?x", MalformedEscape),
            (b"/v1/../admin", DotSegment),
            (b"/v1/./chat", DotSegment),
            (b"/v1/..", DotSegment),
            (b"/..", DotSegment),
            (b"/.", DotSegment),
            (b"/v1/..?x", DotSegment),
            (b"/v1//chat", EmptySegment),
            (b"//v1", EmptySegment),
            (b"//", EmptySegment),
            (b"/v1/models//", EmptySegment),
            (b"/v1?x=%", MalformedQueryEscape),
            (b"/v1?x=%g0", MalformedQueryEscape),
            (b"/v1?%4=1", MalformedQueryEscape),
        ];
        for &(raw, want) in cases {
            assert_eq!(
                RequestTarget::parse(raw),
                Err(want),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn encoded_reserved_characters_are_allowed_in_the_query() {
        let t = parse("/v1?path=%2e%2e%2f%00");
        assert_eq!(t.upstream_target(), None);
    }

    #[test]
    fn normalises_escapes_in_the_path() {
        let cases = [
            ("/v1/%41bc", "/v1/Abc"),
            ("/v1/%7e%2D%5f%30", "/v1/~-_0"),
            ("/v1/a%3ab", "/v1/a%3Ab"),
            ("/v1/a%3Ab%41?x=%6b", "/v1/a%3AbA?x=%6b"),
            ("/v1/%25", "/v1/%25"),
            ("/v1/%2a", "/v1/%2A"),
        ];
        for (raw, want) in cases {
            let t = parse(raw);
            assert_eq!(t.as_str(), want, "{raw}");
            let expect = (raw != want).then(|| want.to_owned());
            assert_eq!(t.upstream_target(), expect, "{raw}");
        }
        assert_eq!(parse("/v1/%41bc").path(), "/v1/Abc");
    }

    #[test]
    fn removes_the_gemini_key_parameter() {
        let cases = [
            (
                "/v1beta/models/g:streamGenerateContent?key=AIzaSyX&alt=sse",
                "/v1beta/models/g:streamGenerateContent?alt=sse",
            ),
            ("/v1?alt=sse&key=AIza", "/v1?alt=sse"),
            ("/v1?a=1&key=x&b=2&key=y", "/v1?a=1&b=2"),
            ("/v1?key=AIza", "/v1"),
            ("/v1?key", "/v1"),
            ("/v1?key=", "/v1"),
            ("/v1?%6Bey=x", "/v1"),
            ("/v1?%6b%65%79=x&alt=sse", "/v1?alt=sse"),
            ("/v1?KEY=x&Key=y&alt=sse", "/v1?alt=sse"),
            ("/v1/%41?key=x", "/v1/A"),
            ("/v1?key=x&", "/v1"),
            ("/v1?&key=x&&a", "/v1?&&a"),
        ];
        for (raw, want) in cases {
            let t = parse(raw);
            assert!(t.removed_query_key(), "{raw}");
            assert_eq!(t.as_str(), want, "{raw}");
            assert_eq!(t.upstream_target().as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn removes_provider_specific_credential_parameters_and_flags_real_keys() {
        let google = ["key", "access_token"];
        let t = RequestTarget::parse_removing(
            b"/v1beta/models/g:generateContent?access_token=ya29.a0AfH6SMBxyzxyzxyzxyzxyz&alt=sse",
            &google,
        )
        .unwrap();
        assert_eq!(t.as_str(), "/v1beta/models/g:generateContent?alt=sse");
        assert!(t.removed_query_key() && t.removed_real_key());
        let azure = ["key", "api-key"];
        let t = RequestTarget::parse_removing(
            b"/openai/deployments/d/chat/completions?api-version=1&API%2Dkey=0123456789abcdef0123456789abcdef",
            &azure,
        )
        .unwrap();
        assert_eq!(
            t.as_str(),
            "/openai/deployments/d/chat/completions?api-version=1"
        );
        assert!(t.removed_real_key());
        // A placeholder is removed but is not a leaked key.
        let t = RequestTarget::parse_removing(b"/v1?key=placeholder", &google).unwrap();
        assert!(t.removed_query_key() && !t.removed_real_key());
        let t = RequestTarget::parse_removing(
            b"/v1?key=AIzaSyA-abcdefghijklmnopqrstuvwxyz0123",
            &google,
        )
        .unwrap();
        assert!(t.removed_real_key());
        // Not asked for: kept.
        let t = RequestTarget::parse(b"/v1?access_token=x").unwrap();
        assert_eq!(t.as_str(), "/v1?access_token=x");
    }

    #[test]
    fn keeps_parameters_that_are_not_exactly_key() {
        for raw in [
            "/v1?keys=1",
            "/v1?ke=1",
            "/v1?akey=1",
            "/v1?key%20=1",
            "/v1?alt=sse&x=key",
            "/v1?k%65ys=1",
        ] {
            let t = parse(raw);
            assert!(!t.removed_query_key(), "{raw}");
            assert_eq!(t.upstream_target(), None, "{raw}");
        }
    }

    #[test]
    fn error_messages_never_echo_the_input() {
        let err = RequestTarget::parse(b"/SECRET/../x")
            .err()
            .map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(!msg.is_empty() && !msg.contains("SECRET"), "{msg}");
        assert_eq!(PathError::DotSegment.code(), "dot_segment");
    }
}
