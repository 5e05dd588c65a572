//! The process-wide credential cache with single-flight fetching, written
//! against a [`SharedStore`] so it runs (and is tested) without a host.
//!
//! Each credential has one shared-data record ([`Entry`]) holding its value,
//! the last failure, and the lease of the fetch in flight. How a request gets
//! its credential ([`resolve`]):
//! 1. A usable value in the entry → use it (and note whether a refresh is due;
//!    the tick does refreshes, so requests never wait for them).
//! 2. A live lease → wait for its fetch.
//! 3. The last fetch failed after this request started waiting → fail with
//!    that reason (`credential_denied` or `credential_unavailable`).
//! 4. Otherwise take the lease by compare-and-swap and fetch.
//!
//! Invariants:
//! - A lease is taken and an outcome written only by compare-and-swap on the
//!   credential's own record: contention on one credential never touches
//!   another, and a lost race means "wait", never an error.
//! - An outcome is written only while the fetch's lease is still the
//!   record's lease ([`complete`]). A late answer from a fetch whose lease
//!   expired and was taken over is discarded, so it cannot bring back a
//!   value that a later 403 revoked.
//! - A failed fetch keeps a still-valid value (serve stale within expiry),
//!   except a 403, which revokes it.
//! - Cold start: proxy-wasm has no create-if-absent, so the first lease on a
//!   brand-new record is written unconditionally and then read back. Two
//!   workers racing inside that window may both fetch once; the second
//!   completion is discarded by the lease check. This happens at most once
//!   per credential per process (records are never deleted).

use super::entry::{Entry, Freshness, LastFailure, Lease};
use super::protocol::{FetchFailure, Fetched};
use crate::reason::DenyReason;

/// Compare-and-swap attempts before a request settles for waiting.
const CAS_ATTEMPTS: usize = 8;

/// Errors from the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    CasMismatch,
    /// The host returned this status.
    Host(u32),
}

/// proxy-wasm shared data, as the cache needs it.
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key is absent.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Sets the value; `cas` 0 is unconditional, otherwise it must match.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// What a request should do about its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Use this value now.
    Ready {
        value: String,
        id: String,
        fingerprint: String,
        refresh_due: bool,
    },
    /// Another fetch is in flight; check again later.
    Wait,
    /// This caller now holds the lease `lease`: dispatch the fetch.
    Fetch { lease: u64 },
    /// The fetch this request waited for failed.
    Failed(DenyReason),
}

/// What became of a fetch outcome handed to [`complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Written; the lease is released.
    Stored(Entry),
    /// The lease was no longer this fetch's: the outcome was discarded.
    Superseded,
}

/// Reads the entry for `key` and its CAS; absent or undecodable → `None`
/// with the CAS of what is there (0 when absent).
fn read(store: &dyn SharedStore, key: &str) -> Result<(Option<Entry>, u32), StoreError> {
    Ok(match store.get(key)? {
        Some((bytes, cas)) => (Entry::decode(&bytes), cas),
        None => (None, 0),
    })
}

/// Reads the entry for `key`; absent or undecodable entries are `None`.
pub fn read_entry(store: &dyn SharedStore, key: &str) -> Result<Option<Entry>, StoreError> {
    Ok(read(store, key)?.0)
}

/// Decides what a request (waiting since `since_ms`) should do. `lease` is
/// the id the caller will use if it takes the lease (unique per fetch).
pub fn resolve(
    store: &dyn SharedStore,
    key: &str,
    lease: u64,
    now_ms: u64,
    since_ms: u64,
    refresh_ahead_ms: u64,
    lease_ms: u64,
) -> Result<Lookup, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (entry, cas) = read(store, key)?;
        let mut entry = entry.unwrap_or_default();
        let fresh = entry.freshness(now_ms, refresh_ahead_ms);
        if fresh != Freshness::Unusable {
            if let Some(value) = entry.value.take() {
                return Ok(Lookup::Ready {
                    value,
                    id: entry.id,
                    fingerprint: entry.fingerprint,
                    refresh_due: fresh == Freshness::RefreshDue,
                });
            }
        }
        if entry.live_lease(now_ms).is_some() {
            return Ok(Lookup::Wait);
        }
        if let Some(LastFailure { reason, at_ms }) = entry.failure {
            if at_ms >= since_ms {
                return Ok(Lookup::Failed(reason));
            }
        }
        match take_lease(store, key, entry, cas, lease, now_ms, lease_ms)? {
            Some(true) => return Ok(Lookup::Fetch { lease }),
            Some(false) => return Ok(Lookup::Wait),
            None => continue,
        }
    }
    // Lost every race: someone else is changing this record; wait for them.
    Ok(Lookup::Wait)
}

