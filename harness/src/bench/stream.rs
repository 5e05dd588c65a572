//! Time to first byte on the stream (`--body-path`): h2load reports it per
//! connection, not per request, so this run is its own client. It sends
//! the streamed chat request through a gateway's sidecar entry at a fixed
//! rate (`--stream-rate`, open loop: a new stream starts on schedule
//! whatever the others are doing, on as many keep-alive connections as
//! that needs), and times each stream from just before the request is
//! written to the first byte of its body (the first SSE chunk) and to its
//! end.
//!
//! Invariants:
//! - Every stream must answer 200 and deliver exactly the upstream's
//!   stream, byte for byte; anything else fails the run.
//! - Streams started during the warm-up (`--warmup-ms`) are not sampled;
//!   the gateway CPU per stream covers the whole run, warm-up included,
//!   as the closed-loop runs do.
//! - The client runs on the calling thread (a current-thread runtime), so
//!   it stays where the driver is pinned, and it stops when the run ends
//!   or on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::cpu::CpuWindow;
use super::options::Options;
use super::setup::{http_client, Bench, Gateway, HttpClient};
use super::signals::check_interrupted;
use super::stats::percentile;
use super::{CHAT_PATH, CLIENT_KEY, PROVIDER_HOST};

/// The longest one stream may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// One gateway's streamed run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLatency {
    pub(crate) ttfb_p50_us: f64,
    pub(crate) ttfb_p99_us: f64,
    /// Request written to the stream's last byte.
    pub(crate) total_p50_us: f64,
    /// Gateway CPU time per stream, µs.
    pub(crate) cpu_us: f64,
    /// Streams sampled (after the warm-up).
    pub(crate) streams: usize,
}

/// One sampled stream, µs.
struct Sample {
    ttfb_us: u64,
    total_us: u64,
}

/// Streams `body` through `g` at `--stream-rate` for the warm-up and the
/// run; every answer must equal `expected`.
pub(crate) fn stream_run(
    opts: &Options,
    bench: &Bench,
    g: &Gateway,
    body: &str,
    expected: &str,
) -> anyhow::Result<StreamLatency> {
    check_interrupted()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the stream client's runtime")?;
    let body = Bytes::from(body.to_string());
    let expected = Bytes::from(expected.to_string());
    let window = CpuWindow::open(bench, g)?;
    let samples = rt.block_on(drive(opts, g.entry, body, expected));
    let (cpu_us, _) = window.per_request(bench, g)?;
    drop(rt);
    let samples = samples.with_context(|| format!("{}: streamed run", g.variant.slug()))?;
    ensure!(
        !samples.is_empty(),
        "{}: the streamed run sampled no stream",
        g.variant.slug()
    );
    let mut ttfb: Vec<u64> = samples.iter().map(|s| s.ttfb_us).collect();
    let mut total: Vec<u64> = samples.iter().map(|s| s.total_us).collect();
    ttfb.sort_unstable();
    total.sort_unstable();
    Ok(StreamLatency {
        ttfb_p50_us: percentile(&ttfb, 0.50),
        ttfb_p99_us: percentile(&ttfb, 0.99),
        total_p50_us: percentile(&total, 0.50),
        cpu_us,
        streams: samples.len(),
    })
}

/// Starts a stream every 1/rate s until warm-up plus run have passed, then
/// waits for the last ones; the samples of those started after the warm-up.
async fn drive(
    opts: &Options,
    entry: SocketAddr,
    body: Bytes,
    expected: Bytes,
) -> anyhow::Result<Vec<Sample>> {
    let client = http_client();
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.stream_rate));
    let warmup = Duration::from_millis(u64::from(opts.warmup_ms));
    let end = warmup + Duration::from_millis(u64::from(opts.run_ms));
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(start, period);
    // Open loop: a late tick is made up at once, so the rate holds.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut streams = JoinSet::new();
    let mut samples = Vec::new();
    loop {
        let at = ticks.tick().await;
        if at.duration_since(start) >= end {
            break;
        }
        check_interrupted()?;
        let sampled = at.duration_since(start) >= warmup;
        streams.spawn(one_stream(
            client.clone(),
            entry,
            body.clone(),
            expected.clone(),
            sampled,
        ));
        while let Some(done) = streams.try_join_next() {
            keep(done, &mut samples)?;
        }
    }
    while let Some(done) = streams.join_next().await {
        check_interrupted()?;
        keep(done, &mut samples)?;
    }
    Ok(samples)
}

fn keep(
    done: Result<anyhow::Result<Option<Sample>>, tokio::task::JoinError>,
    samples: &mut Vec<Sample>,
) -> anyhow::Result<()> {
    if let Some(s) = done.context("a stream task failed")?? {
        samples.push(s);
    }
    Ok(())
}

/// One streamed exchange; its timings if `sampled`.
async fn one_stream(
    client: HttpClient,
    entry: SocketAddr,
    body: Bytes,
    expected: Bytes,
    sampled: bool,
) -> anyhow::Result<Option<Sample>> {
    let req = Request::post(format!("http://{entry}{CHAT_PATH}"))
        .header(HOST, PROVIDER_HOST)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
        .body(Full::new(body))?;
    let exchange = async {
        let t0 = Instant::now();
        let resp = client.request(req).await.context("sending the stream")?;
        let status = resp.status().as_u16();
        ensure!(status == 200, "a stream got {status}");
        let mut body = resp.into_body();
        let mut first = None;
        let mut got = Vec::with_capacity(expected.len());
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the stream")?;
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    first.get_or_insert_with(|| t0.elapsed());
                    got.extend_from_slice(&data);
                }
            }
        }
        let total = t0.elapsed();
        ensure!(
            got == expected,
            "a stream reached the client changed ({} bytes, expected {})",
            got.len(),
            expected.len()
        );
        let first = first.ok_or_else(|| anyhow!("a stream had no body"))?;
        anyhow::Ok((first, total))
    };
    let (first, total) = tokio::time::timeout(STREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("a stream did not finish within {STREAM_TIMEOUT:?}"))??;
    Ok(sampled.then(|| Sample {
        ttfb_us: micros(first),
        total_us: micros(total),
    }))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
