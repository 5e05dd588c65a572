//! Policy evaluation cost with 10 and with 10,000 rules.
//!
//! Target: 10,000 rules cost within 2x of 10 (workload lookup is indexed, so
//! the rule count should not matter). Each case evaluates an exact-ID hit, a
//! prefix-pattern hit and a miss.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use tollgate::config::parse;
use tollgate::provider::ProviderId;
use tollgate::request_path::RequestTarget;
use tollgate::spiffe::SpiffeId;

fn config(rules: usize) -> tollgate::config::Config {
    let mut list = vec![json!({
        "name": "support",
        "workloads": ["spiffe://cluster.local/ns/support/*"],
        "providers": ["openai"],
        "endpoints": ["POST /v1/chat/completions", "POST /v1/responses"]
    })];
    for i in 1..rules {
        list.push(json!({
            "name": format!("tenant-{i}"),
            "workloads": [format!("spiffe://cluster.local/ns/tenant{i}/sa/app")],
            "providers": ["openai"],
            "endpoints": ["POST /v1/chat/completions", "POST /v1/embeddings"]
        }));
    }
    let doc = json!({
        "trust_domains": ["cluster.local"],
        "credential_service": {"cluster": "c", "authority": "a", "protocol": "tollgate_v1"},
        "providers": [{"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}}],
        "rules": list
    });
    parse(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_evaluate");
    let target = RequestTarget::parse(b"/v1/chat/completions").unwrap();
    for rules in [10usize, 10_000] {
        let cfg = config(rules);
        let exact = SpiffeId::parse(
            format!("spiffe://cluster.local/ns/tenant{}/sa/app", rules - 1).as_bytes(),
        )
        .unwrap();
        let prefix = SpiffeId::parse(b"spiffe://cluster.local/ns/support/sa/chatbot").unwrap();
        let miss = SpiffeId::parse(b"spiffe://cluster.local/ns/nobody/sa/x").unwrap();
        let mut scratch = Vec::new();
        g.bench_with_input(BenchmarkId::new("exact_hit", rules), &rules, |b, _| {
            b.iter(|| {
                cfg.policy.evaluate(
                    black_box(&exact),
                    ProviderId(0),
                    b"POST",
                    &target,
                    &mut scratch,
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("prefix_hit", rules), &rules, |b, _| {
            b.iter(|| {
                cfg.policy.evaluate(
                    black_box(&prefix),
                    ProviderId(0),
                    b"POST",
                    &target,
                    &mut scratch,
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("miss", rules), &rules, |b, _| {
            b.iter(|| {
                cfg.policy.evaluate(
                    black_box(&miss),
                    ProviderId(0),
                    b"POST",
                    &target,
                    &mut scratch,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
