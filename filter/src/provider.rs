//! Upstream providers: which hosts belong to which provider, and where each
//! provider expects its credential.
//!
//! Invariants:
//! - Hosts are matched on the `:authority` lowercased with any port removed;
//!   an authority that is not a plain host name (or bracketed IPv6 literal)
//!   matches nothing.
//! - A host belongs to at most one provider (checked at config load), so a
//!   lookup is unambiguous. Exact hosts win over `*.` wildcard suffixes, and
//!   longer suffixes win over shorter ones.

use hashbrown::HashMap;

use crate::credential::CredentialRef;

/// Index of a provider in [`ProviderTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub u16);

/// The provider families Tollgate knows how to authenticate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `Authorization: Bearer <key>`
    OpenAi,
    /// `x-api-key: <key>`
    Anthropic,
    /// `x-goog-api-key: <key>`
    Gemini,
    /// `api-key: <key>`
    AzureOpenAi,
    /// A configured header name and value prefix.
    Generic,
}

impl ProviderKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::AzureOpenAi => "azure_openai",
            ProviderKind::Generic => "generic",
        }
    }

    /// Query parameters that carry a credential for this kind, removed from
    /// every request (lowercase names, matched case-insensitively).
    pub const fn secret_query_params(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Gemini => &["key", "access_token"],
            ProviderKind::AzureOpenAi => &["key", "api-key"],
            _ => &["key"],
        }
    }

    /// The header and value prefix a built-in kind uses; `None` for generic.
    pub const fn builtin_injection(self) -> Option<(&'static str, &'static str)> {
        match self {
            ProviderKind::OpenAi => Some(("authorization", "Bearer ")),
            ProviderKind::Anthropic => Some(("x-api-key", "")),
            ProviderKind::Gemini => Some(("x-goog-api-key", "")),
            ProviderKind::AzureOpenAi => Some(("api-key", "")),
            ProviderKind::Generic => None,
        }
    }
}

/// Where the real credential goes: `<header>: <prefix><value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub header: Box<str>,
    pub prefix: Box<str>,
}

impl Injection {
    /// The header value to send upstream. The caller must not log it.
    pub fn value_for(&self, secret: &str) -> String {
        let mut v = String::with_capacity(self.prefix.len() + secret.len());
        v.push_str(&self.prefix);
        v.push_str(secret);
        v
    }
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: Box<str>,
    pub kind: ProviderKind,
    pub injection: Injection,
    pub credential: CredentialRef,
}

/// All providers, and the host index that finds them.
#[derive(Debug, Default)]
pub struct ProviderTable {
    providers: Vec<Provider>,
    exact: HashMap<Box<str>, ProviderId>,
    /// `(".openai.azure.com", id)`, longest suffix first.
    suffixes: Vec<(Box<str>, ProviderId)>,
}

impl ProviderTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Most providers a table can hold: ids are 16-bit.
    pub const MAX_PROVIDERS: usize = u16::MAX as usize + 1;

    /// Adds a provider; returns its id, or `None` when the table is full (an
    /// id must never wrap onto another provider's). Hosts are added with
    /// [`Self::add_host`].
    pub fn push(&mut self, p: Provider) -> Option<ProviderId> {
        let id = ProviderId(u16::try_from(self.providers.len()).ok()?);
        self.providers.push(p);
        Some(id)
    }

    /// Registers a validated host pattern (`api.openai.com` or `*.openai.azure.com`).
    /// Returns the provider that already owns it, if any.
    pub fn add_host(&mut self, pattern: &str, id: ProviderId) -> Result<(), ProviderId> {
        if let Some(suffix) = pattern.strip_prefix('*') {
            if let Some((_, owner)) = self.suffixes.iter().find(|(s, _)| &**s == suffix) {
                return Err(*owner);
            }
            self.suffixes.push((suffix.into(), id));
            crate::sort::sort_by_key(&mut self.suffixes, |s| {
                (core::cmp::Reverse(s.0.len()), s.1 .0)
            });
        } else {
            if let Some(owner) = self.exact.get(pattern) {
                return Err(*owner);
            }
            self.exact.insert(pattern.into(), id);
        }
        Ok(())
    }

    pub fn get(&self, id: ProviderId) -> Option<&Provider> {
        self.providers.get(usize::from(id.0))
    }

    pub fn iter(&self) -> impl Iterator<Item = (ProviderId, &Provider)> {
        self.providers
            .iter()
            .enumerate()
            .map(|(i, p)| (ProviderId(i as u16), p))
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub fn find_by_name(&self, name: &str) -> Option<ProviderId> {
        self.iter()
            .find(|(_, p)| &*p.name == name)
            .map(|(id, _)| id)
    }

    /// The provider serving this `:authority`, if any (see [`canonical_host`]).
    pub fn lookup(&self, authority: &[u8]) -> Option<ProviderId> {
        self.lookup_host(&canonical_host(authority).ok()?)
    }

    /// The provider serving this canonical host name, if any.
    pub fn lookup_host(&self, host: &str) -> Option<ProviderId> {
        if let Some(id) = self.exact.get(host) {
            return Some(*id);
        }
        self.suffixes
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
            .map(|(_, id)| *id)
    }
}

