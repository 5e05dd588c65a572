//! Percentiles, medians, and the per-round comparison with the plain proxy.

use std::collections::BTreeMap;

use super::gateways::Variant;
use super::load::{RoundResult, Rounds};
use super::stream::StreamLatency;

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// One gateway's medians over rounds; `added_*` and `ratio` are per-round
/// differences and ratios against the plain proxy, then medians.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Summary {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) added_p50_us: f64,
    pub(crate) added_p99_us: f64,
    pub(crate) rps: f64,
    pub(crate) ratio: f64,
    pub(crate) fixed_cpu_us: f64,
    pub(crate) cpu_us: f64,
    pub(crate) svc_cpu_us: f64,
    /// Plain proxy's gateway CPU per request over this one's: the
    /// throughput ratio of a gateway whose one worker is the bottleneck.
    pub(crate) cpu_capacity: f64,
    /// This gateway's closed-loop CPU per request over the plain proxy's.
    pub(crate) cpu_vs_plain: f64,
    /// Body path: the streamed runs.
    pub(crate) stream: Option<StreamSummary>,
}

/// One gateway's streamed runs: medians over rounds, and per-round
/// differences and ratios against the plain proxy, then medians.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamSummary {
    pub(crate) ttfb_p50_us: f64,
    pub(crate) ttfb_p99_us: f64,
    pub(crate) added_ttfb_p50_us: f64,
    pub(crate) total_p50_us: f64,
    pub(crate) cpu_us: f64,
    pub(crate) cpu_vs_plain: f64,
}

pub(crate) fn summarize(rounds: &Rounds) -> BTreeMap<Variant, Summary> {
    let Some(plain) = rounds.get(&Variant::Plain) else {
        return BTreeMap::new();
    };
    rounds
        .iter()
        .map(|(v, rs)| {
            let paired = |f: &dyn Fn(&RoundResult, &RoundResult) -> f64| {
                median(rs.iter().zip(plain).map(|(r, p)| f(r, p)).collect())
            };
            let s = Summary {
                p50_us: median(rs.iter().map(|r| r.p50_us).collect()),
                p99_us: median(rs.iter().map(|r| r.p99_us).collect()),
                added_p50_us: paired(&|r, p| r.p50_us - p.p50_us),
                added_p99_us: paired(&|r, p| r.p99_us - p.p99_us),
                rps: median(rs.iter().map(|r| r.rps).collect()),
                ratio: paired(&|r, p| r.rps / p.rps),
                fixed_cpu_us: median(rs.iter().map(|r| r.fixed_cpu_us).collect()),
                cpu_us: median(rs.iter().map(|r| r.cpu_us).collect()),
                svc_cpu_us: median(rs.iter().map(|r| r.svc_cpu_us).collect()),
                cpu_capacity: paired(&|r, p| p.cpu_us / r.cpu_us),
                cpu_vs_plain: paired(&|r, p| r.cpu_us / p.cpu_us),
                stream: stream_summary(rs, plain),
            };
            (*v, s)
        })
        .collect()
}

/// The streamed runs' summary, if every round of both has one.
fn stream_summary(rs: &[RoundResult], plain: &[RoundResult]) -> Option<StreamSummary> {
    let own: Vec<_> = rs.iter().map(|r| r.stream).collect::<Option<_>>()?;
    let base: Vec<_> = plain.iter().map(|r| r.stream).collect::<Option<_>>()?;
    let med = |f: &dyn Fn(&StreamLatency) -> f64| median(own.iter().map(f).collect());
    let paired = |f: &dyn Fn(&StreamLatency, &StreamLatency) -> f64| {
        median(own.iter().zip(&base).map(|(r, p)| f(r, p)).collect())
    };
    Some(StreamSummary {
        ttfb_p50_us: med(&|s| s.ttfb_p50_us),
        ttfb_p99_us: med(&|s| s.ttfb_p99_us),
        added_ttfb_p50_us: paired(&|r, p| r.ttfb_p50_us - p.ttfb_p50_us),
        total_p50_us: med(&|s| s.total_p50_us),
        cpu_us: med(&|s| s.cpu_us),
        cpu_vs_plain: paired(&|r, p| r.cpu_us / p.cpu_us),
    })
}

/// Median over rounds of `f(a's round, b's round)`, for two gateways that
/// ran in the same rounds (`None` if either is missing).
pub(crate) fn paired_median(
    rounds: &Rounds,
    a: Variant,
    b: Variant,
    f: impl Fn(&RoundResult, &RoundResult) -> Option<f64>,
) -> Option<f64> {
    let (ra, rb) = (rounds.get(&a)?, rounds.get(&b)?);
    let xs: Vec<f64> = ra.iter().zip(rb).filter_map(|(x, y)| f(x, y)).collect();
    (!xs.is_empty()).then(|| median(xs))
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
