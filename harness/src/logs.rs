//! Log lines the guest emitted (`proxy_log`, and WASI `fd_write` to stdout or
//! stderr), captured per gateway.
//!
//! Invariants: a line below the gateway's log level is dropped, as Envoy
//! drops it; messages are kept as lossy UTF-8 text.

/// proxy-wasm log levels, in ABI order (Trace = 0 .. Critical = 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub fn from_abi(v: u32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    pub fn to_abi(self) -> u32 {
        self as u32
    }
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Worker (VM) index that logged it.
    pub worker: usize,
    /// The effective context when it was logged (the root context for VM-level logs).
    pub context_id: u32,
    pub level: LogLevel,
    pub message: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[w{} c{} {:?}] {}",
            self.worker, self.context_id, self.level, self.message
        )
    }
}
