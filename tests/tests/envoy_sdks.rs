//! The official Python SDKs (`openai`, `anthropic`, `google-genai`, from the
//! project venv) through a real Envoy with Tollgate.
//!
//! For every call: the mock upstream sees exactly the real key; the
//! placeholder the SDK was given never arrives; a denied call surfaces in
//! the SDK as an error carrying our reason code; the audit record in the
//! access log carries the model and the usage the SDK was told. An OpenAI
//! stream that did not ask for usage reaches the SDK without a usage chunk,
//! and is metered all the same.
//!
//! Prompt DLP (issue 10): under a rule whose DLP policy blocks secrets, the
//! OpenAI and Anthropic SDKs sending a key (made up at run time) fail with
//! 403 and `dlp_blocked` naming the detector, never the key; a card number
//! and an operator literal reach the upstream as `[REDACTED:<detector>]`,
//! created and streamed, and the SDK gets its answer.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use tollgate_harness::envoy::local_run::PLACEHOLDER_KEY;
use tollgate_harness::mock::ProviderKind;
use tollgate_tests::run_envoy::*;
use tollgate_tests::*;

/// The fixture policy with a model list on the SDKs' rule, so that every
/// call's body (or Gemini's path) is read and its model audited.
fn sdk_config() -> Value {
    let mut c = config();
    if let Some(rule) = c["rules"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["name"] == "support-chat"))
    {
        rule["models"] =
            serde_json::json!(["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.0-flash"]);
    }
    c
}

