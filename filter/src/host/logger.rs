//! The `log` backend (proxy_log) and the panic hook.
//!
//! Invariants: logging never fails loudly (a host error is dropped, never a
//! panic); a panic is logged at critical before the VM aborts, so the cause
//! of a dead VM is in Envoy's log.

use super::abi;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

pub fn install() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        // Critical = 5. The message is ours (no request data reaches a panic).
        abi::log(5, &format!("tollgate: panic, the VM will abort: {info}"));
    }));
}
