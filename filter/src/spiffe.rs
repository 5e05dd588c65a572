//! SPIFFE IDs and trust domains, parsed strictly per the SPIFFE-ID standard.
//!
//! The filter authorizes on the URI SAN of the client certificate, so this is
//! the first gate every request passes. A value of [`SpiffeId`] is proof that
//! its text satisfied every rule below; there is no other way to build one.
//!
//! Invariants of a [`SpiffeId`]:
//! - the text is ASCII, at most [`MAX_ID_LEN`] bytes, and starts with the
//!   lowercase scheme `spiffe://`;
//! - the trust domain is non-empty, at most [`MAX_TRUST_DOMAIN_LEN`] bytes, and
//!   only `[a-z0-9._-]` (so no uppercase, port, userinfo or percent-encoding);
//! - the path is empty or a sequence of `/segment`, each segment non-empty,
//!   only `[A-Za-z0-9._-]`, and neither `.` nor `..`; so there is no trailing
//!   `/`, no `//`, no query and no fragment.
//!
//! Nothing is normalised: an ID is accepted exactly as written or rejected, so
//! two IDs name the same workload if and only if their texts are equal.
//! Errors name the rule that failed and never echo the input.

use core::fmt;
use core::str::FromStr;

/// The only accepted scheme, lowercase, with the authority marker.
pub const SCHEME: &str = "spiffe://";
/// The longest accepted SPIFFE ID, in bytes.
pub const MAX_ID_LEN: usize = 2048;
/// The longest accepted trust domain name, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a SPIFFE ID or trust domain was rejected: one variant per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The ID is longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// The ID does not start with the lowercase scheme `spiffe://`.
    Scheme,
    /// The ID contains `?` or `#`.
    QueryOrFragment,
    /// The trust domain is empty.
    EmptyTrustDomain,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`] bytes.
    TrustDomainTooLong,
    /// The trust domain contains an uppercase letter.
    TrustDomainUppercase,
    /// The trust domain contains `:` (a port).
    TrustDomainPort,
    /// The trust domain contains `@` (userinfo).
    TrustDomainUserinfo,
    /// The trust domain contains `%` (percent-encoding).
    TrustDomainPercentEncoded,
    /// The trust domain contains a byte outside `[a-z0-9._-]`.
    TrustDomainChar,
    /// The path contains an empty segment (`//`).
    EmptySegment,
    /// The path contains a `.` or `..` segment.
    DotSegment,
    /// The path ends with `/`.
    TrailingSlash,
    /// A path segment contains a byte outside `[A-Za-z0-9._-]`.
    PathChar,
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self {
            Self::TooLong => "a SPIFFE ID must be at most 2048 bytes",
            Self::Scheme => "a SPIFFE ID must start with the lowercase scheme \"spiffe://\"",
            Self::QueryOrFragment => "a SPIFFE ID must not contain a query ('?') or fragment ('#')",
            Self::EmptyTrustDomain => "a SPIFFE trust domain must not be empty",
            Self::TrustDomainTooLong => "a SPIFFE trust domain must be at most 255 bytes",
            Self::TrustDomainUppercase => "a SPIFFE trust domain must be lowercase",
            Self::TrustDomainPort => "a SPIFFE trust domain must not contain a port (':')",
            Self::TrustDomainUserinfo => "a SPIFFE trust domain must not contain userinfo ('@')",
            Self::TrustDomainPercentEncoded => {
                "a SPIFFE trust domain must not be percent-encoded ('%')"
            }
            Self::TrustDomainChar => "a SPIFFE trust domain may contain only [a-z0-9._-]",
            Self::EmptySegment => "a SPIFFE ID path must not contain an empty segment ('//')",
            Self::DotSegment => "a SPIFFE ID path must not contain a '.' or '..' segment",
            Self::TrailingSlash => "a SPIFFE ID path must not end with '/'",
            Self::PathChar => "a SPIFFE ID path segment may contain only [A-Za-z0-9._-]",
        };
        f.write_str(rule)
    }
}

impl std::error::Error for SpiffeIdError {}

