//! A real OpenBao server and agent for the gateway's `vault_kv2` protocol.
//!
//! Job: start, on free loopback ports,
//! - `bao server -dev` (in memory, KV v2 at `secret/`), with a root token
//!   only this stack knows;
//! - an ACL policy `tollgate` allowing `read` on the given KV paths only;
//! - the AppRole auth method with a role `tollgate` holding that policy, its
//!   role_id and secret_id written to files;
//! - `bao agent` with `auto_auth` on that role (token in a file sink),
//!   `api_proxy { use_auto_auth_token = true }` and a plain TCP listener;
//! - a [`Recorder`] in front of the agent: point the gateway's credential
//!   cluster at [`OpenBaoStack::gateway_addr`];
//!
//! and give tests the levers they need: write, delete and destroy KV
//! versions, revoke the agent's token, stop the agent.
//!
//! Invariants:
//! - The gateway side never needs a token: only the agent holds one.
//! - Every process is killed when the stack is dropped (also when a test
//!   panics); the scratch directory is removed unless the thread panics, so
//!   a failed test keeps the server's and agent's logs.
//! - Talking to the server is plain blocking HTTP/1.0 over loopback: short
//!   calls, no connection reuse.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use super::process::BaoProcess;
use super::recorder::Recorder;
use crate::envoy::free_port;

/// The KV v2 mount `bao server -dev` creates.
pub const KV_MOUNT: &str = "secret";
/// The ACL policy and AppRole role names.
const POLICY: &str = "tollgate";
const ROLE: &str = "tollgate";

/// How long the server and the agent may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start an [`OpenBaoStack`].
#[derive(Clone, Debug)]
pub struct OpenBaoOptions {
    /// Finds the venv's `bao` (see [`super::bao_binary`]).
    pub repo_root: PathBuf,
    /// Scratch directory: configs, role files, the token sink, logs.
    pub work_dir: PathBuf,
    /// KV paths (under [`KV_MOUNT`], without `data/`) the policy lets the
    /// agent's token read, as OpenBao policy paths: `tollgate/*`.
    pub readable: Vec<String>,
    /// The secret's field holding the key (the policy's `vault.field`).
    pub field: String,
    /// The AppRole tokens' TTL (`token_ttl`): the agent renews at about two
    /// thirds of it and re-authenticates when a renewal fails.
    pub token_ttl: String,
}

impl OpenBaoOptions {
    /// Reads under `tollgate/*`, field `value`, one-hour tokens.
    pub fn for_test(repo_root: &Path, work_dir: &Path) -> Self {
        Self {
            repo_root: repo_root.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            readable: vec!["tollgate/*".into()],
            field: "value".into(),
            token_ttl: "1h".into(),
        }
    }
}

/// A running OpenBao server and agent.
pub struct OpenBaoStack {
    server: BaoProcess,
    agent: BaoProcess,
    recorder: Recorder,
    server_addr: SocketAddr,
    agent_addr: SocketAddr,
    root_token: String,
    secret_id: String,
    field: String,
    /// The policy's readable paths (see [`OpenBaoOptions::readable`]).
    readable: Vec<String>,
    work_dir: PathBuf,
    sink: PathBuf,
    /// Every token the agent's sink has held, as observed.
    seen_tokens: Mutex<Vec<String>>,
}

impl std::fmt::Debug for OpenBaoStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoStack")
            .field("server", &self.server_addr)
            .field("agent", &self.agent_addr)
            .field("gateway_addr", &self.recorder.addr())
            .finish_non_exhaustive()
    }
}