/// Writes `lease` into `entry` (read with `cas`). `Some(true)`: taken;
/// `Some(false)`: someone else got it; `None`: the record changed, re-read.
fn take_lease(
    store: &dyn SharedStore,
    key: &str,
    mut entry: Entry,
    cas: u32,
    lease: u64,
    now_ms: u64,
    lease_ms: u64,
) -> Result<Option<bool>, StoreError> {
    entry.lease = Some(Lease {
        id: lease,
        deadline_ms: now_ms.saturating_add(lease_ms),
    });
    match store.set(key, &entry.encode(), cas) {
        Ok(()) if cas != 0 => Ok(Some(true)),
        // A new record was written unconditionally: read it back to see
        // whether another worker's creation overwrote ours.
        Ok(()) => Ok(Some(
            read_entry(store, key)?.and_then(|e| e.lease).map(|l| l.id) == Some(lease),
        )),
        Err(StoreError::CasMismatch) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes the lease on `key` for a refresh, unless a live lease exists.
pub fn try_acquire(
    store: &dyn SharedStore,
    key: &str,
    lease: u64,
    now_ms: u64,
    lease_ms: u64,
) -> Result<bool, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (entry, cas) = read(store, key)?;
        let entry = entry.unwrap_or_default();
        if entry.live_lease(now_ms).is_some() {
            return Ok(false);
        }
        if let Some(taken) = take_lease(store, key, entry, cas, lease, now_ms, lease_ms)? {
            return Ok(taken);
        }
    }
    Ok(false)
}

