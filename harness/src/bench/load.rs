//! Load runs with h2load: a fixed-rate latency run and a closed-loop
//! throughput run per gateway and round, and what h2load reports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use anyhow::{anyhow, ensure, Context};

use super::cpu::CpuWindow;
use super::gateways::Variant;
use super::options::{Mode, Options};
use super::setup::{Bench, Gateway, LlmSide, LONG_REQUEST_FILE, REQUEST_FILE};
use super::signals::{check_interrupted, LOAD_PID};
use super::stats::percentile;
use super::stream::{stream_run, StreamLatency};
use super::traffic::Kind;
use super::{CHAT_PATH, CLIENT_KEY, PROVIDER_HOST};
use crate::child::die_with_parent;

/// One gateway's figures in one round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoundResult {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Gateway CPU µs per request in the fixed-rate run.
    pub(crate) fixed_cpu_us: f64,
    pub(crate) rps: f64,
    /// Gateway CPU µs per request in the closed-loop run.
    pub(crate) cpu_us: f64,
    /// The authz service's CPU µs per request in the closed-loop run.
    pub(crate) svc_cpu_us: f64,
    /// Body path: the streamed run.
    pub(crate) stream: Option<StreamLatency>,
}

/// Every round's results, per gateway, in round order.
pub(crate) type Rounds = BTreeMap<Variant, Vec<RoundResult>>;

pub(crate) fn measure(opts: &Options, bench: &Bench) -> anyhow::Result<Rounds> {
    let mut rounds: Rounds = BTreeMap::new();
    for round in 0..opts.rounds {
        let mut order: Vec<Variant> = bench.gateways.iter().map(|g| g.variant).collect();
        let n = order.len();
        order.rotate_left(round % n);
        for v in order {
            let g = bench.gateway(v)?;
            let lat = latency_run(opts, bench, g, round)?;
            bench.check_upstream(v, v.chat_kind())?;
            let t = throughput_run(opts, bench, g)?;
            bench.check_upstream(v, v.chat_kind())?;
            let stream = match &bench.llm {
                LlmSide::Body { traffic, .. } if opts.mode() == Mode::BodyPath => {
                    let s =
                        stream_run(opts, bench, g, &traffic.stream.sent, &traffic.sse_answer())?;
                    bench.check_upstream(v, Kind::Stream)?;
                    Some(s)
                }
                LlmSide::Body { .. } | LlmSide::Mock { .. } => None,
            };
            let stream_cells = stream.map_or(String::new(), |s| {
                format!(
                    " | stream TTFB p50 {:>5.0} µs  p99 {:>5.0} µs  CPU {:>6.1} µs/stream ({} streams)",
                    s.ttfb_p50_us, s.ttfb_p99_us, s.cpu_us, s.streams
                )
            });
            eprintln!(
                "round {}/{} {:<32} p50 {:>5.0} µs  p99 {:>5.0} µs  CPU {:>5.1} µs/req | closed loop {:>6.0} req/s  CPU {:>5.1} µs/req{stream_cells}",
                round + 1,
                opts.rounds,
                v.label(),
                lat.p50_us,
                lat.p99_us,
                lat.cpu_us,
                t.rps,
                t.cpu_us,
            );
            let r = RoundResult {
                p50_us: lat.p50_us,
                p99_us: lat.p99_us,
                fixed_cpu_us: lat.cpu_us,
                rps: t.rps,
                cpu_us: t.cpu_us,
                svc_cpu_us: t.svc_cpu_us,
                stream,
            };
            rounds.entry(v).or_default().push(r);
        }
    }
    Ok(rounds)
}

/// Fixed rate: `rate` requests/s over `rate_clients` connections; p50 and
/// p99 from h2load's per-request log.
/// Also measures the gateway's CPU time per request at that rate.
pub(crate) fn latency_run(
    opts: &Options,
    bench: &Bench,
    g: &Gateway,
    round: usize,
) -> anyhow::Result<Latency> {
    let log = opts
        .work_dir
        .join(format!("latency-{}-{round}.tsv", g.variant.slug()));
    let per_client = (opts.rate / opts.rate_clients).to_string();
    let mut args = load_args(opts, g, opts.rate_clients);
    args.extend([
        "--rps".into(),
        per_client,
        format!("--log-file={}", log.display()),
    ]);
    let window = CpuWindow::open(bench, g)?;
    let out = h2load(&args)?;
    let (cpu_us, _) = window.per_request(bench, g)?;
    let summary = H2loadSummary::parse(&out)
        .with_context(|| format!("{}: h2load output:\n{out}", g.variant.slug()))?;
    summary.ensure_clean(g.variant)?;
    let mut micros = read_latency_log(&log)?;
    let _ = std::fs::remove_file(&log);
    ensure!(
        !micros.is_empty(),
        "{}: the latency run logged no request",
        g.variant.slug()
    );
    micros.sort_unstable();
    Ok(Latency {
        p50_us: percentile(&micros, 0.50),
        p99_us: percentile(&micros, 0.99),
        cpu_us,
    })
}

/// A fixed-rate run's figures.
pub(crate) struct Latency {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Gateway CPU time per request, µs.
    pub(crate) cpu_us: f64,
}