impl OpenBaoStack {
    /// Starts and configures everything; returns once the agent answers
    /// with its auto-auth token. Must be called inside a tokio runtime (the
    /// recorder runs on it).
    pub async fn start(opts: OpenBaoOptions) -> anyhow::Result<Self> {
        let bao = super::bao_binary(&opts.repo_root)?;
        fs::create_dir_all(&opts.work_dir)
            .with_context(|| format!("creating {}", opts.work_dir.display()))?;
        let loopback = Ipv4Addr::LOCALHOST.into();
        let server_addr = free_port(loopback)?;
        let root_token = fresh_token();
        let server = BaoProcess::spawn(
            &bao,
            &[
                "server".into(),
                "-dev".into(),
                format!("-dev-root-token-id={root_token}"),
                format!("-dev-listen-address={server_addr}"),
                "-dev-no-store-token".into(),
            ],
            &opts.work_dir.join("server.log"),
        )?;
        let mut server = server;
        wait_for(&mut server, "server", || {
            Ok(call(server_addr, "GET", "/v1/sys/health", None, None)?.0 == 200)
        })?;

        let root = Some(root_token.as_str());
        let policy = acl_policy(&opts.readable, &[]);
        expect_ok(
            call(
                server_addr,
                "PUT",
                &format!("/v1/sys/policies/acl/{POLICY}"),
                root,
                Some(json!({ "policy": policy })),
            )?,
            "writing the policy",
        )?;
        expect_ok(
            call(
                server_addr,
                "POST",
                "/v1/sys/auth/approle",
                root,
                Some(json!({"type": "approle"})),
            )?,
            "enabling approle",
        )?;
        expect_ok(
            call(
                server_addr,
                "POST",
                &format!("/v1/auth/approle/role/{ROLE}"),
                root,
                Some(json!({
                    "token_policies": [POLICY],
                    "token_ttl": opts.token_ttl,
                    "token_max_ttl": "24h",
                })),
            )?,
            "creating the role",
        )?;
        let role_id = expect_ok(
            call(
                server_addr,
                "GET",
                &format!("/v1/auth/approle/role/{ROLE}/role-id"),
                root,
                None,
            )?,
            "reading the role id",
        )?
        .pointer("/data/role_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no data.role_id"))?;
        let secret_id = expect_ok(
            call(
                server_addr,
                "POST",
                &format!("/v1/auth/approle/role/{ROLE}/secret-id"),
                root,
                None,
            )?,
            "creating a secret id",
        )?
        .pointer("/data/secret_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no data.secret_id"))?;
        let role_id_file = opts.work_dir.join("role_id");
        let secret_id_file = opts.work_dir.join("secret_id");
        fs::write(&role_id_file, &role_id).context("writing role_id")?;
        fs::write(&secret_id_file, &secret_id).context("writing secret_id")?;

        let agent_addr = free_port(loopback)?;
        let sink = opts.work_dir.join("agent-token");
        let agent_hcl = opts.work_dir.join("agent.hcl");
        fs::write(
            &agent_hcl,
            agent_config(
                server_addr,
                agent_addr,
                &role_id_file,
                &secret_id_file,
                &sink,
            ),
        )
        .context("writing agent.hcl")?;
        let mut agent = BaoProcess::spawn(
            &bao,
            &["agent".into(), format!("-config={}", agent_hcl.display())],
            &opts.work_dir.join("agent.log"),
        )?;
        // Ready once the agent proxies a call with its own token: the sink
        // is written and the server accepts the token it adds.
        wait_for(&mut agent, "agent", || {
            Ok(sink.exists()
                && call(agent_addr, "GET", "/v1/auth/token/lookup-self", None, None)?.0 == 200)
        })?;
        let recorder = Recorder::start(agent_addr).await?;
        let stack = Self {
            server,
            agent,
            recorder,
            server_addr,
            agent_addr,
            root_token,
            secret_id,
            field: opts.field,
            readable: opts.readable.clone(),
            work_dir: opts.work_dir,
            sink,
            seen_tokens: Mutex::new(vec![]),
        };
        stack.agent_token()?;
        Ok(stack)
    }

    /// For a person at a shell (`make run CREDENTIALS=openbao`): writes
    /// the dev server's root token to `root-token` in the work directory
    /// (owner-only) and returns the server's address and that file. The
    /// token never goes to stdout.
    pub fn cli_access(&self) -> anyhow::Result<(SocketAddr, PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file = self.work_dir.join("root-token");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("creating {}", file.display()))?;
        f.write_all(self.root_token.as_bytes())
            .context("writing the root token")?;
        Ok((self.server_addr, file))
    }

    /// Where the gateway's credential cluster should point: the recording
    /// relay in front of the agent.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.recorder.addr()
    }

    /// The agent's listener (plain HTTP, no token needed).
    pub fn agent_addr(&self) -> SocketAddr {
        self.agent_addr
    }

    /// The server's listener (needs a token).
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// What the gateway sent to the agent.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The scratch directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The agent's output so far.
    pub fn agent_log(&self) -> String {
        self.agent.log()
    }

    /// The server's output so far.
    pub fn server_log(&self) -> String {
        self.server.log()
    }

    /// Writes `value` under the configured field as a new version of
    /// `path` (like `bao kv put`); returns the version.
    /// The current value at `path` (`None` when deleted or absent), read
    /// with the root token straight from the server.
    pub fn read(&self, path: &str) -> anyhow::Result<Option<String>> {
        let (status, body) = self.root_call("GET", &format!("/v1/{KV_MOUNT}/data/{path}"), None)?;
        if status == 404 {
            return Ok(None);
        }
        let answer = expect_ok((status, body), "reading a KV secret")?;
        Ok(answer
            .pointer(&format!("/data/data/{}", self.field))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    pub fn put(&self, path: &str, value: &str) -> anyhow::Result<u64> {
        let mut data = serde_json::Map::new();
        data.insert(self.field.clone(), Value::from(value));
        let answer = expect_ok(
            self.root_call(
                "POST",
                &format!("/v1/{KV_MOUNT}/data/{path}"),
                Some(json!({ "data": data })),
            )?,
            "writing a KV version",
        )?;
        answer
            .pointer("/data/version")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("no data.version in the KV write answer"))
    }

    /// Soft-deletes the latest version of `path` (like `bao kv delete`).
    pub fn delete_latest(&self, path: &str) -> anyhow::Result<()> {
        expect_ok(
            self.root_call("DELETE", &format!("/v1/{KV_MOUNT}/data/{path}"), None)?,
            "deleting the latest version",
        )
        .map(drop)
    }

    /// Destroys `versions` of `path` for good (like `bao kv destroy`).
    pub fn destroy(&self, path: &str, versions: &[u64]) -> anyhow::Result<()> {
        expect_ok(
            self.root_call(
                "PUT",
                &format!("/v1/{KV_MOUNT}/destroy/{path}"),
                Some(json!({ "versions": versions })),
            )?,
            "destroying versions",
        )
        .map(drop)
    }

    /// Deletes every version of `path` and its metadata (like `bao kv
    /// metadata delete`): afterwards the secret does not exist.
    pub fn delete_all(&self, path: &str) -> anyhow::Result<()> {
        expect_ok(
            self.root_call("DELETE", &format!("/v1/{KV_MOUNT}/metadata/{path}"), None)?,
            "deleting a secret's metadata",
        )
        .map(drop)
    }

    /// Rewrites the agent's ACL policy: the readable paths it started with,
    /// except `refused` (KV paths, explicitly denied). Takes effect for the
    /// agent's current token at once; `&[]` restores the policy.
    pub fn set_refused(&self, refused: &[&str]) -> anyhow::Result<()> {
        expect_ok(
            self.root_call(
                "PUT",
                &format!("/v1/sys/policies/acl/{POLICY}"),
                Some(json!({ "policy": acl_policy(&self.readable, refused) })),
            )?,
            "rewriting the policy",
        )
        .map(drop)
    }

    /// The token the agent holds now (from its file sink).
    pub fn agent_token(&self) -> anyhow::Result<String> {
        let t = fs::read_to_string(&self.sink)
            .with_context(|| format!("reading the token sink {}", self.sink.display()))?
            .trim()
            .to_string();
        if t.is_empty() {
            bail!("the agent's token sink is empty");
        }
        let mut seen = self.seen_tokens.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(&t) {
            seen.push(t.clone());
        }
        Ok(t)
    }

    /// Revokes the agent's current token at the server (with the root
    /// token); returns the revoked token.
    pub fn revoke_agent_token(&self) -> anyhow::Result<String> {
        let t = self.agent_token()?;
        expect_ok(
            self.root_call("POST", "/v1/auth/token/revoke", Some(json!({ "token": t })))?,
            "revoking the agent's token",
        )?;
        Ok(t)
    }

    /// Stops the agent (SIGTERM, then SIGKILL); its port then refuses
    /// connections.
    pub fn stop_agent(&mut self) {
        // Remember the last token for leak scans before it goes.
        let _ = self.agent_token();
        self.agent.stop(Duration::from_secs(3));
    }

    /// Every secret a log or request must never show: the root token, the
    /// AppRole secret_id and every token the agent was seen holding.
    pub fn secrets_for_leak_scan(&self) -> Vec<String> {
        let _ = self.agent_token();
        let mut out = vec![self.root_token.clone(), self.secret_id.clone()];
        out.extend(
            self.seen_tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        out
    }

    fn root_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        call(self.server_addr, method, path, Some(&self.root_token), body)
    }
}

