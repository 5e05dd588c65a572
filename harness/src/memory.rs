//! Bounds-checked access to guest memory from host functions.
//!
//! Invariants:
//! - Guest pointers are never dereferenced directly: every read and write goes
//!   through `wasmtime::Memory::{read, write}`, which check bounds, so a bad
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
