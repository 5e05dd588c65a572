//! The worker's global-tier steps: ask the rate-limit service to hold a
//! request's global budgets, act on its answer, and settle at stream end.
//! The wire format is `budget::global`'s; this module sequences the calls.
//!
//! Invariants:
//! - Every call is dispatched with the root context effective, so it belongs
//!   to the worker, not to the stream: a client that leaves cancels nothing,
//!   a settlement made from `on_log` is never cancelled with its stream, and
//!   holds granted to a stream that is gone by the answer are released.
//! - A request that asked stays paused until the answer (or the host's
//!   timeout, or the tick's overdue check); it is never forwarded before.
//! - No answer, a failed call or an unreadable answer is `budget_unavailable`
//!   (503), unless `failure_mode: fail_open`, which admits and counts
//!   `tollgate.budget.global_fail_open`. dry_run records the denial as a
//!   shadow and forwards.
//! - Settlements are batched per worker and sent from the tick (fast while
//!   any wait, so within about 20 ms) or at once when 64 have gathered:
//!   one call carries many streams' settlements. Until then their holds
//!   stay held: stricter, never looser.
//! - A settlement that fails is retried from the tick, a few times, then
//!   counted (`tollgate.budget.global_settle_failed`) and logged. (A retry
//!   after a call that the service did apply charges twice: stricter.)

use std::rc::Rc;

use super::{Action, Host, LogLevel, Via, Worker};
use crate::budget::global::{self, Answer, Descriptor, Hits, Item};
use crate::budget::ledger::Refusal;
use crate::budget::Metric;
use crate::config::Config;
use crate::flow::RequestFlow;
use crate::metrics::Counter;
use crate::reason::DenyReason;

/// Settlement attempts before one is given up (counted and logged).
const SETTLE_ATTEMPTS: u8 = 3;
/// Settlement descriptors sent at once without waiting for the tick.
const SETTLE_BATCH: usize = 64;
/// Rate-limit answers larger than this are garbage.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A rate-limit call in flight, by token.
pub(super) enum GlobalCall {
    /// A stream's admission, paused until the answer.
    Admission {
        ctx: u32,
        items: Vec<Item>,
        config: Rc<Config>,
        /// The host answers every call by its timeout; past this the
        /// answer is taken as lost (the tick fails the request).
        deadline_ms: u64,
    },
    /// A settlement (or the release of holds nobody will use).
    Settlement { message: Vec<u8>, attempts: u8 },
}

/// Settlements gathered until the next tick, as encoded descriptors.
pub(super) struct SettleBatch {
    cluster: Box<str>,
    domain: Box<str>,
    timeout_ms: u32,
    descriptors: Vec<u8>,
    count: usize,
}

/// A settlement waiting for the tick to try again.
pub(super) struct Retry {
    cluster: Box<str>,
    timeout_ms: u32,
    message: Vec<u8>,
    attempts: u8,
}

impl<H: Host> Worker<H> {
    /// Asks the rate-limit service for the global reservations stream
    /// `ctx` gathered, if any. `None`: nothing to ask, or the service
    /// cannot be reached and the request goes on (fail_open, dry_run);
    /// otherwise what the callback returns (paused for the answer, or the
    /// refusal's reply).
    pub(super) fn start_global(&self, ctx: u32, now: u64) -> Option<Action> {
        let (config, items) = {
            let mut streams = self.streams.borrow_mut();
            let s = streams.get_mut(&ctx)?;
            (s.config.clone(), s.flow.take_global_due())
        };
        if items.is_empty() {
            return None;
        }
        let svc = config.rate_limit_service.as_ref()?;
        let message = reserve_message(&config, &items);
        match self.dispatch_global(ctx, &svc.cluster, svc.timeout_ms, &message) {
            Ok(token) => {
                let deadline_ms = now
                    .saturating_add(u64::from(svc.timeout_ms).saturating_mul(2))
                    .saturating_add(1_000);
                self.global_calls.borrow_mut().push((
                    token,
                    GlobalCall::Admission {
                        ctx,
                        items,
                        config: config.clone(),
                        deadline_ms,
                    },
                ));
                Some(Action::Pause)
            }
            Err(()) => {
                let refused = self.with_flow(ctx, |f| global_unavailable(&config, f, &items));
                self.note_unavailable(&config, "the call could not be dispatched");
                match refused {
                    Some(Err(reason)) => Some(self.reply(ctx, ctx, Via::Own, reason)),
                    _ => None,
                }
            }
        }
    }

