//! The Envoy gateway benchmark behind `tollgate-bench-envoy` (`make bench-envoy`): Tollgate against Envoy's
//! native filters and against ext_authz, each in a real Envoy 1.40 gateway,
//! measured in one run on one machine. `--body-path` measures the request
//! and response bodies instead, `--dlp` prompt DLP, and `--probes` what
//! each proxy-wasm host call costs (all below).
//!
//! ```text
//! tollgate-bench-envoy [--repo DIR] [--wasm FILE] [--rounds N] [--run-ms MS]
//!                      [--warmup-ms MS] [--rate RPS] [--rate-clients N]
//!                      [--connections N] [--concurrency N] [--idle-ms MS]
//!                      [--tollgate-b FILE]
//!                      [--body-path [--stream-rate N] [--stream-gap-us US] | --dlp
//!                       | --probes]
//!                      [--keep] [--hold] [--no-pin] [--no-spin]
//! ```
//!
//! Noise control on a small shared VM (both on by default): the gateways
//! are pinned to one CPU and everything else to the other (`--no-pin`), so
//! all gateways get the same placement and their CPU time is their own; and
//! one `SCHED_IDLE` busy-loop thread per CPU keeps the CPUs out of idle
//! states (`--no-spin`). Without it, waking an idle vCPU adds hundreds of µs
//! of random delay per hop; the spinners yield to any other runnable task at
//! once, so they take no CPU from what is measured.
//!
//! `--hold` starts and checks everything, prints where each gateway and its
//! sidecar entry listen, and waits for Ctrl-C instead of measuring: for
//! profiling by hand (`perf record -p <gateway pid>`, h2load against an
//! entry with the work directory's `body.json`, or `stream.json` on the
//! body path).
//!
//! Topology, all on loopback, every Envoy started with `--concurrency 1`
//! (gateways: `--concurrency N`):
//!
//! ```text
//! default mode:
//! h2load --h1 ─HTTP/1.1─▶ client sidecar Envoy ─mTLS, workload SVID─▶ gateway Envoy ─HTTP/1.1─▶ mock LLM
//!                         (one plain listener                          (1) router only
//!                          per gateway, keep-alive)                    (2) rbac + credential_injector
//!                                                                      (3) ext_authz ──▶ authz service (here)
//!                                                                      (4) Tollgate  ──▶ mock credential service
//!                                                                      (diag) a no-op wasm filter
//!                                                                      (diag) Tollgate, audit_log proxy_log
//!
//! --body-path:
//! h2load --h1 (chat) ─┐
//! stream client (here)┴▶ client sidecar Envoy ─mTLS─▶ gateway Envoy ─HTTP/1.1─▶ body-path upstream (here)
//!                                                     (1) router only
//!                                                     (2) Tollgate, body rule, held ──▶ mock credential service
//!                                                     (3) rbac + lua, body rule
//!                                                     (ref) Tollgate, header-only rule
//!
//! --dlp (h2load only; the same upstream):
//!   2 KB prompt:  (1) router only  (2) Tollgate, body rule  (3) body rule + DLP
//!   64 KB prompt: (4) router only  (5) Tollgate, body rule  (6) body rule + DLP
//!                 (diag) body rule + DLP that only records (audit: all)
//! ```
//!
//! The two diagnostic gateways split Tollgate's cost: what any v8 wasm
//! filter costs (a hand-encoded module whose callbacks return at once), and
//! what the `audit_log: proxy_log` option costs (the audit record written
//! through Envoy's logger, as before it moved to filter state). Every
//! gateway runs with `wasm:info`, as the mesh configuration deploys
//! Tollgate, and writes the shipped access log to a file flushed every
//! 250 ms (the audit record under `"tollgate"`; `null` for the gateways
//! without Tollgate, the Lua script's record for the Lua gateway), as the
//! access log operators already run. `--concurrency N` gives every gateway
//! N workers (all on the gateway CPU when pinned), so that contention on
//! shared data between workers is measured too. Before the load runs, every
//! gateway's idle CPU is sampled for `--idle-ms`. `--tollgate-b FILE` adds a
//! gateway running another build of Tollgate with the same policy (on the
//! body path: the body rule), so that a filter change is measured against
//! the current build in the same run.
//!
//! `--probes` (the header path's traffic; `probe_wasm` has the method)
//! prices the host calls Tollgate makes on its cached request path. The
//! gateways are the plain proxy, Tollgate, the no-op module (and build B
//! with `--tollgate-b`), and one probe per call: the no-op module whose
//! request headers make that one call ten times (the caller's URI SAN
//! property, every request header, `:authority`, replacing a header,
//! removing an absent one, the shared data, a new filter-state key, a
//! counter, the time), each checked like the no-op gateway. The property,
//! every header, the shared data and the filter-state key also have a
//! once-probe that makes the call a single time per request: a call's
//! first use in a stream can cost much more than its repeats, so the
//! once-probe measures the first call of a stream and the 10× probe the
//! average over the first call and nine repeats. After the usual table, a
//! table per probe: its calls per request, its closed-loop gateway CPU per
//! request minus the no-op module's (paired per round, median over
//! rounds), and that over its calls per request, one call's cost.
//!
//! Neither h2load nor wrk can present a client certificate, so a sidecar
//! Envoy originates the mTLS, as an Istio sidecar would; it is the same for
//! all gateways. The gateways share the listener rendered by
//! [`GatewaySpec`] for `make run` (client certificate required, SPIFFE URI
//! SAN, underscores refused, Envoy-generated request ids), the
//! upstream cluster and the route; they differ only in their HTTP filters,
//! and ext_authz also gets the caller's URI SAN in `x-forwarded-client-cert`
//! (`SANITIZE_SET`), since that is how an HTTP authz service learns it.
//!
//! Each round runs every gateway, in an order rotated per round: (a) latency
//! at a fixed request rate (h2load `--rps`, per-request log, p50 and p99),
//! then (b) closed-loop throughput. Added latency and throughput ratios are
//! taken per round against the plain proxy, and the table shows medians over
//! rounds.
//!
//! The body path (`--body-path`; `traffic` has the bodies): (a) and (b) send
//! a 2 KB OpenAI chat request (`"model":"gpt-4o-mini"`, `"max_tokens":5000`)
//! answered with 4 KB of JSON with `usage`; then (c) the same request with
//! `"stream":true` (and `stream_options.include_usage`, so no gateway
//! rewrites the stream) is sent at `--stream-rate` streams/s by the
//! driver's own client, which times the first byte of each stream's body
//! (h2load has no per-request time to first byte); each stream is 50 chat
//! chunks ending with the usage chunk, then `data: [DONE]`, written at
//! least `--stream-gap-us` apart by an upstream in this process (tokio's
//! timer rounds a gap up to the next millisecond). The gateways: (2)
//! Tollgate with a rule that has `models: ["gpt-4o-mini"]` and
//! `max_output_tokens: 2000` (clamp), held mode
//! (`allow_on_headers_stop_iteration: true`), so it holds and reads the
//! body, splices the cap, injects the credential and reads usage from the
//! answer; (3) the same job with Envoy's rbac and Lua filters (what the
//! script does, and where it does less than Tollgate: `lua`); and, for
//! reference, Tollgate with the default mode's rule and
//! `stream_usage: leave`, which reads no request body (the shipped default,
//! `stream_usage: inject`, reads the body of every chat request, so the
//! default mode's Tollgate is not on the header-only path). The table adds
//! time to first byte (p50, p99, added over the plain proxy) and gateway
//! CPU per stream, and the targets are issue 8's: body-rule CPU per request
//! ≤ 1.3× the plain proxy's and below Lua's, added TTFB p50 ≤ 50 µs.
//!
//! `--dlp` (issue 10; `dlp` has the checks and the table): the body rule's
//! gateway against the same rule with a DLP policy of every built-in
//! detector (`block: ["secrets"]`, `redact: ["personal_data"]`), each on
//! the body path's 2 KB chat and on a 64 KB one (the same chat with the
//! export job's config and a week of its log pasted in), with a plain
//! proxy per prompt size as the base. Neither prompt holds a secret or
//! personal data, so every request is scanned and forwarded: the figure is
//! the scan's cost, not a redaction's. Only (a) and (b) run (no stream).
//!
//! Layout: `options` (the command line), `gateways` (the variants and their
//! `GatewaySpec`s, the client sidecar, Tollgate's policies), `noop_wasm` (the
//! hand-encoded diagnostic modules and their encoder), `probe_wasm` (the
//! host-call probes of `--probes`), `authz` (the ext_authz service), `lua`
//! (the Lua gateway's script), `traffic` (the body path's requests and
//! answers), `dlp` (`--dlp`'s checks and table), `upstream` (the body
//! path's upstream), `setup` (starting and checking everything), `load`
//! (h2load runs), `stream` (the body path's time-to-first-byte client),
//! `cpu` (CPU time, pinning, idle spinners), `stats` (percentiles, medians,
//! per-round ratios), `report` (what is printed), `signals` (interruption
//! and child processes).
//!
//! Invariants:
//! - Before measuring, every gateway is checked: the allowed request reaches
//!   the upstream with the expected credential, and (except for the plain
//!   proxy) a request outside the policy is refused. On the body path also:
//!   both answers reach the client byte for byte; the upstream receives the
//!   body clamped to `"max_tokens":2000` through the body-rule gateways and
//!   unchanged through the others; a model off the list is refused by the
//!   body-rule gateways and forwarded by the others; and each gateway's
//!   access-log record shows the usage of both answers, the clamp (body
//!   rule) or no body read (header-only rule). After every load run the
//!   upstream's last request must still carry the expected credential (and,
//!   on the body path, the expected body), and the Lua filter's error
//!   counter must still be zero (it fails open).
//! - A load run with any failed or non-2xx request fails the whole run; so
//!   does a stream that is not answered 200 with the upstream's bytes.
//! - Everything started here stops when the driver exits, on success, error,
//!   Ctrl-C or SIGTERM: Envoys and h2load are children with
//!   `PR_SET_PDEATHSIG`, Envoys are stopped on drop, h2load is killed on a
//!   signal, the stream client stops at the next stream on a signal, and the
//!   mocks, the body-path upstream and the authz service live in this
//!   process.