/// Closed loop: `connections` connections, each with one request in flight.
/// Also measures the CPU time the gateway (and, for ext_authz, the authz
/// service) spent per request over the whole run, warm-up included.
pub(crate) fn throughput_run(
    opts: &Options,
    bench: &Bench,
    g: &Gateway,
) -> anyhow::Result<Throughput> {
    let window = CpuWindow::open(bench, g)?;
    let out = h2load(&load_args(opts, g, opts.connections))?;
    let (cpu_us, svc_cpu_us) = window.per_request(bench, g)?;
    let summary = H2loadSummary::parse(&out)
        .with_context(|| format!("{}: h2load output:\n{out}", g.variant.slug()))?;
    summary.ensure_clean(g.variant)?;
    Ok(Throughput {
        rps: summary.rps,
        cpu_us,
        svc_cpu_us,
    })
}

/// A closed-loop run's figures.
pub(crate) struct Throughput {
    pub(crate) rps: f64,
    /// Gateway CPU time per request, µs (all Envoy threads).
    pub(crate) cpu_us: f64,
    /// The ext_authz service's CPU time per request, µs (0 for the others).
    pub(crate) svc_cpu_us: f64,
}

/// The arguments every load run shares: same request (per gateway: the
/// 64 KB one where it is fed that), same client.
pub(crate) fn load_args(opts: &Options, g: &Gateway, clients: u32) -> Vec<String> {
    let entry = g.entry;
    let body = opts.work_dir.join(match g.variant.chat_kind() {
        Kind::LongChat => LONG_REQUEST_FILE,
        Kind::Chat | Kind::Stream => REQUEST_FILE,
    });
    vec![
        "--h1".into(),
        "-t".into(),
        "1".into(),
        "-c".into(),
        clients.to_string(),
        "-D".into(),
        format!("{}ms", opts.run_ms),
        format!("--warm-up-time={}ms", opts.warmup_ms),
        "-d".into(),
        body.display().to_string(),
        "-H".into(),
        "content-type: application/json".into(),
        "-H".into(),
        format!("authorization: Bearer {CLIENT_KEY}"),
        format!("--connect-to={entry}"),
        format!("http://{PROVIDER_HOST}{CHAT_PATH}"),
    ]
}

/// Runs h2load to completion (or until a signal) and returns its stdout.
pub(crate) fn h2load(args: &[String]) -> anyhow::Result<String> {
    check_interrupted()?;
    let mut cmd = Command::new("h2load");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .context("running h2load (apt-get install nghttp2-client, or use `make bench-envoy`)")?;
    LOAD_PID.store(child.id() as i32, Ordering::SeqCst);
    let out = child.wait_with_output();
    LOAD_PID.store(0, Ordering::SeqCst);
    let out = out.context("waiting for h2load")?;
    check_interrupted()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "h2load {} failed ({}):\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// What h2load's summary says about one run.
#[derive(Debug, Default)]
pub(crate) struct H2loadSummary {
    pub(crate) rps: f64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) errored: u64,
    pub(crate) non_2xx: u64,
}

impl H2loadSummary {
    /// Reads `finished in 5.00s, 1234.5 req/s, …`, `requests: … N succeeded,
    /// N failed, N errored, …` and `status codes: N 2xx, N 3xx, N 4xx, N 5xx`.
    pub(crate) fn parse(out: &str) -> anyhow::Result<Self> {
        let mut s = Self::default();
        let mut seen = 0;
        for line in out.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                s.rps =
                    field_before(rest, "req/s").ok_or_else(|| anyhow!("no req/s in {line:?}"))?;
                seen += 1;
            } else if let Some(rest) = line.strip_prefix("requests: ") {
                s.succeeded = field_before(rest, "succeeded").unwrap_or(0);
                s.failed = field_before(rest, "failed").unwrap_or(0);
                s.errored = field_before(rest, "errored").unwrap_or(0);
                seen += 1;
            } else if let Some(rest) = line.strip_prefix("status codes: ") {
                let by = |class: &str| field_before::<u64>(rest, class).unwrap_or(0);
                s.non_2xx = by("3xx") + by("4xx") + by("5xx");
                seen += 1;
            }
        }
        ensure!(seen == 3, "h2load's summary lines are missing");
        Ok(s)
    }

    pub(crate) fn ensure_clean(&self, v: Variant) -> anyhow::Result<()> {
        ensure!(
            self.succeeded > 0 && self.failed == 0 && self.errored == 0 && self.non_2xx == 0,
            "{}: {} succeeded, {} failed, {} errored, {} not 2xx",
            v.slug(),
            self.succeeded,
            self.failed,
            self.errored,
            self.non_2xx
        );
        Ok(())
    }
}

/// The number just before `word` in a comma-separated summary line.
pub(crate) fn field_before<T: std::str::FromStr>(line: &str, word: &str) -> Option<T> {
    line.split(',')
        .map(str::trim)
        .find_map(|part| part.strip_suffix(word).and_then(|n| n.trim().parse().ok()))
}

/// Response times (µs) of h2load's `--log-file`: `start\tstatus\tmicros`.
pub(crate) fn read_latency_log(path: &Path) -> anyhow::Result<Vec<u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            match cols.as_slice() {
                [_, status, micros, ..] if status.starts_with('2') => micros
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("bad h2load log line {l:?}")),
                _ => Err(anyhow!("h2load logged a failed request: {l:?}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2load_summary() {
        let out = "finished in 5.00s, 2345.60 req/s, 1.2MB/s\n\
                   requests: 11728 total, 11728 started, 11728 done, 11728 succeeded, 0 failed, 0 errored, 0 timeout\n\
                   status codes: 11728 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        let s = H2loadSummary::parse(out).unwrap();
        assert_eq!(s.rps, 2345.60);
        assert_eq!((s.succeeded, s.failed, s.non_2xx), (11728, 0, 0));
    }
}
