//! Policy reloads through Envoy's filesystem LDS: a change takes effect
//! without failing in-flight requests, and an invalid policy is rejected
//! while the old one keeps serving.

use std::time::Duration;

use tollgate_tests::run_envoy::*;
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_takes_effect_without_failing_in_flight_requests() {
    let mut stack = start_stack(&scratch_dir("reload"), &config(), |o| o.concurrency = 2).await;

    // Warm up, then hold a request in flight at the upstream for 1.5 s.
    assert_eq!(
        post_as(&stack, SUPPORT_BOT, "api.openai.com", CHAT, &[])
            .await
            .unwrap()
            .status,
        200
    );
    let listen = stack.listen;
    let slow_client = client_for(&stack, SUPPORT_BOT);
    let in_flight = tokio::spawn(async move {
        let req = tollgate_tests::tls_client::HttpsRequest {
            method: "POST".into(),
            host: "api.openai.com".into(),
            path: CHAT.into(),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-mock-delay-ms".into(), b"1500".to_vec()),
            ],
            body: br#"{"model":"m","messages":[{"role":"user","content":"slow"}]}"#.to_vec(),
        };
        tollgate_tests::tls_client::send(listen, slow_client, &req).await
    });
    // A steady stream of allowed requests across the reload.
    let steady_client = client_for(&stack, SUPPORT_BOT);
    let steady = tokio::spawn(async move {
        let mut statuses = vec![];
        for _ in 0..30 {
            let req = tollgate_tests::tls_client::HttpsRequest {
                method: "POST".into(),
                host: "api.openai.com".into(),
                path: CHAT.into(),
                headers: vec![("content-type".into(), b"application/json".to_vec())],
                body: br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            };
            let r = tollgate_tests::tls_client::send(listen, steady_client.clone(), &req).await;
            statuses.push(r.map(|r| r.status).map_err(|e| e.to_string()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        statuses
    });
    // The reload must find the slow request held at the upstream and the
    // steady stream under way: wait until the mock LLM has seen both.
    let under_way = poll_until_async(Duration::from_secs(10), || {
        let seen = stack.llm.requests();
        let slow = seen.iter().any(|r| r.header("x-mock-delay-ms").is_some());
        let plain = seen
            .iter()
            .filter(|r| r.header("x-mock-delay-ms").is_none())
            .count();
        slow && plain >= 2 // the warm-up and at least one steady request
    })
    .await;
    assert!(
        under_way,
        "the slow and the steady requests never reached the upstream"
    );

    // New policy: the batch job may now also chat.
    assert_eq!(
        post_as(&stack, BATCH_JOB, "api.openai.com", CHAT, &[])
            .await
            .unwrap()
            .header("x-tollgate-reason")
            .as_deref(),
        Some("endpoint_not_permitted")
    );
    let mut changed = config();
    changed["rules"][1]["endpoints"] =
        serde_json::json!(["POST /v1/embeddings", "POST /v1/chat/completions"]);
    let accepted = stack.reload_policy(&changed.to_string()).unwrap();
    assert!(accepted, "Envoy accepted the new listener");

    let r = post_as(&stack, BATCH_JOB, "api.openai.com", CHAT, &[])
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "the change took effect: {}",
        String::from_utf8_lossy(&r.body)
    );

    let slow = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completed");
    assert_eq!(
        slow.status, 200,
        "the in-flight request survived the reload"
    );
    for (i, s) in steady.await.unwrap().iter().enumerate() {
        assert_eq!(
            s.as_ref().ok(),
            Some(&200),
            "steady request {i} during the reload: {s:?}"
        );
    }
    assert_no_leak_in(&stack, &[&r, &slow]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_is_rejected_and_the_old_one_keeps_serving() {
    let mut stack = start_stack(&scratch_dir("reload-invalid"), &config(), |_| {}).await;
    let mut broken = config();
    broken["mode"] = "enforce-ish".into();
    broken["rules"][0]["workloads"] = serde_json::json!(["spiffe://cluster.local/ns/*"]);
    let accepted = stack.reload_policy(&broken.to_string()).unwrap();
    assert!(
        !accepted,
        "Envoy must reject a listener whose Tollgate policy is invalid"
    );
    let log = stack.envoy.log();
    assert!(log.contains("invalid configuration"), "the filter said why");

    // The old policy still serves: allowed stays allowed, denied stays denied.
    let ok = post_as(&stack, SUPPORT_BOT, "api.openai.com", CHAT, &[])
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let no = post_as(&stack, STRANGER, "api.openai.com", CHAT, &[])
        .await
        .unwrap();
    assert_eq!(
        no.header("x-tollgate-reason").as_deref(),
        Some("workload_not_permitted")
    );
    assert_no_leak_in(&stack, &[&ok, &no]);
}
