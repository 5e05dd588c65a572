//! Metric names. Every counter is defined at start-up, so dashboards see
//! zeros rather than missing series.
//!
//! Names (Envoy exposes them with its `wasmcustom.` prefix):
//! - `tollgate.decision.allow`, `tollgate.decision.abandoned`
//! - `tollgate.decision.deny.<reason>` and `tollgate.decision.shadow_deny.<reason>`
//! - `tollgate.cache.hit`, `tollgate.cache.miss`, `tollgate.cache.refresh_due`
//! - `tollgate.fetch.ok`, `tollgate.fetch.<failure>` (see `FetchFailure::code`)
//! - `tollgate.client_key_seen`

use crate::credential::protocol::FetchFailure;
use crate::reason::DenyReason;

/// A counter Tollgate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    Allow,
    Abandoned,
    Deny(DenyReason),
    ShadowDeny(DenyReason),
    CacheHit,
    CacheMiss,
    CacheRefreshDue,
    FetchOk,
    FetchFailed(FetchFailure),
    ClientKeySeen,
}

impl Counter {
    /// Every counter, in a fixed order; a counter's position is its slot.
    pub fn all() -> Vec<Counter> {
        let mut v = vec![Counter::Allow, Counter::Abandoned];
        v.extend(DenyReason::ALL.iter().map(|r| Counter::Deny(*r)));
        v.extend(
            DenyReason::ALL
                .iter()
                .filter(|r| r.is_policy_verdict())
                .map(|r| Counter::ShadowDeny(*r)),
        );
        v.extend([
            Counter::CacheHit,
            Counter::CacheMiss,
            Counter::CacheRefreshDue,
            Counter::FetchOk,
        ]);
        v.extend(FetchFailure::ALL.iter().map(|f| Counter::FetchFailed(*f)));
        v.push(Counter::ClientKeySeen);
        v
    }

    /// A dense index, for a metric-id table: distinct per counter, < 64.
    pub fn slot(self) -> usize {
        match self {
            Counter::Allow => 0,
            Counter::Abandoned => 1,
            Counter::Deny(r) => 2 + r as usize,
            Counter::ShadowDeny(r) => 16 + r as usize,
            Counter::CacheHit => 30,
            Counter::CacheMiss => 31,
            Counter::CacheRefreshDue => 32,
            Counter::FetchOk => 33,
            Counter::FetchFailed(f) => 34 + f as usize,
            Counter::ClientKeySeen => 44,
        }
    }

    pub fn name(self) -> String {
        match self {
            Counter::Allow => "tollgate.decision.allow".into(),
            Counter::Abandoned => "tollgate.decision.abandoned".into(),
            Counter::Deny(r) => format!("tollgate.decision.deny.{}", r.code()),
            Counter::ShadowDeny(r) => format!("tollgate.decision.shadow_deny.{}", r.code()),
            Counter::CacheHit => "tollgate.cache.hit".into(),
            Counter::CacheMiss => "tollgate.cache.miss".into(),
            Counter::CacheRefreshDue => "tollgate.cache.refresh_due".into(),
            Counter::FetchOk => "tollgate.fetch.ok".into(),
            Counter::FetchFailed(f) => format!("tollgate.fetch.{}", f.code()),
            Counter::ClientKeySeen => "tollgate.client_key_seen".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_unique() {
        let all = Counter::all();
        let mut names: Vec<_> = all.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let mut slots: Vec<_> = all.iter().map(|c| c.slot()).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), all.len(), "slots are distinct");
        assert!(slots.iter().all(|s| *s < 64));
    }
}
