//! Every provider kind gets its real key in its own header, and nothing the
//! client sent as a credential reaches upstream.

use tollgate_tests::*;

fn forwarded_header(
    authority: &str,
    path: &str,
    header: &str,
) -> (Option<String>, tollgate_tests::tollgate_harness::Gateway) {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let id = send(&mut gw, SUPPORT_BOT, "POST", authority, path);
    let out = settle(&mut gw, id);
    let value = out.expect_forwarded().header_str(header);
    assert_no_leak(&gw, &[id], &all_keys());
    (value, gw)
}

#[test]
fn openai_gets_a_bearer_token() {
    let (v, _) = forwarded_header("api.openai.com", "/v1/chat/completions", "authorization");
    assert_eq!(v, Some(format!("Bearer {OPENAI_KEY}")));
}

#[test]
fn anthropic_gets_x_api_key() {
    let (v, _) = forwarded_header("api.anthropic.com", "/v1/messages", "x-api-key");
    assert_eq!(v.as_deref(), Some(ANTHROPIC_KEY));
}

#[test]
fn gemini_gets_x_goog_api_key() {
    let (v, _) = forwarded_header(
        "generativelanguage.googleapis.com",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "x-goog-api-key",
    );
    assert_eq!(v.as_deref(), Some(GEMINI_KEY));
}

#[test]
fn azure_openai_gets_api_key_on_any_resource_host() {
    let (v, _) = forwarded_header(
        "myresource.openai.azure.com:443",
        "/openai/deployments/gpt4o/chat/completions",
        "api-key",
    );
    assert_eq!(v.as_deref(), Some(AZURE_KEY));
}

#[test]
fn generic_providers_get_their_configured_header_and_prefix() {
    let (v, _) = forwarded_header("api.search.example.com", "/v1/search", "x-search-token");
    assert_eq!(v, Some(format!("Token {SEARCH_KEY}")));
}

#[test]
fn every_client_credential_is_stripped_duplicates_included() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header("authorization", format!("Bearer {CLIENT_OPENAI_KEY}"))
        .header("authorization", "Bearer placeholder")
        .header("x-api-key", CLIENT_OPENAI_KEY)
        .header("x-goog-api-key", CLIENT_GEMINI_KEY)
        .header("api-key", "whatever")
        .header("x-search-token", "Token client-side")
        .header("content-type", "application/json")
        .send();
    let out = settle(&mut gw, id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_all("authorization"),
        vec![format!("Bearer {OPENAI_KEY}").as_bytes()]
    );
    for h in ["x-api-key", "x-goog-api-key", "api-key", "x-search-token"] {
        assert!(f.header_all(h).is_empty(), "{h} reached upstream");
    }
    assert_eq!(
        f.header_str("content-type").as_deref(),
        Some("application/json")
    );
    let upstream = format!("{:?}", f.headers);
    assert!(!upstream.contains(CLIENT_OPENAI_KEY) && !upstream.contains(CLIENT_GEMINI_KEY));
    // The tripwire fired, and recorded no value.
    end_open_streams(&mut gw);
    let audit = audit_lines(&gw);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["client_key_seen"], true);
    assert_eq!(gw.metric("tollgate.client_key_seen"), Some(1));
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn client_credentials_are_stripped_on_denied_requests_too() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let counters = Counters::snapshot(&gw);
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(STRANGER)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header("authorization", format!("Bearer {CLIENT_OPENAI_KEY}"))
        .send();
    settle(&mut gw, id);
    assert_denied(&gw, &counters, id, 403, "workload_not_permitted");
    assert_eq!(audit_lines(&gw)[0]["client_key_seen"], true);
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn gemini_key_query_parameter_is_removed_and_the_rest_kept() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let path = format!(
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?key={CLIENT_GEMINI_KEY}&alt=sse"
    );
    let id = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "generativelanguage.googleapis.com",
        &path,
    );
    let out = settle(&mut gw, id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_str(":path").as_deref(),
        Some("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
    );
    assert_eq!(f.header_str("x-goog-api-key").as_deref(), Some(GEMINI_KEY));
    end_open_streams(&mut gw);
    assert_eq!(audit_lines(&gw)[0]["client_key_seen"], true);
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn non_utf8_header_values_are_handled_as_bytes() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header("authorization", b"Bearer \xff\xfe\x80".as_slice())
        .header("x-custom", b"\xc3\x28 binary".as_slice())
        .header("x-request-id", b"\xff\xff".as_slice())
        .send();
    let out = settle(&mut gw, id);
    let f = out.expect_forwarded();
    assert_eq!(
        f.header_str("authorization"),
        Some(format!("Bearer {OPENAI_KEY}"))
    );
    assert_eq!(f.header("x-custom"), Some(b"\xc3\x28 binary".as_slice()));
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn the_audit_line_names_workload_provider_rule_and_key_id() {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(BATCH_JOB)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/embeddings")
        .header("x-request-id", "req-42")
        .send();
    settle(&mut gw, id).expect_forwarded();
    end_open_streams(&mut gw);
    let a = &audit_lines(&gw)[0];
    assert_eq!(a["request_id"], "req-42");
    assert_eq!(a["workload"], BATCH_JOB);
    assert_eq!(a["provider"], "openai");
    assert_eq!(a["rule"], "batch-embeddings");
    assert_eq!(a["decision"], "allow");
    assert_eq!(a["credential_id"], "openai-key-1");
    assert!(a["credential_fp"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(a["client_key_seen"], false);
    assert_eq!(gw.metric("tollgate.decision.allow"), Some(1));
    assert_no_leak(&gw, &[id], &all_keys());
}

#[test]
fn credentials_in_request_trailers_are_stripped_and_trip_the_tripwire() {
    let creds = credential_service();
    let mut gw = warm_gateway(&config(), &creds);
    let before = gw.metric("tollgate.client_key_seen").unwrap_or(0);
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(SUPPORT_BOT)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(br#"{"model":"gpt-4o-mini","messages":[]}"#.to_vec())
        .trailer("authorization", format!("Bearer {CLIENT_OPENAI_KEY}"))
        .trailer("x-goog-api-key", CLIENT_GEMINI_KEY)
        .trailer("x-checksum", "abc")
        .send();
    gw.settle();
    let f = gw.outcome(id).expect_forwarded().clone();
    assert_eq!(
        f.header_str("authorization"),
        Some(format!("Bearer {OPENAI_KEY}"))
    );
    assert_eq!(
        f.trailer("authorization"),
        None,
        "stripped from the trailers"
    );
    assert_eq!(f.trailer("x-goog-api-key"), None);
    assert_eq!(f.trailer("x-checksum"), Some(&b"abc"[..]), "others kept");
    assert_eq!(
        gw.metric("tollgate.client_key_seen").unwrap_or(0),
        before + 1,
        "one tripwire count for the request"
    );
    gw.respond(id, 200, &[], b"{}");
    let record: serde_json::Value =
        serde_json::from_slice(&gw.filter_state(id, AUDIT_KEY).expect("audit record")).unwrap();
    assert_eq!(record["client_key_seen"], true, "{record}");
    assert_no_leak(&gw, &[id], &[CLIENT_OPENAI_KEY, CLIENT_GEMINI_KEY]);
}
