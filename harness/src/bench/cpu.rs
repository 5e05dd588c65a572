//! CPU time per request, placement of processes on CPUs, and the idle
//! spinners that keep vCPUs out of idle states.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context};

use super::gateways::Variant;
use super::setup::{Bench, Gateway};
use super::{CLIENT_CPU, GATEWAY_CPU};

/// A gateway's completed requests and CPU time (and the authz service's,
/// for ext_authz) at the start of a load run.
pub(crate) struct CpuWindow {
    pub(crate) requests: u64,
    pub(crate) gateway_ns: u64,
    pub(crate) service_ns: u64,
}

impl CpuWindow {
    pub(crate) fn open(bench: &Bench, g: &Gateway) -> anyhow::Result<Self> {
        Ok(Self {
            requests: g.envoy.stat("http.egress.downstream_rq_completed"),
            gateway_ns: process_cpu_ns(g.pid)?,
            service_ns: thread_cpu_ns(service_tid(bench, g))? + rls_cpu_ns(bench, g)?,
        })
    }

    /// CPU µs per request since `open`: (gateway, authz service).
    pub(crate) fn per_request(self, bench: &Bench, g: &Gateway) -> anyhow::Result<(f64, f64)> {
        let now = Self::open(bench, g)?;
        let requests = now.requests.saturating_sub(self.requests).max(1) as f64;
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e3 / requests;
        Ok((
            per(now.gateway_ns, self.gateway_ns),
            per(now.service_ns, self.service_ns),
        ))
    }
}

pub(crate) fn service_tid(bench: &Bench, g: &Gateway) -> Option<i32> {
    match g.variant {
        Variant::ExtAuthz => Some(bench.authz.tid),
        Variant::TollgateBodyGlobal => bench.rls.as_ref().map(|r| r.tid),
        _ => None,
    }
}

/// Redis's CPU time, for the global-tier gateway (0 for the others).
fn rls_cpu_ns(bench: &Bench, g: &Gateway) -> anyhow::Result<u64> {
    match (g.variant, bench.rls.as_ref().and_then(|r| r.redis.pid())) {
        (Variant::TollgateBodyGlobal, Some(pid)) => process_cpu_ns(pid),
        _ => Ok(0),
    }
}

/// On-CPU time of every thread of `pid`, ns (`/proc/PID/task/*/schedstat`).
pub(crate) fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let mut total = 0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {}", tasks.display()))? {
        total += schedstat_ns(&task?.path().join("schedstat"))?;
    }
    Ok(total)
}

/// On-CPU time of one of this process's threads, ns (0 for `None`).
pub(crate) fn thread_cpu_ns(tid: Option<i32>) -> anyhow::Result<u64> {
    tid.map_or(Ok(0), |tid| {
        schedstat_ns(Path::new(&format!("/proc/self/task/{tid}/schedstat")))
    })
}

pub(crate) fn schedstat_ns(path: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .ok_or_else(|| anyhow!("{}: unexpected content {text:?}", path.display()))
}

/// The pid of the process whose command line names `config` (Envoy, which
/// the venv's wrapper `exec`s, so the pid is the child's).
pub(crate) fn pid_running(config: &Path) -> anyhow::Result<u32> {
    let wanted = config.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|arg| arg == wanted) {
            return Ok(pid);
        }
    }
    bail!(
        "no running process has {} on its command line",
        config.display()
    )
}

/// Runs `f` (which starts a gateway) with this thread on [`GATEWAY_CPU`],
/// so the child inherits that placement; then moves back.
pub(crate) fn on_gateway_cpu<T>(
    pin: bool,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if !pin {
        return f();
    }
    pin_current_thread(GATEWAY_CPU)?;
    let out = f();
    pin_current_thread(CLIENT_CPU)?;
    out
}

/// Restricts the calling thread (and what it spawns later) to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET stays in
    // bounds for cpu < CPU_SETSIZE; sched_setaffinity(0, ..) only affects
    // the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning to CPU {cpu} (try --no-pin)"));
    }
    Ok(())
}

/// One `SCHED_IDLE` busy-loop thread per CPU; stopped on drop.
#[derive(Default)]
pub(crate) struct Spinners {
    stop: std::sync::Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let mut s = Self::default();
        for cpu in 0..online_cpus() {
            let stop = s.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("idle-spin-{cpu}"))
                .spawn(move || {
                    if pin_current_thread(cpu).is_err() || !set_idle_policy() {
                        return; // never spin at normal priority
                    }
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .context("spawning an idle spinner")?;
            s.threads.push(thread);
        }
        Ok(s)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// CPUs online (not this thread's affinity, which may already be pinned).
pub(crate) fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Moves the calling thread to `SCHED_IDLE`; false if that failed.
pub(crate) fn set_idle_policy() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|e| format!("unknown ({e})"), |s| s.trim().to_string())
}
