//! The `envoy.service.ratelimit.v3.RateLimitService` implementation: admits
//! by holding amounts with limitador's `reserve`, settles with
//! `commit_reservation`, all in Redis.
//!
//! Job: run each validated [`Call`] against an [`AsyncRateLimiter`] on Redis
//! and answer it; turn every failure into a gRPC status.
//!
//! Invariants:
//! - Admission is all or nothing: when a descriptor is refused, the holds
//!   already taken for earlier descriptors of the request are released
//!   (settled at 0) before the answer, and nothing is charged. Descriptors
//!   after the refused one are not tried; their status is UNKNOWN.
//! - Nothing is admitted uncounted: a descriptor that matches no counter is
//!   an INTERNAL error, never an OK.
//! - A request never waits longer than the configured timeout for Redis: all
//!   its limitador calls share one deadline; missing it, or any storage
//!   error, is UNAVAILABLE. Holds taken before such a failure are released in
//!   the background (best effort; otherwise they lapse after the hold TTL).
//! - Malformed requests are INVALID_ARGUMENT, with the reason.
//! - The Redis connection is made lazily and remade by itself: the service
//!   starts while Redis is down and recovers when Redis is back, without a
//!   restart.
//! - Limits are built from the descriptors and registered once per
//!   (namespace, budget, unit); a changed max replaces the registered one in
//!   place (same counters). All changes to the registered set are serialised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use limitador::counter::Counter;
use limitador::errors::LimitadorError;
use limitador::limit::{Limit, Namespace};
use limitador::reservation::{ReservationId, ReservationLimits};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::storage::AsyncStorage;
use limitador::{AsyncRateLimiter, AsyncRateLimiterBuilder};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use tokio::time::{timeout_at, Instant};
use tonic::{Request, Response, Status};

use super::protocol::{self, BudgetHit, Call, Settlement, Unit, RESERVATION_HEADER};
use super::{RateLimitConfig, ServeError};

/// The rate-limit service; wrap it in `RateLimitServiceServer` to serve it.
pub struct TollgateRateLimit {
    client: redis::Client,
    hold_ttl: Duration,
    timeout: Duration,
    /// Made on first use; a failed attempt is retried by the next request.
    backend: OnceCell<Arc<Backend>>,
}

impl std::fmt::Debug for TollgateRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TollgateRateLimit")
            .field("redis", &self.client.get_connection_info().addr)
            .field("hold_ttl", &self.hold_ttl)
            .field("timeout", &self.timeout)
            .field("connected", &self.backend.initialized())
            .finish()
    }
}

/// A connected limiter and the limits registered in it.
struct Backend {
    limiter: AsyncRateLimiter,
    /// The max registered for each (namespace, budget, unit).
    registered: Mutex<HashMap<LimitKey, u32>>,
    /// Held while the limiter's set of limits changes.
    changing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LimitKey {
    namespace: String,
    budget: String,
    unit: Unit,
}

impl TollgateRateLimit {
    /// Checks the configuration (the Redis URL is parsed, not dialled).
    pub fn new(config: &RateLimitConfig) -> Result<Self, ServeError> {
        if config.timeout.is_zero() {
            return Err(ServeError::Config("the timeout must be positive"));
        }
        if config.hold_ttl < Duration::from_millis(1) {
            return Err(ServeError::Config("the hold TTL must be at least 1ms"));
        }
        let client =
            redis::Client::open(config.redis_url.as_str()).map_err(|e| ServeError::RedisUrl {
                url: config.redis_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            hold_ttl: config.hold_ttl,
            timeout: config.timeout,
            backend: OnceCell::new(),
        })
    }

    /// Answers one call; `deadline` bounds every Redis round trip.
    async fn answer(&self, call: Call, deadline: Instant) -> Result<RateLimitResponse, Status> {
        let backend =
            match timeout_at(deadline, self.backend.get_or_try_init(|| self.connect())).await {
                Ok(Ok(b)) => Arc::clone(b),
                Ok(Err(e)) => return Err(Status::unavailable(format!("redis: {e}"))),
                Err(_) => return Err(self.timed_out()),
            };
        match call {
            Call::Admit { namespace, hits } => self.admit(backend, namespace, hits, deadline).await,
            Call::Settle {
                namespace,
                settlements,
            } => {
                self.settle(&backend, &namespace, settlements, deadline)
                    .await
            }
        }
    }

