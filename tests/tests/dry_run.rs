//! dry_run: access-policy denials are logged and counted as shadow denials,
//! and the request is forwarded with its credential; identity, upstream,
//! path and credential failures stay enforced.

use tollgate_tests::*;

fn dry_run_config() -> serde_json::Value {
    let mut c = config();
    c["mode"] = "dry_run".into();
    c
}

#[test]
fn policy_denials_are_shadowed_and_forwarded() {
    let creds = credential_service();
    let mut gw = gateway(&dry_run_config(), 1, &creds);
    let id = send(
        &mut gw,
        STRANGER,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    let out = settle(&mut gw, id);
    assert_eq!(
        out.expect_forwarded().header_str("authorization"),
        Some(format!("Bearer {OPENAI_KEY}"))
    );
    end_open_streams(&mut gw);
    let a = &audit_lines(&gw)[0];
    assert_eq!(a["decision"], "shadow_deny");
    assert_eq!(a["reason"], "workload_not_permitted");
    assert_eq!(a["mode"], "dry_run");
    assert_eq!(
        gw.metric("tollgate.decision.shadow_deny.workload_not_permitted"),
        Some(1)
    );
    assert_eq!(
        gw.metric("tollgate.decision.deny.workload_not_permitted"),
        Some(0)
    );
    assert!(gw
        .log_text()
        .contains("would deny with workload_not_permitted"));
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn allowed_requests_are_plain_allows_in_dry_run() {
    let creds = credential_service();
    let mut gw = gateway(&dry_run_config(), 1, &creds);
    let id = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    settle(&mut gw, id).expect_forwarded();
    end_open_streams(&mut gw);
    assert_eq!(audit_lines(&gw)[0]["decision"], "allow");
    assert_eq!(gw.metric("tollgate.decision.allow"), Some(1));
}

#[test]
fn identity_upstream_and_path_failures_are_still_enforced() {
    let creds = credential_service();
    let mut gw = gateway(&dry_run_config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let a = gw
        .request(0)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .send();
    gw.settle();
    assert_denied(&gw, &counters, a, 403, "identity_missing");
    let counters = Counters::snapshot(&gw);
    let b = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "attacker.example.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_denied(&gw, &counters, b, 403, "unknown_upstream");
    let counters = Counters::snapshot(&gw);
    let c = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/../admin",
    );
    gw.settle();
    assert_denied(&gw, &counters, c, 400, "path_invalid");
    assert_eq!(creds.requests(), 0);
}
