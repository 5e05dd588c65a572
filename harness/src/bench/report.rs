//! What the driver prints: the header, every round, the table, the
//! targets, the host-call probes' table and the gateways' own counters.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::dlp::{print_dlp_header, DLP_STAT_GATEWAYS};
use super::gateways::Variant;
use super::load::Rounds;
use super::options::{Mode, Options};
use super::probe_wasm::{HostCall, CALLS_PER_REQUEST, METRIC_NAME};
use super::setup::{Bench, LlmSide};
use super::stats::{paired_median, Summary};
use super::traffic::{
    JSON_ANSWER_BYTES, MAX_OUTPUT_TOKENS, MODEL, REQUESTED_MAX_TOKENS, STREAM_CHUNKS,
};
use super::{BODY, CHAT_PATH, CLIENT_CPU, GATEWAY_CPU, PROVIDER_HOST};

pub(crate) fn print_header(opts: &Options, bench: &Bench) {
    let version = |bin: &Path, arg: &str| {
        Command::new(bin)
            .arg(arg)
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
                text.lines().last().unwrap_or_default().trim().to_string()
            })
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    match opts.mode() {
        Mode::Headers if opts.probes => println!(
            "Envoy gateways, host-call probes: the no-op wasm module making one proxy-wasm host call {CALLS_PER_REQUEST} times per request (some also once: a stream's first call), against the no-op module and Tollgate"
        ),
        Mode::Headers => println!("Envoy gateways: Tollgate vs native filters vs ext_authz"),
        Mode::BodyPath => println!(
            "Envoy gateways, body path: Tollgate's body rule vs the plain proxy vs rbac + lua"
        ),
        Mode::Dlp => println!(
            "Envoy gateways, prompt DLP: the body rule with and without DLP vs the plain proxy, on a 2 KB and a 64 KB prompt"
        ),
    }
    println!("  envoy:  {}", version(&bench.envoy_bin, "--version"));
    println!("  h2load: {}", version(Path::new("h2load"), "--version"));
    println!(
        "  gateways --concurrency {}, other Envoys 1; {} rounds, order rotated; each run {} ms after {} ms warm-up",
        opts.concurrency, opts.rounds, opts.run_ms, opts.warmup_ms
    );
    println!(
        "  latency: {} req/s over {} connection(s) (h2load --rps); throughput: closed loop, {} connections",
        opts.rate, opts.rate_clients, opts.connections
    );
    if opts.pin {
        println!("  placement: gateways pinned to CPU {GATEWAY_CPU}; h2load, sidecar, mocks and authz service to CPU {CLIENT_CPU}");
    } else {
        println!("  placement: unpinned (--no-pin)");
    }
    if opts.spin {
        println!("  idle CPUs kept busy by SCHED_IDLE spinners (--no-spin to disable)");
    }
    println!(
        "  background load before the run (/proc/loadavg, before the spinners): {}",
        opts.loadavg_at_start
    );
    match &bench.llm {
        LlmSide::Body { traffic, .. } if opts.mode() == Mode::Dlp => print_dlp_header(traffic),
        LlmSide::Body { traffic, .. } => {
            println!(
                "  requests: POST {CHAT_PATH}, Host {PROVIDER_HOST}, \"model\":\"{MODEL}\", \"max_tokens\":{REQUESTED_MAX_TOKENS} (body rule: that model only, clamp to {MAX_OUTPUT_TOKENS}, held)"
            );
            println!(
                "    chat: {} bytes, answered with {JSON_ANSWER_BYTES} bytes of JSON with usage (h2load runs)",
                traffic.chat.sent.len()
            );
            println!(
                "    stream: {} bytes (\"stream\":true, include_usage), answered with {STREAM_CHUNKS} SSE chunks + [DONE], {} bytes, one write every {} µs; {} streams/s, own client (time to first byte)\n",
                traffic.stream.sent.len(),
                traffic.sse_answer().len(),
                opts.stream_gap_us,
                opts.stream_rate
            );
        }
        LlmSide::Mock { .. } => println!(
            "  request: POST {CHAT_PATH} (non-streaming), {} bytes, Host {PROVIDER_HOST}\n",
            BODY.len()
        ),
    }
}