fn python() -> PathBuf {
    let p = std::env::var_os("TOLLGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(p.exists(), "{} is missing: run `make venv`", p.display());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_stream_and_fail_with_our_reason_code() {
    let dir = scratch_dir("sdks");
    let stack = start_stack(&dir, &sdk_config(), |o| o.concurrency = 2).await;
    let certs = dir.join("client-certs");
    let allowed = stack
        .workload_cert(SUPPORT_BOT)
        .unwrap()
        .write(&certs, "allowed")
        .unwrap();
    let denied = stack
        .workload_cert(STRANGER)
        .unwrap()
        .write(&certs, "denied")
        .unwrap();

    let script = repo_root().join("tests/sdk/sdk_e2e.py");
    let port = stack.listen.port();
    let ca = stack.pki.ca_file.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .env("TOLLGATE_GW", format!("https://localhost:{port}"))
            .env("TOLLGATE_CA", ca)
            .env("TOLLGATE_ALLOWED_CERT", &allowed.cert)
            .env("TOLLGATE_ALLOWED_KEY", &allowed.key)
            .env("TOLLGATE_DENIED_CERT", &denied.cert)
            .env("TOLLGATE_DENIED_KEY", &denied.key)
            .env("TOLLGATE_PLACEHOLDER", PLACEHOLDER_KEY)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    for sdk in ["openai", "anthropic", "gemini"] {
        for call in ["create", "stream"] {
            let r = results
                .iter()
                .find(|r| r["sdk"] == sdk && r["call"] == call)
                .unwrap_or_else(|| panic!("no result for {sdk} {call}:\n{stdout}\n{stderr}"));
            assert!(
                r["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Hello from the mock")),
                "{sdk} {call}: {r}"
            );
            assert!(
                r["input_tokens"].as_u64().unwrap_or(0) > 0,
                "{sdk} {call} usage: {r}"
            );
            assert!(
                r["output_tokens"].as_u64().unwrap_or(0) > 0,
                "{sdk} {call} usage: {r}"
            );
        }
        let d = results
            .iter()
            .find(|r| r["sdk"] == sdk && r["call"] == "denied")
            .unwrap_or_else(|| panic!("no denied result for {sdk}:\n{stdout}"));
        assert_eq!(d["status"], 403, "{sdk} denied: {d}");
        assert_eq!(d["reason_header"], "workload_not_permitted", "{sdk}: {d}");
        assert!(
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("workload_not_permitted")),
            "{sdk}'s error message carries the reason code: {d}"
        );
    }

    // What the upstream saw: seven calls, each with exactly the real key.
    let seen = stack.llm.requests();
    assert_eq!(
        seen.len(),
        7,
        "3 SDKs x (create + stream), and OpenAI's stream without usage, reached upstream"
    );
    for r in &seen {
        let (header, want) = match r.provider {
            Some(ProviderKind::OpenAi) => ("authorization", format!("Bearer {OPENAI_KEY}")),
            Some(ProviderKind::Anthropic) => ("x-api-key", ANTHROPIC_KEY.to_string()),
            Some(ProviderKind::Gemini) => ("x-goog-api-key", GEMINI_KEY.to_string()),
            other => panic!("unexpected provider {other:?} at {}", r.path),
        };
        assert_eq!(
            r.header_all(header),
            vec![want.as_bytes()],
            "{} {}",
            r.method,
            r.path
        );
        assert!(r.accepted, "the mock accepted the key at {}", r.path);
        let everything = format!(
            "{} {:?} {}",
            r.path,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !everything.contains(PLACEHOLDER_KEY),
            "the placeholder reached upstream at {}",
            r.path
        );
    }
    assert!(seen.iter().any(|r| r.stream), "streaming calls were made");

    // Each call's audit record: found through the request id Envoy gave it
    // (forwarded upstream with the call's tag), it carries the model the SDK
    // asked for and the usage the SDK was told.
    let audit_of_call = |sdk: &str, call: &str| -> Value {
        let tag = format!("{sdk}-{call}");
        let upstream = seen
            .iter()
            .find(|r| r.header("x-e2e-call") == Some(tag.as_bytes()))
            .unwrap_or_else(|| panic!("{tag} never reached upstream"));
        let id = String::from_utf8_lossy(upstream.header("x-request-id").expect("an id"));
        access_log_line(&stack, &id)["tollgate"].clone()
    };
    let result = |sdk: &str, call: &str| {
        results
            .iter()
            .find(|r| r["sdk"] == sdk && r["call"] == call)
            .unwrap_or_else(|| panic!("no result for {sdk} {call}"))
            .clone()
    };
    for sdk in ["openai", "anthropic", "gemini"] {
        for call in ["create", "stream"] {
            let (a, r) = (audit_of_call(sdk, call), result(sdk, call));
            assert_eq!(a["decision"], "allow", "{sdk} {call}: {a}");
            assert_eq!(a["model"], r["model"], "{sdk} {call}: {a}");
            assert_eq!(a["usage"]["input"], r["input_tokens"], "{sdk} {call}: {a}");
            assert_eq!(
                a["usage"]["output"], r["output_tokens"],
                "{sdk} {call}: {a}"
            );
            assert_eq!(a["response_complete"], true, "{sdk} {call}: {a}");
        }
    }
    // OpenAI without include_usage: the SDK saw no usage chunk, every
    // content chunk (one per word, plus the first and the last), and the
    // record has the usage of the same stream asked with usage.
    let (plain, with_usage) = (result("openai", "stream_plain"), result("openai", "stream"));
    assert_eq!(plain["usage_chunks"], 0, "{plain}");
    assert_eq!(plain["text"], with_usage["text"], "{plain}");
    assert_eq!(
        plain["chunks"].as_u64(),
        with_usage["output_tokens"].as_u64().map(|n| n + 2),
        "{plain}"
    );
    let a = audit_of_call("openai", "stream_plain");
    assert_eq!(a["model"], "gpt-4o-mini", "{a}");
    assert_eq!(a["stream"], true, "{a}");
    assert_eq!(a["usage"]["input"], with_usage["input_tokens"], "{a}");
    assert_eq!(a["usage"]["output"], with_usage["output_tokens"], "{a}");
    let forwarded = seen
        .iter()
        .find(|r| r.header("x-e2e-call") == Some(b"openai-stream_plain"))
        .and_then(|r| r.body_json())
        .unwrap_or_default();
    assert_eq!(
        forwarded["stream_options"]["include_usage"], true,
        "the gateway asked for usage upstream"
    );
    let log = stack.envoy.log();
    assert!(
        !log.contains(PLACEHOLDER_KEY),
        "the placeholder is never logged"
    );
    assert!(!stdout.contains(OPENAI_KEY) && !stderr.contains(OPENAI_KEY));
    assert_no_leak_in(&stack, &[]);
}

/// The SDKs' rule with a DLP policy: keys blocked; card numbers and the
/// operator's literal redacted.
fn sdk_dlp_config() -> Value {
    let mut c = sdk_config();
    c["dlp_policies"] = serde_json::json!([{
        "name": "prompts",
        "block": ["secrets"],
        "redact": ["payment_card", "codename"],
        "literals": [{"name": "codename", "text": "Project Falcon"}]
    }]);
    if let Some(rule) = c["rules"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["name"] == "support-chat"))
    {
        rule["dlp"] = "prompts".into();
    }
    c
}

