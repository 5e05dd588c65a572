//! Shared data and shared queues: `proxy_{get,set}_shared_data`,
//! `proxy_{register,resolve}_shared_queue`, `proxy_{enqueue,dequeue}_shared_queue`.
//!
//! Invariants (proxy-wasm-cpp-host's `SharedData`/`SharedQueue`):
//! - One map per gateway, shared by all workers, namespaced by vm_id.
//! - `get` returns the value and its cas; NotFound if absent.
//! - `set` with cas 0 is unconditional; with a cas that does not match the
//!   stored one it is CasMismatch; every successful set takes a fresh,
//!   gateway-wide cas (never 0). Keys never expire.
//! - A queue is identified by (vm_id, name); the latest registrant owns it and
//!   gets `proxy_on_queue_ready` (delivered by `Gateway::settle`, never inside
//!   the enqueueing callback). Dequeue of an empty queue is Empty; an unknown
//!   queue id is NotFound.

use super::{mem, ok, HostResult, Status};
use crate::memory;
use crate::state::{lock, Queue, WorkerHost};
use std::collections::VecDeque;
use wasmtime::{Caller, Linker};

pub fn define(l: &mut Linker<WorkerHost>, name: &str) -> anyhow::Result<bool> {
    match name {
        "proxy_get_shared_data" => super::host(l, name, get_shared_data)?,
        "proxy_set_shared_data" => super::host(l, name, set_shared_data)?,
        "proxy_register_shared_queue" => super::host(l, name, register_queue)?,
        "proxy_resolve_shared_queue" => super::host(l, name, resolve_queue)?,
        "proxy_enqueue_shared_queue" => super::host(l, name, enqueue)?,
        "proxy_dequeue_shared_queue" => super::host(l, name, dequeue)?,
        _ => return Ok(false),
    };
    Ok(true)
}

fn get_shared_data(
    mut c: Caller<'_, WorkerHost>,
    kptr: i32,
    klen: i32,
    vptr_ptr: i32,
    vsize_ptr: i32,
    cas_ptr: i32,
) -> HostResult {
    let key = mem!(memory::read_string(&mut c, kptr as u32, klen as u32));
    let found = {
        let shared = c.data().shared.clone();
        let data = lock(&shared.shared_data);
        data.map
            .get(&shared.vm_id)
            .and_then(|m| m.get(&key))
            .cloned()
    };
    let Some((value, cas)) = found else {
        return ok(Status::NotFound);
    };
    mem!(memory::write_u32(&mut c, cas_ptr as u32, cas));
    mem!(memory::return_bytes(
        &mut c,
        &value,
        vptr_ptr as u32,
        vsize_ptr as u32
    ));
    ok(Status::Ok)
}

fn set_shared_data(
    mut c: Caller<'_, WorkerHost>,
    kptr: i32,
    klen: i32,
    vptr: i32,
    vlen: i32,
    cas: i32,
) -> HostResult {
    let key = mem!(memory::read_string(&mut c, kptr as u32, klen as u32));
    let value = mem!(memory::read_bytes(&mut c, vptr as u32, vlen as u32));
    let shared = c.data().shared.clone();
    let mut data = lock(&shared.shared_data);
    let cas = cas as u32;
    if let Some((_, current)) = data.map.get(&shared.vm_id).and_then(|m| m.get(&key)) {
        if cas != 0 && cas != *current {
            return ok(Status::CasMismatch);
        }
    }
    let next = data.bump();
    data.map
        .entry(shared.vm_id.clone())
        .or_default()
        .insert(key, (value, next));
    ok(Status::Ok)
}

fn register_queue(mut c: Caller<'_, WorkerHost>, nptr: i32, nlen: i32, out: i32) -> HostResult {
    let name = mem!(memory::read_string(&mut c, nptr as u32, nlen as u32));
    let (worker, context) = (c.data().worker, c.data().effective);
    let shared = c.data().shared.clone();
    let id = {
        let mut q = lock(&shared.queues);
        let next = q.ids.len() as u32 + 1;
        let id = *q.ids.entry((shared.vm_id.clone(), name)).or_insert(next);
        let queue = q.queues.entry(id).or_insert(Queue {
            owner_worker: worker,
            owner_context: context,
            items: VecDeque::new(),
        });
        queue.owner_worker = worker;
        queue.owner_context = context;
        id
    };
    mem!(memory::write_u32(&mut c, out as u32, id));
    ok(Status::Ok)
}

fn resolve_queue(
    mut c: Caller<'_, WorkerHost>,
    vptr: i32,
    vlen: i32,
    nptr: i32,
    nlen: i32,
    out: i32,
) -> HostResult {
    let vm_id = mem!(memory::read_string(&mut c, vptr as u32, vlen as u32));
    let name = mem!(memory::read_string(&mut c, nptr as u32, nlen as u32));
    let id = lock(&c.data().shared.queues)
        .ids
        .get(&(vm_id, name))
        .copied();
    let Some(id) = id else {
        return ok(Status::NotFound);
    };
    mem!(memory::write_u32(&mut c, out as u32, id));
    ok(Status::Ok)
}

fn enqueue(mut c: Caller<'_, WorkerHost>, id: i32, vptr: i32, vlen: i32) -> HostResult {
    let value = mem!(memory::read_bytes(&mut c, vptr as u32, vlen as u32));
    let mut q = lock(&c.data().shared.queues);
    let Some(queue) = q.queues.get_mut(&(id as u32)) else {
        return ok(Status::NotFound);
    };
    queue.items.push_back(value);
    let ready = (queue.owner_worker, queue.owner_context, id as u32);
    q.ready.push_back(ready);
    ok(Status::Ok)
}

fn dequeue(mut c: Caller<'_, WorkerHost>, id: i32, vptr_ptr: i32, vsize_ptr: i32) -> HostResult {
    let item = {
        let mut q = lock(&c.data().shared.queues);
        let Some(queue) = q.queues.get_mut(&(id as u32)) else {
            return ok(Status::NotFound);
        };
        queue.items.pop_front()
    };
    let Some(item) = item else {
        return ok(Status::Empty);
    };
    mem!(memory::return_bytes(
        &mut c,
        &item,
        vptr_ptr as u32,
        vsize_ptr as u32
    ));
    ok(Status::Ok)
}
