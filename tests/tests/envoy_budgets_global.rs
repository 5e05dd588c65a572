//! The global tier in real Envoy 1.40 (issue 9): two Envoy processes, two
//! worker threads each, each with its own rate-limit service, the services
//! sharing one `redis-server`. A burst split over both gateways against a
//! global token budget admits exactly what fits; each admitted request is
//! settled to the usage the client saw, which the service then holds.
//! Needs `redis-server` (`make redis`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tollgate_harness::envoy::bootstrap::grpc_cluster;
use tollgate_harness::envoy::Stack;
use tollgate_harness::mock::llm::DELAY_HEADER;
use tollgate_tests::global_tier::Tier;
use tollgate_tests::run_envoy::*;
use tollgate_tests::tls_client::{self, HttpsRequest, HttpsResponse};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";
const BODY: &str =
    r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
const CAP: u64 = 100;
const FITS: u64 = 10;
const BURST: usize = 60;
const RLS: &str = "ratelimit";

fn policy() -> Value {
    let mut c = config();
    c["rate_limit_service"] = json!({"cluster": RLS, "timeout": "2s"});
    c["budgets"] = json!([{"name": "fleet", "tokens": (BODY.len() as u64 + CAP) * FITS,
                           "window": "hour", "scope": "shared", "tier": "global"}]);
    c["rules"][0]["max_output_tokens"] = json!(CAP);
    c["rules"][0]["budgets"] = json!(["fleet"]);
    c
}

fn post(body: &str, delay_ms: u64) -> HttpsRequest {
    HttpsRequest {
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: CHAT.into(),
        headers: vec![
            ("content-type".to_string(), b"application/json".to_vec()),
            (DELAY_HEADER.to_string(), delay_ms.to_string().into_bytes()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fn hour_window() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (now - now % 3600).to_string()
}

#[test]
fn two_envoys_sharing_redis_admit_exactly_what_fits() {
    let tier = Tier::start(2);
    let limit = (BODY.len() as u64 + CAP) * FITS;
    let window = hour_window();
    tier.rt.block_on(async {
        let mut stacks: Vec<Stack> = Vec::new();
        for (i, svc) in tier.services.iter().enumerate() {
            let addr = svc.addr();
            stacks.push(
                start_stack(&scratch_dir(&format!("global-{i}")), &policy(), |o| {
                    o.concurrency = 2;
                    o.extra_clusters = vec![grpc_cluster(RLS, addr)];
                })
                .await,
            );
        }
        let clients: Vec<Arc<rustls::ClientConfig>> =
            stacks.iter().map(|s| client_for(s, SUPPORT_BOT)).collect();
        // Every answer is held back 1.5 s, so all reserve before any settles.
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let (listen, client) = (stacks[i % 2].listen, clients[i % 2].clone());
            burst.spawn(async move {
                (
                    i % 2,
                    tls_client::send(listen, client, &post(BODY, 1500)).await,
                )
            });
        }
        let mut answers: Vec<(usize, HttpsResponse)> = Vec::new();
        while let Some(joined) = burst.join_next().await {
            match joined {
                Ok((g, Ok(r))) => answers.push((g, r)),
                other => panic!("a burst request failed: {other:?}"),
            }
        }
        let admitted: Vec<&(usize, HttpsResponse)> =
            answers.iter().filter(|(_, r)| r.status == 200).collect();
        assert_eq!(
            admitted.len() as u64,
            FITS,
            "statuses: {:?}",
            answers.iter().map(|(_, r)| r.status).collect::<Vec<_>>()
        );
        for (_, r) in answers.iter().filter(|(_, r)| r.status != 200) {
            assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(
                r.header("x-tollgate-reason").as_deref(),
                Some("token_budget_exhausted")
            );
        }
        // Each admitted request is charged the usage its client saw.
        let mut charged = 0;
        for (g, r) in &admitted {
            let usage = r.body_json()["usage"]["total_tokens"].as_u64().unwrap_or(0);
            assert!(usage > 0);
            let line = access_log_line(&stacks[*g], &r.header("x-request-id").unwrap_or_default());
            let a = &line["tollgate"];
            assert_eq!(a["budgets"], json!(["fleet"]), "{a}");
            assert_eq!(a["tokens_charged"], usage, "{a}");
            charged += usage;
        }
        // The settlements reach the service after the streams end: what is
        // left is the limit less exactly what was charged.
        if window == hour_window() {
            let left = limit - charged;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !tier.fits_async("fleet", &window, limit as u32, left).await {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the settlements did not arrive"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                !tier
                    .fits_async("fleet", &window, limit as u32, left + 1)
                    .await
            );
        }
        for s in &stacks {
            assert_no_leak_in(s, &[]);
        }
    });
}
