//! The process-wide credential cache with single-flight fetching, written
//! against a [`SharedStore`] so it runs (and is tested) without a host.
//!
//! How a request gets its credential ([`resolve`]):
//! 1. A usable value in the entry → use it (and note whether a refresh is due;
//!    `on_tick` does refreshes, so requests never wait for them).
//! 2. Someone holds the key's lease → wait for them.
//! 3. The last fetch failed after this request started waiting → fail with
//!    that reason (`credential_denied` or `credential_unavailable`).
//! 4. Otherwise take the lease by CAS and fetch; if another worker won the
//!    race, wait.
//!
//! Invariants:
//! - At most one fetch per key is in flight across all workers: the lease
//!   table changes only by compare-and-swap, and a fetch starts only after
//!   its lease was written.
//! - Only the lease holder writes the key's entry.
//! - A failed fetch keeps a still-valid value (serve stale within expiry),
//!   except a 403, which revokes it.

use super::entry::{Entry, Freshness, LastFailure};
use super::lease::LeaseTable;
use super::protocol::{FetchFailure, Fetched};
use crate::reason::DenyReason;

/// The shared-data key of the lease table.
pub const LEASES_KEY: &str = "tollgate/v1/leases";

/// How many times a CAS on the lease table is retried before giving up.
const CAS_ATTEMPTS: usize = 16;

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
    /// This caller holds the lease: dispatch the fetch now.
    Fetch,
    /// The fetch this request waited for failed.
    Failed(DenyReason),
}

/// Reads the entry for `key`; absent or undecodable entries are `None`.
pub fn read_entry(store: &dyn SharedStore, key: &str) -> Result<Option<Entry>, StoreError> {
    Ok(store.get(key)?.and_then(|(bytes, _)| Entry::decode(&bytes)))
}

/// Creates the lease table if absent. Called at configure time, before traffic.
pub fn init(store: &dyn SharedStore) -> Result<(), StoreError> {
    if store.get(LEASES_KEY)?.is_none() {
        store.set(LEASES_KEY, &LeaseTable::default().encode(), 0)?;
    }
    Ok(())
}

/// Decides what a request (waiting since `since_ms`) should do. `owner` is
/// this worker's fetch owner id; `lease_ms` bounds a fetch.
pub fn resolve(
    store: &dyn SharedStore,
    key: &str,
    owner: u64,
    now_ms: u64,
    since_ms: u64,
    refresh_ahead_ms: u64,
    lease_ms: u64,
) -> Result<Lookup, StoreError> {
    let mut entry = read_entry(store, key)?;
    if let Some(e) = &mut entry {
        let fresh = e.freshness(now_ms, refresh_ahead_ms);
        if fresh != Freshness::Unusable {
            if let Some(value) = e.value.take() {
                return Ok(Lookup::Ready {
                    value,
                    id: core::mem::take(&mut e.id),
                    fingerprint: core::mem::take(&mut e.fingerprint),
                    refresh_due: fresh == Freshness::RefreshDue,
                });
            }
        }
    }
    if lease_held(store, key, now_ms)? {
        return Ok(Lookup::Wait);
    }
    if let Some(LastFailure { reason, at_ms }) = entry.as_ref().and_then(|e| e.failure) {
        if at_ms >= since_ms {
            return Ok(Lookup::Failed(reason));
        }
    }
    if try_acquire(store, key, owner, now_ms, lease_ms)? {
        Ok(Lookup::Fetch)
    } else {
        Ok(Lookup::Wait)
    }
}

/// True when a live lease on `key` exists.
pub fn lease_held(store: &dyn SharedStore, key: &str, now_ms: u64) -> Result<bool, StoreError> {
    let table = match store.get(LEASES_KEY)? {
        Some((bytes, _)) => LeaseTable::decode(&bytes),
        None => return Ok(false),
    };
    Ok(table.holder(key, now_ms).is_some())
}

