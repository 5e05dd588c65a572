//! Endpoint patterns: which requests (method and path) a rule covers.
//!
//! Written `"METHOD PATH"`, e.g. `"POST /v1/chat/completions"`,
//! `"* /v1/models"`, `"POST /v1beta/models/*:generateContent"`,
//! `"GET /v1/files/**"`. Matching is against the normalised path of a
//! [`RequestTarget`]; the query never affects it.
//!
//! Invariants of an [`EndpointPattern`]:
//! - the method is `*` (any) or an uppercase token `[A-Z]+`, compared exactly;
//! - the path starts with `/` and is a sequence of segments, each a literal
//!   (`[A-Za-z0-9-._~:@!$&'()+,;=]+`, never `.` or `..`), `*` (exactly one
//!   non-empty segment), or a glob `prefix*suffix` with one `*` that stands
//!   for one or more characters inside one segment (never crossing `/`);
//! - only the last segment may be `**` (zero or more further segments, of any
//!   content) or empty (a trailing `/`, which is a distinct path:
//!   `/v1/models/` never matches `/v1/models` and vice versa);
//! - [`fmt::Display`] gives back the text it was parsed from.

use core::fmt;
use core::str::FromStr;

use crate::request_path::RequestTarget;

/// Why an endpoint pattern was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointPatternError {
    /// Not `METHOD PATH` with exactly one space between them.
    Shape,
    /// The method is neither `*` nor an uppercase token `[A-Z]+`.
    Method,
    /// The path does not start with `/`.
    PathNotAbsolute,
    /// The path contains `?`; the query never takes part in matching.
    Query,
    /// The path has an empty segment other than a final trailing `/`.
    EmptySegment,
    /// The path has a `.` or `..` segment.
    DotSegment,
    /// A segment holds a character outside `[A-Za-z0-9-._~:@!$&'()+,;=]`.
    Char,
    /// A segment holds more than one `*` (or `**` with other characters).
    MultipleWildcards,
    /// `**` appears other than as the whole last segment.
    DoubleStarNotLast,
}

impl fmt::Display for EndpointPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self {
            Self::Shape => "an endpoint pattern must be \"METHOD /path\" with one space",
            Self::Method => "an endpoint pattern method must be '*' or uppercase letters",
            Self::PathNotAbsolute => "an endpoint pattern path must start with '/'",
            Self::Query => {
                "an endpoint pattern path must not contain '?' (the query is never matched)"
            }
            Self::EmptySegment => {
                "an endpoint pattern path must not contain an empty segment ('//')"
            }
            Self::DotSegment => "an endpoint pattern path must not contain a '.' or '..' segment",
            Self::Char => {
                "an endpoint pattern segment may contain only [A-Za-z0-9-._~:@!$&'()+,;=] and '*'"
            }
            Self::MultipleWildcards => "an endpoint pattern segment may contain at most one '*'",
            Self::DoubleStarNotLast => {
                "'**' may only be the whole last segment of an endpoint pattern"
            }
        };
        f.write_str(rule)
    }
}

impl std::error::Error for EndpointPatternError {}

/// One segment of a pattern path (except a final `**`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    /// Exactly this text (empty only as the final segment: a trailing `/`).
    Literal(Box<str>),
    /// Any one non-empty segment.
    Any,
    /// `prefix`, one or more characters, then `suffix`, within one segment.
    Glob { prefix: Box<str>, suffix: Box<str> },
}

impl Segment {
    fn matches(&self, segment: &str) -> bool {
        match self {
            Self::Literal(text) => &**text == segment,
            Self::Any => !segment.is_empty(),
            Self::Glob { prefix, suffix } => {
                segment.len() > prefix.len() + suffix.len()
                    && segment.starts_with(&**prefix)
                    && segment.ends_with(&**suffix)
            }
        }
    }
}

/// Which requests (method and path) a rule covers; see the module invariants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointPattern {
    /// `None` for `*` (any method).
    method: Option<Box<str>>,
    segments: Box<[Segment]>,
    /// Whether the path ends with `**`.
    rest: bool,
}

