//! The worker's budget steps: reserve when a request is admitted (token
//! budgets when its body is known), settle when its stream ends. The
//! records and their arithmetic are `budget::ledger`'s; this module picks
//! the rule's budgets, reads the clock's seconds and hands results to the
//! flow, which decides the reply.

use super::host::{Host, Shared};
use super::{LogLevel, Worker};
use crate::budget::baseline;
use crate::budget::ledger::{self, Charge};
use crate::budget::{global, subject_of, Metric, Tier};
use crate::config::{Config, Mode};
use crate::flow::RequestFlow;
use crate::metrics::Counter;
use crate::reason::DenyReason;

/// Which of a rule's budgets a step reserves.
pub(super) enum Phase {
    /// The headers were admitted: `requests` budgets, and `tokens` and
    /// `cost` budgets when no body will be read (the output cap is then
    /// the bound).
    Admission,
    /// The body passed its check: `tokens` and `cost` budgets, bounded by
    /// its length plus the output cap (cost: each priced for the model).
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
        let hash = subject_of(&workload);
        for &id in ids {
            let Some(budget) = config.budgets.get(usize::from(id)) else {
                continue;
            };
            // The input bound: the body's bytes (none when no body is read).
            // Global budgets are asked for in one call, at the request's
            // last step (its body's end when one is read).
            let global = budget.tier == Tier::Global;
            let input = match (budget.metric.needs_bound(), &phase) {
                (_, Phase::Admission) if global && flow.body_pending() => continue,
                (false, Phase::Admission) => 0,
                (true, Phase::Admission) if !flow.body_pending() => 0,
                (true, Phase::Body { len }) => *len,
                (false, Phase::Body { .. }) if global => 0,
                _ => continue,
            };
            let (amount, charge) = match budget.metric {
                Metric::Requests => (1, Charge::Now),
                Metric::Tokens => (input.saturating_add(output), Charge::Hold),
                Metric::Cost => {
                    let price = flow.model().and_then(|m| config.prices.for_model(m));
                    match price {
                        Some(p) => {
                            flow.set_price(p);
                            (p.cost(input, 0, output), Charge::Hold)
                        }
                        None => {
                            flow.on_budget_refused(
                                config,
                                budget.metric,
                                ledger::Refusal::PriceUnknown,
                            )?;
                            continue;
                        }
                    }
                }
            };
            if global {
                let item = global::Item {
                    budget: id,
                    metric: budget.metric,
                    subject: hash,
                    window_start: budget.window.start(now_ms / 1000),
                    amount,
                };
                flow.defer_global(item, &budget.name);
                continue;
            }
            let (reserved, shadow) = ledger::reserve(
                &store,
                budget,
                id,
                budget.subject(hash),
                amount,
                charge,
                now_ms / 1000,
                config.mode == Mode::DryRun,
            );
            let refusal = match reserved {
                Ok(r) => {
                    if r.charge == Charge::Hold {
                        self.outstanding(1);
                    }
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

    /// Judges a checked body of `size` bytes by the rule's prompt guard.
    /// `Ok(true)`: a usual prompt, to be learnt once every check passed
    /// ([`Self::learn_prompt`]). A store failure disables the guard for
    /// this request (logged); budgets are what fail closed on spend.
    pub(super) fn guard_prompt(
        &self,
        config: &Config,
        flow: &mut RequestFlow,
        size: u64,
    ) -> Result<bool, DenyReason> {
        let Some(guard) = flow
            .rule()
            .and_then(|r| config.policy.guard(r))
            .and_then(|g| config.guards.get(usize::from(g)))
        else {
            return Ok(false);
        };
        let Some(workload) = flow.workload().map(str::to_owned) else {
            return Ok(false);
        };
        match baseline::check(&Shared(&self.host), guard, &workload, size) {
            Ok(baseline::Verdict::Usual) => Ok(true),
            Ok(baseline::Verdict::Anomaly { baseline }) => {
                let deny = guard.action == baseline::GuardAction::Deny;
                if !deny {
                    self.count(Counter::PromptAnomalyRecorded);
                }
                flow.on_prompt_anomaly(config, baseline, deny)?;
                Ok(false)
            }
            Err(e) => {
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "tollgate: prompt guard {:?} could not read its baseline ({e:?}); not applied to this request",
                        &*guard.name
                    ),
                );
                Ok(false)
            }
        }
    }

    /// Adds an admitted prompt of `size` bytes to the workload's baseline.
    pub(super) fn learn_prompt(&self, config: &Config, flow: &RequestFlow, size: u64) {
        let guard = flow
            .rule()
            .and_then(|r| config.policy.guard(r))
            .and_then(|g| config.guards.get(usize::from(g)));
        let (Some(guard), Some(workload)) = (guard, flow.workload()) else {
            return;
        };
        if let Err(e) = baseline::learn(&Shared(&self.host), guard, workload, size) {
            self.log(
                LogLevel::Warn,
                format_args!(
                    "tollgate: prompt guard {:?}: baseline not updated ({e:?})",
                    &*guard.name
                ),
            );
        }
    }

    /// Settles what the ended stream reserved (`flow.on_stream_end` first).
    /// `current`: the context whose callback runs.
    pub(super) fn settle_budgets(&self, config: &Config, flow: &mut RequestFlow, current: u32) {
        self.settle_global(config, flow, current);
        let store = Shared(&self.host);
        for (r, spent) in flow.take_settlements() {
            let Some(budget) = config.budgets.get(usize::from(r.budget)) else {
                continue;
            };
            if r.charge == Charge::Hold {
                self.outstanding(-1);
            }
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