pub(crate) fn print_rounds(rounds: &Rounds) {
    println!("\nper round (fixed rate: p50 µs / p99 µs / gateway CPU µs per request; closed loop: req/s / gateway CPU µs per request[; stream: TTFB p50 µs / gateway CPU µs per stream]):");
    // The probes' labels are longer than the others'.
    let width = rounds
        .keys()
        .map(|v| v.label().chars().count())
        .fold(32, usize::max);
    for (v, rs) in rounds {
        let cells: Vec<String> = rs
            .iter()
            .map(|r| {
                let stream = r.stream.map_or(String::new(), |s| {
                    format!(" {:.0}/{:.1}", s.ttfb_p50_us, s.cpu_us)
                });
                format!(
                    "{:.0}/{:.0}/{:.1} {:.0}/{:.1}{stream}",
                    r.p50_us, r.p99_us, r.fixed_cpu_us, r.rps, r.cpu_us
                )
            })
            .collect();
        println!("  {:<width$} {}", v.label(), cells.join("  "));
    }
}

pub(crate) fn print_table(summary: &BTreeMap<Variant, Summary>) {
    println!("\nmedians over rounds (added = over the plain proxy, paired per round):\n");
    println!("| gateway | p50 µs | p99 µs | added p50 µs | added p99 µs | gateway CPU µs/req, fixed rate | max req/s | vs plain | gateway CPU µs/req, closed loop | CPU-bound capacity vs plain |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (v, s) in summary {
        let added = |x: f64| {
            if *v == Variant::Plain {
                "–".to_string()
            } else {
                format!("{x:+.0}")
            }
        };
        let svc = if s.svc_cpu_us > 0.0 {
            format!(" (+{:.1} in the service)", s.svc_cpu_us)
        } else {
            String::new()
        };
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {:.1} | {:.0} | {:.0}% | {:.1}{svc} | {:.0}% |",
            v.label(),
            s.p50_us,
            s.p99_us,
            added(s.added_p50_us),
            added(s.added_p99_us),
            s.fixed_cpu_us,
            s.rps,
            s.ratio * 100.0,
            s.cpu_us,
            s.cpu_capacity * 100.0
        );
    }
}

