//! The credential cache under faults: caching, refresh ahead from the tick,
//! serving stale-but-valid values, expiry, rotation, denial, both protocols
//! and per-workload scope.

use std::time::Duration;

use serde_json::json;
use tollgate_harness::mock::Fault;
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

fn chat(gw: &mut tollgate_harness::Gateway) -> tollgate_harness::StreamId {
    send(gw, SUPPORT_BOT, "POST", "api.openai.com", CHAT)
}

fn bearer(gw: &tollgate_harness::Gateway, id: tollgate_harness::StreamId) -> String {
    gw.outcome(id)
        .expect_forwarded()
        .header_str("authorization")
        .unwrap_or_default()
}

#[test]
fn one_fetch_serves_many_requests_and_counts_hits() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let mut ids = vec![];
    for _ in 0..20 {
        let id = chat(&mut gw);
        gw.settle();
        assert_eq!(bearer(&gw, id), format!("Bearer {OPENAI_KEY}"));
        ids.push(id);
    }
    assert_eq!(creds.requests_for("openai"), 1);
    assert_eq!(gw.metric("tollgate.cache.miss"), Some(1));
    assert_eq!(gw.metric("tollgate.cache.hit"), Some(19));
    assert_eq!(gw.metric("tollgate.fetch.ok"), Some(1));
    let call = &gw.calls()[0].request;
    assert_eq!(call.cluster, CREDS_CLUSTER);
    assert_eq!(call.path().as_deref(), Some("/v1/credentials/openai"));
    assert_eq!(
        call.header_str(":authority").as_deref(),
        Some("credentials.tollgate.local")
    );
    assert_eq!(
        call.header("x-tollgate-workload"),
        None,
        "shared credentials do not reveal the caller"
    );
    assert_no_leak(&gw, &ids, &all_keys());
}

#[test]
fn a_slow_service_holds_the_request_until_the_answer_arrives() {
    let creds = credential_service();
    creds.set_fault(Fault::Delay(Duration::from_millis(800)));
    let mut gw = gateway(&config(), 1, &creds);
    let id = chat(&mut gw);
    gw.settle();
    assert!(matches!(gw.outcome(id), tollgate_harness::Outcome::Pending));
    gw.advance(Duration::from_millis(800));
    assert_eq!(bearer(&gw, id), format!("Bearer {OPENAI_KEY}"));
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn a_service_slower_than_the_timeout_gives_503_not_a_hang() {
    let creds = credential_service();
    creds.set_fault(Fault::Delay(Duration::from_secs(30)));
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = chat(&mut gw);
    gw.advance(Duration::from_millis(2_000));
    assert_denied(&gw, &counters, id, 503, "credential_unavailable");
    assert_eq!(gw.metric("tollgate.fetch.timeout"), Some(1));
}

#[test]
fn refresh_happens_on_the_tick_and_requests_never_wait_for_it() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let first = chat(&mut gw);
    gw.settle();
    assert_eq!(creds.requests(), 1);
    // Into the refresh window (ttl 60s, refresh_ahead 30s): the tick refreshes.
    creds.set_fault(Fault::Delay(Duration::from_secs(1)));
    gw.advance(Duration::from_secs(31));
    assert_eq!(creds.requests(), 2, "the tick started a refresh");
    // While the refresh is in flight, a request is served from cache at once.
    let during = chat(&mut gw);
    gw.settle();
    assert_eq!(bearer(&gw, during), format!("Bearer {OPENAI_KEY}"));
    assert_eq!(
        creds.requests(),
        2,
        "the request did not start a second fetch"
    );
    gw.advance(Duration::from_secs(1));
    assert_no_leak(&gw, &[first, during], &all_keys());
}

#[test]
fn a_rotated_key_is_in_use_within_refresh_ahead() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let before = chat(&mut gw);
    gw.settle();
    assert_eq!(bearer(&gw, before), format!("Bearer {OPENAI_KEY}"));
    gw.advance(Duration::from_secs(1));
    let rotated = "sk-real-openai-rotated-99887766554433";
    creds.rotate("openai", rotated, "openai-key-2");
    // refresh_ahead is 30s: by then the new key must be in use.
    gw.advance(Duration::from_secs(30));
    let after = chat(&mut gw);
    gw.settle();
    assert_eq!(bearer(&gw, after), format!("Bearer {rotated}"));
    end_open_streams(&mut gw);
    let audit = audit_lines(&gw);
    assert_eq!(audit.last().unwrap()["credential_id"], "openai-key-2");
    let mut keys = all_keys();
    keys.push(rotated);
    assert_no_leak(&gw, &[before, after], &keys);
}

#[test]
fn a_failing_service_is_survived_with_the_cached_value_until_it_expires() {
    for fault in [
        Fault::Status(503),
        Fault::Garbage,
        Fault::Reset,
        Fault::Delay(Duration::from_secs(10)),
    ] {
        let creds = credential_service();
        let mut gw = gateway(&config(), 1, &creds);
        let first = chat(&mut gw);
        gw.settle();
        creds.set_fault(fault.clone());
        gw.advance(Duration::from_secs(45));
        assert!(creds.requests() >= 2, "{fault:?}: refreshes were attempted");
        let stale = chat(&mut gw);
        gw.settle();
        assert_eq!(
            bearer(&gw, stale),
            format!("Bearer {OPENAI_KEY}"),
            "{fault:?}: stale-but-valid is served"
        );
        // Past the value's expiry (60s), nothing valid remains: 503, never an unauthenticated forward.
        gw.advance(Duration::from_secs(16));
        let counters = Counters::snapshot(&gw);
        let late = chat(&mut gw);
        gw.advance(Duration::from_secs(3));
        assert_denied(&gw, &counters, late, 503, "credential_unavailable");
        assert_no_leak(&gw, &[first, stale, late], &all_keys());
    }
}

