//! The operator CLI (`tollgate-harness`), run as a user would: every shipped
//! policy passes `check`, a broken one is reported with its path, `decide`
//! prints the verdict, and no credential value ever reaches its output.

use std::process::Command;

mod common;
use common::{root, wasm};

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate-harness"))
        .current_dir(root())
        .arg(args[0])
        .arg("--wasm")
        .arg(wasm())
        .args(&args[1..])
        .env_remove("TOLLGATE_KEYS_FILE")
        .output()
        .expect("run tollgate-harness");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Demo keys the CLI's mock credential service hands out.
const DEMO_KEYS: [&str; 4] = [
    "sk-demo-openai-0001",
    "sk-demo-anthropic-0001",
    "sk-demo-gemini-0001",
    "sk-demo-azure-openai-0001",
];

#[test]
fn every_shipped_policy_passes_check() {
    let mut policies = vec![];
    for dir in ["mesh-config/local"] {
        for e in std::fs::read_dir(root().join(dir)).expect("read mesh-config") {
            let p = e.expect("entry").path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.ends_with(".json") && name.contains("policy") {
                policies.push(format!("{dir}/{name}"));
            }
        }
    }
    assert!(!policies.is_empty());
    let mut args = vec!["check"];
    args.extend(policies.iter().map(String::as_str));
    let (code, out) = cli(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn check_reports_a_broken_policy_with_paths() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad-policy.json");
    let text =
        std::fs::read_to_string(root().join("mesh-config/local/policy.json")).expect("policy");
    std::fs::write(
        &bad,
        text.replace("\"POST /v1/embeddings\"", "\"POST v1/embeddings\""),
    )
    .expect("write");
    let (code, out) = cli(&["check", bad.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rejected") && out.contains("rules[1].endpoints[0]: "),
        "{out}"
    );
}

#[test]
fn decide_prints_the_verdict_and_masks_the_credential() {
    let (code, out) = cli(&[
        "decide",
        "--config",
        "mesh-config/local/policy.json",
        "--spiffe",
        "spiffe://tollgate.local/ns/support/sa/chatbot",
        "--url",
        "https://api.openai.com/v1/chat/completions",
        "-H",
        "authorization: Bearer sk-proj-clientsidekey0123456789abcdef",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("decision: allow") && out.contains("rule:     support-chat"),
        "{out}"
    );
    assert!(out.contains("authorization: Bearer ****(masked)"), "{out}");
    assert!(
        out.contains(":scheme: https") && !out.contains(":scheme: http\n"),
        "the URL's scheme is the request's: {out}"
    );
    assert!(
        !out.contains("sk-proj-clientsidekey"),
        "client key shown: {out}"
    );
    for k in DEMO_KEYS {
        assert!(!out.contains(k), "credential shown: {out}");
    }
    let (code, out) = cli(&[
        "decide",
        "--config",
        "mesh-config/local/policy.json",
        "--spiffe",
        "spiffe://tollgate.local/ns/default/sa/unknown",
        "--url",
        "https://api.openai.com/v1/chat/completions",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("reason:   workload_not_permitted") && out.contains("reply:    403"),
        "{out}"
    );
}

#[test]
fn the_demo_runs_and_never_shows_a_key() {
    let (code, out) = cli(&["demo", "mesh-config/local/policy.json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("decision: allow") && out.contains("decision: deny"),
        "{out}"
    );
    for k in DEMO_KEYS {
        assert!(!out.contains(k), "credential shown: {out}");
    }
    assert!(
        !out.contains("AIzaSyLeakedClientKey"),
        "the client's ?key= was echoed: {out}"
    );
    // Bodies go through the policy's DLP: redacted where they stand,
    // blocked naming the detector, and the matched text is never printed.
    assert!(
        out.contains("[REDACTED:employee_id] paid with [REDACTED:payment_card]"),
        "{out}"
    );
    assert!(out.contains("dlp:      employee_id x1"), "{out}");
    assert!(
        out.contains("reason:   dlp_blocked") && out.contains("detectors: aws_access_key_id"),
        "{out}"
    );
    for text in ["EMP-104233", "4111 1111", "AKIAIOSFODNN7EXAMPLE"] {
        assert!(!out.contains(text), "{text} shown: {out}");
    }
}

#[test]
fn decide_sends_a_body_given_inline_or_from_a_file() {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"EMP-000042"}]}"#;
    let file = std::env::temp_dir().join(format!("tollgate-cli-body-{}.json", std::process::id()));
    std::fs::write(&file, body).expect("write body");
    let at_file = format!("@{}", file.display());
    for data in [body, at_file.as_str()] {
        let (code, out) = cli(&[
            "decide",
            "--config",
            "mesh-config/local/policy.json",
            "--spiffe",
            "spiffe://tollgate.local/ns/support/sa/chatbot",
            "--url",
            "https://api.openai.com/v1/chat/completions",
            "-d",
            data,
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(r#"upstream body: {"model":"gpt-4o-mini","messages":[{"role":"user","content":"[REDACTED:employee_id]"}]}"#),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "content-length: {}",
                body.len() - "EMP-000042".len() + "[REDACTED:employee_id]".len()
            )),
            "{out}"
        );
    }
    let _ = std::fs::remove_file(file);
}

/// `spend` over an access log as `make run`'s Envoy writes it: each
/// workload's forwarded and refused requests, tokens and cost in the
/// latest window, biggest spender first; a bad window is refused.
#[test]
fn spend_reports_each_workload_in_the_latest_window() {
    let dir = std::env::temp_dir().join(format!("tollgate-spend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let log = dir.join("access.log");
    let line = |t: &str, record: &str| {
        format!(r#"{{"start_time":"{t}","status":200,"tollgate":{record}}}"#)
    };
    let text = [
        line("2026-11-29T23:59:59.000Z", r#"{"decision":"allow","workload":"spiffe://cluster.local/ns/a/sa/old","tokens_charged":999}"#),
        line("2026-11-30T01:00:00.000Z", r#"{"decision":"allow","workload":"spiffe://cluster.local/ns/a/sa/big","tokens_charged":700,"cost_charged_micros":2500000,"budgets":["spend"]}"#),
        line("2026-11-30T02:00:00.000Z", r#"{"decision":"deny","reason":"cost_budget_exhausted","workload":"spiffe://cluster.local/ns/a/sa/big"}"#),
        line("2026-11-30T03:00:00.000Z", r#"{"decision":"allow","workload":"spiffe://cluster.local/ns/a/sa/small","usage":{"input":5,"output":6,"total":11}}"#),
        r#"{"start_time":"2026-11-30T03:00:01.000Z","status":400,"tollgate":null}"#.to_string(),
    ]
    .join("\n");
    std::fs::write(&log, text).expect("write log");
    let path = log.to_string_lossy().to_string();
    let (code, out) = cli(&["spend", &path]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("window 2026-11-30 (day, UTC): 2 workload(s)"),
        "{out}"
    );
    let big = out.find("sa/big").expect("big row");
    let small = out.find("sa/small").expect("small row");
    assert!(big < small, "biggest spender first: {out}");
    assert!(
        out.contains("2.500000") && out.contains("cost_budget_exhausted×1"),
        "{out}"
    );
    assert!(
        !out.contains("sa/old"),
        "yesterday is another window: {out}"
    );
    let (code, out) = cli(&["spend", "--window", "day", "--at", "2026-11-29", &path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sa/old") && out.contains("999"), "{out}");
    let (code, out) = cli(&["spend", "--window", "week", &path]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("minute, hour, day or month"), "{out}");
}
