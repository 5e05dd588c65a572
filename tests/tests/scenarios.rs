//! The shared scenario table (`tollgate_tests::scenario`), run by both
//! runners: the harness and a real Envoy. A scenario that passes in one and
//! fails in the other is a difference between the harness and Envoy.

use tollgate_tests::run_envoy::run_envoy;
use tollgate_tests::run_harness::run_harness;
use tollgate_tests::scenario::{scenarios, Area};

fn report(runner: &str, results: Vec<(&str, Result<(), String>)>) {
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("  {n}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed in the {runner}:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_area() {
    let all = scenarios();
    for area in [
        Area::Identity,
        Area::Upstream,
        Area::Stripping,
        Area::AccessPolicy,
        Area::DryRun,
        Area::CredentialFault,
    ] {
        assert!(
            all.iter().any(|s| s.area == area),
            "no scenario for {area:?}"
        );
    }
    let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "scenario names are unique");
}

#[test]
fn scenarios_in_the_harness() {
    let all = scenarios();
    let results = all
        .iter()
        .map(|sc| (sc.name, sc.check(&run_harness(sc))))
        .collect();
    report("harness", results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_in_envoy() {
    let all = scenarios();
    let observed = run_envoy(&all).await;
    let results = all
        .iter()
        .zip(observed)
        .map(|(sc, (obs, extra))| (sc.name, sc.check(&obs).and(extra)))
        .collect();
    report("Envoy", results);
}
