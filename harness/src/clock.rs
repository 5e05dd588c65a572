//! The gateway's virtual clock.
//!
//! Invariants: time only moves when the test calls `Gateway::advance`; the
//! guest reads it through `proxy_get_current_time_nanoseconds` and WASI
//! `clock_time_get`, so every time-dependent behaviour is deterministic.
//! `elapsed` is monotonic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default start instant: 2026-01-01T00:00:00Z.
pub const DEFAULT_START_UNIX_SECS: u64 = 1_767_225_600;

#[derive(Debug)]
pub struct Clock {
    start: SystemTime,
    elapsed_nanos: AtomicU64,
}

impl Clock {
    pub fn new(start: SystemTime) -> Self {
        Clock {
            start,
            elapsed_nanos: AtomicU64::new(0),
        }
    }

    /// Virtual time since the gateway started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward to `to` (never backwards).
    pub fn set_elapsed(&self, to: Duration) {
        let nanos = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_max(nanos, Ordering::SeqCst);
    }

    pub fn now(&self) -> SystemTime {
        self.start + self.elapsed()
    }

    /// Wall-clock time as nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> u64 {
        let d = self.now().duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// A monotonic reading (WASI clock 1): a fixed base plus elapsed time.
    pub fn monotonic_nanos(&self) -> u64 {
        1_000_000_000_000u64.saturating_add(self.elapsed_nanos.load(Ordering::SeqCst))
    }
}
