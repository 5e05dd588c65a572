//! `--dlp` (issue 10): what a DLP rule costs the gateway per request on a
//! 2 KB and a 64 KB prompt, against the plain proxy and the body rule
//! without DLP on the same prompt.
//!
//! The DLP gateways run the body rule plus [`DLP_POLICY`]: every built-in
//! detector, credentials blocked and personal data redacted, as an operator
//! would configure it. The measured prompts hold neither (see `traffic`),
//! so every request is scanned whole and forwarded as the body rule
//! forwards it: the figure is the scan, not a redaction.
//!
//! Invariants (checked before measuring, per gateway):
//! - the prompt the gateway is fed reaches the upstream clamped (body
//!   rules) or unchanged (plain proxy), so DLP found nothing in it;
//! - the same prompt with an OpenAI-shaped key in it (made up at run time,
//!   never a literal here) is refused 403 `dlp_blocked` naming
//!   `openai_api_key` by the DLP gateways, and forwarded by the others;
//! - the same prompt with an e-mail address in it reaches the upstream
//!   with `[REDACTED:email]` in its place through the DLP gateways, and
//!   as sent (or clamped) through the others;
//! - the DLP gateways' records show the block, the redaction, and nothing
//!   found in the measured prompt; neither the key nor the address is in
//!   their access log or Envoy's log;
//! - the diagnostic audit-only gateway (`audit: ["all"]`) forwards both
//!   probes unchanged and records the key and the address by detector.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use serde_json::{json, Value};

use super::gateways::{Dlp, Variant, DLP_POLICY};
use super::load::Rounds;
use super::setup::{
    ensure_refusal, file_len, http_client, read_records, send, Bench, Gateway, LlmSide,
};
use super::stats::{median, paired_median};
use super::traffic::{
    Kind, Traffic, JSON_ANSWER_BYTES, JSON_USAGE, MAX_OUTPUT_TOKENS, REQUESTED_MAX_TOKENS,
};
use super::upstream::BodyUpstream;
use super::{CHAT_PATH, DENIED_PATH};

/// Where the probes put their words: a sentence of the last user turn of
/// the conversation both prompts share.
const MARKER: &str = "Please list any billing impact for this month.";

/// The e-mail address of the redaction probe.
const PROBE_EMAIL: &str = "dana.whitfield@example.com";

/// An OpenAI project key's shape, made up and built at run time so that no
/// key-shaped literal sits in the sources.
fn probe_key() -> String {
    format!(
        "sk-proj-{}T3BlbkFJ{}",
        "Nw7dQx2LpR".repeat(5),
        "Ks4mVb9TzH".repeat(5)
    )
}

/// `body` with `words` after [`MARKER`].
fn with_words(body: &str, words: &str) -> anyhow::Result<String> {
    ensure!(
        body.matches(MARKER).count() == 1,
        "the prompt must hold the probe marker once"
    );
    Ok(body.replacen(MARKER, &format!("{MARKER} {words}"), 1))
}

