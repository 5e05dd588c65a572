//! Prompt DLP on the real `.wasm` (issue 10, first step): a rule's DLP
//! policy scans every decoded string value of the request body and blocks,
//! redacts or only records per detector; the matched text never reaches a
//! log, a reply or the audit record.

use serde_json::{json, Value};
use tollgate_harness::{Gateway, Outcome, StreamId};
use tollgate_tests::budget_fixture::{chat, merge_into_first_rule, warm_through_batch};
use tollgate_tests::*;

/// A key of OpenAI's project format (not a real one), made up at run time
/// so that the source holds no key-shaped string.
fn leaked() -> String {
    tollgate_tests::scenario::fake_openai_key()
}
/// A Luhn-valid test card number.
const CARD: &str = "4111 1111 1111 1111";

fn dlp_config(mode: &str) -> Value {
    let mut c = config();
    c["mode"] = json!(mode);
    c["dlp_policies"] = json!([{
        "name": "prompts",
        "block": ["secrets", "internal_token"],
        "redact": ["payment_card", "us_ssn", "codename", "vendor", "employee_id"],
        "audit": ["email"],
        "literals": [
            {"name": "codename", "text": "Project Falcon"},
            {"name": "vendor", "text": "ACME-Internal", "ignore_case": true},
            {"name": "employee_id", "pattern": "EMP-\\d{6}"},
            {"name": "internal_token", "pattern": "acme_tok_[a-z0-9]{24}", "ignore_case": true}
        ]
    }]);
    merge_into_first_rule(&mut c, &json!({"dlp": "prompts"}));
    c
}

fn warm(mode: &str) -> Gateway {
    let creds = credential_service();
    let mut gw = gateway(&dlp_config(mode), 1, &creds);
    warm_through_batch(&mut gw);
    gw
}

fn body(content: &str) -> String {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).to_string()
}

fn sent(gw: &Gateway, id: StreamId) -> String {
    let f = gw.outcome(id).expect_forwarded().clone();
    String::from_utf8(f.body).unwrap()
}

#[test]
fn a_key_in_the_prompt_is_blocked_naming_the_detector_never_the_key() {
    let mut gw = warm("enforce");
    let before = Counters::snapshot(&gw);
    // Written with a JSON escape: found decoded.
    let key = leaked();
    let escaped = key.replacen('s', "\\u0073", 1);
    let raw = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"my key is {escaped}"}}]}}"#
    );
    let id = chat(&mut gw, 0, SUPPORT_BOT, &raw);
    gw.settle();
    let reply = assert_denied(&gw, &before, id, 403, "dlp_blocked");
    let text = String::from_utf8_lossy(&reply.body);
    assert!(text.contains("detectors: openai_api_key"), "{text}");
    end_open_streams(&mut gw);
    let a = audit_of(&gw, id);
    assert_eq!(
        a["dlp"],
        json!([{"detector": "openai_api_key", "count": 1}]),
        "{a}"
    );
    assert_no_leak(&gw, &[id], &[key.as_str(), &key[10..40]]);
}

#[test]
fn cards_and_literals_are_redacted_in_place_and_email_is_only_recorded() {
    let mut gw = warm("enforce");
    // `vendor` ignores case: written in another case, still found.
    let content =
        format!("pay with {CARD} for Project Falcon via acme-INTERNAL, mail ann@example.com");
    let id = chat(&mut gw, 0, SUPPORT_BOT, &body(&content));
    gw.settle();
    let out = sent(&gw, id);
    let v: Value = serde_json::from_str(&out).expect("valid JSON upstream");
    assert_eq!(
        v["messages"][0]["content"],
        "pay with [REDACTED:payment_card] for [REDACTED:codename] via [REDACTED:vendor], mail ann@example.com"
    );
    // Everything outside the matches is the client's, byte for byte.
    let sent_head = out.split("[REDACTED").next().unwrap_or_default();
    assert!(body(&content).starts_with(sent_head));
    let fwd = gw.outcome(id).expect_forwarded().clone();
    let len = fwd
        .headers
        .iter()
        .find(|(k, _)| k.as_slice() == b"content-length")
        .map(|(_, v)| String::from_utf8_lossy(v).to_string());
    if let Some(len) = len {
        assert_eq!(
            len,
            out.len().to_string(),
            "content-length follows the rewrite"
        );
    }
    end_open_streams(&mut gw);
    let a = audit_of(&gw, id);
    assert_eq!(a["dlp_redacted"], 3, "{a}");
    assert_eq!(
        a["dlp"],
        json!([
            {"detector": "payment_card", "count": 1},
            {"detector": "codename", "count": 1},
            {"detector": "vendor", "count": 1},
            {"detector": "email", "count": 1}
        ]),
        "{a}"
    );
    assert_no_leak(&gw, &[id], &[CARD, "Project Falcon"]);
}