mod authz;
mod cpu;
mod dlp;
mod gateways;
mod idle;
mod load;
mod lua;
mod noop_wasm;
mod options;
mod probe_wasm;
mod ratelimit;
mod report;
mod setup;
mod signals;
mod stats;
mod stream;
mod traffic;
mod upstream;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use cpu::{pin_current_thread, Spinners};
use dlp::print_dlp_table;
use load::measure;
use options::{Mode, Options};
use report::{
    print_body_table, print_body_targets, print_gateway_stats, print_header, print_probe_table,
    print_rounds, print_table, print_targets,
};
use setup::Bench;
use signals::{stop_on_signal, INTERRUPTED};
use stats::summarize;

/// The caller: the workload certificate's only SAN.
pub(crate) const WORKLOAD: &str = "spiffe://cluster.local/ns/support/sa/chatbot";
/// The prefix every policy allows (Tollgate's `ns/support/*`).
pub(crate) const ALLOWED_PREFIX: &str = "spiffe://cluster.local/ns/support/";
pub(crate) const PROVIDER_HOST: &str = "api.openai.com";
pub(crate) const CHAT_PATH: &str = "/v1/chat/completions";
/// An endpoint no policy allows: the refusal check.
pub(crate) const DENIED_PATH: &str = "/v1/embeddings";
/// What the credential service (or the native secret, or the authz service)
/// hands out.
macro_rules! real_key {
    () => {
        "sk-bench-real-openai-0123456789abcdef"
    };
}
pub(crate) const REAL_KEY: &str = real_key!();
pub(crate) const REAL_BEARER: &str = concat!("Bearer ", real_key!());
/// What the client sends; every gateway but the plain proxy replaces it.
pub(crate) const CLIENT_KEY: &str = "placeholder-not-a-key";
pub(crate) const CREDS_CLUSTER: &str = "tollgate-credentials";
pub(crate) const AUTHZ_CLUSTER: &str = "ext_authz";
pub(crate) const AUTHZ_PREFIX: &str = "/authz";
pub(crate) const SECRET_NAME: &str = "openai-key";
/// The default mode's request (the body path's are in `traffic`).
pub(crate) const BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi."}],"max_tokens":16}"#;