pub(crate) fn print_targets(summary: &BTreeMap<Variant, Summary>) {
    let get = |v| summary.get(&v).copied();
    let (Some(native), Some(authz), Some(tollgate)) = (
        get(Variant::Native),
        get(Variant::ExtAuthz),
        get(Variant::Tollgate),
    ) else {
        return;
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    // A median added latency below zero is noise around "adds nothing".
    let floor = |us: f64| us.max(0.0);
    let (t, n, a) = (
        floor(tollgate.added_p50_us),
        floor(native.added_p50_us),
        floor(authz.added_p50_us),
    );
    println!("\ntargets (issue 7; a negative added p50 counts as 0):");
    println!(
        "  Tollgate CPU-bound capacity ≥ 85% of plain:      {:.1}%  {}",
        tollgate.cpu_capacity * 100.0,
        verdict(tollgate.cpu_capacity >= 0.85)
    );
    let vs_native = if native.cpu_capacity > 0.0 {
        tollgate.cpu_capacity / native.cpu_capacity
    } else {
        f64::NAN
    };
    println!(
        "  Tollgate CPU-bound capacity ≥ 0.93× native's:    {vs_native:.2}×  {}",
        verdict(vs_native >= 0.93)
    );
    println!(
        "  Tollgate added p50 ≤ +30 µs at the fixed rate:   {t:.0} µs  {}",
        verdict(t <= 30.0)
    );
    println!(
        "  (for reference: native adds {n:.0} µs, ext_authz {a:.0} µs; closed-loop throughput {:.1}% of plain on this box)",
        tollgate.ratio * 100.0
    );
}

/// `--probes`: per probe, its calls per request, its closed-loop gateway
/// CPU per request, that minus the no-op module's (paired per round,
/// median over rounds) and the same over its own calls per request
/// ([`HostCall::calls_per_request`]): one call's cost, for a once-probe
/// the first call of a stream, for a 10× probe the average over the
/// first call and nine repeats.
pub(crate) fn print_probe_table(summary: &BTreeMap<Variant, Summary>, rounds: &Rounds) {
    let probes: Vec<HostCall> = HostCall::ALL
        .into_iter()
        .filter(|c| rounds.contains_key(&Variant::Probe(*c)))
        .collect();
    let Some(noop) = summary.get(&Variant::WasmNoop) else {
        return;
    };
    if probes.is_empty() {
        return;
    }
    let minus_noop = |v| {
        paired_median(rounds, v, Variant::WasmNoop, |r, n| {
            Some(r.cpu_us - n.cpu_us)
        })
        .unwrap_or(f64::NAN)
    };
    println!("
host calls: each probe is the no-op module making the call calls/req times per request ({CALLS_PER_REQUEST}: the average over a stream's first call and repeats; 1: the first call of a stream); minus no-op is paired per round, median over rounds; per call = minus no-op / calls/req:\n");
    println!("| host call | calls/req | closed-loop CPU µs/req | minus no-op | per call µs |");
    println!("|---|---|---|---|---|");
    println!(
        "| (none: the no-op module) | 0 | {:.1} | – | – |",
        noop.cpu_us
    );
    for call in probes {
        let v = Variant::Probe(call);
        let n = call.calls_per_request();
        let cpu = summary.get(&v).map_or(f64::NAN, |s| s.cpu_us);
        let minus = minus_noop(v);
        println!(
            "| {} | {n} | {cpu:.1} | {minus:+.1} | {:+.2} |",
            call.call(),
            minus / n as f64
        );
    }
    if rounds.contains_key(&Variant::Tollgate) {
        println!(
            "\n(for reference: Tollgate (cached key) minus the no-op module: {:+.1} µs per request, paired per round)",
            minus_noop(Variant::Tollgate)
        );
    }
}

/// The body path's table: the chat request (h2load) and the stream (own
/// client), each against the plain proxy.
pub(crate) fn print_body_table(summary: &BTreeMap<Variant, Summary>) {
    println!("\nmedians over rounds (added and × = over the plain proxy, paired per round):\n");
    println!("| gateway | chat p50 µs | chat p99 µs | added p50 µs | added p99 µs | gateway CPU µs/req, fixed rate | max req/s | vs plain | gateway CPU µs/req, closed loop | CPU × plain | stream TTFB p50 µs | TTFB p99 µs | added TTFB p50 µs | stream p50 µs, to the end | gateway CPU µs/stream | CPU × plain |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (v, s) in summary {
        let plain = *v == Variant::Plain;
        let added = |x: f64| {
            if plain {
                "–".to_string()
            } else {
                format!("{x:+.0}")
            }
        };
        let times = |x: f64| {
            if plain {
                "–".to_string()
            } else {
                format!("{x:.2}×")
            }
        };
        let stream = s.stream.map_or("| | | | | |".to_string(), |t| {
            format!(
                "{:.0} | {:.0} | {} | {:.0} | {:.1} | {}",
                t.ttfb_p50_us,
                t.ttfb_p99_us,
                added(t.added_ttfb_p50_us),
                t.total_p50_us,
                t.cpu_us,
                times(t.cpu_vs_plain)
            )
        });
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {:.1} | {:.0} | {:.0}% | {:.1} | {} | {stream} |",
            v.label(),
            s.p50_us,
            s.p99_us,
            added(s.added_p50_us),
            added(s.added_p99_us),
            s.fixed_cpu_us,
            s.rps,
            s.ratio * 100.0,
            s.cpu_us,
            times(s.cpu_vs_plain),
        );
    }
}

/// The body path's targets (issue 8).
pub(crate) fn print_body_targets(summary: &BTreeMap<Variant, Summary>, rounds: &Rounds) {
    let get = |v| summary.get(&v).copied();
    let (Some(tollgate), Some(lua)) = (get(Variant::TollgateBody), get(Variant::Lua)) else {
        return;
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\ntargets (issue 8, body path; CPU is the closed-loop chat run's unless said):");
    println!(
        "  Tollgate body-rule CPU per request ≤ 1.3× plain's:   {:.2}×  {}",
        tollgate.cpu_vs_plain,
        verdict(tollgate.cpu_vs_plain <= 1.3)
    );
    let vs_lua = paired_median(rounds, Variant::TollgateBody, Variant::Lua, |t, l| {
        Some(t.cpu_us / l.cpu_us)
    })
    .unwrap_or(f64::NAN);
    println!(
        "  Tollgate body-rule CPU per request below lua's:      {:.2}× lua's ({:.1} against {:.1} µs)  {}",
        vs_lua,
        tollgate.cpu_us,
        lua.cpu_us,
        verdict(vs_lua < 1.0)
    );
    if let Some(t) = tollgate.stream {
        // A median added TTFB below zero is noise around "adds nothing".
        let added = t.added_ttfb_p50_us.max(0.0);
        println!(
            "  Tollgate added TTFB p50 on the stream ≤ 50 µs:        {added:.0} µs  {}",
            verdict(added <= 50.0)
        );
    }
    let stream_vs_lua = paired_median(rounds, Variant::TollgateBody, Variant::Lua, |t, l| {
        Some(t.stream?.cpu_us / l.stream?.cpu_us)
    });
    if let (Some(t), Some(l), Some(r)) = (tollgate.stream, lua.stream, stream_vs_lua) {
        println!(
            "  (for reference, the stream at the fixed rate: Tollgate {:.2}× plain's CPU per stream, lua {:.2}×, Tollgate/lua {r:.2}×; lua adds {:.0} µs TTFB p50)",
            t.cpu_vs_plain, l.cpu_vs_plain, l.added_ttfb_p50_us
        );
    }
    let budgets = paired_median(
        rounds,
        Variant::TollgateBodyBudgets,
        Variant::TollgateBody,
        |b, t| Some(b.cpu_us - t.cpu_us),
    );
    if let Some(added) = budgets {
        println!(
            "  (issue 9) local-tier budgets add ≤ 10 µs of gateway CPU per request over the body rule: {added:+.1} µs  {}",
            verdict(added <= 10.0)
        );
    }
    let global = paired_median(
        rounds,
        Variant::TollgateBodyGlobal,
        Variant::TollgateBodyBudgets,
        |g, l| Some(g.cpu_us - l.cpu_us),
    );
    if let (Some(added), Some(g)) = (global, get(Variant::TollgateBodyGlobal)) {
        println!(
            "  (issue 9) the global tier against the local tier: {added:+.1} µs of gateway CPU per request, {:.1} µs in the rate-limit service and Redis, added p50 {:+.0} µs over plain (one gRPC call per request to hold; settlements batched)",
            g.svc_cpu_us, g.added_p50_us
        );
    }
    if let Some(h) = get(Variant::TollgateHeaderOnly) {
        println!(
            "  (header-only rule on the same traffic: {:.2}× plain's CPU per request, CPU-bound capacity {:.0}% of plain; added p50 {:+.0} µs)",
            h.cpu_vs_plain,
            h.cpu_capacity * 100.0,
            h.added_p50_us
        );
    }
}

/// Evidence that each gateway did its job during the runs.
pub(crate) fn print_gateway_stats(bench: &Bench, credential_fetches: usize) {
    println!("\ngateway counters over the whole run:");
    let wanted: [(Variant, &[&str]); 3] = [
        (
            Variant::Native,
            &["http.egress.rbac.allowed", "http.egress.rbac.denied"],
        ),
        (
            Variant::ExtAuthz,
            &[
                "http.egress.ext_authz.ok",
                "http.egress.ext_authz.denied",
                "http.egress.ext_authz.error",
            ],
        ),
        (
            Variant::Tollgate,
            &[
                "wasmcustom.tollgate.cache.hit",
                "wasmcustom.tollgate.cache.miss",
                "wasmcustom.tollgate.fetch.ok",
            ],
        ),
    ];
    for (v, names) in wanted {
        let Ok(g) = bench.gateway(v) else { continue };
        let cells: Vec<String> = names
            .iter()
            .map(|n| format!("{n} {}", g.envoy.stat(n)))
            .collect();
        println!("  {}: {}", v.slug(), cells.join(", "));
    }
    // Body path: every non-zero stat whose name contains one of these.
    let dlp = DLP_STAT_GATEWAYS.map(|v| (v, &["wasmcustom.tollgate."][..]));
    let prefixed: [(Variant, &[&str]); 6] = [
        (Variant::TollgateBody, &["wasmcustom.tollgate."]),
        (Variant::TollgateHeaderOnly, &["wasmcustom.tollgate."]),
        (Variant::TollgateBodyBudgets, &["wasmcustom.tollgate."]),
        (Variant::TollgateBodyGlobal, &["wasmcustom.tollgate."]),
        (Variant::TollgateBodyB, &["wasmcustom.tollgate."]),
        (Variant::Lua, &["http.egress.rbac.", "http.egress.lua."]),
    ];
    for (v, filters) in prefixed.into_iter().chain(dlp) {
        let Ok(g) = bench.gateway(v) else { continue };
        let mut cells = Vec::new();
        for f in filters {
            match g.envoy.stats(f) {
                Ok(stats) => cells.extend(
                    stats
                        .iter()
                        .filter(|(_, x)| *x > 0)
                        .map(|(n, x)| format!("{n} {x}")),
                ),
                Err(e) => cells.push(format!("{f} unavailable ({e})")),
            }
        }
        println!("  {}: {}", v.slug(), cells.join(", "));
    }
    if let Ok(g) = bench.gateway(Variant::Probe(HostCall::Metric)) {
        // CALLS_PER_REQUEST per request that reached the probe
        // (HostCall::Metric has no once-probe).
        let name = format!("wasmcustom.{METRIC_NAME}");
        println!("  {}: {name} {}", g.variant.slug(), g.envoy.stat(&name));
    }
    println!("  credential-service requests during measurement: {credential_fetches}");
}