    async fn connect(&self) -> Result<Arc<Backend>, redis::RedisError> {
        // redis 0.27 waits 1-2 s before its first reconnection retry, then up
        // to 60-120 s between retries (its `factor` multiplies backon's 1 s
        // minimum): with no retries, a failed reconnection fails the request
        // at once and the next request dials again, so the service is back as
        // soon as Redis is.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(self.timeout);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        let storage = AsyncRedisStorage::new_with_conn_manager(manager).await?;
        let limiter =
            AsyncRateLimiterBuilder::new(AsyncStorage::with_counter_storage(Box::new(storage)))
                .reservation_limits(ReservationLimits {
                    // The whole amount is held: a hold is Tollgate's estimate.
                    max_fraction: 1.0,
                    max_ttl: self.hold_ttl,
                })
                .build();
        Ok(Arc::new(Backend {
            limiter,
            registered: Mutex::new(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
        }))
    }

    fn timed_out(&self) -> Status {
        Status::unavailable(format!(
            "redis did not answer within {} ms",
            self.timeout.as_millis()
        ))
    }

    async fn admit(
        &self,
        backend: Arc<Backend>,
        namespace: String,
        hits: Vec<BudgetHit>,
        deadline: Instant,
    ) -> Result<RateLimitResponse, Status> {
        let ns = Namespace::from(namespace.as_str());
        // (descriptor index, hold) for every descriptor admitted so far.
        let mut held: Vec<(usize, Option<ReservationId>)> = Vec::with_capacity(hits.len());
        let mut statuses = Vec::with_capacity(hits.len());
        let mut refused = false;
        for (i, hit) in hits.iter().enumerate() {
            let reserved = match self.ensure_limit(&backend, &namespace, hit, deadline).await {
                Ok(()) => {
                    let ctx = protocol::context_for(hit);
                    let call = backend
                        .limiter
                        .reserve(&ns, &ctx, hit.amount, Some(self.hold_ttl));
                    match timeout_at(deadline, call).await {
                        Ok(Ok(r)) if r.counters.is_empty() => Err(Status::internal(format!(
                            "descriptors[{i}] matched no limit"
                        ))),
                        Ok(Ok(r)) => Ok(r),
                        Ok(Err(e)) => Err(storage_status(&e)),
                        Err(_) => Err(self.timed_out()),
                    }
                }
                Err(status) => Err(status),
            };
            let r = match reserved {
                Ok(r) => r,
                Err(status) => {
                    self.release_in_background(&backend, ns, &hits, held);
                    return Err(status);
                }
            };
            let counter = r.counters.first();
            if r.limited {
                statuses.push(descriptor_status(Code::OverLimit, hit, counter));
                refused = true;
                break;
            }
            statuses.push(descriptor_status(Code::Ok, hit, counter));
            held.push((i, r.reservation_id));
        }
        if refused {
            // Give the holds back before answering; if Redis fails now, they
            // lapse after the hold TTL (the refusal stands either way).
            for (i, id) in &held {
                if let Some(id) = id {
                    let ctx = protocol::context_for(&hits[*i]);
                    let call = backend.limiter.commit_reservation(&ns, &ctx, Some(id), 0);
                    let _ = timeout_at(deadline, call).await;
                }
                // What was held for it is available again.
                let status = &mut statuses[*i];
                status.limit_remaining = status
                    .limit_remaining
                    .saturating_add(u32::try_from(hits[*i].amount).unwrap_or(u32::MAX))
                    .min(hits[*i].limit.max);
            }
            for hit in &hits[statuses.len()..] {
                statuses.push(descriptor_status(Code::Unknown, hit, None));
            }
            return Ok(RateLimitResponse {
                overall_code: Code::OverLimit as i32,
                statuses,
                ..Default::default()
            });
        }
        let response_headers_to_add = held
            .iter()
            .map(|(_, id)| HeaderValue {
                key: RESERVATION_HEADER.to_string(),
                value: id.as_ref().map(|id| id.to_string()).unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        Ok(RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses,
            response_headers_to_add,
            ..Default::default()
        })
    }

    async fn settle(
        &self,
        backend: &Backend,
        namespace: &str,
        settlements: Vec<Settlement>,
        deadline: Instant,
    ) -> Result<RateLimitResponse, Status> {
        let ns = Namespace::from(namespace);
        let mut statuses = Vec::with_capacity(settlements.len());
        for s in &settlements {
            self.ensure_limit(backend, namespace, &s.hit, deadline)
                .await?;
            let ctx = protocol::context_for(&s.hit);
            let id = s.reservation.clone().map(ReservationId::from);
            let call = backend
                .limiter
                .commit_reservation(&ns, &ctx, id.as_ref(), s.hit.amount);
            match timeout_at(deadline, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(storage_status(&e)),
                Err(_) => return Err(self.timed_out()),
            }
            statuses.push(descriptor_status(Code::Ok, &s.hit, None));
        }
        Ok(RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses,
            ..Default::default()
        })
    }

    /// Registers `hit`'s limit unless it is registered with the same max.
    async fn ensure_limit(
        &self,
        backend: &Backend,
        namespace: &str,
        hit: &BudgetHit,
        deadline: Instant,
    ) -> Result<(), Status> {
        let key = LimitKey {
            namespace: namespace.to_string(),
            budget: hit.budget.clone(),
            unit: hit.limit.unit,
        };
        let registered = |key: &LimitKey| {
            backend
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key)
                .copied()
        };
        if registered(&key) == Some(hit.limit.max) {
            return Ok(());
        }
        let _changing = timeout_at(deadline, backend.changing.lock())
            .await
            .map_err(|_| self.timed_out())?;
        let before = registered(&key);
        if before == Some(hit.limit.max) {
            return Ok(());
        }
        let limit = protocol::limit_for(namespace, &hit.budget, hit.limit)
            .map_err(|e| Status::internal(format!("building the limit: {e}")))?;
        if before.is_some() || !backend.limiter.add_limit(limit.clone()) {
            // limitador's `Limit` equality ignores the max, so an equal limit
            // is replaced in place: every registered limit is kept (none is
            // deleted, so no counter is) and this one's max is updated.
            let mut all: Vec<Limit> = backend
                .limiter
                .get_namespaces()
                .iter()
                .flat_map(|ns| backend.limiter.get_limits(ns))
                .filter(|l| *l != limit)
                .collect();
            all.push(limit);
            match timeout_at(deadline, backend.limiter.configure_with(all)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(storage_status(&e)),
                Err(_) => return Err(self.timed_out()),
            }
        }
        backend
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, hit.limit.max);
        Ok(())
    }

