//! `tollgate-harness spend`: each workload's spend in one UTC window, read
//! from Envoy's access log (the shipped format: one JSON object per line,
//! Envoy's `start_time` and the audit record under `"tollgate"`).
//!
//! Windows are those of the budgets (README, "Budgets"): a window is named
//! by the prefix of the ISO `start_time` it covers (`2026-11-30T06:22` a
//! minute, `2026-11-30T06` an hour, `2026-11-30` a day, `2026-11` a
//! month), so no clock or calendar arithmetic is needed.
//!
//! Invariants: lines that are not JSON, or carry no Tollgate record, are
//! counted and skipped, never fatal; nothing from a record but its
//! workload, decision, reason, budgets and counts is read, and no
//! credential is ever in a record to begin with.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde_json::Value;

/// What one workload spent in the window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Spend {
    /// Requests forwarded (allowed, or shadow-denied in dry_run).
    pub forwarded: u64,
    /// Requests refused, by reason code.
    pub refused: BTreeMap<String, u64>,
    /// Tokens charged to budgets, or (without a token budget) the usage
    /// the provider reported.
    pub tokens: u64,
    /// Micro-dollars charged to cost budgets.
    pub cost_micros: u64,
    /// The budgets its requests drew on.
    pub budgets: Vec<String>,
}

/// The report over one window.
#[derive(Debug, Default)]
pub struct Report {
    /// The window's `start_time` prefix.
    pub window: String,
    pub by_workload: BTreeMap<String, Spend>,
    /// Lines read, and lines skipped (not JSON, or no Tollgate record).
    pub lines: u64,
    pub skipped: u64,
}

/// The `start_time` prefix length of each window kind.
pub fn prefix_len(window: &str) -> Option<usize> {
    Some(match window {
        "minute" => 16,
        "hour" => 13,
        "day" => 10,
        "month" => 7,
        _ => return None,
    })
}

/// Reads `log` and reports the window `at` (a `start_time` prefix of the
/// window's length), or, when `at` is `None`, the window of the latest
/// `start_time` in the log.
pub fn report(log: impl BufRead, window_len: usize, at: Option<&str>) -> std::io::Result<Report> {
    let mut records = Vec::new();
    let mut r = Report::default();
    for line in log.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        r.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            r.skipped += 1;
            continue;
        };
        let (Some(start), true) = (v["start_time"].as_str(), v["tollgate"].is_object()) else {
            r.skipped += 1;
            continue;
        };
        let Some(window) = start.get(..window_len) else {
            r.skipped += 1;
            continue;
        };
        records.push((window.to_string(), v["tollgate"].clone()));
    }
    r.window = match at {
        Some(w) => w.to_string(),
        None => records
            .iter()
            .map(|(w, _)| w.clone())
            .max()
            .unwrap_or_default(),
    };
    for (w, t) in records {
        if w != r.window {
            continue;
        }
        let workload = t["workload"]
            .as_str()
            .unwrap_or("(no identity)")
            .to_string();
        let s = r.by_workload.entry(workload).or_default();
        match t["decision"].as_str() {
            Some("allow" | "shadow_deny") => s.forwarded += 1,
            Some("deny") => {
                let reason = t["reason"].as_str().unwrap_or("unknown").to_string();
                *s.refused.entry(reason).or_default() += 1;
            }
            _ => {}
        }
        s.tokens += t["tokens_charged"]
            .as_u64()
            .or_else(|| t["usage"]["total"].as_u64())
            .or_else(|| {
                let u = &t["usage"];
                let (i, o) = (u["input"].as_u64(), u["output"].as_u64());
                (i.is_some() || o.is_some()).then(|| i.unwrap_or(0) + o.unwrap_or(0))
            })
            .unwrap_or(0);
        s.cost_micros += t["cost_charged_micros"].as_u64().unwrap_or(0);
        for b in t["budgets"].as_array().into_iter().flatten() {
            if let Some(b) = b.as_str() {
                if !s.budgets.iter().any(|x| x == b) {
                    s.budgets.push(b.to_string());
                }
            }
        }
    }
    Ok(r)
}

