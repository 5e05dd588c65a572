//! The credential cache in a real Envoy: single flight across worker
//! threads, and rotation.

use std::time::{Duration, Instant};

use tollgate_tests::run_envoy::*;
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

/// `--concurrency 2`, a cold cache, and a burst of concurrent connections:
/// exactly one fetch, and every request carries the real key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_over_two_workers_makes_one_fetch() {
    let stack = start_stack(&scratch_dir("burst"), &config(), |o| o.concurrency = 2).await;
    // Slow the credential service so the whole burst arrives before the
    // first fetch completes.
    stack
        .creds
        .set_fault(tollgate_harness::mock::Fault::Delay(Duration::from_millis(
            400,
        )));
    const N: usize = 48;
    let counters = envoy_counters(&stack).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..N {
        let client = client_for(&stack, SUPPORT_BOT);
        let listen = stack.listen;
        tasks.push(tokio::spawn(async move {
            let req = tollgate_tests::tls_client::HttpsRequest {
                method: "POST".into(),
                host: "api.openai.com".into(),
                path: CHAT.into(),
                headers: vec![("content-type".into(), b"application/json".to_vec())],
                body: br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            };
            tollgate_tests::tls_client::send(listen, client, &req).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        ok += 1;
    }
    assert_eq!(ok, N);
    assert_eq!(
        stack.creds.requests_for("openai"),
        1,
        "one fetch for the whole burst"
    );
    let seen = stack.llm.requests();
    assert_eq!(seen.len(), N);
    assert!(seen
        .iter()
        .all(|r| r.key.as_deref() == Some(OPENAI_KEY.as_bytes()) && r.accepted));
    // Both workers served part of the burst (each has its own VM and
    // counters, but Envoy sums them): the cache was shared across VMs.
    counters
        .check_decisions(
            &envoy_counters(&stack).unwrap(),
            &[("tollgate.decision.allow", N as i64)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_no_leak_in(&stack, &[]);
}

/// A key rotated at the credential service is in use within
/// `refresh_ahead`, with no failed request meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_in_use_within_refresh_ahead() {
    let mut policy = config();
    policy["credential_service"]["ttl"] = "4s".into();
    policy["credential_service"]["refresh_ahead"] = "3s".into();
    let refresh_ahead = Duration::from_secs(3);
    let stack = start_stack(&scratch_dir("rotation"), &policy, |o| o.concurrency = 2).await;

    let first = post_as(&stack, SUPPORT_BOT, "api.openai.com", CHAT, &[])
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    // Rotate right after the fetch: the worst case for staleness.
    let new_key = "sk-real-openai-ROTATED-0000000000000001";
    stack.creds.rotate("openai", new_key, "openai-key-2");
    let rotated_at = Instant::now();
    let mut in_use_after = None;
    let mut responses = vec![];
    while rotated_at.elapsed() < Duration::from_secs(10) {
        let r = post_as(&stack, SUPPORT_BOT, "api.openai.com", CHAT, &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "no request fails during rotation");
        responses.push(r);
        let last = stack.llm.last_request().unwrap();
        if last.key.as_deref() == Some(new_key.as_bytes()) {
            in_use_after = Some(rotated_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = in_use_after.expect("the rotated key was never used");
    eprintln!("rotated key in use after {after:?} (refresh_ahead {refresh_ahead:?})");
    assert!(
        after <= refresh_ahead,
        "rotated key in use after {after:?}, more than refresh_ahead {refresh_ahead:?}"
    );
    // Once the new key is in use, the old one is never sent again.
    for _ in 0..5 {
        post_as(&stack, SUPPORT_BOT, "api.openai.com", CHAT, &[])
            .await
            .unwrap();
        assert_eq!(
            stack.llm.last_request().unwrap().key.as_deref(),
            Some(new_key.as_bytes())
        );
    }
    let log = stack.envoy.log();
    assert!(
        !log.contains(new_key),
        "rotated key leaked into Envoy's log"
    );
    let refs: Vec<_> = responses.iter().collect();
    assert_no_leak_in(&stack, &refs);
}