/// The access log's Tollgate records that satisfy `f`, once there is one
/// (Envoy flushes the file every 250 ms); panics after 20 s.
fn records_where(stack: &tollgate_harness::envoy::Stack, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found: Vec<Value> = access_log_lines(stack, 0)
            .into_iter()
            .map(|l| l["tollgate"].clone())
            .filter(|r| f(r))
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such record after 20 s:\n{}",
            stack.access_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_are_refused_a_prompt_with_a_key_and_send_cards_redacted() {
    let dir = scratch_dir("sdks-dlp");
    let stack = start_stack(&dir, &sdk_dlp_config(), |o| o.concurrency = 2).await;
    let certs = dir.join("client-certs");
    let allowed = stack
        .workload_cert(SUPPORT_BOT)
        .unwrap()
        .write(&certs, "allowed")
        .unwrap();
    // Made up here, at run time: no key-shaped literal in the sources.
    let key = tollgate_tests::scenario::fake_openai_key();
    let card = "4111 1111 1111 1111";

    let script = repo_root().join("tests/sdk/sdk_e2e.py");
    let port = stack.listen.port();
    let ca = stack.pki.ca_file.clone();
    let script_key = key.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg("dlp")
            .env("TOLLGATE_GW", format!("https://localhost:{port}"))
            .env("TOLLGATE_CA", ca)
            .env("TOLLGATE_ALLOWED_CERT", &allowed.cert)
            .env("TOLLGATE_ALLOWED_KEY", &allowed.key)
            .env("TOLLGATE_PLACEHOLDER", PLACEHOLDER_KEY)
            .env("TOLLGATE_DLP_KEY", script_key)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let result = |sdk: &str, call: &str| {
        results
            .iter()
            .find(|r| r["sdk"] == sdk && r["call"] == call)
            .unwrap_or_else(|| panic!("no result for {sdk} {call}:\n{stdout}\n{stderr}"))
            .clone()
    };

    // Blocked: each SDK raises with our status and reason code; the message
    // names the detector, never the key.
    for sdk in ["openai", "anthropic"] {
        let d = result(sdk, "dlp_blocked");
        assert_eq!(d["status"], 403, "{sdk}: {d}");
        assert_eq!(d["reason_header"], "dlp_blocked", "{sdk}: {d}");
        let message = d["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("dlp_blocked") && message.contains("openai_api_key"),
            "{sdk}'s error names the reason and the detector: {d}"
        );
    }
    let seen = stack.llm.requests();
    for call in ["openai-dlp_blocked", "anthropic-dlp_blocked"] {
        assert!(
            !seen
                .iter()
                .any(|r| r.header("x-e2e-call") == Some(call.as_bytes())),
            "{call} reached upstream"
        );
    }
    let blocked = records_where(&stack, |r| r["reason"] == "dlp_blocked");
    assert_eq!(blocked.len(), 2, "{blocked:?}");
    for a in &blocked {
        assert_eq!(a["decision"], "deny", "{a}");
        assert_eq!(
            a["dlp"],
            serde_json::json!([{"detector": "openai_api_key", "count": 1}]),
            "{a}"
        );
    }

    // Redacted: the upstream received the markers where the card and the
    // literal stood, and the SDK got the mock's answer, which echoes them.
    for call in ["dlp_redacted", "dlp_redacted_stream"] {
        let r = result("openai", call);
        let sent = r["sent"].as_str().unwrap_or_default().to_string();
        assert!(
            sent.contains(card) && sent.contains("Project Falcon"),
            "{r}"
        );
        let want = sent
            .replace(card, "[REDACTED:payment_card]")
            .replace("Project Falcon", "[REDACTED:codename]");
        let upstream = seen
            .iter()
            .find(|u| u.header("x-e2e-call") == Some(format!("openai-{call}").as_bytes()))
            .unwrap_or_else(|| panic!("openai {call} never reached upstream"));
        let body = upstream.body_json().unwrap_or_default();
        assert_eq!(body["messages"][0]["content"], want.as_str(), "{call}");
        let raw = String::from_utf8_lossy(&upstream.body);
        assert!(
            !raw.contains(card) && !raw.contains("Project Falcon"),
            "{call}: {raw}"
        );
        assert_eq!(
            r["text"],
            "Hello from the mock. You said: [REDACTED:codename]: pay with [REDACTED:payment_card] now, then",
            "{call}: {r}"
        );
        let id = String::from_utf8_lossy(upstream.header("x-request-id").expect("an id"));
        let a = access_log_line(&stack, &id)["tollgate"].clone();
        assert_eq!(a["decision"], "allow", "{call}: {a}");
        assert_eq!(a["dlp_redacted"], 2, "{call}: {a}");
        let mut found: Vec<String> = a["dlp"]
            .as_array()
            .map(|d| d.iter().map(Value::to_string).collect())
            .unwrap_or_default();
        found.sort();
        assert_eq!(
            found,
            [
                r#"{"count":1,"detector":"codename"}"#,
                r#"{"count":1,"detector":"payment_card"}"#
            ],
            "{call}: {a}"
        );
    }

    // The key and the card appear nowhere: not in the SDKs' output, Envoy's
    // log or the access log.
    let logs = stack.envoy.log() + &stack.access_log();
    for (what, text) in [("key", key.as_str()), ("card", card)] {
        assert!(
            !logs.contains(text),
            "the {what} is in Envoy's log or the access log"
        );
    }
    assert!(
        !stdout.contains(&key) && !stderr.contains(&key),
        "the key is in the SDKs' output"
    );
    assert_no_leak_in(&stack, &[]);
}
