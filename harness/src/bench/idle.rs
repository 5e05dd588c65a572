//! Idle cost: each gateway's CPU time while no request arrives (timers,
//! stats flushes, and Tollgate's tick), sampled over `--idle-ms` after the
//! checks and before any load, all gateways at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::cpu::process_cpu_ns;
use super::gateways::Variant;
use super::options::Options;
use super::setup::Bench;
use super::signals::check_interrupted;

/// CPU microseconds per second of wall time, per gateway.
pub(crate) fn measure_idle(
    opts: &Options,
    bench: &Bench,
) -> anyhow::Result<BTreeMap<Variant, f64>> {
    let before: Vec<(Variant, u64)> = bench
        .gateways
        .iter()
        .map(|g| Ok((g.variant, process_cpu_ns(g.pid)?)))
        .collect::<anyhow::Result<_>>()?;
    let start = Instant::now();
    let until = start + Duration::from_millis(u64::from(opts.idle_ms));
    while Instant::now() < until {
        check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall_s = start.elapsed().as_secs_f64();
    let mut out = BTreeMap::new();
    for (v, cpu0) in before {
        let g = bench.gateway(v)?;
        let cpu1 = process_cpu_ns(g.pid)?;
        out.insert(v, cpu1.saturating_sub(cpu0) as f64 / 1_000.0 / wall_s);
    }
    Ok(out)
}

/// Prints the idle table and the idle target (Tollgate ≤ 1.2× the plain proxy).
pub(crate) fn print_idle(idle: &BTreeMap<Variant, f64>, ms: u32) {
    println!("idle CPU, all gateways idle together for {ms} ms (µs of CPU per second):");
    let plain = idle.get(&Variant::Plain).copied().unwrap_or(0.0);
    for (v, us) in idle {
        let ratio = if plain > 0.0 { us / plain } else { f64::NAN };
        println!(
            "  {:<34} {:>8.1} µs/s   {:>5.2}× plain",
            v.label(),
            us,
            ratio
        );
    }
    if let Some(t) = idle.get(&Variant::Tollgate) {
        let ratio = if plain > 0.0 { t / plain } else { f64::NAN };
        println!(
            "  target: idle Tollgate ≤ 1.2× the plain proxy: {:.2}× {}\n",
            ratio,
            if ratio <= 1.2 { "MET" } else { "MISSED" }
        );
    }
}
