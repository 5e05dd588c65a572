//! The global tier's services for the body path: a private `redis-server`
//! and the rate-limit service (`crate::ratelimit`) on a thread of its own,
//! so that the CPU they spend per request can be read apart from the
//! gateway's (the thread's schedstat plus Redis's process time).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

use crate::ratelimit::{serve_with_shutdown, RateLimitConfig, RedisServer};

pub(crate) struct RateLimitSide {
    pub(crate) addr: SocketAddr,
    /// The service thread's id, for its CPU time.
    pub(crate) tid: i32,
    pub(crate) redis: RedisServer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RateLimitSide {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let redis = RedisServer::start().context("starting redis-server (make redis)")?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the rate-limit service")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let config = RateLimitConfig {
            redis_url: redis.url(),
            timeout: Duration::from_secs(1),
            ..RateLimitConfig::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ratelimit".into())
            .spawn(move || {
                // SAFETY: gettid(2) has no preconditions.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return eprintln!("rate-limit runtime: {e}"),
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("rate-limit listener: {e}"),
                    };
                    let stopped = async move {
                        let _ = stopped.await;
                    };
                    if let Err(e) = serve_with_shutdown(listener, config, stopped).await {
                        eprintln!("rate-limit service: {e}");
                    }
                });
            })
            .context("spawning the rate-limit thread")?;
        let tid = tid_rx
            .recv()
            .context("the rate-limit thread died at start")?;
        Ok(Self {
            addr,
            tid,
            redis,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for RateLimitSide {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