/// The agent's ACL policy: read on each of `readable`, deny on each of
/// `refused` (both KV paths under [`KV_MOUNT`], without `data/`).
fn acl_policy(readable: &[String], refused: &[&str]) -> String {
    let rule = |p: &str, cap: &str| {
        format!("path \"{KV_MOUNT}/data/{p}\" {{\n  capabilities = [\"{cap}\"]\n}}\n")
    };
    readable
        .iter()
        .map(|p| rule(p, "read"))
        .chain(refused.iter().map(|p| rule(p, "deny")))
        .collect()
}

impl Drop for OpenBaoStack {
    fn drop(&mut self) {
        self.agent.stop(Duration::from_secs(3));
        self.server.stop(Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!(
                "openbao logs kept at {} (server.log, agent.log)",
                self.work_dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.work_dir);
        }
    }
}

/// The agent's configuration: AppRole auto-auth with a file sink, the API
/// proxy adding the auto-auth token, a plain listener on loopback.
fn agent_config(
    server: SocketAddr,
    listen: SocketAddr,
    role_id: &Path,
    secret_id: &Path,
    sink: &Path,
) -> String {
    format!(
        r#"vault {{
  address = "http://{server}"
}}

auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path                   = "{role_id}"
      secret_id_file_path                 = "{secret_id}"
      remove_secret_id_file_after_reading = false
    }}
  }}
  sink "file" {{
    config = {{
      path = "{sink}"
    }}
  }}
}}

