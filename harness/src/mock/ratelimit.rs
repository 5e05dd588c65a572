//! An in-memory rate-limit service for the harness CLI (`decide`, `demo`):
//! the same wire contract as [`crate::ratelimit`] (see its `protocol`), as
//! an in-process gRPC handler, so a policy with global budgets can be tried
//! without Redis. Counts live in this process only; `make run` and the
//! tests use the real service on Redis.
//!
//! Invariants: an admission holds every descriptor's amount or none; a
//! settlement charges the amount and releases the hold it names; anything
//! else (undecodable, malformed) is answered INVALID_ARGUMENT, never a
//! panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use prost::Message;

use crate::call::{grpc_status, GrpcHandler, GrpcRequest, GrpcResponse};
use crate::ratelimit::protocol::{self, BudgetHit, Call, RESERVATION_HEADER};

/// Per counter (namespace, budget, subject, window): used, and holds by id.
#[derive(Debug, Default)]
struct Account {
    used: u64,
    holds: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Account>,
    next_hold: u64,
}

/// The in-memory service; clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct MockRateLimit {
    state: Arc<Mutex<State>>,
}

fn key(namespace: &str, hit: &BudgetHit) -> String {
    format!(
        "{namespace}\u{0}{}\u{0}{}\u{0}{}",
        hit.budget, hit.subject, hit.window
    )
}

impl MockRateLimit {
    pub fn new() -> Self {
        Self::default()
    }

    /// The in-process handler for a gateway's rate-limit cluster.
    pub fn handler(&self) -> GrpcHandler {
        let me = self.clone();
        Arc::new(move |req: &GrpcRequest| me.answer(req))
    }

    fn answer(&self, req: &GrpcRequest) -> GrpcResponse {
        let call = RateLimitRequest::decode(req.message.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|r| protocol::parse(&r).map_err(|e| e.to_string()));
        let call = match call {
            Ok(c) => c,
            Err(e) => return GrpcResponse::error(grpc_status::INVALID_ARGUMENT, &e),
        };
        let Ok(mut state) = self.state.lock() else {
            return GrpcResponse::error(grpc_status::INTERNAL, "state poisoned");
        };
        let response = match call {
            Call::Admit { namespace, hits } => state.admit(&namespace, &hits),
            Call::Settle {
                namespace,
                settlements,
            } => {
                for s in settlements {
                    let account = state.accounts.entry(key(&namespace, &s.hit)).or_default();
                    if let Some(id) = s.reservation {
                        account.holds.remove(&id);
                    }
                    account.used = account.used.saturating_add(s.hit.amount);
                }
                RateLimitResponse {
                    overall_code: Code::Ok as i32,
                    ..Default::default()
                }
            }
        };
        GrpcResponse::ok(response.encode_to_vec())
    }
}

impl State {
    fn admit(&mut self, namespace: &str, hits: &[BudgetHit]) -> RateLimitResponse {
        let fits: Vec<bool> = hits
            .iter()
            .map(|hit| {
                let a = self.accounts.get(&key(namespace, hit));
                let taken = a.map_or(0, |a| a.used.saturating_add(a.holds.values().sum::<u64>()));
                taken.saturating_add(hit.amount) <= u64::from(hit.limit.max)
            })
            .collect();
        let status = |ok: bool| DescriptorStatus {
            code: if ok { Code::Ok } else { Code::OverLimit } as i32,
            ..Default::default()
        };
        if fits.iter().any(|f| !f) {
            return RateLimitResponse {
                overall_code: Code::OverLimit as i32,
                statuses: fits.iter().map(|f| status(*f)).collect(),
                ..Default::default()
            };
        }
        let mut headers = Vec::with_capacity(hits.len());
        for hit in hits {
            self.next_hold += 1;
            let id = format!("mock-{}", self.next_hold);
            self.accounts
                .entry(key(namespace, hit))
                .or_default()
                .holds
                .insert(id.clone(), hit.amount);
            headers.push(HeaderValue {
                key: RESERVATION_HEADER.to_string(),
                value: id,
                ..Default::default()
            });
        }
        RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: hits.iter().map(|_| status(true)).collect(),
            response_headers_to_add: headers,
            ..Default::default()
        }
    }
}