#[test]
fn operator_patterns_redact_and_block_by_shape() {
    let mut gw = warm("enforce");
    // Found whole, also written with an escape; not when glued to more
    // digits or letters.
    let raw = body("ids: EMP-123456, EMP-00\u{200D}0042, EMP-1234567, XEMP-123456")
        .replace("EMP-123456,", "\\u0045MP-123456,");
    let id = chat(&mut gw, 0, SUPPORT_BOT, &raw);
    gw.settle();
    let v: Value = serde_json::from_str(&sent(&gw, id)).expect("valid JSON upstream");
    assert_eq!(
        v["messages"][0]["content"],
        "ids: [REDACTED:employee_id], [REDACTED:employee_id], EMP-1234567, XEMP-123456"
    );
    // A blocking pattern, matched in another case (`ignore_case`), in a
    // tool call's arguments.
    let token = format!("ACME_TOK_{}", "a1B2c3D4".repeat(3));
    let args = json!({"ticket": 7, "auth": token}).to_string();
    let raw = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": args}}]}
    ]})
    .to_string();
    let before = Counters::snapshot(&gw);
    let blocked = chat(&mut gw, 0, SUPPORT_BOT, &raw);
    gw.settle();
    let reply = assert_denied(&gw, &before, blocked, 403, "dlp_blocked");
    let text = String::from_utf8_lossy(&reply.body);
    assert!(text.contains("detectors: internal_token"), "{text}");
    end_open_streams(&mut gw);
    assert_eq!(
        audit_of(&gw, id)["dlp"],
        json!([{"detector": "employee_id", "count": 2}])
    );
    assert_eq!(
        audit_of(&gw, blocked)["dlp"],
        json!([{"detector": "internal_token", "count": 1}])
    );
    assert_no_leak(&gw, &[id, blocked], &["EMP-123456", &token]);
}

#[test]
fn a_pattern_that_would_need_backtracking_is_refused_at_load() {
    let mut c = dlp_config("enforce");
    c["dlp_policies"][0]["literals"][2]["pattern"] = json!("EMP-\\d+\\d");
    let e = rejection_logs(&c.to_string());
    assert!(
        e.contains(r#"dlp_policies[0]: literals[2].pattern: at offset 4 ("\\d+"): can take the same characters"#),
        "{e}"
    );
    c["dlp_policies"][0]["literals"][2]["text"] = json!("EMP");
    let e = rejection_logs(&c.to_string());
    assert!(
        e.contains(r#"dlp_policies[0].literals[2]: give either "text" or "pattern""#),
        "{e}"
    );
}

#[test]
fn tool_call_arguments_are_scanned_as_the_json_they_hold() {
    let mut gw = warm("enforce");
    let args = json!({"card": CARD, "note": "ok"}).to_string();
    let raw = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "pay", "arguments": args}}]}]
    })
    .to_string();
    let id = chat(&mut gw, 0, SUPPORT_BOT, &raw);
    gw.settle();
    let out = sent(&gw, id);
    let v: Value = serde_json::from_str(&out).unwrap();
    let args: Value = serde_json::from_str(
        v["messages"][0]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .expect("the arguments are still JSON");
    assert_eq!(
        args,
        json!({"card": "[REDACTED:payment_card]", "note": "ok"})
    );
}

#[test]
fn dry_run_records_what_block_would_have_done_and_changes_nothing() {
    let mut gw = warm("dry_run");
    let content = format!("key {} card {CARD}", leaked());
    let id = chat(&mut gw, 0, SUPPORT_BOT, &body(&content));
    gw.settle();
    assert_eq!(sent(&gw, id), body(&content), "forwarded as sent");
    end_open_streams(&mut gw);
    let a = audit_of(&gw, id);
    assert_eq!(a["decision"], "shadow_deny", "{a}");
    assert_eq!(a["reason"], "dlp_blocked", "{a}");
    assert!(a.get("dlp_redacted").is_none(), "{a}");
    assert_eq!(
        gw.metric("tollgate.decision.shadow_deny.dlp_blocked"),
        Some(1)
    );
}

#[test]
fn a_body_dlp_cannot_read_is_refused_not_forwarded_unscanned() {
    let mut gw = warm("enforce");
    let before = Counters::snapshot(&gw);
    let id = request_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    )
    .header("content-type", "application/json")
    .header("content-encoding", "gzip")
    .body(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0])
    .send();
    gw.settle();
    assert!(matches!(gw.outcome(id), Outcome::LocalReply(_)));
    let _ = assert_denied(&gw, &before, id, 415, "body_unsupported");
}