    /// Dispatches `message` with the root context effective. `current` is
    /// the context whose callback runs.
    fn dispatch_global(
        &self,
        current: u32,
        cluster: &str,
        timeout_ms: u32,
        message: &[u8],
    ) -> Result<u32, ()> {
        let switched = current != self.root && self.host.set_effective_context(self.root).is_ok();
        let sent = self.host.dispatch_grpc(
            cluster,
            global::SERVICE,
            global::METHOD,
            message,
            timeout_ms,
        );
        if switched {
            let _ = self.host.set_effective_context(current);
        }
        sent.map_err(|e| {
            self.log(
                LogLevel::Error,
                format_args!(
                    "tollgate: cannot call the rate-limit service on cluster {cluster:?}: {e:?}"
                ),
            );
        })
    }

    /// A rate-limit answer (in the root context).
    pub fn on_grpc_receive(&self, token: u32, size: usize) {
        let answer = if size > MAX_ANSWER_BYTES {
            None
        } else {
            self.host
                .grpc_message(size)
                .ok()
                .and_then(|m| global::decode_answer(&m).ok())
        };
        self.on_global_answer(token, answer.ok_or("an unreadable answer"));
    }

    /// A rate-limit call failed with gRPC `status` (in the root context).
    pub fn on_grpc_close(&self, token: u32, status: u32) {
        self.on_global_answer(token, Err(grpc_status_name(status)));
    }

    fn on_global_answer(&self, token: u32, answer: Result<Answer, &'static str>) {
        let call = {
            let mut calls = self.global_calls.borrow_mut();
            let i = calls.iter().position(|(t, _)| *t == token);
            i.map(|i| calls.swap_remove(i).1)
        };
        let Some(call) = call else {
            self.log(
                LogLevel::Warn,
                format_args!("tollgate: rate-limit answer for an unknown call token {token}"),
            );
            return;
        };
        match call {
            GlobalCall::Admission {
                ctx, items, config, ..
            } => self.admission_answered(ctx, items, &config, answer),
            GlobalCall::Settlement { message, attempts } => {
                if let (Err(why), Some(svc)) = (
                    answer,
                    self.config().and_then(|c| {
                        c.rate_limit_service
                            .as_ref()
                            .map(|s| (s.cluster.clone(), s.timeout_ms))
                    }),
                ) {
                    self.settlement_failed(svc.0, svc.1, message, attempts, why);
                }
            }
        }
    }

