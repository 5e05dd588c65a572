//! The harness runner for [`crate::scenario`]: each scenario on a fresh
//! in-process gateway running the compiled `.wasm`.
//!
//! Invariants: virtual time is advanced until the stream settles (at most
//! ten virtual seconds), so faults with delays resolve exactly as the filter
//! decides; every run ends with the usual leak check.

use std::time::Duration;

use tollgate_harness::Outcome;

use crate::scenario::{Observed, Scenario, SCENARIO_HEADER};
use crate::*;

/// Runs one scenario and reports what happened.
pub fn run_harness(sc: &Scenario) -> Observed {
    let creds = credential_service();
    sc.creds.apply(&creds);
    let mut gw = gateway(&sc.policy.config(), 1, &creds);
    let mut b = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(sc.req.workload)
        .method(sc.req.method)
        .authority(&sc.req.host)
        .path(sc.req.path.as_bytes())
        .header(SCENARIO_HEADER, sc.name);
    for (k, v) in &sc.req.headers {
        b = b.header(k, v);
    }
    let id = b.body(sc.req.body.clone()).send();
    gw.settle();
    let mut waited = Duration::ZERO;
    while gw.outcome(id).is_pending() && waited < Duration::from_secs(10) {
        gw.advance(Duration::from_millis(250));
        waited += Duration::from_millis(250);
    }
    assert_no_leak(&gw, &[id], &all_keys());
    match gw.outcome(id) {
        Outcome::Forwarded(f) => Observed::Forwarded {
            path: f.header_str(":path").unwrap_or_default(),
            headers: f
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(b":"))
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                .collect(),
        },
        Outcome::LocalReply(r) => Observed::Replied {
            status: r.status,
            reason: r.header_str("x-tollgate-reason"),
            content_types: r
                .header_all("content-type")
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect(),
            body: r.body_json(),
        },
        other => Observed::Failed(format!("{other:?}")),
    }
}
