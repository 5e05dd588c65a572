//! Compiled redactors, one per credential value, shared by a worker's
//! requests: compiling a [`Redactor`]'s automaton costs about as much as
//! redacting a whole 4 KB response, and a clone shares it (an `Arc`
//! increment) while starting a stream of its own.
//!
//! Invariants:
//! - Keyed by the credential value itself, never by a fingerprint: a
//!   fingerprint collision would hand a request the redactor of another key
//!   and let its own key through.
//! - Bounded: at most [`MAX_REDACTORS`] values; when full, the cache is
//!   emptied (rotated keys leave old values behind, and a worker serves few
//!   credentials).
//! - The values live only here and in the redactors, in the worker's
//!   memory, like the credential cache they come from; nothing logs them.

use super::redact::Redactor;

/// The most credential values a worker keeps a redactor for.
pub const MAX_REDACTORS: usize = 64;

/// A short list, searched in order: a worker serves a handful of
/// credentials, and another map type would cost the module more than the
/// search costs a request.
#[derive(Default)]
pub struct Redactors {
    by_value: Vec<(Box<[u8]>, Redactor)>,
}

impl Redactors {
    /// A fresh redactor for `secret`, compiled once per value. `None` when
    /// the secret is too short to redact safely (see [`Redactor::new`]).
    pub fn for_secret(&mut self, secret: &[u8]) -> Option<Redactor> {
        if let Some((_, r)) = self.by_value.iter().find(|(v, _)| **v == *secret) {
            return Some(r.clone());
        }
        let r = Redactor::new(secret)?;
        if self.by_value.len() >= MAX_REDACTORS {
            self.by_value.clear();
        }
        self.by_value.push((secret.into(), r.clone()));
        Some(r)
    }

    pub fn len(&self) -> usize {
        self.by_value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_value.is_empty()
    }
}

impl core::fmt::Debug for Redactors {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Redactors")
            .field("values", &self.by_value.len())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn redact(r: &mut Redactor, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        r.feed(body, &mut out);
        r.finish(&mut out);
        out
    }

    #[test]
    fn each_value_gets_its_own_fresh_redactor_and_one_compilation() {
        let mut cache = Redactors::default();
        let a = b"sk-first-key-0123456789";
        let b = b"sk-other-key-9876543210";
        let mut ra = cache.for_secret(a).unwrap();
        // A redactor that was used leaves the cached one untouched.
        let _ = ra.feed(b"xx sk-first-key-01", &mut Vec::new());
        let mut ra2 = cache.for_secret(a).unwrap();
        let mut rb = cache.for_secret(b).unwrap();
        assert_eq!(cache.len(), 2);
        let body = b"a sk-first-key-0123456789 b sk-other-key-9876543210";
        assert_eq!(
            redact(&mut ra2, body),
            b"a *********************** b sk-other-key-9876543210".to_vec()
        );
        assert_eq!(
            redact(&mut rb, body),
            b"a sk-first-key-0123456789 b ***********************".to_vec()
        );
    }

    #[test]
    fn short_secrets_get_none_and_the_cache_stays_bounded() {
        let mut cache = Redactors::default();
        assert!(cache.for_secret(b"short").is_none());
        assert!(cache.is_empty());
        for i in 0..(MAX_REDACTORS + 5) {
            let s = format!("sk-rotated-key-{i:08}");
            assert!(cache.for_secret(s.as_bytes()).is_some());
            assert!(cache.len() <= MAX_REDACTORS);
        }
    }
}
