//! Budgets in a real Envoy 1.40 whose two worker threads serve connections
//! in parallel (issue 9, the local tier): a burst against a token budget
//! admits exactly what fits, every refusal is a 429 with `retry-after`,
//! holds are settled to the mock LLM's usage (read from the access log),
//! and a request budget resets with its window.

use std::sync::Arc;

use serde_json::{json, Value};
use tollgate_harness::envoy::Stack;
use tollgate_harness::mock::llm::DELAY_HEADER;
use tollgate_tests::run_envoy::*;
use tollgate_tests::tls_client::{self, HttpsRequest, HttpsResponse};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";
/// Within the cap: sent as is, so the hold is its length plus the cap.
const BODY: &str =
    r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
const CAP: u64 = 100;
const EMBED: &str = r#"{"model":"text-embedding-3-small","input":"hi"}"#;
const FITS: usize = 10;
const BURST: usize = 60;

fn budget_config() -> Value {
    let mut c = config();
    c["budgets"] = json!([
        {"name": "burst", "tokens": (BODY.len() as u64 + CAP) * FITS as u64, "window": "hour", "scope": "shared"},
        {"name": "rpm", "requests": 2, "window": "minute"}
    ]);
    c["rules"][0]["max_output_tokens"] = json!(CAP);
    c["rules"][0]["budgets"] = json!(["burst"]);
    c["rules"][1]["budgets"] = json!(["rpm"]);
    c
}

fn post(path: &str, body: &str, delay_ms: u64) -> HttpsRequest {
    HttpsRequest {
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: path.into(),
        headers: vec![
            ("content-type".to_string(), b"application/json".to_vec()),
            (DELAY_HEADER.to_string(), delay_ms.to_string().into_bytes()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

async fn send(
    stack: &Stack,
    client: Arc<rustls::ClientConfig>,
    req: &HttpsRequest,
) -> HttpsResponse {
    tls_client::send(stack.listen, client, req)
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_through_envoy_with_two_workers() {
    let stack = start_stack(&scratch_dir("budgets"), &budget_config(), |o| {
        o.concurrency = 2
    })
    .await;
    let chatbot = client_for(&stack, SUPPORT_BOT);
    // Warm the credential cache, through the rule without a token budget.
    let warm = send(
        &stack,
        client_for(&stack, BATCH_JOB),
        &post("/v1/embeddings", EMBED, 0),
    )
    .await;
    assert_eq!(warm.status, 200, "{}", String::from_utf8_lossy(&warm.body));

    // The burst: every answer is held back 1.5 s, so all reserve before
    // any settles; exactly FITS are admitted, whichever worker runs them.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let (listen, client) = (stack.listen, chatbot.clone());
        burst.spawn(async move { tls_client::send(listen, client, &post(CHAT, BODY, 1500)).await });
    }
    let mut answers = Vec::new();
    while let Some(joined) = burst.join_next().await {
        match joined {
            Ok(Ok(r)) => answers.push(r),
            other => panic!("a burst request failed: {other:?}"),
        }
    }
    let admitted: Vec<&HttpsResponse> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        admitted.len(),
        FITS,
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("x-tollgate-reason").as_deref(),
            Some("token_budget_exhausted")
        );
        let retry: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!((1..=3600).contains(&retry), "retry-after {retry}");
    }

    // Settled to the usage the client saw, as the access log records it.
    let mut charged = 0;
    for r in &admitted {
        let usage = r.body_json()["usage"]["total_tokens"].as_u64().unwrap_or(0);
        assert!(usage > 0);
        let line = access_log_line(&stack, &r.header("x-request-id").unwrap_or_default());
        let a = &line["tollgate"];
        assert_eq!(a["budgets"], json!(["burst"]), "{a}");
        assert_eq!(a["tokens_reserved"], BODY.len() as u64 + CAP, "{a}");
        assert_eq!(a["tokens_charged"], usage, "{a}");
        charged += usage;
    }
    // What was charged is far below the holds: the budget admits again.
    assert!(charged < (BODY.len() as u64 + CAP) * FITS as u64 / 2);
    let after = send(&stack, chatbot.clone(), &post(CHAT, BODY, 0)).await;
    assert_eq!(
        after.status,
        200,
        "{}",
        String::from_utf8_lossy(&after.body)
    );

    // A request budget: two per minute for the batch job (the warm-up
    // counted one), then 429 rate_limited until the minute ends.
    let batch = client_for(&stack, BATCH_JOB);
    let second = send(&stack, batch.clone(), &post("/v1/embeddings", EMBED, 0)).await;
    let third = send(&stack, batch, &post("/v1/embeddings", EMBED, 0)).await;
    // The two may straddle a minute boundary: then the third is admitted.
    if third.status != 200 {
        assert_eq!(second.status, 200);
        assert_eq!(third.status, 429);
        assert_eq!(
            third.header("x-tollgate-reason").as_deref(),
            Some("rate_limited")
        );
        let retry: u64 = third
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!((1..=60).contains(&retry), "retry-after {retry}");
    }
    assert_no_leak_in(&stack, &[]);
}