#[test]
fn a_403_on_refresh_revokes_the_cached_value() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let first = chat(&mut gw);
    gw.settle();
    creds.deny("openai", None);
    gw.advance(Duration::from_secs(31));
    let counters = Counters::snapshot(&gw);
    let after = chat(&mut gw);
    gw.settle();
    assert_denied(&gw, &counters, after, 403, "credential_denied");
    assert_no_leak(&gw, &[first, after], &all_keys());
}

#[test]
fn per_workload_credentials_are_fetched_and_cached_per_workload() {
    let creds = credential_service();
    let other_bot = "spiffe://cluster.local/ns/support/sa/triage";
    let (k1, k2) = (
        "sk-ant-chatbot-own-key-0123456789",
        "sk-ant-triage-own-key-9876543210",
    );
    creds.set_workload_key("anthropic", SUPPORT_BOT, k1, "chatbot-1");
    creds.set_workload_key("anthropic", other_bot, k2, "triage-1");
    let mut cfg = config();
    cfg["providers"][1]["credential"] = json!({"name": "anthropic", "scope": "per_workload"});
    let mut gw = gateway(&cfg, 1, &creds);
    let a = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.anthropic.com",
        "/v1/messages",
    );
    let b = send(
        &mut gw,
        other_bot,
        "POST",
        "api.anthropic.com",
        "/v1/messages",
    );
    let a2 = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.anthropic.com",
        "/v1/messages",
    );
    gw.settle();
    assert_eq!(
        gw.outcome(a)
            .expect_forwarded()
            .header_str("x-api-key")
            .as_deref(),
        Some(k1)
    );
    assert_eq!(
        gw.outcome(a2)
            .expect_forwarded()
            .header_str("x-api-key")
            .as_deref(),
        Some(k1)
    );
    assert_eq!(
        gw.outcome(b)
            .expect_forwarded()
            .header_str("x-api-key")
            .as_deref(),
        Some(k2)
    );
    assert_eq!(creds.requests_for_workload("anthropic", SUPPORT_BOT), 1);
    assert_eq!(creds.requests_for_workload("anthropic", other_bot), 1);
    let sent: Vec<_> = gw
        .calls()
        .iter()
        .filter_map(|c| c.request.header_str("x-tollgate-workload"))
        .collect();
    assert!(
        sent.contains(&SUPPORT_BOT.to_string()) && sent.contains(&other_bot.to_string()),
        "{sent:?}"
    );
    // A workload the service refuses gets credential_denied; the others are unaffected.
    let refused = "spiffe://cluster.local/ns/support/sa/intern";
    creds.deny("anthropic", Some(refused));
    let counters = Counters::snapshot(&gw);
    let c = send(
        &mut gw,
        refused,
        "POST",
        "api.anthropic.com",
        "/v1/messages",
    );
    gw.settle();
    assert_denied(&gw, &counters, c, 403, "credential_denied");
    let mut keys = all_keys();
    keys.extend([k1, k2]);
    assert_no_leak(&gw, &[a, a2, b, c], &keys);
}

#[test]
fn vault_kv2_reads_the_field_through_a_vault_agent_without_a_token() {
    let creds = credential_service();
    creds.set_vault_field("api_key");
    let mut cfg = config();
    cfg["credential_service"]["protocol"] = "vault_kv2".into();
    cfg["credential_service"]["vault"] = json!({"mount": "secret", "field": "api_key"});
    let mut gw = gateway(&cfg, 1, &creds);
    let id = chat(&mut gw);
    gw.settle();
    assert_eq!(bearer(&gw, id), format!("Bearer {OPENAI_KEY}"));
    let call = &gw.calls()[0].request;
    assert_eq!(call.path().as_deref(), Some("/v1/secret/data/openai"));
    assert_eq!(call.header_str("x-vault-request").as_deref(), Some("true"));
    assert_eq!(call.header("x-vault-token"), None);
    end_open_streams(&mut gw);
    assert_eq!(audit_lines(&gw)[0]["credential_id"], "openai@v1");
    // Rotation bumps the KV version, which the audit trail shows.
    creds.rotate(
        "openai",
        "sk-real-openai-vault-rotated-000111222",
        "ignored",
    );
    gw.advance(Duration::from_secs(31));
    let after = chat(&mut gw);
    gw.settle();
    assert_eq!(
        bearer(&gw, after),
        "Bearer sk-real-openai-vault-rotated-000111222"
    );
    end_open_streams(&mut gw);
    assert_eq!(
        audit_lines(&gw).last().unwrap()["credential_id"],
        "openai@v2"
    );
    assert_no_leak(&gw, &[id, after], &all_keys());
}

#[test]
fn a_client_that_gives_up_while_waiting_is_audited_as_abandoned() {
    let creds = credential_service();
    creds.set_fault(Fault::Delay(Duration::from_secs(1)));
    let mut gw = gateway(&config(), 1, &creds);
    let waiting = chat(&mut gw);
    let second = chat(&mut gw);
    gw.settle();
    gw.cancel(second);
    gw.advance(Duration::from_secs(1));
    assert_eq!(bearer(&gw, waiting), format!("Bearer {OPENAI_KEY}"));
    let audit = audit_lines(&gw);
    assert!(
        audit.iter().any(|a| a["decision"] == "abandoned"),
        "{audit:?}"
    );
    assert_eq!(gw.metric("tollgate.decision.abandoned"), Some(1));
}
