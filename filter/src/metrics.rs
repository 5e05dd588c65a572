//! Metric names. Every counter is defined at start-up, so dashboards see
//! zeros rather than missing series.
//!
//! Names (Envoy exposes them with its `wasmcustom.` prefix):
//! - `tollgate.decision.allow`, `tollgate.decision.abandoned`
//! - `tollgate.decision.deny.<reason>` and `tollgate.decision.shadow_deny.<reason>`
//! - `tollgate.cache.hit`, `tollgate.cache.miss`, `tollgate.cache.refresh_due`
//! - `tollgate.fetch.ok`, `tollgate.fetch.<failure>` (see `FetchFailure::code`)
//! - `tollgate.fetch.superseded` (a late answer discarded by the lease check)
//! - `tollgate.client_key_seen`
//! - `tollgate.key_echo_redacted` (injected keys removed from responses)
//! - `tollgate.response.refused.response_encoded`
//! - `tollgate.budget.settle_failed` (a settlement that could not be
//!   written: its hold stays until the window resets, stricter, never looser)
//! - `tollgate.prompt_anomaly.recorded` (a guard in `record` mode let an
//!   anomalous prompt through)
//! - `tollgate.budget.global_fail_open` (admitted without the rate-limit
//!   service, which could not answer, under `failure_mode: fail_open`)
//! - `tollgate.budget.global_settle_failed` (a settlement the rate-limit
//!   service never took, after its retries: the service's hold expires
//!   uncharged)
//!
//! And one gauge, defined by the worker: `tollgate.budget.reservations_outstanding`
//! (token and cost holds of streams not yet settled).

use crate::credential::protocol::FetchFailure;
use crate::reason::DenyReason;
use crate::response::dlp::Cut;

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
    /// A credential answer arrived after its lease was taken over; discarded.
    FetchSuperseded,
    /// The injected key was found in a response and replaced.
    KeyEchoRedacted,
    /// A response that must be read came compressed although Tollgate asked
    /// for `identity`: it cannot be checked for the key, so it was reset.
    ResponseEncodedRefused,
    /// A budget settlement could not be written.
    BudgetSettleFailed,
    /// A prompt guard with `action: record` let an anomalous prompt through.
    PromptAnomalyRecorded,
    /// Admitted without the rate-limit service (`fail_open`).
    GlobalFailOpen,
    /// A global settlement lost after its retries.
    GlobalSettleFailed,
    /// Matches redacted from model output by the rule's DLP detectors.
    DlpResponseRedacted,
    /// A response cut because DLP could not scan it.
    ResponseCut(Cut),
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
        v.push(Counter::FetchSuperseded);
        v.push(Counter::KeyEchoRedacted);
        v.push(Counter::ResponseEncodedRefused);
        v.push(Counter::BudgetSettleFailed);
        v.push(Counter::PromptAnomalyRecorded);
        v.push(Counter::GlobalFailOpen);
        v.push(Counter::GlobalSettleFailed);
        v.push(Counter::DlpResponseRedacted);
        v.extend(Cut::ALL.iter().map(|c| Counter::ResponseCut(*c)));
        v
    }

    /// A dense index, for a metric-id table: distinct per counter, below
    /// [`Counter::SLOTS`].
    pub fn slot(self) -> usize {
        const REASONS: usize = DenyReason::ALL.len();
        const SHADOW: usize = 2 + REASONS;
        const CACHE: usize = SHADOW + REASONS;
        const FETCH: usize = CACHE + 4;
        match self {
            Counter::Allow => 0,
            Counter::Abandoned => 1,
            Counter::Deny(r) => 2 + r as usize,
            Counter::ShadowDeny(r) => SHADOW + r as usize,
            Counter::CacheHit => CACHE,
            Counter::CacheMiss => CACHE + 1,
            Counter::CacheRefreshDue => CACHE + 2,
            Counter::FetchOk => CACHE + 3,
            Counter::FetchFailed(f) => FETCH + f as usize,
            Counter::ClientKeySeen => FETCH + FetchFailure::ALL.len(),
            Counter::FetchSuperseded => FETCH + FetchFailure::ALL.len() + 1,
            Counter::KeyEchoRedacted => FETCH + FetchFailure::ALL.len() + 2,
            Counter::ResponseEncodedRefused => FETCH + FetchFailure::ALL.len() + 3,
            Counter::BudgetSettleFailed => FETCH + FetchFailure::ALL.len() + 4,
            Counter::PromptAnomalyRecorded => FETCH + FetchFailure::ALL.len() + 5,
            Counter::GlobalFailOpen => FETCH + FetchFailure::ALL.len() + 6,
            Counter::GlobalSettleFailed => FETCH + FetchFailure::ALL.len() + 7,
            Counter::DlpResponseRedacted => FETCH + FetchFailure::ALL.len() + 8,
            Counter::ResponseCut(c) => FETCH + FetchFailure::ALL.len() + 9 + c as usize,
        }
    }

    /// The size of a metric-id table indexed by [`Counter::slot`].
    pub const SLOTS: usize =
        2 + 2 * DenyReason::ALL.len() + 4 + FetchFailure::ALL.len() + 9 + Cut::ALL.len();

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
            Counter::FetchSuperseded => "tollgate.fetch.superseded".into(),
            Counter::KeyEchoRedacted => "tollgate.key_echo_redacted".into(),
            Counter::ResponseEncodedRefused => "tollgate.response.refused.response_encoded".into(),
            Counter::BudgetSettleFailed => "tollgate.budget.settle_failed".into(),
            Counter::PromptAnomalyRecorded => "tollgate.prompt_anomaly.recorded".into(),
            Counter::GlobalFailOpen => "tollgate.budget.global_fail_open".into(),
            Counter::GlobalSettleFailed => "tollgate.budget.global_settle_failed".into(),
            Counter::DlpResponseRedacted => "tollgate.dlp.response_redacted".into(),
            Counter::ResponseCut(c) => format!("tollgate.response.refused.{}", c.code()),
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
        assert!(slots.iter().all(|s| *s < Counter::SLOTS));
    }
}
