//! One `bao` child process (server or agent).
//!
//! Invariants: the child never outlives its owner: it is killed on drop
//! (SIGTERM, then SIGKILL after a grace period) and gets `PR_SET_PDEATHSIG`,
//! so a killed test process takes it along. Its whole output goes to one
//! log file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A running `bao`; killed on drop.
#[derive(Debug)]
pub struct BaoProcess {
    child: Option<Child>,
    log_path: PathBuf,
}

impl BaoProcess {
    /// Starts `bao <args>` with its output in `log_path`.
    pub fn spawn(binary: &Path, args: &[String], log_path: &Path) -> anyhow::Result<Self> {
        let log = fs::File::create(log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log2 = log.try_clone().context("duplicating the log handle")?;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // No token helper, no ambient address or token.
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR");
        crate::child::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} {}", binary.display(), args.join(" ")))?;
        Ok(Self {
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    /// The output so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub fn stop(&mut self, grace: Duration) {
        let Some(child) = self.child.take() else {
            return;
        };
        crate::child::stop(child, grace);
    }
}

impl Drop for BaoProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
