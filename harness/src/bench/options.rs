//! The driver's command line.

use std::path::PathBuf;

use anyhow::{anyhow, bail, ensure};

use super::cpu::{loadavg, online_cpus};

/// Command-line options.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) repo: PathBuf,
    pub(crate) wasm: PathBuf,
    pub(crate) rounds: usize,
    /// Measured milliseconds per load run.
    pub(crate) run_ms: u32,
    /// Unmeasured milliseconds before each load run.
    pub(crate) warmup_ms: u32,
    /// Total request rate of the latency runs.
    pub(crate) rate: u32,
    /// Connections sharing that rate.
    pub(crate) rate_clients: u32,
    /// Connections of the closed-loop throughput runs.
    pub(crate) connections: u32,
    /// Worker threads of every gateway Envoy (`--concurrency`).
    pub(crate) concurrency: u32,
    /// Milliseconds each gateway's CPU is sampled while idle.
    pub(crate) idle_ms: u32,
    /// A second Tollgate build measured beside the first (A/B).
    pub(crate) tollgate_b: Option<PathBuf>,
    /// Measure the body path (a 2 KB chat request, a 4 KB JSON answer and a
    /// 50-chunk stream; Tollgate's body rule against Lua) instead of the
    /// header-only gateways.
    pub(crate) body_path: bool,
    /// Measure prompt DLP (issue 10): the plain proxy, the body rule and
    /// the body rule with a DLP policy of every built-in detector, each on
    /// a 2 KB and a 64 KB prompt.
    pub(crate) dlp: bool,
    /// Default mode only: the plain proxy, Tollgate and the no-op module,
    /// and one host-call probe per call on Tollgate's cached request path
    /// (`probe_wasm`), with the per-call cost table.
    pub(crate) probes: bool,
    /// Body path: streamed requests per second of the time-to-first-byte run.
    pub(crate) stream_rate: u32,
    /// Body path: microseconds between the upstream's stream chunks.
    pub(crate) stream_gap_us: u32,
    pub(crate) keep: bool,
    /// Start, check, print the addresses, and wait for a signal.
    pub(crate) hold: bool,
    /// Gateways on [`GATEWAY_CPU`], everything else on [`CLIENT_CPU`].
    pub(crate) pin: bool,
    /// Keep every CPU out of idle with a `SCHED_IDLE` busy loop.
    pub(crate) spin: bool,
    /// `/proc/loadavg` when the driver started: other tenants' load.
    pub(crate) loadavg_at_start: String,
    pub(crate) work_dir: PathBuf,
}

/// What a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The default: the header-only gateways on a small request.
    Headers,
    /// `--body-path`: the body rule on a 2 KB chat, a JSON answer and a stream.
    BodyPath,
    /// `--dlp`: the body rule with and without DLP on a 2 KB and a 64 KB prompt.
    Dlp,
}

impl Options {
    pub(crate) fn mode(&self) -> Mode {
        if self.dlp {
            Mode::Dlp
        } else if self.body_path {
            Mode::BodyPath
        } else {
            Mode::Headers
        }
    }

    /// Whether the body-path upstream (fixed answers) stands behind the
    /// gateways, rather than the shared mock LLM.
    pub(crate) fn bodies(&self) -> bool {
        self.mode() != Mode::Headers
    }

    pub(crate) fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut o = Self {
            repo: PathBuf::from("."),
            wasm: PathBuf::new(),
            rounds: 8,
            run_ms: 1500,
            warmup_ms: 500,
            rate: 400,
            rate_clients: 1,
            connections: 32,
            concurrency: 1,
            idle_ms: 5000,
            tollgate_b: None,
            body_path: false,
            dlp: false,
            probes: false,
            stream_rate: 100,
            stream_gap_us: 1000,
            keep: false,
            hold: false,
            pin: online_cpus() >= 2,
            spin: true,
            loadavg_at_start: loadavg(),
            work_dir: std::env::temp_dir()
                .join(format!("tollgate-bench-envoy-{}", std::process::id())),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match flag.as_str() {
                "--repo" => o.repo = value()?.into(),
                "--wasm" => o.wasm = value()?.into(),
                "--rounds" => o.rounds = number(&flag, &value()?)?,
                "--run-ms" => o.run_ms = number(&flag, &value()?)?,
                "--warmup-ms" => o.warmup_ms = number(&flag, &value()?)?,
                "--rate" => o.rate = number(&flag, &value()?)?,
                "--rate-clients" => o.rate_clients = number(&flag, &value()?)?,
                "--connections" => o.connections = number(&flag, &value()?)?,
                "--concurrency" => o.concurrency = number(&flag, &value()?)?,
                "--idle-ms" => o.idle_ms = number(&flag, &value()?)?,
                "--tollgate-b" => o.tollgate_b = Some(value()?.into()),
                "--body-path" => o.body_path = true,
                "--dlp" => o.dlp = true,
                "--probes" => o.probes = true,
                "--stream-rate" => o.stream_rate = number(&flag, &value()?)?,
                "--stream-gap-us" => o.stream_gap_us = number(&flag, &value()?)?,
                "--keep" => o.keep = true,
                "--hold" => o.hold = true,
                "--no-pin" => o.pin = false,
                "--no-spin" => o.spin = false,
                "-h" | "--help" => {
                    bail!("usage: see the //! header of harness/src/bench/mod.rs")
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        if o.wasm.as_os_str().is_empty() {
            o.wasm = o.repo.join("target/wasm32-wasip1/release/tollgate.wasm");
        }
        ensure!(
            !(o.body_path && o.dlp),
            "--body-path and --dlp are separate runs: give one"
        );
        ensure!(
            !(o.probes && (o.body_path || o.dlp)),
            "--probes measures the header path: not with --body-path or --dlp"
        );
        ensure!(
            o.rounds >= 1 && o.run_ms >= 100,
            "--rounds must be at least 1 and --run-ms at least 100"
        );
        ensure!(
            o.rate_clients >= 1 && o.rate >= o.rate_clients,
            "--rate must be at least --rate-clients (≥ 1)"
        );
        ensure!(o.connections >= 1, "--connections must be at least 1");
        ensure!(
            (1..=10_000).contains(&o.stream_rate),
            "--stream-rate must be 1 to 10000"
        );
        ensure!(
            o.stream_gap_us <= 1_000_000,
            "--stream-gap-us must be at most 1000000"
        );
        ensure!(
            (1..=64).contains(&o.concurrency),
            "--concurrency must be 1 to 64"
        );
        ensure!(
            o.wasm.exists(),
            "{} is missing: run `make build`",
            o.wasm.display()
        );
        Ok(o)
    }
}

pub(crate) fn number<T: std::str::FromStr>(flag: &str, v: &str) -> anyhow::Result<T> {
    v.parse()
        .map_err(|_| anyhow!("{flag}: {v:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn probes_are_a_header_mode_run() {
        for other in ["--body-path", "--dlp"] {
            let e = parse(&["--probes", other]).unwrap_err().to_string();
            assert!(e.contains("--probes measures the header path"), "{e}");
        }
    }
}