impl EndpointPattern {
    /// Parses `"METHOD PATH"`.
    pub fn parse(text: &str) -> Result<EndpointPattern, EndpointPatternError> {
        let (method, path) = text.split_once(' ').ok_or(EndpointPatternError::Shape)?;
        if path.contains(' ') {
            return Err(EndpointPatternError::Shape);
        }
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.into()),
            _ => return Err(EndpointPatternError::Method),
        };
        let body = path
            .strip_prefix('/')
            .ok_or(EndpointPatternError::PathNotAbsolute)?;
        if body.contains('?') {
            return Err(EndpointPatternError::Query);
        }
        let mut segments = Vec::new();
        let mut rest = false;
        let mut parts = body.split('/').peekable();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            if part == "**" {
                if !last {
                    return Err(EndpointPatternError::DoubleStarNotLast);
                }
                rest = true;
                break;
            }
            segments.push(parse_segment(part, last)?);
        }
        Ok(EndpointPattern {
            method,
            segments: segments.into_boxed_slice(),
            rest,
        })
    }

    /// Whether a request with this method and target is covered.
    pub fn matches(&self, method: &[u8], target: &RequestTarget) -> bool {
        if let Some(want) = &self.method {
            if want.as_bytes() != method {
                return false;
            }
        }
        let mut actual = target.segments();
        for pattern in self.segments.iter() {
            match actual.next() {
                Some(segment) if pattern.matches(segment) => {}
                _ => return false,
            }
        }
        self.rest || actual.next().is_none()
    }

    /// The method this pattern requires, or `None` for any.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }
}

fn parse_segment(part: &str, last: bool) -> Result<Segment, EndpointPatternError> {
    if part.is_empty() {
        return if last {
            Ok(Segment::Literal("".into()))
        } else {
            Err(EndpointPatternError::EmptySegment)
        };
    }
    if part == "." || part == ".." {
        return Err(EndpointPatternError::DotSegment);
    }
    if part.contains("**") {
        return Err(if part == "**" {
            EndpointPatternError::DoubleStarNotLast
        } else {
            EndpointPatternError::MultipleWildcards
        });
    }
    if !part.bytes().all(|b| b == b'*' || is_literal_byte(b)) {
        return Err(EndpointPatternError::Char);
    }
    match part.split_once('*') {
        None => Ok(Segment::Literal(part.into())),
        Some((_, suffix)) if suffix.contains('*') => Err(EndpointPatternError::MultipleWildcards),
        Some(("", "")) => Ok(Segment::Any),
        Some((prefix, suffix)) => Ok(Segment::Glob {
            prefix: prefix.into(),
            suffix: suffix.into(),
        }),
    }
}

fn is_literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

impl fmt::Display for EndpointPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method.as_deref().unwrap_or("*"))?;
        f.write_str(" ")?;
        for segment in self.segments.iter() {
            f.write_str("/")?;
            match segment {
                Segment::Literal(text) => f.write_str(text)?,
                Segment::Any => f.write_str("*")?,
                Segment::Glob { prefix, suffix } => write!(f, "{prefix}*{suffix}")?,
            }
        }
        if self.rest {
            f.write_str("/**")?;
        }
        Ok(())
    }
}

