//! Interruption (SIGINT, SIGTERM) and the children the driver starts.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::bail;

/// Set by SIGINT/SIGTERM; checked between steps.
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The running h2load's pid (0 if none), killed on a signal.
pub(crate) static LOAD_PID: AtomicI32 = AtomicI32::new(0);

/// On SIGINT or SIGTERM: flag the run as interrupted and kill h2load, so the
/// main thread returns and drops (stops) everything.
pub(crate) async fn stop_on_signal() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let Ok(mut term) = term else {
        eprintln!("cannot install the SIGTERM handler");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("\ninterrupted: stopping Envoys and load");
    INTERRUPTED.store(true, Ordering::SeqCst);
    let pid = LOAD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

pub(crate) fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
