//! One budget's shared-data record: the window it counts and, per subject,
//! what was used and what is held by requests in flight.
//!
//! A shared budget has one record with one subject (0). A per-workload
//! budget spreads its workloads over a fixed number of records (slots) by
//! a hash of the SPIFFE ID; each record holds at most [`MAX_SUBJECTS`]
//! subjects at a time.
//!
//! Invariants:
//! - The encoding is fixed-size per subject, little-endian, versioned: 1
//!   byte version, 8 bytes window start, then 24 bytes per subject
//!   (subject, used, held). Anything else decodes as `None`, which the
//!   ledger treats as a store failure (fail closed), never as an empty
//!   budget.
//! - [`Record::roll`] resets the record in place when a new window begins:
//!   the key set never grows with time.

/// Subjects one record holds in one window.
pub const MAX_SUBJECTS: usize = 16;
const VERSION: u8 = 1;
const SUBJECT_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// A hash of the SPIFFE ID, or 0 for a shared budget.
    pub subject: u64,
    /// Charged in this window.
    pub used: u64,
    /// Reserved by requests still in flight in this window.
    pub held: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Start (epoch seconds) of the window counted.
    pub window: u64,
    pub accounts: Vec<Account>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.accounts.len() * SUBJECT_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&self.window.to_le_bytes());
        for a in &self.accounts {
            out.extend_from_slice(&a.subject.to_le_bytes());
            out.extend_from_slice(&a.used.to_le_bytes());
            out.extend_from_slice(&a.held.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < 8 || (rest.len() - 8) % SUBJECT_BYTES != 0 {
            return None;
        }
        let (window, rest) = rest.split_at(8);
        let accounts = rest
            .chunks_exact(SUBJECT_BYTES)
            .map(|c| Account {
                subject: u64_at(c, 0),
                used: u64_at(c, 8),
                held: u64_at(c, 16),
            })
            .collect::<Vec<_>>();
        if accounts.len() > MAX_SUBJECTS {
            return None;
        }
        Some(Record {
            window: u64_at(window, 0),
            accounts,
        })
    }

    /// Moves the record to `window` if it counts an older one: every
    /// account starts again at zero (reservations of the old window are
    /// settled against it, that is, dropped).
    pub fn roll(&mut self, window: u64) {
        if self.window != window {
            self.window = window;
            self.accounts.clear();
        }
    }

    /// The account of `subject`, added if there is room (accounts with
    /// nothing used or held are reclaimed first). `None` when the record
    /// is full of live accounts.
    pub fn account(&mut self, subject: u64) -> Option<&mut Account> {
        if let Some(i) = self.accounts.iter().position(|a| a.subject == subject) {
            return self.accounts.get_mut(i);
        }
        self.accounts.retain(|a| a.used > 0 || a.held > 0);
        if self.accounts.len() >= MAX_SUBJECTS {
            return None;
        }
        self.accounts.push(Account {
            subject,
            ..Account::default()
        });
        self.accounts.last_mut()
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let mut r = Record {
            window: 1_796_018_400,
            accounts: Vec::new(),
        };
        r.account(7).unwrap().used = 5;
        r.account(9).unwrap().held = u64::MAX;
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Some(r.clone()));
        assert_eq!(Record::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Record::decode(b""), None);
        let mut wrong = bytes.clone();
        wrong[0] = 2;
        assert_eq!(Record::decode(&wrong), None);
    }

    #[test]
    fn a_new_window_starts_from_zero_in_place() {
        let mut r = Record::default();
        r.roll(60);
        r.account(1).unwrap().used = 3;
        r.roll(60);
        assert_eq!(r.accounts.len(), 1);
        r.roll(120);
        assert_eq!((r.window, r.accounts.len()), (120, 0));
    }

    #[test]
    fn a_full_record_reclaims_idle_accounts_only() {
        let mut r = Record::default();
        for s in 0..MAX_SUBJECTS as u64 {
            r.account(s).unwrap().used = 1;
        }
        assert!(r.account(999).is_none(), "full of live accounts");
        r.account(3).unwrap().used = 0;
        assert!(r.account(999).is_some(), "an idle one is reclaimed");
        assert!(r.accounts.iter().all(|a| a.subject != 3));
    }
}
