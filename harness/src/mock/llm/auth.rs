//! The credential a request presents, in its provider's place.
//!
//! Job: find every credential a request carries where its provider reads
//! one, and say whether that set is acceptable in form (exactly one,
//! well-formed). Whether the value is a known key is the caller's question.
//!
//! Places, per provider:
//! - OpenAI: `Authorization: Bearer <key>`.
//! - Azure OpenAI: `api-key: <key>`, or `Authorization: Bearer <token>`.
//! - Anthropic: `x-api-key: <key>`, or `Authorization: Bearer <key>` (the
//!   official Python SDK 2.x sends its `api_key` that way).
//! - Gemini: `x-goog-api-key: <key>`, or the `key` query parameter.
//!
//! Invariants:
//! - Every occurrence counts: two values in the provider's places (two
//!   headers, a header and a query key, two `key=` parameters) are refused,
//!   never resolved by taking one (Envoy CVE-2021-32777 was the opposite).
//! - An `Authorization` value that is not `Bearer <token>` is refused.
//! - An empty value is never a key.
//! - Pure: no I/O, no panics, no logging.

use bytes::Bytes;
use hyper::header::HeaderMap;

use super::route::{percent_decode, query_params};
use super::ProviderKind;

/// Reason for a 401 when the credential's form was fine but its value is
/// not accepted.
pub(crate) const UNKNOWN_KEY: &str = "invalid api key";
const MISSING: &str = "missing api key";
const SEVERAL: &str = "more than one credential presented";
const NOT_BEARER: &str = "authorization header is not a bearer token";

/// What a request presented.
#[derive(Default)]
pub(crate) struct Presented {
    /// The (first) credential, `Bearer ` stripped.
    pub(crate) key: Option<Bytes>,
    /// A `key` query parameter was present (Gemini).
    pub(crate) in_query: bool,
    /// Why the presented set is refused whatever its value.
    pub(crate) problem: Option<&'static str>,
}

impl Presented {
    fn add(&mut self, value: Bytes, bearer_required: bool) {
        let value = if bearer_required {
            match strip_bearer(&value) {
                Some(token) => value.slice_ref(token),
                None => {
                    self.problem.get_or_insert(NOT_BEARER);
                    value
                }
            }
        } else {
            value
        };
        if value.is_empty() {
            self.problem.get_or_insert(MISSING);
        }
        if self.key.is_some() {
            self.problem = Some(SEVERAL);
        } else {
            self.key = Some(value);
        }
    }
}

/// The credentials `provider` reads from `headers` and `query`.
pub(crate) fn presented(
    provider: ProviderKind,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Presented {
    let mut p = Presented::default();
    let add_header = |p: &mut Presented, name: &str, bearer: bool| {
        for v in headers.get_all(name) {
            p.add(Bytes::copy_from_slice(v.as_bytes()), bearer);
        }
    };
    match provider {
        ProviderKind::OpenAi => add_header(&mut p, "authorization", true),
        ProviderKind::AzureOpenAi => {
            add_header(&mut p, "api-key", false);
            add_header(&mut p, "authorization", true);
        }
        ProviderKind::Anthropic => {
            add_header(&mut p, "x-api-key", false);
            add_header(&mut p, "authorization", true);
        }
        ProviderKind::Gemini => {
            add_header(&mut p, "x-goog-api-key", false);
            for v in query_params(query, "key") {
                p.in_query = true;
                p.add(Bytes::from(v), false);
            }
        }
    }
    if p.key.is_none() {
        p.problem = Some(MISSING);
    }
    p
}

/// The token of `Bearer <token>` (scheme case-insensitive, spaces trimmed).
fn strip_bearer(v: &[u8]) -> Option<&[u8]> {
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| v[7..].trim_ascii())
}

