//! One Envoy process: started, waited for, asked about, and stopped.
//!
//! Job: run the real Envoy binary from the project venv on a rendered
//! bootstrap, wait until its admin interface says it is ready, and give
//! tests its log and stats.
//!
//! Invariants:
//! - Envoy never outlives its owner: [`EnvoyProcess`] kills it on drop
//!   (SIGTERM, then SIGKILL after a grace period), and the child is also
//!   given `PR_SET_PDEATHSIG`, so a killed test process takes Envoy with it.
//! - Every Envoy runs with `--disable-hot-restart`, so several can run at
//!   once, and with its admin address on an ephemeral loopback port.
//! - Envoy's whole output goes to one log file; [`EnvoyProcess::log`] reads
//!   it for assertions and leak scans.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Envoy may take to become ready (v8 compiles the module first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Failure to start or talk to Envoy.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error("envoy binary not found at {0} (run `make venv`, or set TOLLGATE_ENVOY)")]
    Missing(PathBuf),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("envoy exited with {status} before it was ready; log tail:\n{tail}")]
    Exited { status: String, tail: String },
    #[error("envoy was not ready within {secs}s; log tail:\n{tail}")]
    NotReady { secs: u64, tail: String },
    #[error("admin {path}: {msg}")]
    Admin { path: String, msg: String },
}

/// The Envoy binary: `$TOLLGATE_ENVOY`, else `<repo>/.venv/bin/envoy`.
pub fn envoy_binary(repo_root: &Path) -> Result<PathBuf, EnvoyError> {
    let path = std::env::var_os("TOLLGATE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join(".venv/bin/envoy"));
    if path.exists() {
        Ok(path)
    } else {
        Err(EnvoyError::Missing(path))
    }
}

/// How to start Envoy.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    pub binary: PathBuf,
    /// The bootstrap file.
    pub config: PathBuf,
    /// Where the admin address file and the log go.
    pub work_dir: PathBuf,
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Envoy's log level (`info` shows the filter's info lines).
    pub log_level: String,
    /// Extra arguments, e.g. `--component-log-level`.
    pub extra_args: Vec<String>,
    /// Inherit our stdout/stderr instead of writing the log file.
    pub inherit_output: bool,
}

impl EnvoyOptions {
    pub fn new(binary: PathBuf, config: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            binary,
            config,
            work_dir,
            concurrency: 1,
            log_level: "info".into(),
            extra_args: vec![],
            inherit_output: false,
        }
    }
}

/// A running Envoy; killed on drop.
#[derive(Debug)]
pub struct EnvoyProcess {
    child: Option<Child>,
    admin: SocketAddr,
    log_path: PathBuf,
}

impl EnvoyProcess {
    /// Starts Envoy and waits until `/ready` answers `LIVE`.
    pub fn start(opts: &EnvoyOptions) -> Result<Self, EnvoyError> {
        if !opts.binary.exists() {
            return Err(EnvoyError::Missing(opts.binary.clone()));
        }
        fs::create_dir_all(&opts.work_dir).map_err(|e| io_err("work dir", e))?;
        let admin_file = opts.work_dir.join("admin-address");
        let _ = fs::remove_file(&admin_file);
        let log_path = opts.work_dir.join("envoy.log");

        let mut cmd = Command::new(&opts.binary);
        cmd.arg("-c")
            .arg(&opts.config)
            .arg("--disable-hot-restart")
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--log-level")
            .arg(&opts.log_level)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(&opts.extra_args)
            .stdin(Stdio::null());
        if opts.inherit_output {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        } else {
            let log = fs::File::create(&log_path).map_err(|e| io_err("envoy log", e))?;
            let log2 = log.try_clone().map_err(|e| io_err("envoy log", e))?;
            cmd.stdout(log).stderr(log2);
        }
        crate::child::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| io_err("spawn envoy", e))?;
        let mut proc = Self {
            child: Some(child),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path,
        };
        proc.wait_ready(&admin_file)?;
        Ok(proc)
    }

    fn wait_ready(&mut self, admin_file: &Path) -> Result<(), EnvoyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return Err(EnvoyError::Exited {
                    status,
                    tail: self.log_tail(40),
                });
            }
            if self.admin.port() == 0 {
                if let Ok(text) = fs::read_to_string(admin_file) {
                    if let Ok(addr) = text.trim().parse() {
                        self.admin = addr;
                    }
                }
            }
            if self.admin.port() != 0 {
                if let Ok((200, body)) = self.admin_request("GET", "/ready") {
                    if body.trim() == "LIVE" {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(EnvoyError::NotReady {
                    secs: READY_TIMEOUT.as_secs(),
                    tail: self.log_tail(40),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `Some(status)` if Envoy has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// The admin interface's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A request to the admin interface: `(status, body)`.
    pub fn admin_request(&self, method: &str, path: &str) -> Result<(u16, String), EnvoyError> {
        let fail = |msg: String| EnvoyError::Admin {
            path: path.to_string(),
            msg,
        };
        let mut s = TcpStream::connect_timeout(&self.admin, Duration::from_secs(2))
            .map_err(|e| fail(e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| fail(e.to_string()))?;
        // Envoy refuses HTTP/1.0 by default; ask for 1.1 and close.
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| fail("no header end".into()))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(format!("bad status line in {head:?}")))?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, body))
    }

    /// Every counter and gauge whose name contains `filter`, as
    /// `(name, value)`.
    pub fn stats(&self, filter: &str) -> Result<Vec<(String, u64)>, EnvoyError> {
        let (_, body) = self.admin_request("GET", &format!("/stats?filter={filter}"))?;
        Ok(body
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }

    /// One counter or gauge by exact name (0 if absent).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats(&format!("^{}$", regex_escape(name)))
            .ok()
            .and_then(|v| v.into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
            .unwrap_or(0)
    }

    /// Stops Envoy: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(child) = self.child.take() else {
            return;
        };
        crate::child::stop(child, grace);
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Decodes a chunked body (admin responses are small text).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn io_err(what: &str, source: io::Error) -> EnvoyError {
    EnvoyError::Io {
        what: what.to_string(),
        source,
    }
}
