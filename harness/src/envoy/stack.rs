//! A whole local egress gateway: Envoy with Tollgate, the mock credential
//! service, the mock LLM upstream and a development PKI.
//!
//! Job: start all of it on loopback with one call, for `make run` and for
//! the Envoy end-to-end suites, and stop all of it when dropped.
//!
//! Invariants:
//! - Ports: the mocks bind port 0 and keep their sockets; the listener port
//!   is chosen free just before Envoy binds it (or given by the caller);
//!   Envoy's admin port is ephemeral. Stacks can run side by side.
//! - Credentials only ever come from the given [`MockCredentialService`]
//!   (or from [`StackOptions::credentials_addr`] when set; then the caller
//!   tells the mock LLM which keys to accept); the mock LLM accepts exactly
//!   the values that service handed out.
//! - Dropping the stack kills Envoy and aborts both mock servers.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use super::bootstrap::{AccessLogSink, GatewaySpec, ListenerSource, Upstream};
use super::pki::{DevCa, Pem, PemFiles};
use super::process::{envoy_binary, EnvoyProcess};
use crate::mock::{MockCredentialService, MockLlm, ServedLlm, ServedMock};

/// Where upstream traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamChoice {
    /// The in-process mock LLM.
    Mock,
    /// The real providers, TLS-originated by Envoy.
    Providers,
}

/// How to start a [`Stack`].
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The repository root (finds the venv's Envoy).
    pub repo_root: PathBuf,
    /// Scratch directory: rendered configs, Envoy's log.
    pub work_dir: PathBuf,
    /// Where the development CA lives (reused if present) and certificates
    /// are written.
    pub pki_dir: PathBuf,
    pub wasm: PathBuf,
    pub policy_json: String,
    /// Listener address; port 0 picks a free port.
    pub listen: SocketAddr,
    pub concurrency: u32,
    pub upstream: UpstreamChoice,
    /// Serve the listener from a watched file, so [`Stack::reload_policy`]
    /// works.
    pub watched_listener: bool,
    /// Show Envoy's output on our terminal instead of its log file.
    pub inherit_output: bool,
    /// Extra Envoy arguments.
    pub envoy_args: Vec<String>,
    /// Where Envoy writes the access log with Tollgate's audit record
    /// (`None`: no access log).
    pub access_log: Option<AccessLogSink>,
    /// Remove `work_dir` when the stack is dropped, unless the thread is
    /// panicking (a failed test keeps Envoy's log for reading).
    pub remove_on_drop: bool,
    /// The mock upstream's route domains (empty: any host); see
    /// [`GatewaySpec::mock_domains`].
    pub mock_domains: Vec<String>,
    /// Where the credential cluster points instead of the mock credential
    /// service (e.g. a Vault/OpenBao agent); `None`: the mock.
    pub credentials_addr: Option<SocketAddr>,
    /// More clusters for the bootstrap (e.g. the rate-limit service's,
    /// [`super::bootstrap::grpc_cluster`]).
    pub extra_clusters: Vec<serde_json::Value>,
}

impl StackOptions {
    /// Defaults for a test: loopback, free ports, one worker, mock upstream,
    /// watched listener, everything under `work_dir`.
    pub fn for_test(repo_root: &Path, work_dir: &Path, policy_json: String) -> Self {
        Self {
            repo_root: repo_root.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            pki_dir: work_dir.join("pki"),
            wasm: repo_root.join("target/wasm32-wasip1/release/tollgate.wasm"),
            policy_json,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            concurrency: 1,
            upstream: UpstreamChoice::Mock,
            watched_listener: true,
            inherit_output: false,
            envoy_args: vec![],
            access_log: Some(AccessLogSink::File(work_dir.join("access.log"))),
            remove_on_drop: true,
            mock_domains: vec![],
            credentials_addr: None,
            extra_clusters: vec![],
        }
    }
}

/// The PKI files a stack uses.
#[derive(Debug)]
pub struct StackPki {
    pub ca: DevCa,
    pub ca_file: PathBuf,
    pub server: PemFiles,
    pub dir: PathBuf,
}

