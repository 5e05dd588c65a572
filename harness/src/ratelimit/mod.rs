//! A small rate-limit service speaking Envoy's `envoy.service.ratelimit.v3`
//! gRPC protocol, on limitador's reserve/commit with Redis storage. It is a
//! thin adapter for tests and `make run`; production meshes run
//! envoyproxy/ratelimit or Limitador.
//!
//! - `protocol`: the wire contract (descriptor entries, limit overrides,
//!   amounts) as typed values, and their limitador limits. Pure.
//! - `service`: the tonic service: admission holds, settlement charges,
//!   failures as gRPC statuses.
//! - `redis_server`: a private `redis-server` child.
//! - here: configuration, [`serve`] and the [`RateLimitServer`] handle.
//!
//! Invariants: plaintext h2c gRPC only; every answer comes within the
//! configured timeout (UNAVAILABLE when Redis does not answer in time);
//! counters live only in Redis, so the service can restart without losing
//! spend.

pub mod protocol;
pub mod redis_server;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use redis_server::{RedisServer, RedisServerError};
pub use service::TollgateRateLimit;

/// How the service reaches Redis and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// How long an admission's hold lasts unless settled first (clamped by
    /// limitador to the counter's remaining TTL).
    pub hold_ttl: Duration,
    /// The most a request waits for Redis, all its calls together.
    pub timeout: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            hold_ttl: Duration::from_secs(900),
            timeout: Duration::from_millis(250),
        }
    }
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    #[error("invalid Redis URL {url:?}: {reason}")]
    RedisUrl { url: String, reason: String },
    #[error("the listener: {0}")]
    Listener(#[from] std::io::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the server task failed: {0}")]
    Task(String),
}

/// Serves the rate-limit service on `listener` until the process ends.
/// Redis is dialled on the first request, not here: a bad URL is an error,
/// an absent Redis is UNAVAILABLE per request.
pub async fn serve(listener: TcpListener, config: RateLimitConfig) -> Result<(), ServeError> {
    serve_with_shutdown(listener, config, std::future::pending()).await
}

/// [`serve`] until `shutdown` completes, then finishes open requests.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: RateLimitConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let service = TollgateRateLimit::new(&config)?;
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(
            RateLimitServiceServer::new(service),
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

/// A service running on the current tokio runtime; stopped by
/// [`shutdown`](Self::shutdown) or on drop.
#[derive(Debug)]
pub struct RateLimitServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl RateLimitServer {
    /// Binds `addr` (port 0 for a free one) and serves there. Must be called
    /// within a tokio runtime.
    pub async fn start(addr: SocketAddr, config: RateLimitConfig) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr).await?;
        Self::spawn(listener, config)
    }

    /// Serves on `listener` in a new task. The configuration is checked
    /// before this returns.
    pub fn spawn(listener: TcpListener, config: RateLimitConfig) -> Result<Self, ServeError> {
        TollgateRateLimit::new(&config)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_shutdown(listener, config, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for a tonic client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets open requests finish (at most 5 s), and
    /// returns how the server ended.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ServeError::Task(e.to_string())),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for RateLimitServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A duration such as `250ms`, `900s`, `15m` or `1h` (a whole number and a
/// unit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3_600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_number_and_a_unit() {
        let cases = [
            ("250ms", Some(Duration::from_millis(250))),
            ("900s", Some(Duration::from_secs(900))),
            ("15m", Some(Duration::from_secs(900))),
            ("1h", Some(Duration::from_secs(3600))),
            ("0s", Some(Duration::ZERO)),
            ("250", None),
            ("ms", None),
            ("1.5s", None),
            ("-1s", None),
            ("1d", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), expected, "{input:?}");
        }
    }
}
