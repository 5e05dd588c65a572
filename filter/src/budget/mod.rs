//! Spend control on the gateway: per-workload or shared budgets of requests
//! or tokens per UTC window, exact across the workers of one Envoy.
//!
//! A budget is reserved before a request leaves and settled after its
//! stream ends ([`ledger`]):
//! - `requests`: 1 is charged at admission;
//! - `cost` (micro-dollars): like `tokens`, each bound priced by the
//!   model's [`price::Price`] (a model without one is refused);
//! - `tokens`: the request's upper bound (its body's bytes, which no
//!   tokenizer exceeds, plus the rule's effective output cap) is held at
//!   admission, and at the stream's end replaced by the usage the provider
//!   reported (no usage: the hold is charged if the exchange may have run,
//!   released if the provider answered an error).
//!
//! Invariants:
//! - A request is admitted only if, for every budget of its rule, used +
//!   held + its reservation ≤ the limit, checked and written by
//!   compare-and-swap on the budget's record: concurrent requests on any
//!   worker can never together exceed it.
//! - Every failure to read or write the store refuses the request
//!   (`budget_unavailable`); a compare-and-swap retry never admits.
//! - Records are keyed by budget name and, for a per-workload budget, by
//!   one of its fixed number of slots: the key set is bounded by the
//!   policy, whatever SPIFFE IDs arrive, and only admitted workloads write.

pub mod baseline;
pub mod global;
pub mod ledger;
pub mod price;
pub mod record;
pub mod window;

use sha2::{Digest, Sha256};

pub use window::Window;

/// The most records (slots) one per-workload budget may spread over.
pub const MAX_SLOTS: u32 = 4096;
/// Slots of a per-workload budget that does not say.
pub const DEFAULT_SLOTS: u32 = 64;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    /// Input plus output tokens.
    Tokens,
    /// Micro-dollars, by the configuration's `prices`.
    Cost,
}

impl Metric {
    /// Whether requests drawing on it must have their body read and an
    /// output cap (the bound that is reserved).
    pub const fn needs_bound(self) -> bool {
        matches!(self, Metric::Tokens | Metric::Cost)
    }
}

/// Who draws on one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Each SPIFFE ID has its own.
    PerWorkload { slots: u32 },
    /// Every workload of every rule naming it draws on one.
    Shared,
}

/// Where a budget's account lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This Envoy's shared data: exact across its workers ([`ledger`]).
    Local,
    /// The rate-limit service: exact across gateway replicas ([`global`]).
    Global,
}

/// One compiled budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub name: Box<str>,
    pub metric: Metric,
    pub limit: u64,
    pub window: Window,
    pub scope: Scope,
    pub tier: Tier,
}

/// Index of a budget in the configuration's table.
pub type BudgetId = u16;

impl Budget {
    /// The subject whose account a request draws on, given
    /// [`subject_of`] its workload (hashed once per request step).
    pub fn subject(&self, workload_hash: u64) -> u64 {
        match self.scope {
            Scope::Shared => 0,
            Scope::PerWorkload { .. } => workload_hash,
        }
    }

    /// The shared-data key of `subject`'s record.
    pub fn key(&self, subject: u64) -> String {
        match self.scope {
            Scope::Shared => format!("tollgate/v1/budget/{}", self.name),
            Scope::PerWorkload { slots } => format!(
                "tollgate/v1/budget/{}/{}",
                self.name,
                subject % u64::from(slots.max(1))
            ),
        }
    }
}

/// 64 bits of SHA-256 of the SPIFFE ID, never 0 (the shared subject).
/// Two workloads that collide share an account: stricter, never looser.
pub fn subject_of(workload: &str) -> u64 {
    let digest = Sha256::digest(workload.as_bytes());
    let bytes = digest
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .unwrap_or([0; 8]);
    u64::from_le_bytes(bytes).max(1)
}
