//! Child processes the harness starts (Envoy, `bao`): tied to the test
//! process's life, and stopped gently, then firmly.
//!
//! Invariants: a child started with [`die_with_parent`] gets SIGKILL when
//! the harness process dies, however it dies; [`stop`] returns only once the
//! child has exited.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The child gets SIGKILL when this process dies (`PR_SET_PDEATHSIG`).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// SIGTERM, then SIGKILL after `grace`; waits for the exit.
pub fn stop(mut child: Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