/// A valid SPIFFE ID (see the module invariants). Owns its canonical text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The whole ID, exactly as accepted.
    text: Box<str>,
    /// Byte offset where the trust domain ends and the path (if any) starts.
    path_start: usize,
}

impl SpiffeId {
    /// Parses `raw` strictly; `raw` need not be UTF-8 (anything else is
    /// rejected). Allocates once, for the returned value.
    pub fn parse(raw: &[u8]) -> Result<SpiffeId, SpiffeIdError> {
        if raw.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = raw
            .strip_prefix(SCHEME.as_bytes())
            .ok_or(SpiffeIdError::Scheme)?;
        if raw.iter().any(|&b| b == b'?' || b == b'#') {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        let td_len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let (td, path) = rest.split_at_checked(td_len).unwrap_or((rest, &[]));
        check_trust_domain(td)?;
        check_path(path)?;
        let text = core::str::from_utf8(raw).map_err(|_| SpiffeIdError::PathChar)?;
        Ok(SpiffeId {
            text: text.into(),
            path_start: SCHEME.len() + td_len,
        })
    }

    /// The whole ID, e.g. `spiffe://cluster.local/ns/a/sa/b`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        self.text.get(SCHEME.len()..self.path_start).unwrap_or("")
    }

    /// The path: empty, or starting with `/` and never ending with `/`.
    pub fn path(&self) -> &str {
        self.text.get(self.path_start..).unwrap_or("")
    }

    /// The path segments in order (none when the path is empty).
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        // A path never has an empty segment, so an empty one means no path.
        let body = self.path().get(1..).unwrap_or("");
        body.split('/').filter(|segment| !segment.is_empty())
    }

    /// Whether this ID belongs to `domain`.
    pub fn is_in(&self, domain: &TrustDomain) -> bool {
        self.trust_domain() == domain.as_str()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s.as_bytes())
    }
}

/// A valid trust domain name (the bare name, e.g. `cluster.local`, without
/// scheme), under the same rules as the trust domain of a [`SpiffeId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Box<str>);

impl TrustDomain {
    /// Parses a configured trust domain name.
    pub fn parse(name: &str) -> Result<TrustDomain, SpiffeIdError> {
        let bytes = name.as_bytes();
        if bytes.iter().any(|&b| b == b'?' || b == b'#') {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        check_trust_domain(bytes)?;
        Ok(TrustDomain(name.into()))
    }

    /// The name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::parse(s)
    }
}

fn check_trust_domain(td: &[u8]) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    for &b in td {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {}
            b'A'..=b'Z' => return Err(SpiffeIdError::TrustDomainUppercase),
            b':' => return Err(SpiffeIdError::TrustDomainPort),
            b'@' => return Err(SpiffeIdError::TrustDomainUserinfo),
            b'%' => return Err(SpiffeIdError::TrustDomainPercentEncoded),
            _ => return Err(SpiffeIdError::TrustDomainChar),
        }
    }
    Ok(())
}