    fn admission_answered(
        &self,
        ctx: u32,
        items: Vec<Item>,
        config: &Rc<Config>,
        answer: Result<Answer, &'static str>,
    ) {
        let now = self.host.now_ms().unwrap_or(0);
        let live = self.streams.borrow().contains_key(&ctx);
        let answer = match answer {
            Ok(a) => a,
            Err(why) => {
                self.note_unavailable(config, why);
                let refused = self.with_flow(ctx, |f| global_unavailable(config, f, &items));
                self.act_on_refusal(ctx, refused, now);
                return;
            }
        };
        if let Some(i) = answer.first_over() {
            let Some(item) = items.get(i).or(items.first()) else {
                return;
            };
            let retry_after_s = config
                .budgets
                .get(usize::from(item.budget))
                .map_or(60, |b| b.window.retry_after_s(now / 1000));
            let refused = self.with_flow(ctx, |f| {
                f.on_budget_refused(config, item.metric, Refusal::Exhausted { retry_after_s })
            });
            self.act_on_refusal(ctx, refused, now);
            return;
        }
        if !live {
            // The client left while the service held: give the holds back.
            let mut release = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let hold = answer.reservations.get(i).cloned().unwrap_or_default();
                let spent = if item.metric == Metric::Requests {
                    item.amount
                } else {
                    0
                };
                release.push((item, hold, spent));
            }
            self.send_settlements(config, self.root, release);
            return;
        }
        let holds = items.len();
        self.with_flow(ctx, |f| f.on_global_held(items, &answer.reservations));
        self.outstanding(holds as i64);
        self.resume_after_global(ctx, now);
    }

    /// What the flow made of a refusal, for a stream woken by the answer:
    /// the reply, or (dry_run, fail_open) going on; nothing for a stream
    /// that is gone.
    fn act_on_refusal(&self, ctx: u32, refused: Option<Result<(), DenyReason>>, now: u64) {
        match refused {
            Some(Err(reason)) => {
                self.reply(ctx, self.root, Via::Wake, reason);
            }
            Some(Ok(())) => self.resume_after_global(ctx, now),
            None => {}
        }
    }

    /// The request's global step passed: on to its credential, or (streamed
    /// mode, headers already upstream) let its paused body go.
    fn resume_after_global(&self, ctx: u32, now: u64) {
        let forwarded = self.with_flow(ctx, |f| f.is_forwarded()).unwrap_or(false);
        if !forwarded {
            self.advance(ctx, self.root, Via::Wake, now);
            return;
        }
        if !self.enter(ctx, self.root, Via::Wake) {
            return;
        }
        self.count_decision(ctx);
        if self.host.resume_request().is_err() {
            let reason = self
                .with_flow(ctx, |f| f.on_host_failure())
                .unwrap_or(DenyReason::InternalError);
            self.leave(ctx, self.root, Via::Wake);
            self.reply(ctx, self.root, Via::Wake, reason);
            return;
        }
        self.leave(ctx, self.root, Via::Wake);
    }

    fn note_unavailable(&self, config: &Config, why: &str) {
        let fail_open = config
            .rate_limit_service
            .as_ref()
            .is_some_and(|s| s.fail_open);
        if fail_open {
            self.count(Counter::GlobalFailOpen);
        }
        self.log(
            LogLevel::Error,
            format_args!(
                "tollgate: the rate-limit service did not answer ({why}); {}",
                if fail_open {
                    "admitting (failure_mode: fail_open)"
                } else {
                    "refusing (budget_unavailable)"
                }
            ),
        );
    }

    /// Settles the ended stream's global holds (`current`: the context
    /// whose callback runs).
    pub(super) fn settle_global(&self, config: &Config, flow: &mut RequestFlow, current: u32) {
        let settlements = flow.take_global_settlements();
        if settlements.is_empty() {
            return;
        }
        self.outstanding(-(settlements.len() as i64));
        self.send_settlements(config, current, settlements);
    }

    fn send_settlements(&self, config: &Config, current: u32, list: Vec<(Item, Box<str>, u64)>) {
        let Some(svc) = config.rate_limit_service.as_ref() else {
            return;
        };
        let mut descriptors = Vec::with_capacity(list.len());
        for (item, hold, spent) in &list {
            let Some(budget) = config.budgets.get(usize::from(item.budget)) else {
                continue;
            };
            let (held, spent) = (
                global::units(item.metric, item.amount),
                global::units(item.metric, *spent),
            );
            let (hits, kind) = if !hold.is_empty() {
                (spent, Hits::Commit { reservation: hold })
            } else if spent == held {
                continue;
            } else {
                (
                    spent.abs_diff(held),
                    Hits::Adjust {
                        negative: spent < held,
                    },
                )
            };
            descriptors.push(Descriptor {
                budget,
                subject: item.subject,
                window_start: item.window_start,
                hits,
                kind,
            });
        }
        if descriptors.is_empty() {
            return;
        }
        // Batched: one call per tick (or per SETTLE_BATCH descriptors)
        // carries the settlements of every stream that ended meanwhile.
        let other = self
            .settle_batch
            .borrow()
            .as_ref()
            .is_some_and(|b| *b.cluster != *svc.cluster || *b.domain != *svc.domain);
        if other {
            self.flush_settlements(current);
        }
        let full = {
            let mut batch = self.settle_batch.borrow_mut();
            let b = batch.get_or_insert_with(|| SettleBatch {
                cluster: svc.cluster.clone(),
                domain: svc.domain.clone(),
                timeout_ms: svc.timeout_ms,
                descriptors: Vec::with_capacity(4096),
                count: 0,
            });
            for d in &descriptors {
                global::put_descriptor(&mut b.descriptors, d);
            }
            b.count += descriptors.len();
            b.count >= SETTLE_BATCH
        };
        if full {
            self.flush_settlements(current);
        } else {
            self.tick_soon();
        }
    }

    /// Sends the batched settlements now.
    pub(super) fn flush_settlements(&self, current: u32) {
        let Some(b) = self.settle_batch.borrow_mut().take() else {
            return;
        };
        let mut message = Vec::with_capacity(b.descriptors.len() + b.domain.len() + 4);
        global::put_domain(&mut message, &b.domain);
        message.extend_from_slice(&b.descriptors);
        self.send_settlement(&b.cluster, b.timeout_ms, current, message, 0);
    }

    fn send_settlement(
        &self,
        cluster: &str,
        timeout_ms: u32,
        current: u32,
        message: Vec<u8>,
        attempts: u8,
    ) {
        match self.dispatch_global(current, cluster, timeout_ms, &message) {
            Ok(token) => {
                self.global_calls.borrow_mut().push((
                    token,
                    GlobalCall::Settlement {
                        message,
                        attempts: attempts.saturating_add(1),
                    },
                ));
            }
            Err(()) => self.settlement_failed(
                cluster.into(),
                timeout_ms,
                message,
                attempts.saturating_add(1),
                "the call could not be dispatched",
            ),
        }
    }

    fn settlement_failed(
        &self,
        cluster: Box<str>,
        timeout_ms: u32,
        message: Vec<u8>,
        attempts: u8,
        why: &str,
    ) {
        if attempts < SETTLE_ATTEMPTS {
            self.global_retries.borrow_mut().push(Retry {
                cluster,
                timeout_ms,
                message,
                attempts,
            });
            return;
        }
        self.count(Counter::GlobalSettleFailed);
        self.log(
            LogLevel::Error,
            format_args!(
                "tollgate: a global budget settlement was lost after {attempts} attempts ({why}); the service releases its hold at the hold's expiry, uncharged"
            ),
        );
    }

    /// From the tick: retries failed settlements, and fails admissions whose
    /// answer is overdue (a call the host cancelled).
    pub(super) fn global_pass(&self, now: u64) {
        self.flush_settlements(self.root);
        let retries = core::mem::take(&mut *self.global_retries.borrow_mut());
        for r in retries {
            self.send_settlement(&r.cluster, r.timeout_ms, self.root, r.message, r.attempts);
        }
        let overdue: Vec<u32> = self
            .global_calls
            .borrow()
            .iter()
            .filter(|(_, c)| matches!(c, GlobalCall::Admission { deadline_ms, .. } if now >= *deadline_ms))
            .map(|(t, _)| *t)
            .collect();
        for token in overdue {
            self.on_global_answer(token, Err("no answer by the deadline"));
        }
    }
}