/// Where every gateway Envoy runs (unless `--no-pin`): alone on one core,
/// so all four get the same placement and their CPU time is their own.
pub(crate) const GATEWAY_CPU: usize = 1;
/// Where the client side (h2load, the sidecar), the mocks and the authz
/// service run.
pub(crate) const CLIENT_CPU: usize = 0;

/// The driver's entry point: runs, prints, and maps failure to the exit code.
pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-bench-envoy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    if opts.pin {
        // Inherited by the runtime's threads, the authz thread, the sidecar
        // and h2load; gateways are started from inside `on_gateway_cpu`.
        pin_current_thread(CLIENT_CPU)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.spawn(stop_on_signal());
    let spinners = if opts.spin {
        Spinners::start()?
    } else {
        Spinners::default()
    };
    let outcome = Bench::start(&opts, &rt).and_then(|bench| bench_all(&opts, &rt, &bench));
    drop(spinners);
    // Keep the logs of a failed run; an interrupted one is not a failure.
    let failed = outcome.is_err() && !INTERRUPTED.load(Ordering::SeqCst);
    if !failed && !opts.keep {
        let _ = std::fs::remove_dir_all(&opts.work_dir);
    } else {
        eprintln!(
            "work directory (configs, Envoy logs) kept at {}",
            opts.work_dir.display()
        );
    }
    outcome
}

