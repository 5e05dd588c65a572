//! The global tier's test fixture: a private `redis-server` and rate-limit
//! services on it (one per gateway replica), on a tokio runtime of their
//! own, and a probe that reads a budget's balance through the rate-limit
//! protocol itself.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::google::protobuf::UInt64Value;
use tollgate_harness::ratelimit::{RateLimitConfig, RateLimitServer, RedisServer};

/// The harness clock's start, 2026-01-01T00:00:00Z: its hour window's id.
pub const HOUR_0: &str = "1767225600";

/// Redis, and one rate-limit service per gateway replica, on a runtime of
/// their own (the gateways run on the test's thread).
pub struct Tier {
    pub rt: tokio::runtime::Runtime,
    pub redis: RedisServer,
    pub services: Vec<RateLimitServer>,
}

impl Tier {
    /// Redis and `replicas` services on it (panics if Redis cannot start).
    pub fn start(replicas: usize) -> Tier {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let redis = RedisServer::start().expect("redis-server (make redis)");
        let config = RateLimitConfig {
            redis_url: redis.url(),
            // Generous: a burst of 500 holds on a debug build of the service.
            timeout: Duration::from_secs(1),
            ..RateLimitConfig::default()
        };
        let services = (0..replicas)
            .map(|_| {
                rt.block_on(RateLimitServer::start(
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    config.clone(),
                ))
                .unwrap()
            })
            .collect();
        Tier {
            rt,
            redis,
            services,
        }
    }

    /// Whether `amount` more fits the shared hour budget `budget` of limit
    /// `max` in the hour window `window` (its start, epoch seconds), asked
    /// of service 0 (and given straight back if it did).
    pub fn fits(&self, budget: &str, window: &str, max: u32, amount: u64) -> bool {
        self.rt
            .block_on(self.fits_async(budget, window, max, amount))
    }

    /// [`Self::fits`], from async code running on [`Self::rt`].
    pub async fn fits_async(&self, budget: &str, window: &str, max: u32, amount: u64) -> bool {
        let url = self.services[0].url();
        let (budget, window) = (budget.to_string(), window.to_string());
        {
            let mut client = RateLimitServiceClient::connect(url).await.unwrap();
            let descriptor = |reservation: Option<String>, hits: u64| RateLimitDescriptor {
                entries: [
                    ("tollgate_budget", budget.as_str()),
                    ("subject", "shared"),
                    ("window", window.as_str()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(reservation.map(|r| ("reservation".to_string(), r)))
                .map(|(key, value)| Entry { key, value })
                .collect(),
                limit: Some(RateLimitOverride {
                    requests_per_unit: max,
                    unit: 3, // HOUR
                }),
                hits_addend: Some(UInt64Value { value: hits }),
                is_negative_hits: false,
            };
            let ask = |d: RateLimitDescriptor| RateLimitRequest {
                domain: "tollgate".into(),
                descriptors: vec![d],
                hits_addend: 0,
            };
            let answer = client
                .should_rate_limit(ask(descriptor(None, amount)))
                .await
                .unwrap()
                .into_inner();
            let ok = answer.overall_code == 1;
            if ok {
                let hold = answer
                    .response_headers_to_add
                    .first()
                    .map(|h| h.value.clone())
                    .unwrap_or_default();
                client
                    .should_rate_limit(ask(descriptor(Some(hold), 0)))
                    .await
                    .unwrap();
            }
            ok
        }
    }
}
