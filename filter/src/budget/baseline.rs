//! The prompt-size anomaly guard: each workload's usual prompt size, kept
//! in shared data, and the check that refuses (or records) a prompt far
//! above it, the sign of a stolen or runaway workload ("a service that
//! typically sends 50-token prompts suddenly sends 50,000").
//!
//! The size is the request body's length in bytes, the same bound the
//! token budgets reserve. The baseline is the mean of the first
//! [`MEAN_SAMPLES`] admitted prompts, then a moving average with that
//! weight.
//!
//! Invariants:
//! - A prompt is anomalous only after `warmup` admitted prompts, when it
//!   is above both `factor` × the baseline and `min_bytes`.
//! - Only admitted requests move the baseline ([`learn`] is called after
//!   every check passed), so refused requests cannot train it upwards.
//! - Records are fixed per guard (`slots` of them, up to [`MAX_SUBJECTS`]
//!   workloads each, the least-sampled evicted when full): the key set is
//!   bounded by the policy.
//! - The guard is advisory on store failures: [`check`] then reports no
//!   baseline (the caller counts it), since budgets, not the guard, are
//!   what fail closed on spend.

use super::subject_of;
use crate::credential::cache::{SharedStore, StoreError};

/// Workloads one record holds.
pub const MAX_SUBJECTS: usize = 16;
/// Prompts averaged plainly before the moving average takes over.
pub const MEAN_SAMPLES: u64 = 64;
const VERSION: u8 = 1;
const CAS_ATTEMPTS: usize = 8;

/// What a guard does with an anomalous prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// 403 `prompt_anomaly`.
    Deny,
    /// Forwarded; the audit record and a counter say so.
    Record,
}

/// One compiled `prompt_guards` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub name: Box<str>,
    pub factor: u64,
    pub min_bytes: u64,
    pub warmup: u64,
    pub action: GuardAction,
    pub slots: u32,
}

/// The check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No baseline yet, or within it.
    Usual,
    /// Above `factor` × `baseline` bytes (and `min_bytes`).
    Anomaly { baseline: u64 },
}

impl Guard {
    pub fn key(&self, subject: u64) -> String {
        format!(
            "tollgate/v1/baseline/{}/{}",
            self.name,
            subject % u64::from(self.slots.max(1))
        )
    }

    /// Judges a prompt of `size` bytes against `(samples, mean)`.
    pub fn judge(&self, samples: u64, mean: u64, size: u64) -> Verdict {
        let limit = mean.saturating_mul(self.factor).max(self.min_bytes);
        if samples >= self.warmup && size > limit {
            Verdict::Anomaly { baseline: mean }
        } else {
            Verdict::Usual
        }
    }
}

/// (subject, samples, mean bytes) per workload.
type Entry = (u64, u64, u64);

fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    let (&version, rest) = bytes.split_first()?;
    if version != VERSION || rest.len() % 24 != 0 || rest.len() / 24 > MAX_SUBJECTS {
        return None;
    }
    let word = |c: &[u8], at: usize| {
        c.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    };
    Some(
        rest.chunks_exact(24)
            .map(|c| (word(c, 0), word(c, 8), word(c, 16)))
            .collect(),
    )
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * 24);
    out.push(VERSION);
    for (subject, samples, mean) in entries {
        out.extend_from_slice(&subject.to_le_bytes());
        out.extend_from_slice(&samples.to_le_bytes());
        out.extend_from_slice(&mean.to_le_bytes());
    }
    out
}

/// Judges a prompt of `size` bytes from `workload` (read only).
pub fn check(
    store: &dyn SharedStore,
    guard: &Guard,
    workload: &str,
    size: u64,
) -> Result<Verdict, StoreError> {
    let subject = subject_of(workload);
    let Some((bytes, _)) = store.get(&guard.key(subject))? else {
        return Ok(Verdict::Usual);
    };
    let entries = decode(&bytes).ok_or(StoreError::Host(0))?;
    Ok(entries
        .iter()
        .find(|e| e.0 == subject)
        .map_or(Verdict::Usual, |&(_, samples, mean)| {
            guard.judge(samples, mean, size)
        }))
}

