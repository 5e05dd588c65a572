//! The worker's budget steps: reserve when a request is admitted (token
//! budgets when its body is known), settle when its stream ends. The
//! records and their arithmetic are `budget::ledger`'s; this module picks
//! the rule's budgets, reads the clock's seconds and hands results to the
//! flow, which decides the reply.

use super::host::{Host, Shared};
use super::{LogLevel, Worker};
use crate::budget::ledger::{self, Charge};
use crate::budget::Metric;
use crate::config::{Config, Mode};
use crate::flow::RequestFlow;
use crate::metrics::Counter;
use crate::reason::DenyReason;

/// Which of a rule's budgets a step reserves.
pub(super) enum Phase {
    /// The headers were admitted: `requests` budgets, and `tokens` budgets
    /// when no body will be read (the output cap is then the bound).
    Admission,
    /// The body passed its check: `tokens` budgets, bounded by its length
    /// plus the output cap.
    Body { len: u64 },
}

impl<H: Host> Worker<H> {
    /// Reserves on the rule's budgets due at `phase`. `Err`: the denial,
    /// already recorded in `flow` (earlier reservations of the request are
    /// released when its stream ends, since it never went upstream).
    pub(super) fn reserve_budgets(
        &self,
        config: &Config,
        flow: &mut RequestFlow,
        phase: Phase,
        now_ms: u64,
    ) -> Result<(), DenyReason> {
        let Some(rule) = flow.rule() else {
            return Ok(());
        };
        let ids = config.policy.budgets(rule);
        if ids.is_empty() {
            return Ok(());
        }
        let Some(workload) = flow.workload().map(str::to_owned) else {
            return Err(flow.on_host_failure());
        };
        let rule_cap = config
            .policy
            .limits(rule)
            .and_then(|l| l.max_output_tokens)
            .map(|c| u64::from(c.limit));
        let output = flow.output_tokens_bound(rule_cap).unwrap_or(0);
        let store = Shared(&self.host);
        for &id in ids {
            let Some(budget) = config.budgets.get(usize::from(id)) else {
                continue;
            };
            let (amount, charge) = match (budget.metric, &phase) {
                (Metric::Requests, Phase::Admission) => (1, Charge::Now),
                (Metric::Tokens, Phase::Admission) if !flow.body_pending_check() => {
                    (output, Charge::Hold)
                }
                (Metric::Tokens, Phase::Body { len }) => (len.saturating_add(output), Charge::Hold),
                _ => continue,
            };
            let (reserved, shadow) = ledger::reserve(
                &store,
                budget,
                id,
                budget.subject(&workload),
                amount,
                charge,
                now_ms / 1000,
                config.mode == Mode::DryRun,
            );
            let refusal = match reserved {
                Ok(r) => {
                    flow.on_reserved(r, &budget.name, budget.metric);
                    shadow
                }
                Err(refusal) => Some(refusal),
            };
            if let Some(refusal) = refusal {
                if refusal == ledger::Refusal::Unavailable {
                    self.log(
                        LogLevel::Error,
                        format_args!(
                            "tollgate: budget {:?} could not be read or written; refusing (budget_unavailable)",
                            &*budget.name
                        ),
                    );
                }
                flow.on_budget_refused(config, budget.metric, refusal)?;
            }
        }
        Ok(())
    }

    /// Settles what the ended stream reserved (`flow.on_stream_end` first).
    pub(super) fn settle_budgets(&self, config: &Config, flow: &mut RequestFlow) {
        let store = Shared(&self.host);
        for (r, spent) in flow.take_settlements() {
            let Some(budget) = config.budgets.get(usize::from(r.budget)) else {
                continue;
            };
            if let Err(e) = ledger::settle(&store, budget, &r, spent) {
                self.count(Counter::BudgetSettleFailed);
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "tollgate: budget {:?}: settlement not written ({e:?}); its hold stays until the window resets",
                        &*budget.name
                    ),
                );
            }
        }
    }
}