/// `path` is empty or starts with `/` (it follows the trust domain).
fn check_path(path: &[u8]) -> Result<(), SpiffeIdError> {
    let Some(body) = path.strip_prefix(b"/") else {
        return Ok(());
    };
    if body.is_empty() || body.ends_with(b"/") {
        return Err(SpiffeIdError::TrailingSlash);
    }
    for segment in body.split(|&b| b == b'/') {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == b"." || segment == b".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if !segment
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(SpiffeIdError::PathChar);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accepts_valid_ids_and_splits_them() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "spiffe://cluster.local/ns/support/sa/bot",
                "cluster.local",
                "/ns/support/sa/bot",
            ),
            ("spiffe://example.org", "example.org", ""),
            ("spiffe://a/b", "a", "/b"),
            (
                "spiffe://td-1_x.y/A.b_c-D/..x/x..",
                "td-1_x.y",
                "/A.b_c-D/..x/x..",
            ),
            ("spiffe://0/.../9", "0", "/.../9"),
        ];
        for &(raw, td, path) in cases {
            let id = SpiffeId::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(id.as_str(), raw);
            assert_eq!(id.to_string(), raw);
            assert_eq!(id.trust_domain(), td, "{raw}");
            assert_eq!(id.path(), path, "{raw}");
        }
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        use SpiffeIdError::*;
        let long_td = format!("spiffe://{}/x", "a".repeat(256));
        let max_td = format!("spiffe://{}/x", "a".repeat(255));
        let long_id = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN - 11));
        let cases: &[(&[u8], SpiffeIdError)] = &[
            (b"", Scheme),
            (b"SPIFFE://td/x", Scheme),
            (b"Spiffe://td/x", Scheme),
            (b"spiffe:/td/x", Scheme),
            (b"https://td/x", Scheme),
            (b" spiffe://td/x", Scheme),
            (b"spiffe://", EmptyTrustDomain),
            (b"spiffe:///x", EmptyTrustDomain),
            (long_td.as_bytes(), TrustDomainTooLong),
            (b"spiffe://Cluster.local/x", TrustDomainUppercase),
            (b"spiffe://td:8080/x", TrustDomainPort),
            (b"spiffe://user@td/x", TrustDomainUserinfo),
            (b"spiffe://t%64/x", TrustDomainPercentEncoded),
            (b"spiffe://t d/x", TrustDomainChar),
            (b"spiffe://t\xc3\xa9/x", TrustDomainChar),
            (b"spiffe://td/x?y", QueryOrFragment),
            (b"spiffe://td/x#y", QueryOrFragment),
            (b"spiffe://td?y", QueryOrFragment),
            (b"spiffe://td/", TrailingSlash),
            (b"spiffe://td/a/", TrailingSlash),
            (b"spiffe://td/a//b", EmptySegment),
            (b"spiffe://td/./b", DotSegment),
            (b"spiffe://td/a/..", DotSegment),
            (b"spiffe://td/a/../b", DotSegment),
            (b"spiffe://td/a%2Fb", PathChar),
            (b"spiffe://td/a b", PathChar),
            (b"spiffe://td/a\0b", PathChar),
            (b"spiffe://td/a\\b", PathChar),
            (b"spiffe://td/*", PathChar),
            (b"spiffe://td/caf\xc3\xa9", PathChar),
            (b"spiffe://td/\xff", PathChar),
        ];
        for &(raw, want) in cases {
            assert_eq!(
                SpiffeId::parse(raw),
                Err(want),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(SpiffeId::parse(long_id.as_bytes()), Err(TooLong));
        assert!(SpiffeId::parse(max_td.as_bytes()).is_ok());
        let exactly_max = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN - 12));
        assert_eq!(exactly_max.len(), MAX_ID_LEN);
        assert!(SpiffeId::parse(exactly_max.as_bytes()).is_ok());
    }

    #[test]
    fn error_messages_never_echo_the_input() {
        let secret = b"spiffe://SECRET-td/x";
        let err = SpiffeId::parse(secret).err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(!msg.is_empty());
        assert!(!msg.contains("SECRET"), "{msg}");
    }

    #[test]
    fn segments_lists_path_segments_in_order() {
        let id = SpiffeId::parse(b"spiffe://td/ns/a/sa/b").unwrap();
        assert_eq!(id.segments().collect::<Vec<_>>(), ["ns", "a", "sa", "b"]);
        let bare = SpiffeId::parse(b"spiffe://td").unwrap();
        assert_eq!(bare.segments().count(), 0);
    }

    #[test]
    fn trust_domain_parses_under_the_same_rules() {
        use SpiffeIdError::*;
        let ok = TrustDomain::parse("cluster.local").unwrap();
        assert_eq!(ok.as_str(), "cluster.local");
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", EmptyTrustDomain),
            ("Cluster.local", TrustDomainUppercase),
            ("td:443", TrustDomainPort),
            ("u@td", TrustDomainUserinfo),
            ("t%64", TrustDomainPercentEncoded),
            ("spiffe://td", TrustDomainPort),
            ("td/x", TrustDomainChar),
            ("td?x", QueryOrFragment),
        ];
        for &(raw, want) in cases {
            assert_eq!(TrustDomain::parse(raw), Err(want), "{raw}");
        }
        let id = SpiffeId::parse(b"spiffe://cluster.local/x").unwrap();
        assert!(id.is_in(&ok));
        assert!(!id.is_in(&TrustDomain::parse("cluster").unwrap()));
    }
}
