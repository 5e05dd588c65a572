//! What the gateway's Envoy does at the edge, before and around Tollgate, in
//! a real Envoy 1.40 with the configuration `make run` renders:
//!
//! | case                                   | expected |
//! |----------------------------------------|----------|
//! | header name with an underscore (`x_api_key: sk-…`) | 400 from Envoy's codec, reason `http1.unexpected_underscore`; the mock LLM never sees the request, Tollgate never runs |
//! | client-chosen `x-request-id`           | replaced by an id Envoy generates: not what reaches the upstream, not what the access log records, not in Envoy's log |

use tollgate_tests::run_envoy::*;
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_with_an_underscore_is_refused_before_it_reaches_anything() {
    let stack = start_stack(&scratch_dir("edge-underscore"), &config(), |_| {}).await;
    let decisions = || {
        stack
            .envoy
            .stats("tollgate.decision")
            .unwrap_or_default()
            .iter()
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    let (seen0, decided0) = (stack.llm.requests().len(), decisions());

    let r = post_as(
        &stack,
        SUPPORT_BOT,
        "api.openai.com",
        CHAT,
        &[("x_api_key", CLIENT_OPENAI_KEY)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("x-tollgate-reason").as_deref(),
        Some("http1.unexpected_underscore"),
        "Envoy refused it (its details as the reason), not Tollgate"
    );
    assert_eq!(
        stack.llm.requests().len(),
        seen0,
        "never reached the mock LLM"
    );
    assert_eq!(decisions(), decided0, "Tollgate never ran");

    // The same request with the dashed name goes through, with the client's
    // key stripped: the control that the refusal is about the underscore.
    let ok = post_as(
        &stack,
        SUPPORT_BOT,
        "api.openai.com",
        CHAT,
        &[("x-api-key", CLIENT_OPENAI_KEY)],
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let seen = stack.llm.last_request().expect("forwarded");
    assert_eq!(seen.header("x-api-key"), None);

    // The access log has both, the refused one with Envoy's reason and no
    // audit record.
    let lines = access_log_lines(&stack, 2);
    let refused = lines
        .iter()
        .find(|l| l["status"] == 400)
        .unwrap_or_else(|| panic!("no 400 line: {lines:?}"));
    assert_eq!(refused["tollgate"], serde_json::Value::Null, "{refused}");
    assert!(
        refused["response_code_details"]
            .as_str()
            .is_some_and(|d| d.contains("underscore")),
        "{refused}"
    );
    assert_no_leak_in(&stack, &[&r, &ok]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_chosen_request_id_never_becomes_the_gateways() {
    let stack = start_stack(&scratch_dir("edge-request-id"), &config(), |_| {}).await;
    let chosen = format!("client-chosen-{}", std::process::id());

    let mut ids = vec![];
    for (workload, status) in [(SUPPORT_BOT, 200), (STRANGER, 403)] {
        let r = post_as(
            &stack,
            workload,
            "api.openai.com",
            CHAT,
            &[("x-request-id", &chosen)],
        )
        .await
        .unwrap();
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        // Envoy returns the id it assigned.
        let id = r
            .header("x-request-id")
            .expect("x-request-id in the response");
        assert_ne!(id, chosen);
        assert!(is_uuid(&id), "{id}");
        ids.push(id);
    }

    // Upstream got Envoy's id, not the client's.
    let seen = stack.llm.last_request().expect("forwarded");
    let upstream_id = String::from_utf8_lossy(seen.header("x-request-id").expect("an id"));
    assert_eq!(upstream_id, ids[0]);

    // The access log records Envoy's ids, and so does Tollgate's audit
    // record where it is in the line.
    for id in &ids {
        let line = access_log_line(&stack, id);
        if let Some(audit) = line["tollgate"].as_object() {
            if let Some(rid) = audit.get("request_id") {
                assert_eq!(rid, id, "{line}");
            }
        }
    }
    let everything = stack.envoy.log() + &stack.access_log();
    assert!(
        !everything.contains(&chosen),
        "the client's x-request-id must not be recorded anywhere"
    );
    assert_no_leak_in(&stack, &[]);
}

/// `8-4-4-4-12` lowercase hex, as Envoy's uuid request-id extension makes.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}
