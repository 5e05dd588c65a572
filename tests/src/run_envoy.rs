//! The Envoy runner for [`crate::scenario`]: the same scenarios through a
//! real Envoy 1.40 with Tollgate behind an mTLS listener.
//!
//! Each scenario's workload presents a certificate for its SPIFFE ID from
//! the stack's CA. A request that reaches the mock LLM is "forwarded" with
//! the headers the mock saw; anything else is Tollgate's local reply.
//!
//! Invariants:
//! - Every scenario runs warm and cold (see [`run_envoy`] for how stacks
//!   are shared), judged by [`Scenario::judge`] with Envoy's counters read
//!   just before and after the request under test.
//! - After every scenario, Envoy's log, its access log and the reply are
//!   scanned for every key in play. The stacks run Envoy at the levels we ship (`info`, no
//!   component at `debug`: `make run` uses the same, and mesh-config ships
//!   `warning` with `wasm:info`), so the scan sees everything an operator's
//!   gateway would log. At `debug`, Envoy's router prints request headers,
//!   the injected key among them (tests/tests/envoy_access_log.rs shows it).
//! - [`Policy::Vault`] scenarios run on stacks whose credential cluster is
//!   the run's one OpenBao agent (started once, only if the table has such
//!   scenarios); their fetches are counted at the OpenBao relay from the
//!   stack's start, and the leak scan includes OpenBao's tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tollgate_harness::envoy::{Stack, StackOptions};
use tollgate_harness::openbao::OpenBaoStack;

use crate::scenario::{
    vault, CredentialSource, Observed, Policy, Scenario, Source, Temperature, SCENARIO_HEADER,
};
use crate::tls_client::{self, ClientIdentity, HttpsRequest};
use crate::*;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory for one test, removed first if it exists.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts a stack with `policy`, using the fixture keys.
pub async fn start_stack(
    dir: &Path,
    policy: &serde_json::Value,
    f: impl FnOnce(&mut StackOptions),
) -> Stack {
    let mut opts = StackOptions::for_test(&repo_root(), dir, policy.to_string());
    if let Some(w) = std::env::var_os("TOLLGATE_WASM") {
        opts.wasm = w.into();
    }
    f(&mut opts);
    Stack::start(opts, credential_service())
        .await
        .unwrap_or_else(|e| panic!("stack did not start: {e:#}"))
}

/// A TLS client config presenting a certificate for `spiffe_id`.
pub fn client_for(stack: &Stack, spiffe_id: &str) -> Arc<rustls::ClientConfig> {
    let pem = stack
        .workload_cert(spiffe_id)
        .unwrap_or_else(|e| panic!("cert: {e:#}"));
    tls_client::client_config(
        stack.pki.ca.cert_pem(),
        &ClientIdentity {
            cert: Some((pem.cert, pem.key)),
        },
    )
    .unwrap_or_else(|e| panic!("client config: {e}"))
}

/// Sends one request and classifies the result: forwarded (seen by the mock
/// LLM under `tag`) or replied.
pub async fn observe(
    stack: &Stack,
    client: Arc<rustls::ClientConfig>,
    req: HttpsRequest,
    tag: &str,
) -> (Observed, Option<tls_client::HttpsResponse>) {
    let resp = match tls_client::send(stack.listen, client, &req).await {
        Ok(r) => r,
        Err(e) => return (Observed::Failed(e.to_string()), None),
    };
    let seen = stack
        .llm
        .requests()
        .into_iter()
        .find(|r| r.header(SCENARIO_HEADER) == Some(tag.as_bytes()));
    let observed = match seen {
        Some(r) => Observed::Forwarded {
            path: r.path.clone(),
            headers: r.headers.clone(),
            body: r.body.clone(),
        },
        None => Observed::Replied {
            status: resp.status,
            reason: resp.header("x-tollgate-reason"),
            content_types: resp.header_all("content-type"),
            body: resp.body_json(),
        },
    };
    (observed, Some(resp))
}

/// Fails if any key appears in Envoy's log, its access log or the response.
pub fn assert_no_leak_envoy(
    stack: &Stack,
    resp: Option<&tls_client::HttpsResponse>,
    keys: &[&str],
) -> Result<(), String> {
    let log = stack.envoy.log() + &stack.access_log();
    let reply = resp
        .map(|r| format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body)))
        .unwrap_or_default();
    for k in keys {
        if log.contains(k) {
            return Err(format!("key {k:?} leaked into Envoy's log or access log"));
        }
        if reply.contains(k) {
            return Err(format!("key {k:?} leaked into the reply"));
        }
    }
    Ok(())
}

/// One scenario's result at one temperature.
#[derive(Debug)]
pub struct Run {
    pub scenario: &'static str,
    pub temperature: Temperature,
    pub result: Result<(), String>,
}

