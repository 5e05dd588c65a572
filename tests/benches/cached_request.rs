//! Guest cost per request on the cached path, measured in the harness: the
//! full stream lifecycle (context create, request headers with stripping,
//! identity, policy, cache read and injection, audit line, response, done,
//! log, delete) of the real tollgate.wasm. Target: under 10 µs per cached
//! request.

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_tests::*;

fn bench(c: &mut Criterion) {
    let creds = credential_service();
    let mut gw = gateway(&config(), 1, &creds);
    let warm = send(
        &mut gw,
        SUPPORT_BOT,
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
    );
    gw.settle();
    gw.outcome(warm).expect_forwarded();
    gw.respond(warm, 200, &[], b"");

    let mut g = c.benchmark_group("harness_request");
    g.bench_function("cached_allow", |b| {
        b.iter(|| {
            let id = gw
                .request(0)
                .mtls(true)
                .peer_uri_san(SUPPORT_BOT)
                .method("POST")
                .authority("api.openai.com")
                .path("/v1/chat/completions")
                .header("authorization", "Bearer placeholder")
                .header("content-type", "application/json")
                .send();
            gw.respond(id, 200, &[], b"");
        })
    });
    g.bench_function("deny_unknown_workload", |b| {
        b.iter(|| {
            let id = gw
                .request(0)
                .mtls(true)
                .peer_uri_san(STRANGER)
                .method("POST")
                .authority("api.openai.com")
                .path("/v1/chat/completions")
                .send();
            gw.cancel(id);
        })
    });
    g.finish();
    assert_eq!(creds.requests(), 1, "the cached path never fetched");
    assert_eq!(gw.trap(), None);
}

criterion_group!(benches, bench);
criterion_main!(benches);
