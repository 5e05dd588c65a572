//! Real provider credentials: how they are named, fetched, cached across
//! workers, and refreshed.
//!
//! - [`service`]: the compiled credential-service settings.
//! - [`protocol`]: the two wire protocols (`tollgate_v1`, `vault_kv2`), as
//!   pure request builders and response parsers.
//! - [`entry`]: the binary record (value, last failure, fetch lease) kept
//!   in proxy-wasm shared data, one per credential.
//! - [`cache`]: the single-flight cache logic over a [`cache::SharedStore`],
//!   testable without a host.
//!
//! Invariant: a secret value lives only in shared data, in the [`entry`]
//! record, and in the header written upstream. It is never logged; audit
//! records carry the service's key id and a short SHA-256 fingerprint.

pub mod cache;
pub mod entry;
pub mod fingerprint;
pub mod protocol;
pub mod service;

use crate::spiffe::SpiffeId;

/// Whether one credential serves every workload, or each workload has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Shared,
    /// The caller's SPIFFE ID is sent to the service and is part of the cache key.
    PerWorkload,
}

/// A provider's reference to a credential at the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    /// The name at the service (`tollgate_v1`), or the KV path (`vault_kv2`).
    pub name: Box<str>,
    pub scope: Scope,
}

/// What one cached credential is, fully resolved for a request: which
/// credential, and for which workload when per-workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    pub name: Box<str>,
    pub workload: Option<SpiffeId>,
}

impl CredentialKey {
    pub fn for_request(cred: &CredentialRef, workload: &SpiffeId) -> Self {
        CredentialKey {
            name: cred.name.clone(),
            workload: match cred.scope {
                Scope::Shared => None,
                Scope::PerWorkload => Some(workload.clone()),
            },
        }
    }

    /// The shared-data key of the cached entry. Prefixed, because Istio
    /// leaves `vm_id` empty and other plugins share the namespace. `#` cannot
    /// occur in a credential name or a SPIFFE ID, so keys are unambiguous.
    pub fn shared_key(&self) -> String {
        let mut k = String::with_capacity(24 + self.name.len());
        k.push_str("tollgate/v1/cred/");
        k.push_str(&self.name);
        if let Some(w) = &self.workload {
            k.push('#');
            k.push_str(w.as_str());
        }
        k
    }
}

/// Checks a credential name: `[A-Za-z0-9._-]` segments joined by `/`, with
/// no empty, `.` or `..` segment (it becomes part of a URL path).
pub fn validate_credential_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 {
        return Err("credential name must be 1 to 256 characters".into());
    }
    for seg in name.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "credential name {name:?} has an empty, '.' or '..' segment"
            ));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "credential name {name:?} may hold only letters, digits, '.', '_', '-' and '/'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn per_workload_keys_differ_by_workload_and_shared_keys_do_not() {
        let a = SpiffeId::parse(b"spiffe://td/ns/a/sa/x").unwrap();
        let b = SpiffeId::parse(b"spiffe://td/ns/b/sa/y").unwrap();
        let shared = CredentialRef {
            name: "openai".into(),
            scope: Scope::Shared,
        };
        let per = CredentialRef {
            name: "openai".into(),
            scope: Scope::PerWorkload,
        };
        assert_eq!(
            CredentialKey::for_request(&shared, &a).shared_key(),
            CredentialKey::for_request(&shared, &b).shared_key()
        );
        let ka = CredentialKey::for_request(&per, &a).shared_key();
        assert_ne!(ka, CredentialKey::for_request(&per, &b).shared_key());
        assert_eq!(ka, "tollgate/v1/cred/openai#spiffe://td/ns/a/sa/x");
    }

    #[test]
    fn credential_names_are_url_safe_paths() {
        assert!(validate_credential_name("tollgate/openai-prod_1.0").is_ok());
        for bad in ["", "/x", "x/", "a//b", "a/../b", "a?b", "a#b", "a b", "é"] {
            assert!(validate_credential_name(bad).is_err(), "{bad}");
        }
    }
}
