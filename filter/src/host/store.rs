//! proxy-wasm shared data as the credential cache's `SharedStore`.
//!
//! Invariant: keys are prefixed `tollgate/v1/` by their callers, because
//! Istio leaves `vm_id` empty and the namespace is shared with other plugins.

use super::abi;
use crate::credential::cache::{SharedStore, StoreError};

const CAS_MISMATCH: u32 = 8;

/// The host's process-wide shared data.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        abi::get_shared(key).map_err(|s| StoreError::Host(s.0))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        abi::set_shared(key, value, cas).map_err(|s| {
            if s.0 == CAS_MISMATCH {
                StoreError::CasMismatch
            } else {
                StoreError::Host(s.0)
            }
        })
    }
}