/// Why an `:authority` is refused before any host matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityInvalid;

/// The host of an `:authority`, lowercased, port removed, or an error when
/// the authority is not `host[:port]` with `host` a DNS name of RFC 1123
/// labels: 1–63 letters, digits or inner hyphens each, no empty label (so
/// no leading or trailing dot), 253 bytes at most; and `port` 1–5 digits
/// up to 65535, at most once. IP literals, userinfo, a trailing dot and a
/// second port are refused: Envoy's route table would read such forms
/// differently (a trailing dot or a doubled port finds no route), and the
/// host the policy approves must be the host the request is routed to.
pub fn canonical_host(authority: &[u8]) -> Result<String, AuthorityInvalid> {
    let (host, port) = match authority.iter().position(|&b| b == b':') {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    };
    if let Some(port) = port {
        let digits = !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
        let value = core::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u32>().ok());
        if !digits || !matches!(value, Some(1..=65535)) {
            return Err(AuthorityInvalid);
        }
    }
    if host.is_empty() || host.len() > 253 {
        return Err(AuthorityInvalid);
    }
    for label in host.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-');
        if !ok {
            return Err(AuthorityInvalid);
        }
    }
    // All ASCII by the label check.
    let mut s = String::from_utf8(host.to_vec()).map_err(|_| AuthorityInvalid)?;
    s.make_ascii_lowercase();
    Ok(s)
}

