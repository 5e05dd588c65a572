//! Reserve, then settle: every change to a budget's record is a
//! compare-and-swap on it, written against a [`SharedStore`] so that it
//! runs (and is tested) without a host.
//!
//! Invariants:
//! - [`reserve`] writes only a record on which used + held + amount ≤ limit
//!   holds for the subject (except `force`, dry_run's accounting), on the
//!   version it read: a lost race reads again, and running out of attempts
//!   refuses (`Unavailable`), never admits.
//! - [`settle`] releases exactly the amount its reservation held, in the
//!   window it was held in; once that window has passed, the record was
//!   reset and there is nothing left to release or charge.
//! - A record that cannot be decoded is never overwritten: the request is
//!   refused and the record left for an operator to see.

use super::record::Record;
use super::{Budget, BudgetId};
use crate::credential::cache::{SharedStore, StoreError};

/// Compare-and-swap attempts before giving up on a contended record.
const CAS_ATTEMPTS: usize = 64;

/// Whether a reservation is charged at once or held until settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Counted as used now (`requests`).
    Now,
    /// Held until [`settle`] replaces it with what was spent (`tokens`).
    Hold,
}

/// What a request reserved on one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub budget: BudgetId,
    pub subject: u64,
    /// The window (start, epoch seconds) it was made in.
    pub window: u64,
    pub amount: u64,
    pub charge: Charge,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It does not fit; the window resets in this many seconds.
    Exhausted { retry_after_s: u64 },
    /// The store failed, the record was unreadable or full, or contention
    /// outlasted the attempts.
    Unavailable,
    /// A `cost` budget, and the model has no price: nothing could be
    /// reserved, so nothing is admitted.
    PriceUnknown,
}

/// Reserves `amount` on `budget` for `subject` at `now_s`. `force` records
/// it even when it does not fit (dry_run: the spend is still counted),
/// and then reports the refusal it would have been alongside.
#[allow(clippy::too_many_arguments)]
pub fn reserve(
    store: &dyn SharedStore,
    budget: &Budget,
    id: BudgetId,
    subject: u64,
    amount: u64,
    charge: Charge,
    now_s: u64,
    force: bool,
) -> (Result<Reservation, Refusal>, Option<Refusal>) {
    let key = budget.key(subject);
    let window = budget.window.start(now_s);
    for _ in 0..CAS_ATTEMPTS {
        let (mut record, cas) = match store.get(&key) {
            Ok(Some((bytes, cas))) => match Record::decode(&bytes) {
                Some(r) => (r, cas),
                None => return (Err(Refusal::Unavailable), None),
            },
            // Created at configuration (`ensure_record`); a record missing
            // now is created here (the cold-start window of cache.rs).
            Ok(None) => (Record::default(), 0),
            Err(_) => return (Err(Refusal::Unavailable), None),
        };
        record.roll(window);
        let Some(account) = record.account(subject) else {
            return (Err(Refusal::Unavailable), None);
        };
        let after = account
            .used
            .saturating_add(account.held)
            .saturating_add(amount);
        let mut shadow = None;
        if after > budget.limit {
            let refusal = Refusal::Exhausted {
                retry_after_s: budget.window.retry_after_s(now_s),
            };
            if !force {
                return (Err(refusal), None);
            }
            shadow = Some(refusal);
        }
        match charge {
            Charge::Now => account.used = account.used.saturating_add(amount),
            Charge::Hold => account.held = account.held.saturating_add(amount),
        }
        match store.set(&key, &record.encode(), cas) {
            Ok(()) => {
                let r = Reservation {
                    budget: id,
                    subject,
                    window,
                    amount,
                    charge,
                };
                return (Ok(r), shadow);
            }
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host(_)) => return (Err(Refusal::Unavailable), None),
        }
    }
    (Err(Refusal::Unavailable), None)
}

