//! Identity at the TLS layer, in a real Envoy: what the listener refuses
//! before Tollgate runs, and what Tollgate refuses after it.
//!
//! | case                                | refused by | how                            |
//! |-------------------------------------|-----------|---------------------------------|
//! | no client certificate               | listener  | TLS handshake fails             |
//! | certificate from another CA         | listener  | TLS handshake fails             |
//! | SPIFFE ID in an untrusted domain    | Tollgate  | 403 `trust_domain_untrusted`    |
//! | spoofed `x-forwarded-client-cert`   | Tollgate  | 403 for the real (certificate) identity; the header never reaches upstream |

use tollgate_harness::envoy::DevCa;
use tollgate_tests::run_envoy::*;
use tollgate_tests::tls_client::{self, ClientIdentity};
use tollgate_tests::*;

const CHAT: &str = "/v1/chat/completions";

fn counters(stack: &tollgate_harness::envoy::Stack) -> Counters {
    envoy_counters(stack).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts the decision counters moved from `before` to `after` by exactly
/// `expected`.
#[track_caller]
fn decided(before: &Counters, after: &Counters, expected: &[(&str, i64)]) {
    if let Err(e) = before.check_decisions(after, expected) {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_layer_identity_cases() {
    let stack = start_stack(&scratch_dir("identity"), &config(), |_| {}).await;
    let ca = stack.pki.ca.cert_pem().to_string();
    let start = counters(&stack);

    // 1. No client certificate: the listener refuses the handshake.
    let none = tls_client::client_config(&ca, &ClientIdentity { cert: None }).unwrap();
    let req = tls_client::HttpsRequest {
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: CHAT.into(),
        headers: vec![],
        body: b"{}".to_vec(),
    };
    let err = tls_client::send(stack.listen, none, &req)
        .await
        .expect_err("a connection without a client certificate must be refused");
    assert!(
        err.is_refused_before_http(),
        "refused at the TLS layer, got {err}"
    );

    // 2. A certificate for an allowed SPIFFE ID, but from another CA.
    let rogue = DevCa::generate("rogue CA").unwrap();
    let pem = rogue.issue_workload(SUPPORT_BOT).unwrap();
    let cfg = tls_client::client_config(
        &ca,
        &ClientIdentity {
            cert: Some((pem.cert, pem.key)),
        },
    )
    .unwrap();
    let err = tls_client::send(stack.listen, cfg, &req)
        .await
        .expect_err("a certificate from another CA must be refused");
    assert!(
        err.is_refused_before_http(),
        "refused at the TLS layer, got {err}"
    );

    // Neither reached the filter: no decision was counted.
    decided(&start, &counters(&stack), &[]);
    // Envoy's listener counted both refusals, by cause.
    let ssl = stack.envoy.stats("^listener\\..*ssl\\.").unwrap();
    let count = |suffix: &str| -> u64 {
        ssl.iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        count("ssl.fail_verify_no_cert"),
        1,
        "no certificate: {ssl:?}"
    );
    assert_eq!(count("ssl.fail_verify_error"), 1, "another CA: {ssl:?}");
    assert_eq!(
        count("ssl.handshake"),
        0,
        "no refused connection completed a handshake: {ssl:?}"
    );

    // 3. Our CA, but a trust domain the policy does not trust: the filter refuses.
    let before = counters(&stack);
    let r = post_as(
        &stack,
        "spiffe://evil.example/ns/support/sa/chatbot",
        "api.openai.com",
        CHAT,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("x-tollgate-reason").as_deref(),
        Some("trust_domain_untrusted")
    );
    decided(
        &before,
        &counters(&stack),
        &[("tollgate.decision.deny.trust_domain_untrusted", 1)],
    );

    // 4. A spoofed XFCC header naming an allowed workload, from a stranger.
    let xfcc = format!("By=spiffe://cluster.local/ns/egress;URI={SUPPORT_BOT}");
    let before = counters(&stack);
    let r2 = post_as(
        &stack,
        STRANGER,
        "api.openai.com",
        CHAT,
        &[("x-forwarded-client-cert", &xfcc)],
    )
    .await
    .unwrap();
    assert_eq!(r2.status, 403);
    assert_eq!(
        r2.header("x-tollgate-reason").as_deref(),
        Some("workload_not_permitted")
    );
    decided(
        &before,
        &counters(&stack),
        &[("tollgate.decision.deny.workload_not_permitted", 1)],
    );
    // And from an allowed workload, the spoofed header does not reach upstream.
    let before = counters(&stack);
    let r3 = post_as(
        &stack,
        SUPPORT_BOT,
        "api.openai.com",
        CHAT,
        &[("x-forwarded-client-cert", &xfcc)],
    )
    .await
    .unwrap();
    assert_eq!(r3.status, 200, "{}", String::from_utf8_lossy(&r3.body));
    decided(
        &before,
        &counters(&stack),
        &[("tollgate.decision.allow", 1)],
    );
    let seen = stack.llm.last_request().expect("forwarded");
    assert_eq!(
        seen.header("x-forwarded-client-cert"),
        None,
        "Envoy sanitised the spoofed header"
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_bytes())
    );

    assert_no_leak_in(&stack, &[&r, &r2, &r3]);
}