/// The service could not answer for `items`: the denial (fail_closed), or
/// `Ok` to go on (fail_open; dry_run keeps the denial as a shadow).
fn global_unavailable(
    config: &Config,
    flow: &mut RequestFlow,
    items: &[Item],
) -> Result<(), DenyReason> {
    if config
        .rate_limit_service
        .as_ref()
        .is_some_and(|s| s.fail_open)
    {
        return Ok(());
    }
    let metric = items.first().map_or(Metric::Requests, |i| i.metric);
    flow.on_budget_refused(config, metric, Refusal::Unavailable)
}

/// The admission request for `items`.
fn reserve_message(config: &Config, items: &[Item]) -> Vec<u8> {
    let descriptors: Vec<Descriptor<'_>> = items
        .iter()
        .filter_map(|item| {
            Some(Descriptor {
                budget: config.budgets.get(usize::from(item.budget))?,
                subject: item.subject,
                window_start: item.window_start,
                hits: global::units(item.metric, item.amount),
                kind: Hits::Reserve,
            })
        })
        .collect();
    let domain = config
        .rate_limit_service
        .as_ref()
        .map_or("tollgate", |s| &s.domain);
    global::encode_request(domain, &descriptors)
}

/// A gRPC status code's name, for logs.
fn grpc_status_name(code: u32) -> &'static str {
    match code {
        0 => "OK without a message",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "a gRPC error",
    }
}