/// Checks a configured host pattern; returns the canonical (lowercase) form.
pub fn validate_host_pattern(p: &str) -> Result<String, String> {
    let lower = p.to_ascii_lowercase();
    if lower != p {
        return Err(format!("host {p:?} must be lowercase"));
    }
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    if body.is_empty() || body.len() > 253 {
        return Err(format!("host {p:?} is empty or too long"));
    }
    if body.contains('*') {
        return Err(format!(
            "host {p:?}: '*' is only allowed as a leading \"*.\" label"
        ));
    }
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("host {p:?} has an empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "host {p:?} may hold only letters, digits, '-' and '.' (no port, no scheme)"
            ));
        }
    }
    if lower.starts_with("*.") && !body.contains('.') {
        return Err(format!(
            "host {p:?}: a wildcard must cover at least two labels"
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{CredentialRef, Scope};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table() -> ProviderTable {
        let mut t = ProviderTable::new();
        for (name, kind, hosts) in [
            ("openai", ProviderKind::OpenAi, &["api.openai.com"][..]),
            (
                "azure",
                ProviderKind::AzureOpenAi,
                &["*.openai.azure.com"][..],
            ),
            (
                "azure-special",
                ProviderKind::AzureOpenAi,
                &["*.eu.openai.azure.com"][..],
            ),
        ] {
            let (h, p) = kind.builtin_injection().unwrap_or(("x", ""));
            let id = t
                .push(Provider {
                    name: name.into(),
                    kind,
                    injection: Injection {
                        header: h.into(),
                        prefix: p.into(),
                    },
                    credential: CredentialRef {
                        name: name.into(),
                        scope: Scope::Shared,
                    },
                })
                .unwrap();
            for host in hosts {
                t.add_host(host, id).unwrap();
            }
        }
        t
    }

    #[test]
    fn matches_host_case_insensitively_without_port() {
        let t = table();
        assert_eq!(t.lookup(b"api.openai.com"), Some(ProviderId(0)));
        assert_eq!(t.lookup(b"API.OpenAI.com:443"), Some(ProviderId(0)));
        assert_eq!(t.lookup(b"api.openai.com:8443"), Some(ProviderId(0)));
    }

    #[test]
    fn authorities_that_routing_would_read_differently_are_refused() {
        for a in [
            &b"api.openai.com."[..],
            b"api.openai.com:443:443",
            b"..openai.azure.com",
            b"x..openai.azure.com",
            b".x.openai.azure.com",
            b"evil.test]x.openai.azure.com",
            b"evil:x.openai.azure.com:1:2",
            b"[::1]:443",
            b"-x.openai.azure.com",
            b"x-.openai.azure.com",
            b"a_b.openai.azure.com",
            b"api.openai.com:0",
            b"api.openai.com:65536",
            b"api.openai.com:+443",
            b"\xc3\xa9.openai.azure.com",
        ] {
            assert_eq!(
                canonical_host(a),
                Err(AuthorityInvalid),
                "{:?}",
                String::from_utf8_lossy(a)
            );
        }
        let long_label = format!("{}.openai.azure.com", "a".repeat(64));
        assert!(canonical_host(long_label.as_bytes()).is_err());
        assert_eq!(
            canonical_host(b"MyRes.OpenAI.Azure.com:443").as_deref(),
            Ok("myres.openai.azure.com")
        );
    }

    #[test]
    fn too_many_providers_are_refused_rather_than_wrapping() {
        let mut t = ProviderTable::new();
        let p = Provider {
            name: "p".into(),
            kind: ProviderKind::OpenAi,
            injection: Injection {
                header: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            credential: CredentialRef {
                name: "p".into(),
                scope: Scope::Shared,
            },
        };
        for i in 0..ProviderTable::MAX_PROVIDERS {
            assert_eq!(t.push(p.clone()), Some(ProviderId(i as u16)));
        }
        assert_eq!(t.push(p), None);
    }

    #[test]
    fn wildcard_matches_subdomains_longest_first() {
        let t = table();
        assert_eq!(t.lookup(b"myres.openai.azure.com"), Some(ProviderId(1)));
        assert_eq!(t.lookup(b"x.eu.openai.azure.com"), Some(ProviderId(2)));
        assert_eq!(t.lookup(b"openai.azure.com"), None);
    }

    #[test]
    fn rejects_unknown_or_malformed_authorities() {
        let t = table();
        for a in [
            &b"evil.com"[..],
            b"api.openai.com.evil.com",
            b"user@api.openai.com",
            b"api.openai.com:",
            b"api.openai.com:99999999",
            b"",
            b"api.openai.com\x00",
            b"api.openai.com/x",
        ] {
            assert_eq!(t.lookup(a), None, "{:?}", String::from_utf8_lossy(a));
        }
    }

    #[test]
    fn duplicate_hosts_are_reported() {
        let mut t = table();
        assert_eq!(
            t.add_host("api.openai.com", ProviderId(1)),
            Err(ProviderId(0))
        );
    }

    #[test]
    fn host_patterns_are_validated() {
        assert!(validate_host_pattern("api.openai.com").is_ok());
        assert!(validate_host_pattern("*.openai.azure.com").is_ok());
        for bad in [
            "API.openai.com",
            "api.openai.com:443",
            "https://x",
            "a.*.b",
            "*.com",
            "",
            "a..b",
        ] {
            assert!(validate_host_pattern(bad).is_err(), "{bad}");
        }
    }
}