impl Bench {
    /// `--dlp`'s checks (the module's invariants), per gateway.
    pub(crate) async fn verify_dlp(
        &self,
        upstream: &BodyUpstream,
        traffic: &Traffic,
    ) -> anyhow::Result<()> {
        let client = http_client();
        let key = probe_key();
        for g in &self.gateways {
            let v = g.variant;
            let kind = v.chat_kind();
            let r = traffic.request(kind);
            let log_start = file_len(&g.access_log);

            let (status, got) = send(&client, g.entry, CHAT_PATH, r.sent.clone()).await?;
            ensure!(
                status == 200 && got == traffic.json_answer.as_bytes(),
                "{}: the {kind:?} request got {status} or a changed answer",
                v.slug()
            );
            self.check_upstream(v, kind)?;

            let seen = upstream.requests();
            let probe = with_words(&r.sent, &format!("Our key is {key} if you need it."))?;
            let (status, reply) = send(&client, g.entry, CHAT_PATH, probe).await?;
            let reached = upstream.requests() > seen;
            let dlp = v.dlp();
            ensure_refusal(
                v,
                dlp == Dlp::Enforce,
                "a prompt with a key",
                status,
                reached,
            )?;
            if dlp == Dlp::Enforce {
                let reply: Value = serde_json::from_slice(&reply)
                    .with_context(|| format!("{}: the DLP refusal is not JSON", v.slug()))?;
                let message = reply["error"]["message"].as_str().unwrap_or_default();
                ensure!(
                    reply["error"]["code"] == "dlp_blocked"
                        && message.contains("openai_api_key")
                        && !message.contains(&key[..20]),
                    "{}: the DLP refusal is not dlp_blocked naming openai_api_key: {reply}",
                    v.slug()
                );
            }

            let words = format!("Send the summary to {PROBE_EMAIL}.");
            let probe = with_words(&r.sent, &words)?;
            let (status, _) = send(&client, g.entry, CHAT_PATH, probe).await?;
            ensure!(
                status == 200,
                "{}: the prompt with an address got {status}",
                v.slug()
            );
            let base = if v.checks_body() { &r.clamped } else { &r.sent };
            let expected = if dlp == Dlp::Enforce {
                with_words(base, "Send the summary to [REDACTED:email].")?
            } else {
                with_words(base, &words)?
            };
            let last = upstream
                .last_request()
                .ok_or_else(|| anyhow!("{}: nothing reached the upstream", v.slug()))?;
            ensure!(
                last.body.as_ref() == expected.as_bytes(),
                "{}: the prompt with an address reached the upstream other than expected (redacted by DLP, as sent otherwise)",
                v.slug()
            );

            let seen = upstream.requests();
            let (status, _) = send(&client, g.entry, DENIED_PATH, r.sent.clone()).await?;
            let reached = upstream.requests() > seen;
            ensure_refusal(v, v.enforces(), DENIED_PATH, status, reached)?;

            if v.records() {
                check_dlp_records(g, log_start).await?;
            }
            if dlp != Dlp::Off {
                let logs = std::fs::read_to_string(&g.access_log).unwrap_or_default()
                    + &std::fs::read_to_string(g.envoy.log_path()).unwrap_or_default();
                for (what, text) in [("the key", &key[..]), ("the address", PROBE_EMAIL)] {
                    ensure!(
                        !logs.contains(text),
                        "{}: {what} is in the gateway's logs",
                        v.slug()
                    );
                }
            }
        }
        println!(
            "checked: every gateway forwards its prompt (the body rules clamped to \"max_tokens\":{MAX_OUTPUT_TOKENS}; DLP found nothing in it); the DLP gateways refuse the prompt with a key (403 dlp_blocked naming openai_api_key) and forward the one with an e-mail address as [REDACTED:email], the audit-only one forwards both and records them, the others forward both; neither is in the DLP gateways' logs\n"
        );
        Ok(())
    }
}