/// Checks, measures, and prints the table.
fn bench_all(opts: &Options, rt: &tokio::runtime::Runtime, bench: &Bench) -> anyhow::Result<()> {
    print_header(opts, bench);
    rt.block_on(bench.verify())?;
    if opts.hold {
        return hold(opts, bench);
    }
    let idle = idle::measure_idle(opts, bench)?;
    idle::print_idle(&idle, opts.idle_ms);
    let fetches_before = bench.creds.requests();
    let rounds = measure(opts, bench)?;
    let fetches = bench.creds.requests().saturating_sub(fetches_before);
    let summary = summarize(&rounds);
    print_rounds(&rounds);
    match opts.mode() {
        Mode::Headers => {
            print_table(&summary);
            print_targets(&summary);
            print_probe_table(&summary, &rounds);
        }
        Mode::BodyPath => {
            print_body_table(&summary);
            print_body_targets(&summary, &rounds);
        }
        Mode::Dlp => print_dlp_table(bench, &rounds),
    }
    print_gateway_stats(bench, fetches);
    Ok(())
}

/// Prints the entry points and waits until SIGINT or SIGTERM.
fn hold(opts: &Options, bench: &Bench) -> anyhow::Result<()> {
    for g in &bench.gateways {
        println!(
            "{:<32} entry http://{} (Host {PROVIDER_HOST})  gateway admin http://{}  log {}",
            g.variant.label(),
            g.entry,
            g.envoy.admin_addr(),
            g.envoy.log_path().display()
        );
    }
    println!(
        "request bodies in {} (body.json{})",
        opts.work_dir.display(),
        match opts.mode() {
            Mode::Headers => "",
            Mode::BodyPath => ", stream.json",
            Mode::Dlp => ", body-64k.json",
        }
    );
    println!("holding; Ctrl-C stops everything");
    while !INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