impl FromStr for EndpointPattern {
    type Err = EndpointPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EndpointPattern::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn pat(s: &str) -> EndpointPattern {
        EndpointPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn target(s: &str) -> RequestTarget {
        RequestTarget::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (pattern, method, path, expected)
    fn check(cases: &[(&str, &str, &str, bool)]) {
        for &(p, method, path, want) in cases {
            assert_eq!(
                pat(p).matches(method.as_bytes(), &target(path)),
                want,
                "{p} vs {method} {path}"
            );
        }
    }

    #[test]
    fn display_round_trips_every_form() {
        for text in [
            "POST /v1/chat/completions",
            "* /v1/models",
            "POST /v1beta/models/*:generateContent",
            "GET /v1/files/**",
            "GET /v1/models/",
            "GET /",
            "* /**",
            "DELETE /v1/files/*",
            "GET /a/gemini-*/b*/*c",
            "GET /v1/x:y@z!$&'()+,;=~._-",
        ] {
            assert_eq!(pat(text).to_string(), text);
        }
    }

    #[test]
    fn literal_paths_match_exactly_and_methods_must_agree() {
        check(&[
            (
                "POST /v1/chat/completions",
                "POST",
                "/v1/chat/completions",
                true,
            ),
            (
                "POST /v1/chat/completions",
                "POST",
                "/v1/chat/completions?stream=true",
                true,
            ),
            (
                "POST /v1/chat/completions",
                "GET",
                "/v1/chat/completions",
                false,
            ),
            (
                "POST /v1/chat/completions",
                "post",
                "/v1/chat/completions",
                false,
            ),
            (
                "POST /v1/chat/completions",
                "POSTX",
                "/v1/chat/completions",
                false,
            ),
            (
                "POST /v1/chat/completions",
                "POST",
                "/v1/chat/completion",
                false,
            ),
            (
                "POST /v1/chat/completions",
                "POST",
                "/v1/chat/completions/x",
                false,
            ),
            ("POST /v1/chat/completions", "POST", "/v1/chat", false),
            ("* /v1/models", "GET", "/v1/models", true),
            ("* /v1/models", "DELETE", "/v1/models", true),
            ("GET /v1/A", "GET", "/v1/%41", true),
        ]);
    }

    #[test]
    fn single_star_matches_one_non_empty_segment_and_never_crosses_slash() {
        check(&[
            ("GET /v1/files/*", "GET", "/v1/files/abc", true),
            ("GET /v1/files/*", "GET", "/v1/files/a/b", false),
            ("GET /v1/files/*", "GET", "/v1/files/", false),
            ("GET /v1/files/*", "GET", "/v1/files", false),
            ("GET /v1/*/content", "GET", "/v1/files/content", true),
            ("GET /v1/*/content", "GET", "/v1/a/b/content", false),
        ]);
    }

    #[test]
    fn glob_segments_match_within_one_segment_only() {
        check(&[
            (
                "POST /v1beta/models/*:generateContent",
                "POST",
                "/v1beta/models/gemini-2.0-flash:generateContent",
                true,
            ),
            (
                "POST /v1beta/models/*:generateContent",
                "POST",
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                false,
            ),
            (
                "POST /v1beta/models/*:generateContent",
                "POST",
                "/v1beta/models/a/b:generateContent",
                false,
            ),
            (
                "POST /v1beta/models/*:generateContent",
                "POST",
                "/v1beta/models/:generateContent",
                false,
            ),
            (
                "POST /v1beta/models/*:streamGenerateContent",
                "POST",
                "/v1beta/models/g:streamGenerateContent?alt=sse",
                true,
            ),
            (
                "POST /v1beta/models/gemini-*",
                "POST",
                "/v1beta/models/gemini-pro",
                true,
            ),
            (
                "POST /v1beta/models/gemini-*",
                "POST",
                "/v1beta/models/gemini-",
                false,
            ),
            (
                "POST /v1beta/models/gemini-*",
                "POST",
                "/v1beta/models/gemma",
                false,
            ),
            ("POST /m/a*a", "POST", "/m/aa", false),
            ("POST /m/a*a", "POST", "/m/aba", true),
            (
                "POST /m/g*:generateContent",
                "POST",
                "/m/gx%3AgenerateContent",
                false,
            ),
        ]);
    }

    #[test]
    fn double_star_matches_zero_or_more_segments() {
        check(&[
            ("GET /v1/files/**", "GET", "/v1/files", true),
            ("GET /v1/files/**", "GET", "/v1/files/", true),
            ("GET /v1/files/**", "GET", "/v1/files/a", true),
            ("GET /v1/files/**", "GET", "/v1/files/a/b/c/", true),
            ("GET /v1/files/**", "GET", "/v1/filesx", false),
            ("GET /v1/files/**", "GET", "/v1", false),
            ("* /**", "PUT", "/", true),
            ("* /**", "PUT", "/anything/at/all", true),
        ]);
    }

    #[test]
    fn trailing_slash_is_a_distinct_path() {
        check(&[
            ("GET /v1/models", "GET", "/v1/models", true),
            ("GET /v1/models", "GET", "/v1/models/", false),
            ("GET /v1/models/", "GET", "/v1/models/", true),
            ("GET /v1/models/", "GET", "/v1/models", false),
            ("GET /", "GET", "/", true),
            ("GET /", "GET", "/v1", false),
        ]);
    }

    #[test]
    fn rejects_malformed_patterns_with_their_rule() {
        use EndpointPatternError::*;
        let cases: &[(&str, EndpointPatternError)] = &[
            ("", Shape),
            ("POST", Shape),
            ("POST  /v1", Shape),
            ("POST /v1 x", Shape),
            (" /v1", Method),
            ("post /v1", Method),
            ("P0ST /v1", Method),
            ("** /v1", Method),
            ("POST v1", PathNotAbsolute),
            ("POST *", PathNotAbsolute),
            ("POST /v1?alt=sse", Query),
            ("POST /v1//x", EmptySegment),
            ("POST //", EmptySegment),
            ("POST /v1/../x", DotSegment),
            ("POST /v1/.", DotSegment),
            ("POST /v1/%2e", Char),
            ("POST /v1/a\\b", Char),
            ("POST /v1/a#b", Char),
            ("POST /v1/caf\u{e9}", Char),
            ("POST /v1/*a*", MultipleWildcards),
            ("POST /v1/a**", MultipleWildcards),
            ("POST /v1/**/x", DoubleStarNotLast),
            ("POST /**/", DoubleStarNotLast),
        ];
        for &(text, want) in cases {
            assert_eq!(EndpointPattern::parse(text), Err(want), "{text:?}");
        }
    }
}