/// The records since `start` (bytes) show, within 5 s: the measured
/// prompt forwarded clamped with the answer's usage and no DLP finding;
/// and through a DLP gateway, the key's refusal and the address's
/// redaction, by detector.
async fn check_dlp_records(g: &Gateway, start: u64) -> anyhow::Result<()> {
    let v = g.variant;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = read_records(&g.access_log, start)?;
        let measured = records.iter().any(|r| {
            r["decision"] == "allow"
                && r["clamped"] == true
                && r["usage"]["input"] == JSON_USAGE.0
                && r.get("dlp").is_none()
        });
        let found = |detector: &str| json!([{"detector": detector, "count": 1}]);
        let blocked = records.iter().any(|r| {
            let decision = match v.dlp() {
                Dlp::Audit => "allow",
                _ => "deny",
            };
            r["decision"] == decision && r["dlp"] == found("openai_api_key")
        });
        let redacted = records.iter().any(|r| {
            let redactions = match v.dlp() {
                Dlp::Audit => Value::Null,
                _ => json!(1),
            };
            r["dlp_redacted"] == redactions && r["dlp"] == found("email")
        });
        if measured && (v.dlp() == Dlp::Off || (blocked && redacted)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{}: the records do not show (measured prompt, clean: {measured}; key found: {blocked}; address found: {redacted}) in {} within 5 s: {records:?}",
                v.slug(),
                g.access_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The prompt sizes and their gateways: plain proxy, body rule, body rule
/// plus DLP.
const SIZES: [(Kind, [Variant; 3]); 2] = [
    (
        Kind::Chat,
        [
            Variant::Plain,
            Variant::TollgateBody,
            Variant::TollgateBodyDlp,
        ],
    ),
    (
        Kind::LongChat,
        [
            Variant::PlainLong,
            Variant::TollgateBodyLong,
            Variant::TollgateBodyDlpLong,
        ],
    ),
];

/// `--dlp`'s table: per prompt size, gateway CPU per request of the plain
/// proxy, the body rule and the body rule with DLP, each compared (paired
/// per round) with the plain proxy on the same prompt; then what the DLP
/// step costs over the body rule.
pub(crate) fn print_dlp_table(bench: &Bench, rounds: &Rounds) {
    let LlmSide::Body { traffic, .. } = &bench.llm else {
        return;
    };
    let med = |v: Variant, f: fn(&super::load::RoundResult) -> f64| {
        rounds
            .get(&v)
            .map_or(f64::NAN, |rs| median(rs.iter().map(f).collect()))
    };
    println!("\nmedians over rounds (× and added: against the plain proxy on the same prompt, paired per round):\n");
    println!("| prompt | gateway | gateway CPU µs/req, closed loop | × plain | over the body rule, µs/req | gateway CPU µs/req, fixed rate | p50 µs | added p50 µs | max req/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut steps = Vec::new();
    for (kind, [plain, body, dlp]) in SIZES {
        let bytes = traffic.request(kind).sent.len();
        let mut rows = vec![plain, body, dlp];
        if kind == Kind::LongChat {
            rows.extend([
                Variant::TollgateBodyDlpAuditLong,
                Variant::TollgateBodyDlpLongB,
            ]);
        }
        for v in rows {
            if !rounds.contains_key(&v) {
                continue;
            }
            let vs_plain = paired_median(rounds, v, plain, |r, p| Some(r.cpu_us / p.cpu_us));
            let added_p50 = paired_median(rounds, v, plain, |r, p| Some(r.p50_us - p.p50_us));
            let over_body = paired_median(rounds, v, body, |r, b| Some(r.cpu_us - b.cpu_us));
            let cell = |x: Option<f64>, f: &dyn Fn(f64) -> String| {
                x.filter(|_| v != plain).map_or("–".to_string(), f)
            };
            println!(
                "| {bytes} B | {} | {:.1} | {} | {} | {:.1} | {:.0} | {} | {:.0} |",
                v.label(),
                med(v, |r| r.cpu_us),
                cell(vs_plain, &|x| format!("{x:.2}×")),
                cell(over_body.filter(|_| v != body), &|x| format!("{x:+.1}")),
                med(v, |r| r.fixed_cpu_us),
                med(v, |r| r.p50_us),
                cell(added_p50, &|x| format!("{x:+.0}")),
                med(v, |r| r.rps),
            );
            if v == dlp {
                steps.push((bytes, over_body));
            }
        }
    }
    println!("\nthe DLP step (every built-in detector; closed-loop gateway CPU over the body rule on the same prompt, paired per round):");
    for (bytes, added) in steps {
        match added {
            Some(us) if us > 0.0 => println!(
                "  {bytes} B prompt: {us:+.1} µs per request, {:.0} MB/s of request body",
                bytes as f64 / us
            ),
            Some(us) => println!("  {bytes} B prompt: {us:+.1} µs per request (within noise)"),
            None => println!("  {bytes} B prompt: not measured"),
        }
    }
}

/// The DLP gateways' Tollgate counters (every non-zero one) are printed
/// with the others; this names them for `report::print_gateway_stats`.
pub(crate) const DLP_STAT_GATEWAYS: [Variant; 5] = [
    Variant::TollgateBodyDlp,
    Variant::TollgateBodyLong,
    Variant::TollgateBodyDlpLong,
    Variant::TollgateBodyDlpAuditLong,
    Variant::TollgateBodyDlpLongB,
];

/// The header's lines about `--dlp`'s traffic and policy.
pub(crate) fn print_dlp_header(traffic: &Traffic) {
    println!(
        "  requests: POST {CHAT_PATH}, \"max_tokens\":{REQUESTED_MAX_TOKENS}, answered with {JSON_ANSWER_BYTES} bytes of JSON with usage; body rule: one model, clamp to {MAX_OUTPUT_TOKENS}, held"
    );
    println!(
        "    2 KB: the body path's support chat, {} bytes; 64 KB: the same chat plus the export job's config and a week of its log pasted in ({} escaped newlines, timestamps, byte counts, UUIDs, hex digests), {} bytes; neither holds a secret or personal data",
        traffic.chat.sent.len(),
        traffic.long_chat.sent.matches("\\n").count(),
        traffic.long_chat.sent.len()
    );
    println!(
        "    DLP policy {DLP_POLICY:?} on the DLP gateways' rule: every built-in detector, block: [\"secrets\"], redact: [\"personal_data\"]; no stream run\n"
    );
}