/// Takes the lease on `key` by CAS. False when someone else holds it.
pub fn try_acquire(
    store: &dyn SharedStore,
    key: &str,
    owner: u64,
    now_ms: u64,
    lease_ms: u64,
) -> Result<bool, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut table, cas) = match store.get(LEASES_KEY)? {
            Some((bytes, cas)) => (LeaseTable::decode(&bytes), cas),
            None => (LeaseTable::default(), 0),
        };
        if !table.take(key, owner, now_ms, lease_ms) {
            return Ok(false);
        }
        match store.set(LEASES_KEY, &table.encode(), cas) {
            Ok(()) => return Ok(true),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Gives up `owner`'s lease on `key`.
pub fn release(store: &dyn SharedStore, key: &str, owner: u64) -> Result<(), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut table, cas) = match store.get(LEASES_KEY)? {
            Some((bytes, cas)) => (LeaseTable::decode(&bytes), cas),
            None => return Ok(()),
        };
        if !table.release(key, owner) {
            return Ok(());
        }
        match store.set(LEASES_KEY, &table.encode(), cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Records a fetch outcome in the entry, then releases the lease. Returns the
/// entry as written.
pub fn complete(
    store: &dyn SharedStore,
    key: &str,
    owner: u64,
    outcome: &Result<Fetched, FetchFailure>,
    now_ms: u64,
) -> Result<Entry, StoreError> {
    let previous = read_entry(store, key)?.unwrap_or_default();
    let entry = match outcome {
        Ok(f) => Entry {
            value: Some(f.value.clone()),
            id: f.id.clone(),
            fingerprint: f.fingerprint.clone(),
            fetched_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(f.lifetime_ms),
            failure: None,
        },
        Err(FetchFailure::Denied) => Entry {
            value: None,
            failure: Some(LastFailure {
                reason: DenyReason::CredentialDenied,
                at_ms: now_ms,
            }),
            ..previous
        },
        Err(_) => Entry {
            failure: Some(LastFailure {
                reason: DenyReason::CredentialUnavailable,
                at_ms: now_ms,
            }),
            ..previous
        },
    };
    let written = store.set(key, &entry.encode(), 0);
    // Release even if the write failed, so waiters are not stuck until the
    // lease deadline; they will see no value and fetch again.
    release(store, key, owner)?;
    written?;
    Ok(entry)
}

/// True when `on_tick` should refresh this entry now: it holds a value that
/// is due (or expired), no fetch is in flight, and the last failure (if
/// any) is at least `retry_ms` old.
pub fn refresh_wanted(entry: &Entry, now_ms: u64, refresh_ahead_ms: u64, retry_ms: u64) -> bool {
    if entry.value.is_none() {
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

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.map.borrow().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        if cas != 0 && map.get(key).map(|(_, c)| *c) != Some(cas) {
            return Err(StoreError::CasMismatch);
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

    fn resolve_at(s: &MemoryStore, owner: u64, now: u64, since: u64) -> Lookup {
        resolve(s, K, owner, now, since, 10_000, 3_000).unwrap()
    }

    #[test]
    fn first_caller_fetches_and_everyone_else_waits() {
        let s = MemoryStore::default();
        init(&s).unwrap();
        assert_eq!(resolve_at(&s, 1, 0, 0), Lookup::Fetch);
        for owner in 2..50 {
            assert_eq!(resolve_at(&s, owner, 1, 1), Lookup::Wait);
        }
        complete(&s, K, 1, &fetched("sk-1"), 5).unwrap();
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
        init(&s).unwrap();
        assert_eq!(resolve_at(&s, 1, 100, 100), Lookup::Fetch);
        assert_eq!(resolve_at(&s, 2, 101, 101), Lookup::Wait);
        complete(&s, K, 1, &Err(FetchFailure::HttpStatus), 110).unwrap();
        assert_eq!(
            resolve_at(&s, 2, 111, 101),
            Lookup::Failed(DenyReason::CredentialUnavailable)
        );
        // A request that arrives later starts a new fetch instead.
        assert_eq!(resolve_at(&s, 3, 200, 200), Lookup::Fetch);
    }

    #[test]
    fn a_failed_refresh_keeps_serving_the_valid_value() {
        let s = MemoryStore::default();
        init(&s).unwrap();
        assert_eq!(resolve_at(&s, 1, 0, 0), Lookup::Fetch);
        complete(&s, K, 1, &fetched("sk-old"), 0).unwrap();
        assert!(try_acquire(&s, K, 1, 55_000, 3_000).unwrap());
        complete(&s, K, 1, &Err(FetchFailure::Timeout), 55_500).unwrap();
        match resolve_at(&s, 2, 56_000, 56_000) {
            Lookup::Ready {
                value,
                refresh_due: true,
                ..
            } => assert_eq!(value, "sk-old"),
            other => panic!("{other:?}"),
        }
        // Past expiry the stale value is never used.
        assert_eq!(resolve_at(&s, 2, 60_001, 60_001), Lookup::Fetch);
    }

    #[test]
    fn a_denial_revokes_the_cached_value() {
        let s = MemoryStore::default();
        init(&s).unwrap();
        resolve_at(&s, 1, 0, 0);
        complete(&s, K, 1, &fetched("sk-old"), 0).unwrap();
        assert!(try_acquire(&s, K, 1, 55_000, 3_000).unwrap());
        complete(&s, K, 1, &Err(FetchFailure::Denied), 55_000).unwrap();
        assert_eq!(
            resolve_at(&s, 2, 55_000, 55_000),
            Lookup::Failed(DenyReason::CredentialDenied)
        );
    }

    #[test]
    fn a_dead_lease_is_taken_over() {
        let s = MemoryStore::default();
        init(&s).unwrap();
        assert_eq!(resolve_at(&s, 1, 0, 0), Lookup::Fetch);
        assert_eq!(resolve_at(&s, 2, 2_999, 0), Lookup::Wait);
        assert_eq!(resolve_at(&s, 2, 3_000, 0), Lookup::Fetch);
        // The old owner's late completion must not release the new lease.
        release(&s, K, 1).unwrap();
        assert!(lease_held(&s, K, 3_001).unwrap());
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
    }
}