/// `path` with the value of every `key` query parameter replaced by
/// `<redacted>`, for display.
pub(crate) fn redact_query_key(path: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_owned();
    };
    let q: Vec<String> = q
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if percent_decode(k) == b"key" => format!("{k}=<redacted>"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{p}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn check(
        provider: ProviderKind,
        h: &[(&str, &str)],
        query: Option<&str>,
    ) -> (Option<Vec<u8>>, bool, Option<&'static str>) {
        let p = presented(provider, &headers(h), query);
        (p.key.map(|k| k.to_vec()), p.in_query, p.problem)
    }

    #[test]
    fn each_provider_reads_its_own_place() {
        use ProviderKind::*;
        let ok = |k: &str| (Some(k.as_bytes().to_vec()), false, None);
        assert_eq!(
            check(OpenAi, &[("authorization", "Bearer sk-1")], None),
            ok("sk-1")
        );
        assert_eq!(
            check(OpenAi, &[("authorization", "bearer  sk-1 ")], None),
            ok("sk-1")
        );
        assert_eq!(check(AzureOpenAi, &[("api-key", "az")], None), ok("az"));
        assert_eq!(
            check(AzureOpenAi, &[("authorization", "Bearer t")], None),
            ok("t")
        );
        assert_eq!(check(Anthropic, &[("x-api-key", "ak")], None), ok("ak"));
        assert_eq!(check(Gemini, &[("x-goog-api-key", "gk")], None), ok("gk"));
        assert_eq!(
            check(Gemini, &[], Some("alt=sse&key=g%2Fk")),
            (Some(b"g/k".to_vec()), true, None)
        );
        assert_eq!(
            check(Anthropic, &[("authorization", "Bearer ak")], None),
            ok("ak")
        );
        // Another provider's header is not a credential here.
        assert_eq!(check(Anthropic, &[("api-key", "x")], None).2, Some(MISSING));
        assert_eq!(check(OpenAi, &[("x-api-key", "x")], None).2, Some(MISSING));
    }

    #[test]
    fn several_malformed_or_empty_credentials_are_refused() {
        use ProviderKind::*;
        let two = [("authorization", "Bearer a"), ("authorization", "Bearer b")];
        assert_eq!(
            check(OpenAi, &two, None),
            (Some(b"a".to_vec()), false, Some(SEVERAL))
        );
        assert_eq!(
            check(
                AzureOpenAi,
                &[("api-key", "a"), ("authorization", "Bearer b")],
                None
            )
            .2,
            Some(SEVERAL)
        );
        assert_eq!(
            check(Gemini, &[("x-goog-api-key", "a")], Some("key=a")),
            (Some(b"a".to_vec()), true, Some(SEVERAL))
        );
        assert_eq!(check(Gemini, &[], Some("key=a&key=a")).2, Some(SEVERAL));
        assert_eq!(
            check(OpenAi, &[("authorization", "Basic abc")], None).2,
            Some(NOT_BEARER)
        );
        assert_eq!(
            check(OpenAi, &[("authorization", "sk-1")], None).2,
            Some(NOT_BEARER)
        );
        assert_eq!(
            check(OpenAi, &[("authorization", "Bearer ")], None).2,
            Some(MISSING)
        );
        assert_eq!(
            check(Anthropic, &[("x-api-key", "")], None).2,
            Some(MISSING)
        );
        assert_eq!(check(Gemini, &[], Some("key=")).2, Some(MISSING));
    }

    #[test]
    fn query_keys_are_redacted_for_display() {
        assert_eq!(
            redact_query_key("/v1beta/models/g:generateContent?key=s3cret&alt=sse"),
            "/v1beta/models/g:generateContent?key=<redacted>&alt=sse"
        );
        assert_eq!(redact_query_key("/a?k%65y=s3cret"), "/a?k%65y=<redacted>");
        assert_eq!(redact_query_key("/a?monkey=1"), "/a?monkey=1");
        assert_eq!(redact_query_key("/a"), "/a");
    }
}