/// Replaces a held reservation with `spent`. A reservation charged at
/// once has nothing to settle.
pub fn settle(
    store: &dyn SharedStore,
    budget: &Budget,
    r: &Reservation,
    spent: u64,
) -> Result<(), StoreError> {
    if r.charge == Charge::Now {
        return Ok(());
    }
    let key = budget.key(r.subject);
    for _ in 0..CAS_ATTEMPTS {
        let Some((bytes, cas)) = store.get(&key)? else {
            return Ok(());
        };
        let Some(mut record) = Record::decode(&bytes) else {
            return Err(StoreError::Host(0));
        };
        if record.window != r.window {
            return Ok(());
        }
        let Some(account) = record.accounts.iter_mut().find(|a| a.subject == r.subject) else {
            return Ok(());
        };
        account.held = account.held.saturating_sub(r.amount);
        account.used = account.used.saturating_add(spent);
        match store.set(&key, &record.encode(), cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Creates `budget`'s records that do not exist yet (at configuration,
/// before requests; never overwrites one).
pub fn ensure_records(store: &dyn SharedStore, budget: &Budget) -> Result<(), StoreError> {
    let keys: Vec<String> = match budget.scope {
        super::Scope::Shared => vec![budget.key(0)],
        super::Scope::PerWorkload { slots } => {
            (0..u64::from(slots)).map(|s| budget.key(s)).collect()
        }
    };
    let empty = Record::default().encode();
    for key in keys {
        if store.get(&key)?.is_none() {
            store.set(&key, &empty, 0)?;
        }
    }
    Ok(())
}

/// What `subject` has used and holds on `budget` in the window of `now_s`.
pub fn balance(
    store: &dyn SharedStore,
    budget: &Budget,
    subject: u64,
    now_s: u64,
) -> Result<(u64, u64), StoreError> {
    let Some((bytes, _)) = store.get(&budget.key(subject))? else {
        return Ok((0, 0));
    };
    let mut record = Record::decode(&bytes).ok_or(StoreError::Host(0))?;
    record.roll(budget.window.start(now_s));
    Ok(record
        .accounts
        .iter()
        .find(|a| a.subject == subject)
        .map_or((0, 0), |a| (a.used, a.held)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Metric, Scope, Tier, Window};
    use crate::credential::cache::MemoryStore;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_796_018_462; // 2026-11-30T06:01:02Z

    fn tokens(limit: u64, scope: Scope) -> Budget {
        Budget {
            name: "t".into(),
            metric: Metric::Tokens,
            limit,
            window: Window::Minute,
            scope,
            tier: Tier::Local,
        }
    }

    fn hold(
        s: &MemoryStore,
        b: &Budget,
        subject: u64,
        amount: u64,
    ) -> Result<Reservation, Refusal> {
        reserve(s, b, 0, subject, amount, Charge::Hold, NOW, false).0
    }

    #[test]
    fn reservations_never_exceed_the_limit_and_settle_to_the_spend() {
        let s = MemoryStore::default();
        let b = tokens(1000, Scope::Shared);
        let a = hold(&s, &b, 0, 600).unwrap();
        assert_eq!(
            hold(&s, &b, 0, 500),
            Err(Refusal::Exhausted { retry_after_s: 58 })
        );
        let c = hold(&s, &b, 0, 400).unwrap();
        assert_eq!(balance(&s, &b, 0, NOW).unwrap(), (0, 1000));
        settle(&s, &b, &a, 250).unwrap();
        assert_eq!(balance(&s, &b, 0, NOW).unwrap(), (250, 400));
        settle(&s, &b, &c, 400).unwrap();
        assert_eq!(balance(&s, &b, 0, NOW).unwrap(), (650, 0));
        assert!(hold(&s, &b, 0, 350).is_ok());
        assert!(hold(&s, &b, 0, 1).is_err());
    }

    #[test]
    fn per_workload_budgets_are_separate_and_bounded_in_keys() {
        let s = MemoryStore::default();
        let b = tokens(10, Scope::PerWorkload { slots: 8 });
        ensure_records(&s, &b).unwrap();
        assert_eq!(s.len(), 8);
        for w in 0..1000 {
            let subject = crate::budget::subject_of(&format!("spiffe://td/ns/a/sa/w{w}"));
            // Each workload gets its own 10 (16 accounts per slot, 8 slots:
            // beyond 128 live workloads the slots are full).
            let r = hold(&s, &b, subject, 10);
            if w < 64 {
                assert!(r.is_ok(), "workload {w}: {r:?}");
                assert!(hold(&s, &b, subject, 1).is_err());
            }
        }
        assert_eq!(s.len(), 8, "no key per workload");
    }

    #[test]
    fn a_new_window_resets_and_an_old_reservation_releases_nothing() {
        let s = MemoryStore::default();
        let b = tokens(100, Scope::Shared);
        let old = hold(&s, &b, 0, 100).unwrap();
        let next = NOW + 60;
        let new = reserve(&s, &b, 0, 0, 70, Charge::Hold, next, false)
            .0
            .unwrap();
        settle(&s, &b, &old, 100).unwrap();
        assert_eq!(balance(&s, &b, 0, next).unwrap(), (0, 70));
        settle(&s, &b, &new, 5).unwrap();
        assert_eq!(balance(&s, &b, 0, next).unwrap(), (5, 0));
    }

    #[test]
    fn requests_are_charged_at_once_and_dry_run_counts_past_the_limit() {
        let s = MemoryStore::default();
        let b = Budget {
            metric: Metric::Requests,
            ..tokens(2, Scope::Shared)
        };
        for _ in 0..2 {
            let (r, shadow) = reserve(&s, &b, 0, 0, 1, Charge::Now, NOW, false);
            assert!(r.is_ok() && shadow.is_none());
        }
        let (r, _) = reserve(&s, &b, 0, 0, 1, Charge::Now, NOW, false);
        assert!(matches!(r, Err(Refusal::Exhausted { .. })));
        let (r, shadow) = reserve(&s, &b, 0, 0, 1, Charge::Now, NOW, true);
        assert!(r.is_ok() && matches!(shadow, Some(Refusal::Exhausted { .. })));
        assert_eq!(balance(&s, &b, 0, NOW).unwrap(), (3, 0));
    }

    /// A store whose every write loses its compare-and-swap.
    struct Contended(MemoryStore);
    impl SharedStore for Contended {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.0.get(key)
        }
        fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), StoreError> {
            Err(StoreError::CasMismatch)
        }
    }

    #[test]
    fn contention_and_store_failures_refuse_and_never_admit() {
        let b = tokens(100, Scope::Shared);
        let s = Contended(MemoryStore::default());
        assert_eq!(
            reserve(&s, &b, 0, 0, 1, Charge::Hold, NOW, false).0,
            Err(Refusal::Unavailable)
        );
        let m = MemoryStore::default();
        m.set(&b.key(0), b"garbage", 0).unwrap();
        assert_eq!(hold(&m, &b, 0, 1), Err(Refusal::Unavailable));
        assert_eq!(
            m.get(&b.key(0)).unwrap().unwrap().0,
            b"garbage",
            "left as found"
        );
    }

    /// A store on which another worker reserves between each read and write
    /// of ours (its first `races` writes): our write then loses its
    /// compare-and-swap and must read again.
    struct Racing<'a> {
        inner: MemoryStore,
        budget: &'a Budget,
        races: core::cell::Cell<u32>,
    }
    impl SharedStore for Racing<'_> {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                let (r, _) = reserve(&self.inner, self.budget, 0, 0, 40, Charge::Hold, NOW, false);
                assert!(r.is_ok() || r == Err(Refusal::Exhausted { retry_after_s: 58 }));
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn a_reservation_that_loses_a_race_reads_again_and_still_fits() {
        let b = tokens(100, Scope::Shared);
        let s = Racing {
            inner: MemoryStore::default(),
            budget: &b,
            races: core::cell::Cell::new(2),
        };
        ensure_records(&s.inner, &b).unwrap();
        // Two rivals hold 40 each between our read and our write: 50 no
        // longer fits, although it did when first read.
        assert_eq!(
            reserve(&s, &b, 0, 0, 50, Charge::Hold, NOW, false).0,
            Err(Refusal::Exhausted { retry_after_s: 58 })
        );
        assert_eq!(balance(&s.inner, &b, 0, NOW).unwrap(), (0, 80));
        s.races.set(1);
        assert!(reserve(&s, &b, 0, 0, 20, Charge::Hold, NOW, false)
            .0
            .is_ok());
        assert_eq!(
            balance(&s.inner, &b, 0, NOW).unwrap(),
            (0, 100),
            "rival refused, ours fits"
        );
    }

    /// A long random mix of reservations and settlements: used plus held
    /// never passes the limit.
    #[test]
    fn a_long_mix_of_reserves_and_settles_never_overshoots() {
        let b = tokens(1_000, Scope::Shared);
        let s = MemoryStore::default();
        let mut admitted = 0u64;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut live = Vec::new();
        for step in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed % 3 == 0 && !live.is_empty() {
                let r: Reservation = live.swap_remove((seed as usize / 3) % live.len());
                settle(&s, &b, &r, r.amount / 2).unwrap();
            } else if let Ok(r) = hold(&s, &b, 0, 1 + seed % 97) {
                admitted += r.amount;
                live.push(r);
            }
            let (used, held) = balance(&s, &b, 0, NOW).unwrap();
            assert!(used + held <= 1_000, "step {step}: {used} + {held}");
        }
        assert!(admitted > 0);
    }
}
