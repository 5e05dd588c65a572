//! The harness runner for [`crate::scenario`]: each scenario, at each
//! [`Temperature`], on a fresh in-process one-worker gateway running the
//! compiled `.wasm`.
//!
//! Invariants:
//! - Cold: the scenario's credential state is set before the gateway
//!   starts, and the request under test is the gateway's first. Warm: the
//!   gateway first serves [`Scenario::warm_up`] (which must be forwarded),
//!   then the credential state is applied, then the request under test.
//! - Counters and the credential service's request count are read just
//!   before and after the request under test, and judged by
//!   [`Scenario::judge`].
//! - Virtual time is advanced until the stream settles (at most ten virtual
//!   seconds), so faults with delays resolve exactly as the filter decides;
//!   every run ends with the usual leak check.
//! - Under a [`Policy::Vault`](crate::scenario::Policy::Vault) scenario the
//!   credential cluster is a real HTTP cluster to the run's OpenBao agent
//!   (passed in, one per table run); its state is reverted after the run,
//!   as the stack is shared.
//! - The request carries what the Envoy runner's HTTP/1.1 client sends: a
//!   non-empty body gets `content-length` unless the scenario sets it or
//!   `transfer-encoding` (a chunked body declares no length).

use std::time::Duration;

use tollgate_harness::openbao::OpenBaoStack;
use tollgate_harness::{Gateway, Outcome, StreamId};

use crate::scenario::{
    vault, CredentialSource, Observed, Req, Scenario, Source, Temperature, SCENARIO_HEADER,
};
use crate::*;

/// Runs one scenario at `t` and judges it. `bao` is the table run's
/// OpenBao, needed by the scenarios whose policy's source it is.
pub fn run_harness(
    sc: &Scenario,
    t: Temperature,
    bao: Option<&OpenBaoStack>,
) -> Result<(), String> {
    let creds = credential_service();
    let src = match (sc.policy.source(), bao) {
        (CredentialSource::Mock, _) => Source::Mock(&creds),
        (CredentialSource::OpenBao, Some(b)) => Source::OpenBao(b),
        (CredentialSource::OpenBao, None) => return Err("no OpenBao stack for this run".into()),
    };
    let build = || match src {
        Source::Mock(creds) => gateway(&sc.policy.config(), 1, creds),
        Source::OpenBao(b) => Gateway::builder(module())
            .allow_on_headers_stop_iteration(true)
            .workers(1)
            .plugin_config(sc.policy.config().to_string())
            .cluster_http(CREDS_CLUSTER, b.gateway_addr())
            .build()
            .unwrap_or_else(|e| panic!("gateway did not start: {e:?}")),
    };
    let mut keys = all_keys();
    keys.extend(vault::vault_keys());
    let secrets = bao
        .map(OpenBaoStack::secrets_for_leak_scan)
        .unwrap_or_default();
    keys.extend(secrets.iter().map(String::as_str));
    let mut streams = vec![];
    let mut gw = match t {
        Temperature::Cold => {
            sc.creds.apply(src);
            build()
        }
        Temperature::Warm => {
            let mut gw = build();
            let warm = sc.warm_up();
            let id = send_req(&mut gw, &warm.req, "warm_up");
            streams.push(id);
            warm.check(&observe(&gw, id))
                .map_err(|e| format!("warm-up failed: {e}"))?;
            sc.creds.apply(src);
            gw
        }
    };
    let before = Counters::snapshot(&gw);
    let fetched_before = src.requests_for(sc.credential());
    let id = send_req(&mut gw, &sc.req, sc.name);
    streams.push(id);
    let seen = observe(&gw, id);
    let fetches = src.requests_for(sc.credential()) - fetched_before;
    sc.creds.revert(src);
    assert_no_leak(&gw, &streams, &keys);
    sc.judge(t, &seen, &before, &Counters::snapshot(&gw), fetches)
}

/// Sends `req` tagged with `tag` and lets it settle.
fn send_req(gw: &mut Gateway, req: &Req, tag: &str) -> StreamId {
    let mut b = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(req.workload)
        .method(req.method)
        .authority(&req.host)
        .path(req.path.as_bytes())
        .header(SCENARIO_HEADER, tag);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let declared = req.headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !req.body.is_empty() && !declared {
        b = b.header("content-length", req.body.len().to_string());
    }
    let id = b.body(req.body.clone()).send();
    gw.settle();
    let mut waited = Duration::ZERO;
    while gw.outcome(id).is_pending() && waited < Duration::from_secs(10) {
        gw.advance(Duration::from_millis(250));
        waited += Duration::from_millis(250);
    }
    id
}

/// What happened to stream `id`.
fn observe(gw: &Gateway, id: StreamId) -> Observed {
    match gw.outcome(id) {
        Outcome::Forwarded(f) => Observed::Forwarded {
            path: f.header_str(":path").unwrap_or_default(),
            headers: f
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(b":"))
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                .collect(),
            body: f.body.clone(),
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
