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

/// Where captured lines are kept: raw message bytes in one growing buffer and
/// a small fixed-size record per line, so capturing a line costs no
/// allocation of its own and no UTF-8 conversion. The lossy conversion to
/// `LogLine::message` happens when the test reads the lines.
#[derive(Debug, Default)]
pub struct LogStore {
    text: Vec<u8>,
    lines: Vec<RawLine>,
}

#[derive(Debug, Clone, Copy)]
struct RawLine {
    worker: u32,
    context_id: u32,
    level: LogLevel,
    start: usize,
    len: usize,
}

impl LogStore {
    pub fn push(&mut self, worker: usize, context_id: u32, level: LogLevel, message: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(message);
        self.lines.push(RawLine {
            worker: worker as u32,
            context_id,
            level,
            start,
            len: message.len(),
        });
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn message(&self, l: &RawLine) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.text[l.start..l.start + l.len])
    }

    fn line(&self, l: &RawLine) -> LogLine {
        LogLine {
            worker: l.worker as usize,
            context_id: l.context_id,
            level: l.level,
            message: self.message(l).into_owned(),
        }
    }

    /// Every line, in order.
    pub fn to_vec(&self) -> Vec<LogLine> {
        self.lines.iter().map(|l| self.line(l)).collect()
    }

    /// The lines matching `keep`, in order.
    pub fn filtered(&self, mut keep: impl FnMut(usize, LogLevel) -> bool) -> Vec<LogLine> {
        self.lines
            .iter()
            .filter(|l| keep(l.worker as usize, l.level))
            .map(|l| self.line(l))
            .collect()
    }

    /// All messages joined with '\n'.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + self.lines.len());
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&self.message(l));
        }
        out
    }
}