/// Tollgate's counters in this stack's Envoy (summed over workers), named
/// as the filter defines them.
pub fn envoy_counters(stack: &Stack) -> Result<Counters, String> {
    stack
        .envoy
        .stats("tollgate")
        .map(Counters::from_pairs)
        .map_err(|e| format!("cannot read Envoy's stats: {e}"))
}

/// What one request did: its outcome, Tollgate's counters just before and
/// after it, and how often the credential service was asked for the
/// scenario's credential meanwhile.
struct Measured {
    seen: Observed,
    before: Counters,
    after: Counters,
    fetches: usize,
}

/// Sends `sc`'s request tagged `tag`; fails if a key shows up in Envoy's
/// logs or the reply. `want_fetches` is how often the credential service
/// should be asked meanwhile: a fetch that began before a refusal (held
/// mode fetches while the body uploads) may reach the service after the
/// reply reached the client, so the count is awaited up to that number
/// (for at most 5 s) before it is read.
async fn measure(
    stack: &Stack,
    src: Source<'_>,
    sc: &Scenario,
    tag: &str,
    want_fetches: Option<usize>,
) -> Result<Measured, String> {
    let before = envoy_counters(stack)?;
    let fetched_before = src.requests_for(sc.credential());
    let mut headers = sc.req.headers.clone();
    headers.push((SCENARIO_HEADER.into(), tag.as_bytes().to_vec()));
    let req = HttpsRequest {
        method: sc.req.method.into(),
        host: sc.req.host.clone(),
        path: sc.req.path.clone(),
        headers,
        body: sc.req.body.clone(),
    };
    let (seen, resp) = observe(stack, client_for(stack, sc.req.workload), req, tag).await;
    let asked = || src.requests_for(sc.credential()) - fetched_before;
    if let Some(n) = want_fetches.filter(|n| *n > 0) {
        poll_until_async(std::time::Duration::from_secs(5), || asked() >= n).await;
    }
    let fetches = asked();
    let after = envoy_counters(stack)?;
    let mut keys = all_keys();
    keys.extend(vault::vault_keys());
    let secrets = match src {
        Source::OpenBao(b) => b.secrets_for_leak_scan(),
        Source::Mock(_) => vec![],
    };
    keys.extend(secrets.iter().map(String::as_str));
    assert_no_leak_envoy(stack, resp.as_ref(), &keys)?;
    Ok(Measured {
        seen,
        before,
        after,
        fetches,
    })
}

/// Runs `sc` at `t` on `stack` (already in the state `t` needs) and judges it.
async fn run_one(
    stack: &Stack,
    src: Source<'_>,
    sc: &Scenario,
    t: Temperature,
    tag: &str,
) -> Result<(), String> {
    let m = measure(stack, src, sc, tag, sc.expected_fetches(t)).await?;
    sc.judge(t, &m.seen, &m.before, &m.after, m.fetches)
}

/// Warm: `sc.warm_up()` (must be forwarded), then `sc`'s credential state,
/// the request under test, and the state reverted.
async fn run_warm(stack: &Stack, src: Source<'_>, sc: &Scenario, i: usize) -> Result<(), String> {
    let warm = sc.warm_up();
    let m = measure(stack, src, &warm, &format!("warm-up-{}-{i}", sc.name), None)
        .await
        .map_err(|e| format!("warm-up failed: {e}"))?;
    warm.check(&m.seen)
        .map_err(|e| format!("warm-up failed: {e}"))?;
    sc.creds.apply(src);
    let r = run_one(
        stack,
        src,
        sc,
        Temperature::Warm,
        &format!("{}-warm-{i}", sc.name),
    )
    .await;
    sc.creds.revert(src);
    r
}

/// A stack for `policy`: its credential cluster at `bao`'s agent when the
/// policy's source is OpenBao (the mock LLM then accepts OpenBao's keys).
async fn policy_stack(dir: &Path, policy: Policy, bao: Option<&OpenBaoStack>) -> Stack {
    let addr = bao
        .filter(|_| policy.source() == CredentialSource::OpenBao)
        .map(OpenBaoStack::gateway_addr);
    let stack = start_stack(dir, &policy.config(), |o| o.credentials_addr = addr).await;
    if addr.is_some() {
        for k in vault::vault_keys() {
            stack.llm.accept_key(k);
        }
    }
    stack
}

/// Where `stack`'s credentials come from under `policy`.
fn source<'a>(stack: &'a Stack, policy: Policy, bao: Option<&'a OpenBaoStack>) -> Source<'a> {
    match (policy.source(), bao) {
        (CredentialSource::OpenBao, Some(b)) => Source::OpenBao(b),
        _ => Source::Mock(&stack.creds),
    }
}

