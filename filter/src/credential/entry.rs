//! The cached credential record kept in shared data, and its binary codec.
//!
//! Invariants:
//! - One record per [`super::CredentialKey`]. The record also holds that
//!   credential's single-flight [`Lease`], so a lease and the value it
//!   guards change together, by one compare-and-swap on one key.
//! - A fetch outcome is written only while its lease is still the record's
//!   lease (see `cache::complete`).
//! - `value` is `None` until a fetch succeeds, and again after the service
//!   answers 403: a refusal revokes the cached value at once.
//! - Decoding never panics: a short or unknown record decodes to `None` and
//!   is treated as absent.

use crate::reason::DenyReason;

const VERSION: u8 = 2;

/// The last failed fetch, as waiting requests must report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastFailure {
    pub reason: DenyReason,
    pub at_ms: u64,
}

/// A fetch in flight: who holds it (a per-fetch id) and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub value: Option<String>,
    pub id: String,
    pub fingerprint: String,
    pub fetched_at_ms: u64,
    pub expires_at_ms: u64,
    pub failure: Option<LastFailure>,
    /// The fetch in flight, if any. A lease past its deadline is dead: its
    /// holder's answer will be discarded and anyone may take over.
    pub lease: Option<Lease>,
}

/// How usable a cached value is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Valid and not yet due for refresh.
    Fresh,
    /// Valid, but within `refresh_ahead` of expiry: use it, refresh it.
    RefreshDue,
    /// No value, or past its expiry: not usable.
    Unusable,
}

impl Entry {
    pub fn freshness(&self, now_ms: u64, refresh_ahead_ms: u64) -> Freshness {
        match &self.value {
            Some(_) if self.expires_at_ms > now_ms => {
                if self.expires_at_ms - now_ms <= refresh_ahead_ms {
                    Freshness::RefreshDue
                } else {
                    Freshness::Fresh
                }
            }
            _ => Freshness::Unusable,
        }
    }

    /// The live lease, if any.
    pub fn live_lease(&self, now_ms: u64) -> Option<Lease> {
        self.lease.filter(|l| l.deadline_ms > now_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        let value = self.value.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(56 + self.id.len() + self.fingerprint.len() + value.len());
        out.push(VERSION);
        out.push(
            u8::from(self.value.is_some())
                | (u8::from(self.failure.is_some()) << 1)
                | (u8::from(self.lease.is_some()) << 2),
        );
        out.extend_from_slice(&self.fetched_at_ms.to_le_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_le_bytes());
        let (code, at) = match self.failure {
            Some(f) => (failure_code(f.reason), f.at_ms),
            None => (0, 0),
        };
        out.push(code);
        out.extend_from_slice(&at.to_le_bytes());
        let lease = self.lease.unwrap_or(Lease {
            id: 0,
            deadline_ms: 0,
        });
        out.extend_from_slice(&lease.id.to_le_bytes());
        out.extend_from_slice(&lease.deadline_ms.to_le_bytes());
        put_str(&mut out, &self.id);
        put_str(&mut out, &self.fingerprint);
        put_str(&mut out, value);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let flags = r.u8()?;
        let fetched_at_ms = r.u64()?;
        let expires_at_ms = r.u64()?;
        let code = r.u8()?;
        let at = r.u64()?;
        let lease_id = r.u64()?;
        let lease_deadline = r.u64()?;
        let id = r.string()?;
        let fingerprint = r.string()?;
        let value = r.string()?;
        let failure = if flags & 2 != 0 {
            Some(LastFailure {
                reason: failure_reason(code)?,
                at_ms: at,
            })
        } else {
            None
        };
        if !r.0.is_empty() {
            return None;
        }
        Some(Entry {
            value: (flags & 1 != 0).then_some(value),
            id,
            fingerprint,
            fetched_at_ms,
            expires_at_ms,
            failure,
            lease: (flags & 4 != 0).then_some(Lease {
                id: lease_id,
                deadline_ms: lease_deadline,
            }),
        })
    }
}

fn failure_code(r: DenyReason) -> u8 {
    match r {
        DenyReason::CredentialDenied => 1,
        _ => 2,
    }
}

fn failure_reason(code: u8) -> Option<DenyReason> {
    match code {
        1 => Some(DenyReason::CredentialDenied),
        2 => Some(DenyReason::CredentialUnavailable),
        _ => None,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// A bounds-checked cursor.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
    pub(crate) fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample() -> Entry {
        Entry {
            value: Some("sk-secret".into()),
            id: "key-1".into(),
            fingerprint: "sha256:01234567".into(),
            fetched_at_ms: 1_000,
            expires_at_ms: 61_000,
            failure: Some(LastFailure {
                reason: DenyReason::CredentialUnavailable,
                at_ms: 5,
            }),
            lease: Some(Lease {
                id: 0xfeed,
                deadline_ms: 9,
            }),
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        let empty = Entry::default();
        assert_eq!(Entry::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn truncated_or_foreign_records_decode_to_none() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert_eq!(Entry::decode(&bytes[..n]), None, "prefix {n}");
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(Entry::decode(&other), None);
    }

    #[test]
    fn freshness_follows_expiry_and_refresh_window() {
        let e = sample();
        assert_eq!(e.freshness(1_000, 10_000), Freshness::Fresh);
        assert_eq!(e.freshness(51_000, 10_000), Freshness::RefreshDue);
        assert_eq!(e.freshness(61_000, 10_000), Freshness::Unusable);
        let revoked = Entry {
            value: None,
            ..sample()
        };
        assert_eq!(revoked.freshness(1_000, 10_000), Freshness::Unusable);
    }
}