    /// Settles `held` at 0 after the request has failed, without delaying
    /// its answer.
    fn release_in_background(
        &self,
        backend: &Arc<Backend>,
        ns: Namespace,
        hits: &[BudgetHit],
        held: Vec<(usize, Option<ReservationId>)>,
    ) {
        let holds: Vec<(BudgetHit, ReservationId)> = held
            .into_iter()
            .filter_map(|(i, id)| Some((hits.get(i)?.clone(), id?)))
            .collect();
        if holds.is_empty() {
            return;
        }
        let backend = Arc::clone(backend);
        let timeout = self.timeout;
        tokio::spawn(async move {
            for (hit, id) in holds {
                let ctx = protocol::context_for(&hit);
                let call = backend.limiter.commit_reservation(&ns, &ctx, Some(&id), 0);
                if tokio::time::timeout(timeout, call).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tonic::async_trait]
impl RateLimitService for TollgateRateLimit {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let deadline = Instant::now() + self.timeout;
        let call = protocol::parse(request.get_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.answer(call, deadline).await.map(Response::new)
    }
}

/// A limitador failure as a gRPC status: storage errors are UNAVAILABLE.
fn storage_status(e: &LimitadorError) -> Status {
    match e {
        LimitadorError::StorageError(e) => Status::unavailable(format!("redis: {}", e.msg())),
        LimitadorError::InterpreterError(e) => Status::internal(format!("evaluating a limit: {e}")),
    }
}

fn descriptor_status(code: Code, hit: &BudgetHit, counter: Option<&Counter>) -> DescriptorStatus {
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            name: hit.budget.clone(),
            requests_per_unit: hit.limit.max,
            unit: response_unit(hit.limit.unit) as i32,
        }),
        limit_remaining: counter
            .and_then(Counter::remaining)
            .map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
        // The counter's TTL: an upper bound, since Tollgate's window id may
        // change sooner.
        duration_until_reset: counter.and_then(Counter::expires_in).map(|d| {
            envoy_types::pb::google::protobuf::Duration {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            }
        }),
        quota: None,
    }
}

fn response_unit(unit: Unit) -> rate_limit::Unit {
    match unit {
        Unit::Minute => rate_limit::Unit::Minute,
        Unit::Hour => rate_limit::Unit::Hour,
        Unit::Day => rate_limit::Unit::Day,
        Unit::Month => rate_limit::Unit::Month,
    }
}
