//! Loading and compiling the guest module.
//!
//! Invariants: one `wasmtime::Engine` per process; a compiled module is cached
//! by (canonical path, file length, modification time), so a rebuilt `.wasm`
//! is recompiled while repeated tests in one process compile it once. Nothing
//! else is global: every `Gateway` has its own stores and state.

use anyhow::Context as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// A compiled proxy-wasm module, shareable between gateways and threads.
pub struct Module {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) module: wasmtime::Module,
    path: PathBuf,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

type CacheKey = (PathBuf, u64, Option<SystemTime>);

/// How often the process-wide epoch advances.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// A guest callback may run this many epoch ticks (30 s) before it is
/// interrupted with a trap, so a runaway guest fails a test instead of hanging it.
pub const CALLBACK_EPOCH_BUDGET: u64 = 300;

fn engine() -> &'static wasmtime::Engine {
    static ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        // `TOLLGATE_HARNESS_PERFMAP=1`: write /tmp/perf-<pid>.map so that
        // `perf report` names the guest's functions (profiling by hand).
        if std::env::var_os("TOLLGATE_HARNESS_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config).unwrap_or_else(|_| wasmtime::Engine::default());
        let ticker = engine.weak();
        let _ = std::thread::Builder::new()
            .name("tollgate-harness-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match ticker.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            });
        engine
    })
}

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<Module>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<Module>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Module {
    /// Loads and compiles a `.wasm` file, or returns the cached compilation.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Arc<Module>> {
        let path = path.as_ref();
        let canonical = path
            .canonicalize()
            .with_context(|| format!("wasm module not found at {}", path.display()))?;
        let meta = std::fs::metadata(&canonical)?;
        let key = (canonical.clone(), meta.len(), meta.modified().ok());
        if let Some(m) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(m.clone());
        }
        let bytes = std::fs::read(&canonical)?;
        let module = Self::from_bytes_named(&bytes, canonical)?;
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, module.clone());
        Ok(module)
    }

    /// Compiles a module from bytes (no caching).
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Arc<Module>> {
        Self::from_bytes_named(bytes, PathBuf::from("<bytes>"))
    }

    fn from_bytes_named(bytes: &[u8], path: PathBuf) -> anyhow::Result<Arc<Module>> {
        let engine = engine().clone();
        let module = wasmtime::Module::new(&engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling {}", path.display()))?;
        Ok(Arc::new(Module {
            engine,
            module,
            path,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The module's imports as `module.name` strings.
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }

    /// The module's export names.
    pub fn exports(&self) -> Vec<String> {
        self.module
            .exports()
            .map(|e| e.name().to_string())
            .collect()
    }
}
