//! What start-up costs us: VM instantiation (with `_initialize` and the root
//! context) plus `on_configure`, for a one-rule policy and a 10,000-rule
//! policy, in the harness with the real tollgate.wasm (the module is
//! compiled once, outside the measurement, as Envoy caches it). Target: at
//! most 20 ms for 10,000 rules. Also prints each VM's linear memory after
//! configuration (target: at most 4 MB).

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_harness::Gateway;
use tollgate_tests::*;

fn bench(c: &mut Criterion) {
    let module = module();
    let creds = credential_service();
    let mut g = c.benchmark_group("startup");
    g.sample_size(20);
    for (name, rules) in [
        ("vm_start_and_configure_1_rule", 0),
        ("vm_start_and_configure_10000_rules", 10_000),
    ] {
        let text = config_with_rules(rules).to_string();
        let gw = Gateway::builder(module.clone())
            .plugin_config(text.clone())
            .cluster_handler(CREDS_CLUSTER, creds.handler())
            .build()
            .unwrap_or_else(|e| panic!("{e:?}"));
        eprintln!(
            "{name}: policy {} bytes, linear memory after configure {} bytes",
            text.len(),
            gw.memory_bytes(0).unwrap_or(0)
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                Gateway::builder(module.clone())
                    .plugin_config(text.clone())
                    .build()
                    .unwrap_or_else(|e| panic!("{e:?}"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
