//! A private `redis-server` child for tests and `make run`.
//!
//! Job: start Redis on a free loopback port, with no persistence (`--save ""
//! --appendonly no`) in a fresh temporary directory, and wait until it
//! answers PING.
//!
//! Invariants: the child never outlives its owner: it is killed on drop
//! (SIGTERM, then SIGKILL) and gets `PR_SET_PDEATHSIG` (see
//! [`crate::child`]); its directory is removed on drop. The binary is
//! `$TOLLGATE_REDIS_SERVER`, else `redis-server` on `PATH`; when it is
//! missing the error says so and how to install it (`make redis`).

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long Redis may take to answer its first PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Why a Redis server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisServerError {
    #[error("{binary} is not installed (run `make redis`, or set TOLLGATE_REDIS_SERVER)")]
    NotInstalled { binary: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis-server on {addr} did not answer PING within {within:?}; its log:\n{log}")]
    NotReady {
        addr: SocketAddr,
        within: Duration,
        log: String,
    },
}

/// A running `redis-server`; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    addr: SocketAddr,
    binary: PathBuf,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts Redis on a free port of 127.0.0.1.
    pub fn start() -> Result<Self, RedisServerError> {
        let addr = crate::envoy::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).map_err(|e| {
            RedisServerError::Io {
                what: "finding a free port".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        Self::start_on(addr)
    }

    /// Starts Redis on `addr` (e.g. to restart one on the same port).
    pub fn start_on(addr: SocketAddr) -> Result<Self, RedisServerError> {
        let binary = std::env::var_os("TOLLGATE_REDIS_SERVER")
            .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).map_err(|source| RedisServerError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let mut server = Self {
            child: None,
            addr,
            binary,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills Redis at once (SIGKILL), as a crash would; its data is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port (after [`kill`](Self::kill)),
    /// empty.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill();
        self.spawn()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), RedisServerError> {
        let log_path = self.log_path();
        let log = fs::File::create(&log_path).map_err(|source| RedisServerError::Io {
            what: format!("creating {}", log_path.display()),
            source,
        })?;
        let log2 = log.try_clone().map_err(|source| RedisServerError::Io {
            what: "duplicating the log handle".into(),
            source,
        })?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--bind")
            .arg(self.addr.ip().to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "yes", "--databases", "1"])
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        crate::child::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                RedisServerError::NotInstalled {
                    binary: self.binary.display().to_string(),
                }
            } else {
                RedisServerError::Io {
                    what: format!("starting {}", self.binary.display()),
                    source,
                }
            }
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls PING until PONG, the child exits, or [`READY_WITHIN`] passes.
    fn wait_ready(&mut self) -> Result<(), RedisServerError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if ping(self.addr) {
                return Ok(());
            }
            let exited = !matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)));
            if exited || Instant::now() >= deadline {
                self.kill();
                return Err(RedisServerError::NotReady {
                    addr: self.addr,
                    within: READY_WITHIN,
                    log: read_log(&self.log_path()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::child::stop(child, Duration::from_secs(2));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether Redis on `addr` answers `PING` with `+PONG`.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