/// A running gateway and its mocks.
pub struct Stack {
    pub creds: MockCredentialService,
    pub llm: MockLlm,
    pub envoy: EnvoyProcess,
    /// The gateway's mTLS listener.
    pub listen: SocketAddr,
    pub pki: StackPki,
    spec: GatewaySpec,
    work_dir: PathBuf,
    remove_on_drop: bool,
    creds_served: ServedMock,
    llm_served: ServedLlm,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("listen", &self.listen)
            .field("envoy", &self.envoy)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts the mocks, renders the configuration and starts Envoy. Must be
    /// called inside a tokio runtime, from the thread that will own the
    /// stack (Envoy is tied to it with `PR_SET_PDEATHSIG`).
    pub async fn start(opts: StackOptions, creds: MockCredentialService) -> anyhow::Result<Self> {
        let envoy_bin = envoy_binary(&opts.repo_root)?;
        if !opts.wasm.exists() {
            bail!("{} is missing: run `make build`", opts.wasm.display());
        }
        fs::create_dir_all(&opts.work_dir)
            .with_context(|| format!("creating {}", opts.work_dir.display()))?;
        let credential_cluster = credential_cluster(&opts.policy_json)?;

        let pki = prepare_pki(&opts.pki_dir)?;
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let creds_served = creds.serve(loopback).await.context("serving credentials")?;
        let llm = MockLlm::new();
        llm.accept_issued_by(&creds);
        let llm_served = llm.serve(loopback).await.context("serving the mock LLM")?;

        let listen = if opts.listen.port() == 0 {
            free_port(opts.listen.ip())?
        } else {
            opts.listen
        };
        let lds_path = opts.work_dir.join("listener.json");
        let mut spec = GatewaySpec::tollgate(
            listen,
            opts.wasm.clone(),
            opts.policy_json.clone(),
            pki.ca_file.clone(),
            pki.server.cert.clone(),
            pki.server.key.clone(),
            credential_cluster,
            opts.credentials_addr.unwrap_or(creds_served.addr),
            match opts.upstream {
                UpstreamChoice::Mock => Upstream::Mock(llm_served.addr),
                UpstreamChoice::Providers => Upstream::Providers {
                    ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
                },
            },
        );
        spec.listener_source = if opts.watched_listener {
            ListenerSource::File(lds_path.clone())
        } else {
            ListenerSource::Static
        };
        spec.access_log = opts.access_log.clone();
        spec.concurrency = opts.concurrency;
        spec.mock_domains = opts.mock_domains.clone();
        spec.extra_clusters
            .extend(opts.extra_clusters.iter().cloned());
        if opts.watched_listener {
            write_atomically(&lds_path, &spec.lds_file())?;
        }
        let boot_path = opts.work_dir.join("envoy.json");
        write_atomically(&boot_path, &spec.bootstrap(0))?;

        let mut eo = spec.envoy_options(envoy_bin, boot_path, opts.work_dir.clone());
        eo.inherit_output = opts.inherit_output;
        eo.extra_args.extend(opts.envoy_args.iter().cloned());
        let envoy = EnvoyProcess::start(&eo)?;
        let stack = Self {
            creds,
            llm,
            envoy,
            listen,
            pki,
            spec,
            work_dir: opts.work_dir.clone(),
            remove_on_drop: opts.remove_on_drop,
            creds_served,
            llm_served,
        };
        stack.wait_listening(Duration::from_secs(30))?;
        Ok(stack)
    }

    /// The mock LLM's address (plain HTTP).
    pub fn llm_addr(&self) -> SocketAddr {
        self.llm_served.addr
    }

    /// The credential service's address (plain HTTP).
    pub fn creds_addr(&self) -> SocketAddr {
        self.creds_served.addr
    }

    /// The scratch directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The access log's file, if the stack writes one.
    pub fn access_log_path(&self) -> Option<&Path> {
        match &self.spec.access_log {
            Some(AccessLogSink::File(p)) => Some(p),
            _ => None,
        }
    }

