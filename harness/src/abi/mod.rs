//! The proxy-wasm ABI 0.2.1 host functions, grouped by area, and the linker
//! that binds exactly the imports a module declares.
//!
//! Invariants:
//! - Status codes are Envoy's (`Status`).
//! - Only imports the module declares are defined. An `env.*` import this
//!   host does not implement, or an import from an unknown module, is an
//!   instantiation error naming it; an unimplemented WASI function returns
//!   ENOSYS, as Envoy's host does.
//! - Host functions reach guest memory only through `crate::memory`.
//! - Every `env` import is defined through `host`, which runs the gateway's
//!   fault check (`crate::fault`) before the function: a faulted call does
//!   nothing and writes nothing but its status.

pub mod buffers;
pub mod grpc;
pub mod headers;
pub mod http_call;
pub mod logging;
pub mod metrics;
pub mod properties;
pub mod shared_data;
pub mod stream_control;
pub mod timers;
pub mod wasi;

use crate::state::WorkerHost;
use wasmtime::{Caller, Linker, WasmTy};

/// proxy-wasm result codes, as Envoy returns them.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
}

/// What every host function returns: a status for the guest, or a trap.
pub type HostResult = wasmtime::Result<i32>;

pub fn ok(s: Status) -> HostResult {
    Ok(s as i32)
}

/// Unwraps a guest-memory result inside a host function: a trap in the guest
/// allocator propagates as a trap; a bad pointer returns `InvalidMemoryAccess`.
macro_rules! mem {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err($crate::memory::MemError::Trap(t)) => return Err(t),
            Err(_) => return Ok($crate::abi::Status::InvalidMemoryAccess as i32),
        }
    };
}
pub(crate) use mem;

pub const ENV: &str = "env";

/// A host function of any arity, defined with the fault-injection check in
/// front of it (`crate::fault`): every `env.proxy_*` import goes through
/// `host`, so a fault can be put on any of them by name.
pub trait HostFn<Args>: Send + Sync + 'static {
    fn define(self, l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<()>;
}

macro_rules! host_fn {
    ($($t:ident $a:ident),*) => {
        impl<F, $($t),*> HostFn<($($t,)*)> for F
        where
            F: Fn(Caller<'_, WorkerHost>, $($t),*) -> HostResult + Send + Sync + 'static,
            $($t: WasmTy,)*
        {
            fn define(self, l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<()> {
                let import: Box<str> = name.into();
                l.func_wrap(
                    ENV,
                    name,
                    move |c: Caller<'_, WorkerHost>, $($a: $t),*| -> HostResult {
                        let host = c.data();
                        if let Some(status) = host.shared.faults.check(host.worker, &import) {
                            return Ok(status);
                        }
                        self(c, $($a),*)
                    },
                )?;
                Ok(())
            }
        }
    };
}
host_fn!();
host_fn!(A1 a1);
host_fn!(A1 a1, A2 a2);
host_fn!(A1 a1, A2 a2, A3 a3);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10, A11 a11);
host_fn!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10, A11 a11, A12 a12);

/// Defines `env.<name>` as `f` behind the fault check.
pub fn host<Args, F: HostFn<Args>>(
    l: &mut Linker<WorkerHost>,
    name: &str,
    f: F,
) -> anyhow::Result<()> {
    f.define(l, name)
}

/// Defines the host functions `module` imports.
pub fn link(linker: &mut Linker<WorkerHost>, module: &wasmtime::Module) -> anyhow::Result<()> {
    let mut unknown = Vec::new();
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        let defined = match m {
            ENV => {
                logging::define(linker, name)?
                    || timers::define(linker, name)?
                    || buffers::define(linker, name)?
                    || headers::define(linker, name)?
                    || properties::define(linker, name)?
                    || shared_data::define(linker, name)?
                    || stream_control::define(linker, name)?
                    || http_call::define(linker, name)?
                    || grpc::define(linker, name)?
                    || metrics::define(linker, name)?
            }
            wasi::MODULE => wasi::define(linker, name, import.ty())?,
            _ => false,
        };
        if !defined {
            unknown.push(format!("{m}.{name}"));
        }
    }
    if !unknown.is_empty() {
        anyhow::bail!(
            "the module imports functions this proxy-wasm 0.2.1 host does not provide: {}",
            unknown.join(", ")
        );
    }
    Ok(())
}
