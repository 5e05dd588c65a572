//! Every deny reason: the right status, `x-tollgate-reason`, an SDK-shaped
//! JSON body, an audit line and a metric; and nothing is forwarded.

use tollgate_harness::mock::Fault;
use tollgate_tests::*;

#[test]
fn identity_missing_without_mtls_or_san() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    // No mTLS at all.
    let counters = Counters::snapshot(&gw);
    let a = gw
        .request(0)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .send();
    gw.settle();
    assert_denied(&gw, &counters, a, 403, "identity_missing");
    // An empty SAN property is no identity. (Envoy exposes a URI SAN only
    // for a presented certificate, so the filter reads the SAN alone; the
    // listener's required, validated client certificates make it trusted.)
    let counters = Counters::snapshot(&gw);
    let b = gw
        .request(0)
        .mtls(true)
        .peer_uri_san("")
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .send();
    gw.settle();
    assert_denied(&gw, &counters, b, 403, "identity_missing");
    // mTLS but no URI SAN.
    let counters = Counters::snapshot(&gw);
    let c = gw
        .request(0)
        .mtls(true)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .send();
    gw.settle();
    assert_denied(&gw, &counters, c, 403, "identity_missing");
    assert_eq!(
        creds.requests(),
        0,
        "no credential is fetched for an unidentified caller"
    );
    assert_no_leak(&gw, &[a, b, c], &all_keys());
}

#[test]
fn spoofed_xfcc_header_is_never_an_identity() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = gw
        .request(0)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header(
            "x-forwarded-client-cert",
            format!("By=spiffe://cluster.local/ns/x;URI={SUPPORT_BOT}"),
        )
        .send();
    gw.settle();
    assert_denied(&gw, &counters, id, 403, "identity_missing");
}

#[test]
fn identity_invalid_for_malformed_spiffe_ids() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let mut ids = vec![];
    for san in [
        &b"https://cluster.local/ns/support/sa/chatbot"[..],
        b"spiffe://cluster.local/ns/../sa/chatbot",
        b"spiffe://Cluster.Local/ns/support/sa/chatbot",
        b"spiffe://cluster.local/ns/support/sa/chatbot/",
        b"spiffe://cluster.local:8443/ns/support",
        b"spiffe://cluster.local/ns/support?x=1",
        b"spiffe://cluster.local/ns/\xff",
    ] {
        let counters = Counters::snapshot(&gw);
        let id = gw
            .request(0)
            .mtls(true)
            .peer_uri_san(san)
            .method("POST")
            .authority("api.openai.com")
            .path("/v1/chat/completions")
            .send();
        gw.settle();
        assert_denied(&gw, &counters, id, 403, "identity_invalid");
        ids.push(id);
    }
    assert_no_leak(&gw, &ids, &all_keys());
}

#[test]
fn trust_domain_untrusted() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = send(
        &mut gw,
        "spiffe://evil.example/ns/support/sa/chatbot",
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_denied(&gw, &counters, id, 403, "trust_domain_untrusted");
}

#[test]
fn unknown_upstream() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let a = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "attacker.example.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_denied(&gw, &counters, a, 403, "unknown_upstream");
    let counters = Counters::snapshot(&gw);
    let b = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com.attacker.example.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_denied(&gw, &counters, b, 403, "unknown_upstream");
    let counters = Counters::snapshot(&gw);
    let c = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com@attacker.example.com",
        "/v1/chat/completions",
    );
    gw.settle();
    // Userinfo is not a host name: refused before any matching.
    assert_denied(&gw, &counters, c, 400, "authority_invalid");
    assert_eq!(creds.requests(), 0);
}

#[test]
fn request_invalid_without_a_path() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .without(":path")
        .send();
    gw.settle();
    assert_denied(&gw, &counters, id, 400, "request_invalid");
}

#[test]
fn path_invalid_for_ambiguous_paths() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let mut ids = vec![];
    for path in [
        &b"/v1/chat/../completions"[..],
        b"/v1/%2e%2e/chat/completions",
        b"/v1/chat%2fcompletions",
        b"/v1/chat/completions#frag",
        b"/v1/chat/completions\x00",
        b"/v1//chat/completions",
        b"/v1/chat/./completions",
        b"/v1\\chat\\completions",
    ] {
        let counters = Counters::snapshot(&gw);
        let id = gw
            .request(0)
            .mtls(true)
            .peer_uri_san(SUPPORT_BOT)
            .method("POST")
            .authority("api.openai.com")
            .path(path)
            .send();
        gw.settle();
        assert_denied(&gw, &counters, id, 400, "path_invalid");
        ids.push(id);
    }
    assert_no_leak(&gw, &ids, &all_keys());
    assert_eq!(creds.requests(), 0);
}

#[test]
fn policy_denials_say_how_far_the_request_got() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    for (workload, method, host, path, reason) in [
        (
            STRANGER,
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
            "workload_not_permitted",
        ),
        (
            BATCH_JOB,
            "POST",
            "api.anthropic.com",
            "/v1/messages",
            "provider_not_permitted",
        ),
        (
            BATCH_JOB,
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
            "endpoint_not_permitted",
        ),
        (
            SUPPORT_BOT,
            "GET",
            "api.openai.com",
            "/v1/chat/completions",
            "endpoint_not_permitted",
        ),
    ] {
        let counters = Counters::snapshot(&gw);
        let id = send(&mut gw, workload, method, host, path);
        gw.settle();
        assert_denied(&gw, &counters, id, 403, reason);
    }
    assert_eq!(creds.requests(), 0, "denied requests fetch nothing");
}

#[test]
fn credential_denied_on_403() {
    let creds = credential_service();
    creds.deny("openai", None);
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_denied(&gw, &counters, id, 403, "credential_denied");
    assert_eq!(gw.metric("tollgate.fetch.denied"), Some(1));
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn credential_unavailable_when_the_service_fails_and_nothing_is_cached() {
    for fault in [
        Fault::Status(500),
        Fault::Status(404),
        Fault::Garbage,
        Fault::WrongShape,
        Fault::Reset,
    ] {
        let creds = credential_service();
        creds.set_fault(fault.clone());
        let mut gw = gateway(&config(), 1, &creds);
        let counters = Counters::snapshot(&gw);
        let id = send(
            &mut gw,
            SUPPORT_BOT,
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
        );
        gw.settle();
        assert_denied(&gw, &counters, id, 503, "credential_unavailable");
        assert_no_leak(&gw, &[id], &all_keys());
    }
}

#[test]
fn internal_error_reason_exists_in_the_reply_shape() {
    // A configured-but-unreachable cluster is a dispatch failure: 503, not a hang.
    let creds = credential_service();
    let mut cfg = config();
    cfg["credential_service"]["cluster"] = "no-such-cluster".into();
    let mut gw = gateway(&cfg, 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_denied(&gw, &counters, id, 503, "credential_unavailable");
    counters.assert_delta(&gw, "tollgate.fetch.dispatch_failed", 1);
}
