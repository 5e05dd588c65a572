//! The shared scenario table (`tollgate_tests::scenario`), run by both
//! runners, the harness and a real Envoy, each scenario cold and warm. A
//! scenario that passes in one runner and fails in the other is a
//! difference between the harness and Envoy; one that passes cold and
//! fails warm (or the reverse) is a cache bug.

use tollgate_tests::run_envoy::{repo_root, run_envoy, scratch_dir, Run};
use tollgate_tests::run_harness::run_harness;
use tollgate_tests::scenario::vault::start_openbao;
use tollgate_tests::scenario::{scenarios, Area, CredentialSource, Expect, Policy, Temperature};

/// Fails listing every (scenario, temperature) that failed in `runner`.
fn report(runner: &str, runs: &[Run]) {
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|e| format!("  {} ({}): {e}", r.scenario, r.temperature))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed in the {runner}:\n{}",
        failures.len(),
        runs.len(),
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
        Area::RequestBody,
        Area::VaultKv2,
    ] {
        assert!(
            all.iter().any(|s| s.area == area),
            "no scenario for {area:?}"
        );
    }
    // Every refusal of the request-body policy, enforced; dry_run shadows
    // exactly the policy verdicts among them and enforces the others.
    let refuses = |policy: Policy, reason: &str| {
        all.iter().any(|s| {
            s.policy == policy
                && matches!(s.expect, Expect::Denied { reason: r, .. } if r == reason)
        })
    };
    let shadows = |reason: &str| {
        all.iter()
            .any(|s| s.policy == Policy::BodiesDryRun && s.shadow == Some(reason))
    };
    for reason in [
        "model_not_permitted",
        "model_missing",
        "max_tokens_exceeded",
    ] {
        assert!(
            refuses(Policy::Bodies, reason),
            "no scenario refuses with {reason}"
        );
        assert!(shadows(reason), "no dry_run scenario shadows {reason}");
    }
    for reason in ["body_too_large", "body_unsupported", "body_invalid"] {
        assert!(
            refuses(Policy::Bodies, reason),
            "no scenario refuses with {reason}"
        );
        assert!(
            refuses(Policy::BodiesDryRun, reason),
            "no dry_run scenario still refuses with {reason}"
        );
    }
    // A rewrite is checked byte for byte.
    assert!(
        all.iter().any(
            |s| matches!(&s.expect, Expect::Forwarded { body: Some(b), .. } if *b != s.req.body)
        ),
        "no scenario checks a rewritten body"
    );
    let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "scenario names are unique");
}

#[test]
fn scenarios_in_the_harness() {
    let all = scenarios();
    // One OpenBao for the run's `vault_kv2` scenarios; its relay runs on
    // this runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let bao = all
        .iter()
        .any(|s| s.policy.source() == CredentialSource::OpenBao)
        .then(|| rt.block_on(start_openbao(&repo_root(), &scratch_dir("openbao-harness"))));
    let mut runs = vec![];
    for sc in &all {
        for t in Temperature::BOTH {
            runs.push(Run {
                scenario: sc.name,
                temperature: t,
                result: run_harness(sc, t, bao.as_ref()),
            });
        }
    }
    drop(bao);
    drop(rt);
    report("harness", &runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_in_envoy() {
    let all = scenarios();
    let runs = run_envoy(&all).await;
    assert_eq!(runs.len(), 2 * all.len(), "every scenario, cold and warm");
    report("Envoy", &runs);
}