api_proxy {{
  use_auto_auth_token = true
}}

listener "tcp" {{
  address     = "{listen}"
  tls_disable = true
}}
"#,
        role_id = role_id.display(),
        secret_id = secret_id.display(),
        sink = sink.display(),
    )
}

/// A root token nobody can guess from outside the process.
fn fresh_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut x = nanos ^ (u128::from(std::process::id()) << 64);
    // splitmix-style scramble so the token is not a readable timestamp.
    let mut out = String::from("root-");
    for _ in 0..2 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let mut z = x;
        z = (z ^ (z >> 61)).wrapping_mul(0xbf58_476d_1ce4_e5b9_94d0_49bb_1331_11eb);
        z ^= z >> 57;
        out.push_str(&format!("{:032x}", z));
    }
    out
}

/// Polls `ready` every 50 ms until it says yes, the process exits, or
/// [`READY_TIMEOUT`] passes.
fn wait_for(
    proc: &mut BaoProcess,
    what: &str,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = proc.exited() {
            bail!(
                "bao {what} exited with {status}; log:\n{}",
                tail(&proc.log(), 30)
            );
        }
        if matches!(ready(), Ok(true)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "bao {what} not ready within {}s; log:\n{}",
                READY_TIMEOUT.as_secs(),
                tail(&proc.log(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON body of a 2xx answer (`null` for 204), or an error naming
/// `what` and the status. The body is not quoted in the error: it may hold
/// a secret.
fn expect_ok((status, body): (u16, Vec<u8>), what: &str) -> anyhow::Result<Value> {
    if !(200..300).contains(&status) {
        bail!("{what}: OpenBao answered {status}");
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).with_context(|| format!("{what}: answer is not JSON"))
}

/// One HTTP/1.0 call (so the answer is never chunked and ends at EOF).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nX-Vault-Request: true\r\n");
    if let Some(t) = token {
        head.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body.as_bytes()))
        .with_context(|| format!("{method} {path}: sending"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .with_context(|| format!("{method} {path}: reading"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: no response head"))?;
    let status_line = String::from_utf8_lossy(&answer[..split]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("{method} {path}: bad status line"))?;
    Ok((status, answer[split + 4..].to_vec()))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