    /// The access log so far (empty if none). Envoy flushes it every 250 ms:
    /// poll for the line you expect.
    pub fn access_log(&self) -> String {
        self.access_log_path()
            .and_then(|p| fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A certificate for `spiffe_id`, signed by the stack's CA.
    pub fn workload_cert(&self, spiffe_id: &str) -> anyhow::Result<Pem> {
        Ok(self.pki.ca.issue_workload(spiffe_id)?)
    }

    /// Replaces the policy through the watched listener file and waits until
    /// Envoy has either accepted the new listener (and finished warming it)
    /// or rejected it. Returns whether it was accepted.
    pub fn reload_policy(&mut self, policy_json: &str) -> anyhow::Result<bool> {
        let ListenerSource::File(path) = self.spec.listener_source.clone() else {
            bail!("this stack's listener is static; start it with watched_listener");
        };
        let ok0 = self.envoy.stat("listener_manager.lds.update_success");
        let bad0 = self.envoy.stat("listener_manager.lds.update_rejected");
        self.spec.policy_json = policy_json.to_string();
        write_atomically(&path, &self.spec.lds_file())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.envoy.stat("listener_manager.lds.update_success");
            let bad = self.envoy.stat("listener_manager.lds.update_rejected");
            if bad > bad0 {
                return Ok(false);
            }
            if ok > ok0 && self.envoy.stat("listener_manager.total_listeners_warming") == 0 {
                return Ok(true);
            }
            if Instant::now() > deadline {
                bail!("envoy neither accepted nor rejected the listener update within 30s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the listener accepts TCP connections.
    pub fn wait_listening(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&self.listen, Duration::from_millis(200))
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(anyhow!(
            "listener {} not accepting; envoy log tail:\n{}",
            self.listen,
            tail(&self.envoy.log(), 30)
        ))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.envoy.stop(Duration::from_secs(3));
        if self.remove_on_drop && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.work_dir);
        } else if std::thread::panicking() {
            eprintln!("envoy log kept at {}", self.envoy.log_path().display());
        }
    }
}

/// The policy's `credential_service.cluster`, which names the Envoy cluster.
fn credential_cluster(policy_json: &str) -> anyhow::Result<String> {
    let v: Value = serde_json::from_str(policy_json).context("policy is not JSON")?;
    v.pointer("/credential_service/cluster")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("policy has no credential_service.cluster"))
}

fn prepare_pki(dir: &Path) -> anyhow::Result<StackPki> {
    let ca = DevCa::load_or_create(dir, "Tollgate development CA")?;
    let ca_file = dir.join("ca.crt");
    let server = ca
        .issue_server(
            // Provider names too, so `curl --resolve api.openai.com:PORT:127.0.0.1`
            // verifies against the development CA as it would in a mesh.
            &[
                "localhost",
                "tollgate.local",
                "api.openai.com",
                "api.anthropic.com",
                "generativelanguage.googleapis.com",
            ],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        )?
        .write(dir, "gateway")?;
    Ok(StackPki {
        ca,
        ca_file,
        server,
        dir: dir.to_path_buf(),
    })
}

/// A loopback port that was free a moment ago.
///
/// Taken below the kernel's ephemeral range when it can be: a port that
/// `bind(0)` hands out is released at once, and until Envoy binds it the
/// kernel may give it to any outgoing connection (with a dozen gateways
/// and their clusters starting, that happened). Below the range only
/// another listener can take it.
pub fn free_port(ip: IpAddr) -> anyhow::Result<SocketAddr> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const FIRST: u32 = 10_000;
    if low > FIRST + 1000 {
        // Spread by process so parallel test binaries rarely probe the
        // same ports; then step through the range.
        let span = low - FIRST;
        let seed = std::process::id().wrapping_mul(2_654_435_761) % span;
        for _ in 0..256 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = FIRST + (seed + n.wrapping_mul(7919)) % span;
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            if let Ok(l) = TcpListener::bind((ip, port)) {
                return Ok(l.local_addr()?);
            }
        }
    }
    let l = TcpListener::bind((ip, 0)).context("finding a free port")?;
    Ok(l.local_addr()?)
}

/// Writes JSON to a temporary sibling and renames it into place, which is
/// the change Envoy's file watcher reacts to.
fn write_atomically(path: &Path, v: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(v)?;
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
