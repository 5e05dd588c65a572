//! Shared helpers for the harness's own tests: where the repository and the
//! built module are, the probe guest, handlers.
//!
//! The probe (`harness/probe`) comes from `TOLLGATE_PROBE_WASM` if set, else
//! from `make probe`'s build if that is newer than the probe's sources, else
//! it is built once per test process with cargo into its own target directory
//! (so it never waits on the lock of the `cargo test` that runs us).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use tollgate_harness::{CallHandler, CallRequest, CallResponse, Gateway, GatewayBuilder, Module};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness has a parent")
        .to_path_buf()
}

/// The repository root.
pub fn root() -> PathBuf {
    workspace_root()
}

/// The built `tollgate.wasm`: `TOLLGATE_WASM`, else the release build.
/// Missing, it fails the test (nothing is skipped).
pub fn wasm() -> PathBuf {
    let p = std::env::var_os("TOLLGATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/wasm32-wasip1/release/tollgate.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `make build` first",
        p.display()
    );
    p
}

/// Path of the probe `.wasm`, building it if needed.
pub fn probe_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(p) = std::env::var("TOLLGATE_PROBE_WASM") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        // Reuse `make probe`'s build when it is newer than the probe's sources.
        let made = root.join("target/wasm32-wasip1/release/tollgate_harness_probe.wasm");
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let sources = ["harness/probe/src/lib.rs", "harness/probe/Cargo.toml"]
            .map(|s| modified(&root.join(s)));
        if let Some(built) = modified(&made) {
            if sources.iter().all(|s| s.is_some_and(|s| s <= built)) {
                return made;
            }
        }
        let target = root.join("target").join("harness-probe");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "-p",
                "tollgate-harness-probe",
                "--target",
                "wasm32-wasip1",
                "--release",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("run cargo to build the probe");
        assert!(status.success(), "building the probe guest failed");
        target.join("wasm32-wasip1/release/tollgate_harness_probe.wasm")
    })
    .clone()
}

pub fn probe() -> Arc<Module> {
    Module::load(probe_path()).expect("load probe")
}

/// A gateway builder for the probe with the given plugin config.
pub fn gw(config: &str) -> GatewayBuilder {
    Gateway::builder(probe())
        .plugin_config(config)
        .vm_id("probe-vm")
        .root_id("probe-root")
}

pub fn handler(f: impl Fn(&CallRequest) -> CallResponse + Send + Sync + 'static) -> CallHandler {
    Arc::new(f)
}

/// Answers every call with 200 and `body`.
pub fn ok_with(body: &'static str) -> CallHandler {
    handler(move |_| CallResponse::json(200, body))
}

/// Asserts the log contains `needle`, showing the whole log otherwise.
#[track_caller]
pub fn assert_logged(gw: &Gateway, needle: &str) {
    let text = gw.log_text();
    assert!(text.contains(needle), "log lacks {needle:?}; log:\n{text}");
}

#[track_caller]
pub fn assert_not_logged(gw: &Gateway, needle: &str) {
    let text = gw.log_text();
    assert!(
        !text.contains(needle),
        "log unexpectedly has {needle:?}; log:\n{text}"
    );
}

#[track_caller]
pub fn assert_no_trap(gw: &Gateway) {
    if let Some(t) = gw.trap() {
        panic!("the guest trapped: {t}");
    }
}

/// Polls `cond` every 10 ms until it holds (true) or `limit` has passed
/// (false): for waiting on something observable instead of sleeping.
pub fn poll_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// [`poll_until`] with an async condition, inside a tokio runtime (sleeps
/// without blocking the runtime, so the tasks being waited on can run).
pub async fn poll_until_async<F, Fut>(limit: std::time::Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
