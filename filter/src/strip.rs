//! Client credentials: which request headers are removed before anything is
//! forwarded, and the leaked-key tripwire.
//!
//! Invariants:
//! - Every header named in the [`StripSet`] is removed, every instance of it
//!   (duplicates included), on every request, allowed or denied.
//! - The tripwire looks at every instance too, and reports only a boolean.
//!   No part of a client's value is kept.

/// The header names always stripped, whatever the provider.
pub const ALWAYS_STRIPPED: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
];

/// Headers that ask the server to execute another method than `:method`
/// (Google APIs honour them). The policy approves `:method`, so a request
/// carrying one is refused (`method_override`).
pub const METHOD_OVERRIDE: [&[u8]; 3] = [
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
];

/// Lowercase header names to remove from every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripSet {
    names: Vec<Box<str>>,
}

impl Default for StripSet {
    fn default() -> Self {
        StripSet {
            names: ALWAYS_STRIPPED.iter().map(|n| Box::from(*n)).collect(),
        }
    }
}

impl StripSet {
    /// Adds a generic provider's credential header (lowercase).
    pub fn add(&mut self, name: &str) {
        if !self.names.iter().any(|n| &**n == name) {
            self.names.push(name.into());
        }
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.as_bytes() == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Scans request headers (or trailers): which stripped names are
    /// present, whether any of their values looks like a real provider key,
    /// and whether a method-override or upgrade header is present.
    pub fn scan<'a>(&self, headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> StripScan {
        let mut scan = StripScan::default();
        for (name, value) in headers {
            if let Some(i) = self.names.iter().position(|n| n.as_bytes() == name) {
                if !scan.present.contains(&i) {
                    scan.present.push(i);
                }
                scan.client_key_seen |= looks_like_provider_key(value);
            } else if METHOD_OVERRIDE.contains(&name) {
                scan.method_override = true;
            } else if name == b"upgrade" || name == b":protocol" {
                scan.upgrade = true;
            }
        }
        scan
    }

    /// The names found by a scan.
    pub fn present<'s>(&'s self, scan: &'s StripScan) -> impl Iterator<Item = &'s str> + 's {
        scan.present
            .iter()
            .filter_map(|&i| self.names.get(i))
            .map(|n| &**n)
    }
}

/// What [`StripSet::scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripScan {
    present: Vec<usize>,
    pub client_key_seen: bool,
    /// A method-override header is present.
    pub method_override: bool,
    /// A protocol upgrade (HTTP/1.1 `upgrade`, HTTP/2 extended CONNECT).
    pub upgrade: bool,
}

/// True when a credential value looks like a real provider key rather than
/// a placeholder: OpenAI/Anthropic `sk-…`, Google `AIza…` API keys and
/// `ya29.` OAuth access tokens, or a 32-hex-digit Azure key, with or without
/// a `Bearer ` (or `Basic `) prefix.
pub fn looks_like_provider_key(value: &[u8]) -> bool {
    let v = trim(value);
    let v = strip_prefix_ignore_case(v, b"bearer ")
        .or_else(|| strip_prefix_ignore_case(v, b"basic "))
        .map(trim)
        .unwrap_or(v);
    if let Some(rest) = v.strip_prefix(b"ya29.") {
        return rest.len() >= 20
            && rest
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    }
    let tokenish = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    if !tokenish(v) {
        return false;
    }
    (v.starts_with(b"sk-") && v.len() >= 20)
        || (v.starts_with(b"AIza") && v.len() >= 30)
        || (v.len() == 32 && v.iter().all(u8::is_ascii_hexdigit))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or(&[])
}

fn strip_prefix_ignore_case<'a>(v: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&v[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn recognises_real_key_shapes() {
        for k in [
            &b"sk-proj-abcdefghijklmnopqrstuvwxyz012345"[..],
            b"Bearer sk-abcdefghijklmnopqrstuvwxyz",
            b"bearer  sk-ant-api03-abcdefghijklmnopqrstu",
            b"AIzaSyA-abcdefghijklmnopqrstuvwxyz0123",
            b"0123456789abcdef0123456789ABCDEF",
            b"Bearer ya29.a0AfH6SMBabcdefghijklmnopqrstuvwxyz",
        ] {
            assert!(looks_like_provider_key(k), "{}", String::from_utf8_lossy(k));
        }
    }

    #[test]
    fn placeholders_are_not_keys() {
        for k in [
            &b"placeholder"[..],
            b"Bearer unused",
            b"sk-short",
            b"",
            b"\xff\xfe",
            b"sk-abc def ghi jkl mno pqr",
        ] {
            assert!(
                !looks_like_provider_key(k),
                "{}",
                String::from_utf8_lossy(k)
            );
        }
    }

    #[test]
    fn scan_sees_every_duplicate() {
        let mut s = StripSet::default();
        s.add("x-search-key");
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"proxy-authorization", b"Basic abc"),
            (b"authorization", b"Bearer placeholder"),
            (b"authorization", b"Bearer sk-abcdefghijklmnopqrstuvwxyz"),
            (b"x-search-key", b"abc"),
            (b"content-type", b"application/json"),
        ];
        let scan = s.scan(headers);
        assert!(scan.client_key_seen);
        let present: Vec<_> = s.present(&scan).collect();
        assert_eq!(
            present,
            vec!["proxy-authorization", "authorization", "x-search-key"]
        );
        assert!(!scan.method_override && !scan.upgrade);
    }

    #[test]
    fn method_overrides_and_upgrades_are_noticed() {
        let s = StripSet::default();
        for name in METHOD_OVERRIDE {
            let scan = s.scan(vec![(name, &b"DELETE"[..])]);
            assert!(scan.method_override, "{}", String::from_utf8_lossy(name));
        }
        assert!(s.scan(vec![(&b"upgrade"[..], &b"websocket"[..])]).upgrade);
        assert!(s.scan(vec![(&b":protocol"[..], &b"websocket"[..])]).upgrade);
    }
}