/// Micro-dollars as USD with six decimals (integer arithmetic only).
pub fn usd(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The report as a table, biggest spender first (cost, then tokens).
pub fn render(r: &Report, window_kind: &str) -> String {
    let mut out = format!(
        "window {} ({window_kind}, UTC): {} workload(s); {} line(s) read, {} without a Tollgate record\n",
        if r.window.is_empty() { "(none)" } else { &r.window },
        r.by_workload.len(),
        r.lines,
        r.skipped
    );
    let mut rows: Vec<(&String, &Spend)> = r.by_workload.iter().collect();
    rows.sort_by(|a, b| {
        (b.1.cost_micros, b.1.tokens)
            .cmp(&(a.1.cost_micros, a.1.tokens))
            .then(a.0.cmp(b.0))
    });
    out.push_str(&format!(
        "{:<60} {:>9} {:>8} {:>12} {:>14}  {}\n",
        "workload", "forwarded", "refused", "tokens", "cost (USD)", "budgets / refusals"
    ));
    for (w, s) in rows {
        let refused: u64 = s.refused.values().sum();
        let reasons: Vec<String> = s.refused.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        let mut notes = s.budgets.join(",");
        if !reasons.is_empty() {
            if !notes.is_empty() {
                notes.push_str(" / ");
            }
            notes.push_str(&reasons.join(","));
        }
        out.push_str(&format!(
            "{:<60} {:>9} {:>8} {:>12} {:>14}  {}\n",
            w,
            s.forwarded,
            refused,
            s.tokens,
            usd(s.cost_micros),
            notes
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = concat!(
        r#"{"start_time":"2026-11-30T05:59:59.900Z","tollgate":{"decision":"allow","workload":"spiffe://td/a","tokens_charged":5,"budgets":["t"]}}"#,
        "\n",
        r#"{"start_time":"2026-11-30T06:00:01.000Z","tollgate":{"decision":"allow","workload":"spiffe://td/a","tokens_charged":40,"cost_charged_micros":1500,"budgets":["t","c"]}}"#,
        "\n",
        r#"{"start_time":"2026-11-30T06:10:00.000Z","tollgate":{"decision":"deny","reason":"token_budget_exhausted","workload":"spiffe://td/a"}}"#,
        "\n",
        r#"{"start_time":"2026-11-30T06:20:00.000Z","tollgate":{"decision":"allow","workload":"spiffe://td/b","usage":{"input":3,"output":4}}}"#,
        "\n",
        r#"{"start_time":"2026-11-30T06:21:00.000Z","tollgate":null}"#,
        "\n",
        "not json\n",
    );

    #[test]
    fn the_latest_window_by_workload() {
        let r = report(LOG.as_bytes(), prefix_len("hour").unwrap(), None).unwrap();
        assert_eq!(r.window, "2026-11-30T06");
        assert_eq!((r.lines, r.skipped), (6, 2));
        let a = &r.by_workload["spiffe://td/a"];
        assert_eq!((a.forwarded, a.tokens, a.cost_micros), (1, 40, 1500));
        assert_eq!(a.refused["token_budget_exhausted"], 1);
        assert_eq!(r.by_workload["spiffe://td/b"].tokens, 7);
        let table = render(&r, "hour");
        assert!(table.contains("0.001500"), "{table}");
        // The day holds the 05:59 line too.
        let d = report(LOG.as_bytes(), prefix_len("day").unwrap(), None).unwrap();
        assert_eq!(d.by_workload["spiffe://td/a"].tokens, 45);
        let past = report(LOG.as_bytes(), 13, Some("2026-11-30T05")).unwrap();
        assert_eq!(past.by_workload["spiffe://td/a"].tokens, 5);
    }
}