/// Runs every scenario through Envoy, warm and cold.
///
/// Warm: one stack per policy serves every scenario of that policy, each
/// after its warm-up. The whole warm pass takes a few seconds, far less
/// than `refresh_ahead` (30 s) after the first fetch, so no refresh runs
/// while a fault is applied; if one did, the scenario would fail (the
/// service asked while warm) rather than pass silently.
///
/// Cold: a stack is reused while the credential service has never been
/// asked for the next scenario's credential on it (which proves nothing of
/// it is cached); otherwise the scenario waits for the next fresh stack.
/// Scenarios refused before the credential step go first, so each stack
/// serves them all and then one fetching scenario per credential (a
/// forwarded one, or one whose body is refused: held mode fetches while
/// the body uploads). One stack runs at a time, so the cold pass costs one
/// Envoy start per fetching scenario of the busiest credential.
pub async fn run_envoy(scenarios: &[Scenario]) -> Vec<Run> {
    let mut out = Vec::new();
    let bao = if scenarios
        .iter()
        .any(|s| s.policy.source() == CredentialSource::OpenBao)
    {
        Some(vault::start_openbao(&repo_root(), &scratch_dir("openbao")).await)
    } else {
        None
    };
    let bao = bao.as_ref();
    let mut policies: Vec<Policy> = vec![];
    for sc in scenarios {
        if !policies.contains(&sc.policy) {
            policies.push(sc.policy);
        }
    }
    for policy in policies {
        let of_policy: Vec<(usize, &Scenario)> = scenarios
            .iter()
            .enumerate()
            .filter(|(_, s)| s.policy == policy)
            .collect();
        // Warm.
        let stack = policy_stack(&scratch_dir(&format!("{policy:?}-warm")), policy, bao).await;
        let src = source(&stack, policy, bao);
        for (i, sc) in &of_policy {
            let result = run_warm(&stack, src, sc, *i).await;
            out.push(Run {
                scenario: sc.name,
                temperature: Temperature::Warm,
                result,
            });
        }
        drop(stack);
        // Cold.
        let mut pending = of_policy.clone();
        pending.sort_by_key(|(_, s)| !s.expect_fetches_nothing());
        let mut round = 0;
        while !pending.is_empty() {
            let stack = policy_stack(
                &scratch_dir(&format!("{policy:?}-cold-{round}")),
                policy,
                bao,
            )
            .await;
            let src = source(&stack, policy, bao);
            // This stack's fetches: counted from its start (an OpenBao
            // serves every stack of the run).
            let at_start: Vec<(&str, usize)> = pending
                .iter()
                .map(|(_, s)| (s.credential(), src.requests_for(s.credential())))
                .collect();
            let fetched_here = |cred: &str| {
                let base = at_start
                    .iter()
                    .find(|(c, _)| *c == cred)
                    .map_or(0, |(_, n)| *n);
                src.requests_for(cred) - base
            };
            let mut left = vec![];
            for (i, sc) in pending {
                if fetched_here(sc.credential()) > 0 {
                    left.push((i, sc));
                    continue;
                }
                sc.creds.apply(src);
                let result = run_one(
                    &stack,
                    src,
                    sc,
                    Temperature::Cold,
                    &format!("{}-cold-{i}", sc.name),
                )
                .await;
                sc.creds.revert(src);
                out.push(Run {
                    scenario: sc.name,
                    temperature: Temperature::Cold,
                    result,
                });
            }
            pending = left;
            round += 1;
        }
    }
    out
}

/// Sends one JSON POST as `workload` (a fresh connection); `extra` headers
/// are added as given.
pub async fn post_as(
    stack: &Stack,
    workload: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<tls_client::HttpsResponse, tls_client::HttpsError> {
    let req = HttpsRequest {
        method: "POST".into(),
        host: host.into(),
        path: path.into(),
        headers: std::iter::once(("content-type".to_string(), b"application/json".to_vec()))
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
            )
            .collect(),
        body: br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
    };
    tls_client::send(stack.listen, client_for(stack, workload), &req).await
}

/// Panics if any key appears in Envoy's log or the given responses.
pub fn assert_no_leak_in(stack: &Stack, responses: &[&tls_client::HttpsResponse]) {
    assert_no_leak_envoy(stack, None, &all_keys()).unwrap_or_else(|e| panic!("{e}"));
    for r in responses {
        assert_no_leak_envoy(stack, Some(r), &all_keys()).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The access log's lines, each parsed as JSON, once at least `n` are
/// there (Envoy flushes the file every 250 ms in the stacks). Panics if a line is
/// not JSON, or after 20 s.
pub fn access_log_lines(stack: &Stack, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = stack.access_log();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("access-log line is not JSON ({e}): {l}"))
            })
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} access-log lines after 20s:\n{text}",
            lines.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The access-log line whose `request_id` is `id` (see [`access_log_lines`]).
pub fn access_log_line(stack: &Stack, id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(l) = access_log_lines(stack, 0)
            .into_iter()
            .find(|l| l["request_id"] == id)
        {
            return l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for request {id} after 20s:\n{}",
            stack.access_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
