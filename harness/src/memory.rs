//! Bounds-checked access to guest memory from host functions.
//!
//! Invariants:
//! - Guest pointers are never dereferenced directly: every read and write goes
//!   through `wasmtime::Memory::{read, write}` or a bounds-checked slice of
//!   `Memory::data_and_store_mut` (`with_bytes`), so a bad
//!   pointer becomes `MemError::OutOfBounds` (returned to the guest as
//!   `InvalidMemoryAccess`), never a host panic.
//! - Data handed to the guest is copied into memory the guest allocated with
//!   its own allocator (`malloc` if exported, else `proxy_on_memory_allocate`),
//!   so the SDK can free it; zero-length data is handed over as a null
//!   pointer, as Envoy does.

use crate::state::WorkerHost;
use wasmtime::{AsContextMut, Caller};

#[derive(Debug)]
pub enum MemError {
    /// A guest pointer or length outside linear memory.
    OutOfBounds,
    /// The module has no exported memory or allocator.
    Missing(&'static str),
    /// The guest allocator returned null.
    AllocFailed,
    /// The guest trapped inside its allocator.
    Trap(wasmtime::Error),
}

pub type MemResult<T> = Result<T, MemError>;

fn memory(caller: &mut Caller<'_, WorkerHost>) -> MemResult<wasmtime::Memory> {
    caller.data().memory.ok_or(MemError::Missing("memory"))
}

/// Reads `len` bytes at `ptr`.
pub fn read_bytes(caller: &mut Caller<'_, WorkerHost>, ptr: u32, len: u32) -> MemResult<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(caller)?;
    let mut buf = vec![0u8; len as usize];
    mem.read(&*caller, ptr as usize, &mut buf)
        .map_err(|_| MemError::OutOfBounds)?;
    Ok(buf)
}

/// Calls `f` with the host state and the `len` bytes at `ptr`, borrowed in
/// place (no copy, no allocation).
pub fn with_bytes<R>(
    caller: &mut Caller<'_, WorkerHost>,
    ptr: u32,
    len: u32,
    f: impl FnOnce(&mut WorkerHost, &[u8]) -> R,
) -> MemResult<R> {
    if len == 0 {
        return Ok(f(caller.data_mut(), &[]));
    }
    let mem = memory(caller)?;
    let (data, host) = mem.data_and_store_mut(caller);
    let start = ptr as usize;
    let bytes = start
        .checked_add(len as usize)
        .and_then(|end| data.get(start..end))
        .ok_or(MemError::OutOfBounds)?;
    Ok(f(host, bytes))
}

/// `with_bytes` for two guest ranges (e.g. a key and a value).
pub fn with_two<R>(
    caller: &mut Caller<'_, WorkerHost>,
    a: (u32, u32),
    b: (u32, u32),
    f: impl FnOnce(&mut WorkerHost, &[u8], &[u8]) -> R,
) -> MemResult<R> {
    let mem = memory(caller)?;
    let (data, host) = mem.data_and_store_mut(caller);
    let slice = |(ptr, len): (u32, u32)| -> MemResult<&[u8]> {
        if len == 0 {
            return Ok(&[]);
        }
        let start = ptr as usize;
        start
            .checked_add(len as usize)
            .and_then(|end| data.get(start..end))
            .ok_or(MemError::OutOfBounds)
    };
    let (a, b) = (slice(a)?, slice(b)?);
    Ok(f(host, a, b))
}

/// Reads `len` bytes at `ptr` as lossy UTF-8 text.
pub fn read_string(caller: &mut Caller<'_, WorkerHost>, ptr: u32, len: u32) -> MemResult<String> {
    Ok(String::from_utf8_lossy(&read_bytes(caller, ptr, len)?).into_owned())
}

pub fn write_bytes(caller: &mut Caller<'_, WorkerHost>, ptr: u32, data: &[u8]) -> MemResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mem = memory(caller)?;
    mem.write(caller.as_context_mut(), ptr as usize, data)
        .map_err(|_| MemError::OutOfBounds)
}

pub fn write_u32(caller: &mut Caller<'_, WorkerHost>, ptr: u32, v: u32) -> MemResult<()> {
    let mem = memory(caller)?;
    mem.write(caller.as_context_mut(), ptr as usize, &v.to_le_bytes())
        .map_err(|_| MemError::OutOfBounds)
}

pub fn write_u64(caller: &mut Caller<'_, WorkerHost>, ptr: u32, v: u64) -> MemResult<()> {
    let mem = memory(caller)?;
    mem.write(caller.as_context_mut(), ptr as usize, &v.to_le_bytes())
        .map_err(|_| MemError::OutOfBounds)
}

/// Allocates `data.len()` bytes with the guest allocator and copies `data`
/// there; returns the guest pointer (0 for empty data, without allocating).
pub fn allocate_and_write(caller: &mut Caller<'_, WorkerHost>, data: &[u8]) -> MemResult<u32> {
    if data.is_empty() {
        return Ok(0);
    }
    let alloc = caller
        .data()
        .alloc
        .clone()
        .ok_or(MemError::Missing("allocator"))?;
    let size = i32::try_from(data.len()).map_err(|_| MemError::AllocFailed)?;
    let ptr = alloc
        .call(caller.as_context_mut(), size)
        .map_err(MemError::Trap)? as u32;
    if ptr == 0 {
        return Err(MemError::AllocFailed);
    }
    write_bytes(caller, ptr, data)?;
    Ok(ptr)
}

/// `return_bytes` from the host's reusable `scratch` buffer: `fill` writes
/// the data into it (it starts empty) and returns a status; on `Ok` the
/// data is handed to the guest. No host allocation once the buffer is warm.
pub fn return_scratch(
    caller: &mut Caller<'_, WorkerHost>,
    ptr_ptr: u32,
    size_ptr: u32,
    fill: impl FnOnce(&mut Caller<'_, WorkerHost>, &mut Vec<u8>) -> MemResult<crate::abi::Status>,
) -> MemResult<crate::abi::Status> {
    let mut buf = std::mem::take(&mut caller.data_mut().scratch);
    buf.clear();
    let r = fill(caller, &mut buf).and_then(|status| {
        if status == crate::abi::Status::Ok {
            return_bytes(caller, &buf, ptr_ptr, size_ptr)?;
        }
        Ok(status)
    });
    caller.data_mut().scratch = buf;
    r
}

/// Envoy's `copyToPointerSize`: allocate a copy of `data` in the guest and
/// store its pointer and size in the guest's out-params.
pub fn return_bytes(
    caller: &mut Caller<'_, WorkerHost>,
    data: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> MemResult<()> {
    // Check the out-params before allocating, so a bad pointer leaks nothing.
    write_u32(caller, ptr_ptr, 0)?;
    write_u32(caller, size_ptr, 0)?;
    let ptr = allocate_and_write(caller, data)?;
    write_u32(caller, ptr_ptr, ptr)?;
    write_u32(caller, size_ptr, data.len() as u32)
}