/// Gives up `lease` on `key` without an outcome (e.g. the fetch could not
/// be built). A no-op when the lease is no longer held.
pub fn release(store: &dyn SharedStore, key: &str, lease: u64) -> Result<(), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (Some(mut entry), cas) = read(store, key)? else {
            return Ok(());
        };
        if entry.lease.map(|l| l.id) != Some(lease) {
            return Ok(());
        }
        entry.lease = None;
        match store.set(key, &entry.encode(), cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Records the outcome of the fetch that holds `lease`, releasing the lease,
/// but only while the record's lease is still `lease`.
pub fn complete(
    store: &dyn SharedStore,
    key: &str,
    lease: u64,
    outcome: &Result<Fetched, FetchFailure>,
    now_ms: u64,
) -> Result<Completion, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (previous, cas) = read(store, key)?;
        let Some(previous) = previous else {
            return Ok(Completion::Superseded);
        };
        if previous.lease.map(|l| l.id) != Some(lease) {
            return Ok(Completion::Superseded);
        }
        let entry = next_entry(previous, outcome, now_ms);
        match store.set(key, &entry.encode(), cas) {
            Ok(()) => return Ok(Completion::Stored(entry)),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// The record after a fetch outcome, with the lease released.
fn next_entry(previous: Entry, outcome: &Result<Fetched, FetchFailure>, now_ms: u64) -> Entry {
    match outcome {
        Ok(f) => Entry {
            value: Some(f.value.clone()),
            id: f.id.clone(),
            fingerprint: f.fingerprint.clone(),
            fetched_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(f.lifetime_ms),
            failure: None,
            lease: None,
        },
        // Refused (403) or deleted at the source (vault 404): no copy of
        // the value may serve any longer.
        Err(f @ (FetchFailure::Denied | FetchFailure::Gone)) => Entry {
            value: None,
            failure: Some(LastFailure {
                reason: if *f == FetchFailure::Denied {
                    DenyReason::CredentialDenied
                } else {
                    DenyReason::CredentialUnavailable
                },
                at_ms: now_ms,
            }),
            lease: None,
            ..previous
        },
        Err(_) => Entry {
            failure: Some(LastFailure {
                reason: DenyReason::CredentialUnavailable,
                at_ms: now_ms,
            }),
            lease: None,
            ..previous
        },
    }
}

/// True when the tick should refresh this entry now: it holds a value that
/// is due (or expired), no fetch is in flight, and the last failure (if
/// any) is at least `retry_ms` old.
pub fn refresh_wanted(entry: &Entry, now_ms: u64, refresh_ahead_ms: u64, retry_ms: u64) -> bool {
    if entry.value.is_none() || entry.live_lease(now_ms).is_some() {
        return false;
    }
    if entry.freshness(now_ms, refresh_ahead_ms) == Freshness::Fresh {
        return false;
    }
    match entry.failure {
        Some(f) => now_ms.saturating_sub(f.at_ms) >= retry_ms,
        None => true,
    }
}

/// An in-memory [`SharedStore`] with Envoy's CAS rules, for tests and benches.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: core::cell::RefCell<hashbrown::HashMap<String, (Vec<u8>, u32)>>,
    next_cas: core::cell::Cell<u32>,
}

impl MemoryStore {
    /// Number of keys held (shared data is never deleted in Envoy).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.map.borrow().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && *current != cas {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const K: &str = "tollgate/v1/cred/openai";

    fn fetched(v: &str) -> Result<Fetched, FetchFailure> {
        Ok(Fetched {
            value: v.into(),
            id: "id1".into(),
            fingerprint: "sha256:0".into(),
            lifetime_ms: 60_000,
        })
    }

    fn resolve_at(s: &MemoryStore, lease: u64, now: u64, since: u64) -> Lookup {
        resolve(s, K, lease, now, since, 10_000, 3_000).unwrap()
    }

    fn stored(c: Completion) -> Entry {
        match c {
            Completion::Stored(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_caller_fetches_and_everyone_else_waits() {
        let s = MemoryStore::default();
        assert_eq!(resolve_at(&s, 1, 0, 0), Lookup::Fetch { lease: 1 });
        for lease in 2..50 {
            assert_eq!(resolve_at(&s, lease, 1, 1), Lookup::Wait);
        }
        stored(complete(&s, K, 1, &fetched("sk-1"), 5).unwrap());
        match resolve_at(&s, 2, 6, 1) {
            Lookup::Ready {
                value,
                refresh_due: false,
                ..
            } => assert_eq!(value, "sk-1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waiters_see_the_failure_of_the_fetch_they_waited_for() {
        let s = MemoryStore::default();
        assert_eq!(resolve_at(&s, 1, 100, 100), Lookup::Fetch { lease: 1 });
        assert_eq!(resolve_at(&s, 2, 101, 101), Lookup::Wait);
        stored(complete(&s, K, 1, &Err(FetchFailure::HttpStatus), 110).unwrap());
        assert_eq!(
            resolve_at(&s, 2, 111, 101),
            Lookup::Failed(DenyReason::CredentialUnavailable)
        );
        // A request that arrives later starts a new fetch instead.
        assert_eq!(resolve_at(&s, 3, 200, 200), Lookup::Fetch { lease: 3 });
    }

    #[test]
    fn a_failed_refresh_keeps_serving_the_valid_value() {
        let s = MemoryStore::default();
        assert_eq!(resolve_at(&s, 1, 0, 0), Lookup::Fetch { lease: 1 });
        stored(complete(&s, K, 1, &fetched("sk-old"), 0).unwrap());
        assert!(try_acquire(&s, K, 2, 55_000, 3_000).unwrap());
        stored(complete(&s, K, 2, &Err(FetchFailure::Timeout), 55_500).unwrap());
        match resolve_at(&s, 3, 56_000, 56_000) {
            Lookup::Ready {
                value,
                refresh_due: true,
                ..
            } => assert_eq!(value, "sk-old"),
            other => panic!("{other:?}"),
        }
        // Past expiry the stale value is never used.
        assert_eq!(
            resolve_at(&s, 4, 60_001, 60_001),
            Lookup::Fetch { lease: 4 }
        );
    }

    #[test]
    fn a_denial_revokes_the_cached_value() {
        let s = MemoryStore::default();
        resolve_at(&s, 1, 0, 0);
        stored(complete(&s, K, 1, &fetched("sk-old"), 0).unwrap());
        assert!(try_acquire(&s, K, 2, 55_000, 3_000).unwrap());
        stored(complete(&s, K, 2, &Err(FetchFailure::Denied), 55_000).unwrap());
        assert_eq!(
            resolve_at(&s, 3, 55_000, 55_000),
            Lookup::Failed(DenyReason::CredentialDenied)
        );
    }

    #[test]
    fn a_deleted_credential_is_dropped_at_once() {
        let s = MemoryStore::default();
        resolve_at(&s, 1, 0, 0);
        stored(complete(&s, K, 1, &fetched("sk-old"), 0).unwrap());
        assert!(try_acquire(&s, K, 2, 55_000, 3_000).unwrap());
        stored(complete(&s, K, 2, &Err(FetchFailure::Gone), 55_000).unwrap());
        // Still within the old value's lifetime, but it is not served.
        assert_eq!(
            resolve_at(&s, 3, 55_000, 55_000),
            Lookup::Failed(DenyReason::CredentialUnavailable)
        );
    }

    #[test]
    fn a_dead_lease_is_taken_over_and_its_late_answer_discarded() {
        let s = MemoryStore::default();
        assert_eq!(resolve_at(&s, 1, 0, 0), Lookup::Fetch { lease: 1 });
        assert_eq!(resolve_at(&s, 2, 2_999, 0), Lookup::Wait);
        assert_eq!(resolve_at(&s, 2, 3_000, 0), Lookup::Fetch { lease: 2 });
        // The old holder's late release or answer must not touch the new lease.
        release(&s, K, 1).unwrap();
        assert!(read_entry(&s, K)
            .unwrap()
            .unwrap()
            .live_lease(3_001)
            .is_some());
        assert_eq!(
            complete(&s, K, 1, &fetched("sk-late"), 3_100).unwrap(),
            Completion::Superseded
        );
        assert_eq!(read_entry(&s, K).unwrap().unwrap().value, None);
    }

    #[test]
    fn a_late_answer_cannot_resurrect_a_revoked_value() {
        let s = MemoryStore::default();
        resolve_at(&s, 1, 0, 0);
        stored(complete(&s, K, 1, &fetched("sk-old"), 0).unwrap());
        // Refresh 2 starts, its lease dies; refresh 3 takes over and is refused.
        assert!(try_acquire(&s, K, 2, 55_000, 1_000).unwrap());
        assert!(try_acquire(&s, K, 3, 56_000, 1_000).unwrap());
        stored(complete(&s, K, 3, &Err(FetchFailure::Denied), 56_100).unwrap());
        // Refresh 2's answer arrives late with a valid value: discarded.
        assert_eq!(
            complete(&s, K, 2, &fetched("sk-old"), 56_200).unwrap(),
            Completion::Superseded
        );
        assert_eq!(read_entry(&s, K).unwrap().unwrap().value, None);
        assert_eq!(
            resolve_at(&s, 4, 56_300, 56_000),
            Lookup::Failed(DenyReason::CredentialDenied)
        );
    }

    #[test]
    fn a_cas_race_means_wait_never_an_error() {
        /// A store whose every conditional write loses the race.
        struct Contended(MemoryStore);
        impl SharedStore for Contended {
            fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
                self.0.get(key)
            }
            fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
                if cas != 0 {
                    return Err(StoreError::CasMismatch);
                }
                self.0.set(key, value, cas)
            }
        }
        let s = Contended(MemoryStore::default());
        s.0.set(K, &Entry::default().encode(), 0).unwrap();
        assert_eq!(resolve(&s, K, 1, 0, 0, 10, 3_000), Ok(Lookup::Wait));
        assert_eq!(try_acquire(&s, K, 1, 0, 3_000), Ok(false));
    }

    #[test]
    fn one_key_per_credential_and_nothing_else() {
        let s = MemoryStore::default();
        for i in 0..100u64 {
            let key = format!("tollgate/v1/cred/c{}", i % 7);
            let _ = resolve(&s, &key, i, i, i, 10, 3_000).unwrap();
        }
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn refresh_is_wanted_only_for_due_values_and_backs_off_after_failure() {
        let e = Entry {
            value: Some("v".into()),
            expires_at_ms: 100_000,
            ..Default::default()
        };
        assert!(!refresh_wanted(&e, 10_000, 30_000, 1_000));
        assert!(refresh_wanted(&e, 75_000, 30_000, 1_000));
        let failed = Entry {
            failure: Some(LastFailure {
                reason: DenyReason::CredentialUnavailable,
                at_ms: 74_500,
            }),
            ..e.clone()
        };
        assert!(!refresh_wanted(&failed, 75_000, 30_000, 1_000));
        assert!(refresh_wanted(&failed, 75_500, 30_000, 1_000));
        assert!(!refresh_wanted(&Entry::default(), 75_000, 30_000, 1_000));
        let in_flight = Entry {
            lease: Some(Lease {
                id: 1,
                deadline_ms: 76_000,
            }),
            ..e
        };
        assert!(!refresh_wanted(&in_flight, 75_000, 30_000, 1_000));
    }
}
