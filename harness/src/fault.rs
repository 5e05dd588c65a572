//! Host-call fault injection: make any `env.proxy_*` import return a chosen
//! status instead of doing its work (`Gateway::fault`, `GatewayBuilder::fault`).
//!
//! Invariants:
//! - The check runs before the host function body (see `abi::host`), so a
//!   faulted call has no effect and writes no out-pointers; the guest sees
//!   only the status.
//! - Faults are per gateway (in `GatewayShared`), never global. With no
//!   fault installed the check is one relaxed atomic load.
//! - Each fault counts the calls that match it (import name, and worker if
//!   restricted) independently; a call fires the first armed fault in
//!   installation order (past its `skip`, with `times` left). `fired` counts
//!   the calls it answered, so a test can prove the fault was reached.

use crate::abi::Status;
use crate::state::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What a faulted import returns, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFault {
    status: i32,
    skip: u64,
    times: Option<u64>,
    worker: Option<usize>,
}

impl HostFault {
    /// Every matching call returns `status` (until `times`, if set).
    pub fn new(status: Status) -> Self {
        Self::code(status as i32)
    }
    /// A raw status code (e.g. one Envoy never returns for that call).
    pub fn code(status: i32) -> Self {
        HostFault {
            status,
            skip: 0,
            times: None,
            worker: None,
        }
    }
    /// Lets the first `n` matching calls through untouched.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }
    /// Fires at most `n` times, then lets calls through again.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }
    /// Fires once.
    pub fn once(self) -> Self {
        self.times(1)
    }
    /// Only calls made by this worker's VM match.
    pub fn on_worker(mut self, worker: usize) -> Self {
        self.worker = Some(worker);
        self
    }
    pub fn status(&self) -> i32 {
        self.status
    }
}

#[derive(Debug)]
struct Entry {
    import: String,
    fault: HostFault,
    /// Matching calls seen (fired or not).
    seen: u64,
    fired: u64,
}

/// The faults of one gateway.
#[derive(Debug, Default)]
pub struct Faults {
    any: AtomicBool,
    entries: Mutex<Vec<Entry>>,
}

impl Faults {
    pub fn add(&self, import: &str, fault: HostFault) {
        lock(&self.entries).push(Entry {
            import: import.to_string(),
            fault,
            seen: 0,
            fired: 0,
        });
        self.any.store(true, Ordering::Release);
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
        self.any.store(false, Ordering::Release);
    }

    /// The status to return instead of running `import` on `worker`, if a
    /// fault fires for this call.
    pub fn check(&self, worker: usize, import: &str) -> Option<i32> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let mut entries = lock(&self.entries);
        let mut fire = None;
        for e in entries.iter_mut() {
            if e.import != import || e.fault.worker.is_some_and(|w| w != worker) {
                continue;
            }
            e.seen += 1;
            let armed = e.seen > e.fault.skip && e.fault.times.is_none_or(|t| e.fired < t);
            if armed && fire.is_none() {
                e.fired += 1;
                fire = Some(e.fault.status);
            }
        }
        fire
    }

    /// How many calls to `import` the installed faults answered (faults
    /// removed by `clear` are forgotten).
    pub fn fired(&self, import: &str) -> u64 {
        lock(&self.entries)
            .iter()
            .filter(|e| e.import == import)
            .map(|e| e.fired)
            .sum()
    }

    /// Calls to `import` that matched an installed fault, fired or not: a
    /// fault that never fires (`times(0)`) makes this a call counter.
    pub fn seen(&self, import: &str) -> u64 {
        lock(&self.entries)
            .iter()
            .filter(|e| e.import == import)
            .map(|e| e.seen)
            .sum()
    }

    /// (import, fired) for every installed fault, in installation order.
    pub fn all_fired(&self) -> Vec<(String, u64)> {
        lock(&self.entries)
            .iter()
            .map(|e| (e.import.clone(), e.fired))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_then_fires_the_given_number_of_times_on_its_worker() {
        let f = Faults::default();
        assert_eq!(f.check(0, "proxy_log"), None);
        f.add(
            "proxy_get_shared_data",
            HostFault::new(Status::InternalFailure)
                .skip(1)
                .times(2)
                .on_worker(1),
        );
        assert_eq!(f.check(0, "proxy_get_shared_data"), None);
        assert_eq!(f.check(1, "proxy_get_shared_data"), None);
        assert_eq!(f.check(1, "proxy_get_shared_data"), Some(10));
        assert_eq!(f.check(1, "proxy_set_shared_data"), None);
        assert_eq!(f.check(1, "proxy_get_shared_data"), Some(10));
        assert_eq!(f.check(1, "proxy_get_shared_data"), None);
        assert_eq!(f.fired("proxy_get_shared_data"), 2);
        f.clear();
        assert_eq!(f.check(1, "proxy_get_shared_data"), None);
        assert_eq!(f.fired("proxy_get_shared_data"), 0);
    }

    #[test]
    fn the_first_armed_fault_wins() {
        let f = Faults::default();
        f.add("proxy_log", HostFault::new(Status::BadArgument).once());
        f.add("proxy_log", HostFault::new(Status::NotFound));
        assert_eq!(f.check(0, "proxy_log"), Some(2));
        assert_eq!(f.check(0, "proxy_log"), Some(1));
        assert_eq!(
            f.all_fired(),
            vec![("proxy_log".into(), 1), ("proxy_log".into(), 1)]
        );
    }
}
