//! Single flight across workers: a cold burst makes exactly one fetch, and
//! requests on other workers wait for it instead of starting their own.

use std::time::Duration;

use tollgate_harness::mock::Fault;
use tollgate_harness::Outcome;
use tollgate_tests::*;

#[test]
fn two_hundred_concurrent_requests_on_two_workers_make_exactly_one_fetch() {
    let creds = credential_service();
    creds.set_fault(Fault::Delay(Duration::from_millis(50)));
    let mut gw = gateway(&config(), 2, &creds);
    let mut ids = vec![];
    for i in 0..200 {
        let id = send_on(
            &mut gw,
            i % 2,
            SUPPORT_BOT,
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
        );
        ids.push(id);
    }
    gw.settle();
    assert!(
        ids.iter()
            .all(|id| matches!(gw.outcome(*id), Outcome::Pending)),
        "all wait for the one fetch"
    );
    assert_eq!(creds.requests(), 1);
    // The fetch lands on one worker; the other notices within a tick.
    gw.advance(Duration::from_millis(50 + 40));
    for id in &ids {
        let f = gw.outcome(*id);
        assert_eq!(
            f.expect_forwarded().header_str("authorization"),
            Some(format!("Bearer {OPENAI_KEY}"))
        );
    }
    assert_eq!(creds.requests(), 1, "exactly one fetch for 200 requests");
    assert_eq!(gw.metric("tollgate.fetch.ok"), Some(1));
    assert_eq!(gw.metric("tollgate.decision.allow"), Some(200));
    end_open_streams(&mut gw);
    assert_eq!(audit_lines(&gw).len(), 200);
    assert_no_leak(&gw, &ids, &all_keys());
}

#[test]
fn waiters_on_another_worker_get_the_failure_of_the_fetch_they_waited_for() {
    let creds = credential_service();
    creds.set_fault(Fault::Status(500));
    let mut gw = gateway(&config(), 2, &creds);
    let counters = Counters::snapshot(&gw);
    let a = send_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    let b = send_on(
        &mut gw,
        1,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.advance(Duration::from_millis(40));
    assert_denied_reply(&gw, a, 503, "credential_unavailable");
    assert_denied_reply(&gw, b, 503, "credential_unavailable");
    // One failed fetch, two refusals (one per waiter), nothing else.
    counters.assert_decisions(&gw, &[("tollgate.decision.deny.credential_unavailable", 2)]);
    assert_eq!(creds.requests(), 1, "the waiter did not retry on its own");
}

#[test]
fn a_reset_holder_cancels_nothing_its_waiters_need() {
    let creds = credential_service();
    creds.set_fault(Fault::Delay(Duration::from_secs(1)));
    let mut gw = gateway(&config(), 1, &creds);
    let holder = send_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    let waiter = send_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    // The stream whose miss started the fetch is reset. The fetch belongs to
    // the worker (dispatched from the root context), so nothing is cancelled.
    gw.cancel(holder);
    gw.advance(Duration::from_millis(1_000));
    let f = gw.outcome(waiter);
    assert_eq!(
        f.expect_forwarded().header_str("authorization"),
        Some(format!("Bearer {OPENAI_KEY}")),
        "the waiter is answered when the fetch lands, not after a lease expiry"
    );
    assert_eq!(creds.requests(), 1);
    assert_eq!(gw.metric("tollgate.decision.abandoned"), Some(1));
    // Refresh-ahead (30s before the 60s expiry) still runs on this worker.
    creds.set_fault(Fault::None);
    creds.rotate(
        "openai",
        "sk-proj-rotated-after-reset-0000000000000000",
        "openai-key-2",
    );
    gw.advance(Duration::from_secs(31));
    assert_eq!(creds.requests(), 2, "refresh-ahead fetched again");
    let next = send_on(
        &mut gw,
        0,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    assert_eq!(
        gw.outcome(next)
            .expect_forwarded()
            .header_str("authorization"),
        Some("Bearer sk-proj-rotated-after-reset-0000000000000000".to_string())
    );
    assert_no_leak(&gw, &[holder, waiter, next], &all_keys());
}