/// Adds an admitted prompt of `size` bytes to `workload`'s baseline.
pub fn learn(
    store: &dyn SharedStore,
    guard: &Guard,
    workload: &str,
    size: u64,
) -> Result<(), StoreError> {
    let subject = subject_of(workload);
    let key = guard.key(subject);
    for _ in 0..CAS_ATTEMPTS {
        let (mut entries, cas) = match store.get(&key)? {
            Some((bytes, cas)) => (decode(&bytes).ok_or(StoreError::Host(0))?, cas),
            None => (Vec::new(), 0),
        };
        match entries.iter_mut().find(|e| e.0 == subject) {
            Some(e) => {
                let n = e.1.saturating_add(1).min(MEAN_SAMPLES);
                let mean = i128::from(e.2) + (i128::from(size) - i128::from(e.2)) / i128::from(n);
                e.1 = e.1.saturating_add(1);
                e.2 = u64::try_from(mean.max(0)).unwrap_or(u64::MAX);
            }
            None => {
                if entries.len() >= MAX_SUBJECTS {
                    // Evict the workload with the fewest samples.
                    let fewest = entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.1)
                        .map(|(i, _)| i);
                    if let Some(i) = fewest {
                        entries.swap_remove(i);
                    }
                }
                entries.push((subject, 1, size));
            }
        }
        match store.set(&key, &encode(&entries), cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::cache::MemoryStore;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn guard() -> Guard {
        Guard {
            name: "g".into(),
            factor: 20,
            min_bytes: 4096,
            warmup: 10,
            action: GuardAction::Deny,
            slots: 4,
        }
    }

    const W: &str = "spiffe://td/ns/a/sa/steady";

    #[test]
    fn a_steady_workload_then_a_thousandfold_prompt_is_an_anomaly() {
        let s = MemoryStore::default();
        let g = guard();
        for _ in 0..9 {
            assert_eq!(check(&s, &g, W, 200).unwrap(), Verdict::Usual);
            learn(&s, &g, W, 200).unwrap();
        }
        assert_eq!(
            check(&s, &g, W, 200_000).unwrap(),
            Verdict::Usual,
            "still warming up"
        );
        learn(&s, &g, W, 200).unwrap();
        assert_eq!(
            check(&s, &g, W, 200_000).unwrap(),
            Verdict::Anomaly { baseline: 200 }
        );
        // Within factor × baseline, or under the floor: usual.
        assert_eq!(check(&s, &g, W, 4_000).unwrap(), Verdict::Usual);
        // Another workload has no baseline of its own yet.
        assert_eq!(
            check(&s, &g, "spiffe://td/ns/a/sa/new", 200_000).unwrap(),
            Verdict::Usual
        );
    }

    #[test]
    fn only_learnt_prompts_move_the_baseline_and_it_follows_slowly() {
        let s = MemoryStore::default();
        let g = guard();
        for _ in 0..100 {
            learn(&s, &g, W, 1_000).unwrap();
        }
        // Checking (what a refused request does) changes nothing.
        for _ in 0..1_000 {
            assert!(matches!(
                check(&s, &g, W, 1_000_000).unwrap(),
                Verdict::Anomaly { .. }
            ));
        }
        assert_eq!(
            check(&s, &g, W, 1_000_000).unwrap(),
            Verdict::Anomaly { baseline: 1_000 }
        );
        // One admitted large prompt moves the mean by 1/64 of the gap.
        learn(&s, &g, W, 65_000).unwrap();
        assert_eq!(
            check(&s, &g, W, 10_000_000).unwrap(),
            Verdict::Anomaly { baseline: 2_000 }
        );
    }

    #[test]
    fn records_are_bounded_and_a_full_one_evicts_the_least_sampled() {
        let s = MemoryStore::default();
        let g = guard();
        for w in 0..500 {
            learn(&s, &g, &format!("spiffe://td/ns/a/sa/w{w}"), 100).unwrap();
        }
        assert!(s.len() <= 4);
        let bytes = s.get(&g.key(subject_of(W))).unwrap().unwrap().0;
        assert!(decode(&bytes).unwrap().len() <= MAX_SUBJECTS);
        s.set(&g.key(subject_of(W)), b"junk", 0).unwrap();
        assert!(
            check(&s, &g, W, 1).is_err(),
            "an unreadable record is an error"
        );
    }
}
