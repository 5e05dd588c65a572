//! The single-flight lease table: which credential is being fetched, by whom,
//! until when. Kept under one shared-data key and changed only by CAS.
//!
//! Invariants:
//! - At most one live lease per credential key; a lease past its deadline
//!   is dead and may be taken over (its holder's stream may have been reset,
//!   which cancels its call without a callback).
//! - Expired leases are dropped whenever the table is rewritten, so the
//!   table holds only fetches in flight.
//! - Decoding never panics; a corrupt table decodes as empty.

use super::entry::Reader;

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub owner: u64,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseTable {
    pub leases: Vec<Lease>,
}

impl LeaseTable {
    /// The live lease on `key`, if any.
    pub fn holder(&self, key: &str, now_ms: u64) -> Option<&Lease> {
        self.leases
            .iter()
            .find(|l| l.key == key && l.deadline_ms > now_ms)
    }

    /// Drops dead leases.
    pub fn prune(&mut self, now_ms: u64) {
        self.leases.retain(|l| l.deadline_ms > now_ms);
    }

    /// Takes the lease on `key` unless someone holds a live one.
    pub fn take(&mut self, key: &str, owner: u64, now_ms: u64, lease_ms: u64) -> bool {
        self.prune(now_ms);
        if self.leases.iter().any(|l| l.key == key) {
            return false;
        }
        self.leases.push(Lease {
            key: key.to_string(),
            owner,
            deadline_ms: now_ms.saturating_add(lease_ms),
        });
        true
    }

    /// Removes `owner`'s lease on `key`; true if there was one.
    pub fn release(&mut self, key: &str, owner: u64) -> bool {
        let before = self.leases.len();
        self.leases.retain(|l| !(l.key == key && l.owner == owner));
        self.leases.len() != before
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&(self.leases.len() as u32).to_le_bytes());
        for l in &self.leases {
            out.extend_from_slice(&(l.key.len() as u32).to_le_bytes());
            out.extend_from_slice(l.key.as_bytes());
            out.extend_from_slice(&l.owner.to_le_bytes());
            out.extend_from_slice(&l.deadline_ms.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> LeaseTable {
        Self::try_decode(bytes).unwrap_or_default()
    }

    fn try_decode(bytes: &[u8]) -> Option<LeaseTable> {
        if bytes.is_empty() {
            return Some(LeaseTable::default());
        }
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let n = r.u32()? as usize;
        let mut leases = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let key = r.string()?;
            let owner = r.u64()?;
            let deadline_ms = r.u64()?;
            leases.push(Lease {
                key,
                owner,
                deadline_ms,
            });
        }
        Some(LeaseTable { leases })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn one_live_lease_per_key() {
        let mut t = LeaseTable::default();
        assert!(t.take("a", 1, 100, 50));
        assert!(!t.take("a", 2, 120, 50));
        assert!(t.take("b", 2, 120, 50));
        assert_eq!(t.holder("a", 120).map(|l| l.owner), Some(1));
    }

    #[test]
    fn dead_leases_can_be_taken_over() {
        let mut t = LeaseTable::default();
        assert!(t.take("a", 1, 100, 50));
        assert_eq!(t.holder("a", 150), None);
        assert!(t.take("a", 2, 150, 50));
        assert_eq!(t.holder("a", 151).map(|l| l.owner), Some(2));
        assert_eq!(t.leases.len(), 1);
    }

    #[test]
    fn only_the_owner_releases() {
        let mut t = LeaseTable::default();
        t.take("a", 1, 0, 50);
        assert!(!t.release("a", 2));
        assert!(t.release("a", 1));
        assert!(t.leases.is_empty());
    }

    #[test]
    fn codec_round_trips_and_tolerates_garbage() {
        let mut t = LeaseTable::default();
        t.take("tollgate/v1/cred/x#spiffe://td/a", 7, 10, 5);
        t.take("y", 8, 10, 5);
        assert_eq!(LeaseTable::decode(&t.encode()), t);
        assert_eq!(
            LeaseTable::decode(b"\x01\xff\xff\xff\xff"),
            LeaseTable::default()
        );
        assert_eq!(LeaseTable::decode(b""), LeaseTable::default());
    }
}
