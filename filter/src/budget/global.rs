//! The global tier: budgets held in a rate-limit service shared by every
//! gateway replica, spoken to in Envoy's rate-limit protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), so that
//! a mesh can run Kuadrant's Limitador or envoyproxy/ratelimit behind it.
//!
//! This module is the wire contract, in plain Rust: it encodes the request
//! and decodes the answer (the few protobuf fields involved, by hand: a
//! protobuf library would cost the module more than the whole tier).
//!
//! One descriptor stands for one budget of one subject in one window:
//! entries `tollgate_budget` (the budget's name), `subject` (16 hex digits
//! of the workload's hash, or `shared`), `window` (the UTC window's start,
//! epoch seconds) and, on a settlement, `reservation` (the hold's id that
//! the admission answer carried); its `limit` override carries the budget's
//! limit and unit, so the policy stays the one source of truth; its
//! `hits_addend` carries the amount.
//!
//! - **Admission** reserves: the service holds each amount (all or none) and
//!   answers OK with one `x-tollgate-reservation` header per descriptor, or
//!   OVER_LIMIT with the descriptor that does not fit.
//! - **Settlement** commits the amount spent against the hold, which the
//!   service then releases. A service that returns no reservation ids
//!   (one without holds, such as envoyproxy/ratelimit) is settled with the
//!   difference instead: negative hits for the unspent part.
//!
//! Invariants:
//! - Amounts are in the budget's unit, except `cost`, which the protocol's
//!   32-bit limit field carries in [`COST_UNIT_MICROS`] (a tenth of a cent),
//!   rounded up for amounts and down for the limit: never looser.
//! - Decoding never panics and rejects what it cannot read
//!   ([`Malformed`]); the caller treats that as the service unavailable.

use super::{Budget, BudgetId, Metric, Scope, Window};

/// The gRPC service and method Tollgate calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// The response header that carries a hold's id, one per descriptor.
pub const RESERVATION_HEADER: &str = "x-tollgate-reservation";
/// Micro-dollars per protocol unit of a global `cost` budget.
pub const COST_UNIT_MICROS: u64 = 1_000;

/// `rate_limit_service`, compiled: where `global` budgets are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The gateway cluster (HTTP/2) of the rate-limit service.
    pub cluster: Box<str>,
    /// The protocol's `domain` (Limitador's namespace).
    pub domain: Box<str>,
    /// Per call; the host answers every call by then.
    pub timeout_ms: u32,
    /// When the service cannot answer: admit (and count) rather than
    /// refuse with `budget_unavailable`.
    pub fail_open: bool,
}

/// One request's reservation on one global budget: asked at admission,
/// then held (with the service's hold id) until its settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub budget: BudgetId,
    pub metric: Metric,
    /// The workload's hash.
    pub subject: u64,
    /// The window's start, epoch seconds.
    pub window_start: u64,
    /// In the budget's unit (micro-dollars for cost).
    pub amount: u64,
}

/// `amount` of `metric` in protocol units (cost rounded up).
pub fn units(metric: Metric, amount: u64) -> u64 {
    match metric {
        Metric::Cost => amount.div_ceil(COST_UNIT_MICROS),
        Metric::Requests | Metric::Tokens => amount,
    }
}

/// A budget's limit in protocol units (cost rounded down), if it fits the
/// protocol's 32 bits and is at least 1.
pub fn limit_units(b: &Budget) -> Option<u32> {
    let n = match b.metric {
        Metric::Cost => b.limit / COST_UNIT_MICROS,
        Metric::Requests | Metric::Tokens => b.limit,
    };
    u32::try_from(n).ok().filter(|n| *n > 0)
}

/// `envoy.type.v3.RateLimitUnit` of a window.
fn unit(w: Window) -> u64 {
    match w {
        Window::Minute => 2,
        Window::Hour => 3,
        Window::Day => 4,
        Window::Month => 5,
    }
}

/// One descriptor of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor<'a> {
    pub budget: &'a Budget,
    /// The workload's hash (ignored for a shared budget).
    pub subject: u64,
    /// The window's start, epoch seconds.
    pub window_start: u64,
    /// Protocol units.
    pub hits: u64,
    /// How the hits count.
    pub kind: Hits<'a>,
}

/// What a descriptor's hits do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hits<'a> {
    /// Admission: hold them, if they fit.
    Reserve,
    /// Settlement of a hold: charge them and release the hold.
    Commit { reservation: &'a str },
    /// Settlement without a hold id: add them (`negative`: give them back).
    Adjust { negative: bool },
}

/// The `subject` entry.
pub fn subject_entry(b: &Budget, subject: u64) -> String {
    match b.scope {
        Scope::Shared => "shared".to_string(),
        Scope::PerWorkload { .. } => format!("{subject:016x}"),
    }
}

/// A `RateLimitRequest` for `domain`.
pub fn encode_request(domain: &str, descriptors: &[Descriptor<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 128 * descriptors.len());
    put_domain(&mut out, domain);
    for d in descriptors {
        put_descriptor(&mut out, d);
    }
    out
}

/// Appends a request's `domain` field. A request is its domain followed by
/// its descriptors, in any number of [`put_descriptor`] calls: settlements
/// of many streams are batched so.
pub fn put_domain(out: &mut Vec<u8>, domain: &str) {
    put_bytes(out, 1, domain.as_bytes());
}

/// Appends one `descriptors` field.
pub fn put_descriptor(out: &mut Vec<u8>, d: &Descriptor<'_>) {
    let mut m = Vec::with_capacity(128);
    let window = d.window_start.to_string();
    let subject = subject_entry(d.budget, d.subject);
    let mut entries: [(&str, &str); 4] = [
        ("tollgate_budget", &d.budget.name),
        ("subject", &subject),
        ("window", &window),
        ("", ""),
    ];
    let n = match d.kind {
        Hits::Commit { reservation } => {
            entries[3] = ("reservation", reservation);
            4
        }
        Hits::Reserve | Hits::Adjust { .. } => 3,
    };
    for (k, v) in entries.iter().take(n) {
        let mut e = Vec::with_capacity(k.len() + v.len() + 4);
        put_bytes(&mut e, 1, k.as_bytes());
        put_bytes(&mut e, 2, v.as_bytes());
        put_bytes(&mut m, 1, &e);
    }
    let mut limit = Vec::with_capacity(12);
    put_varint_field(&mut limit, 1, u64::from(limit_units(d.budget).unwrap_or(0)));
    put_varint_field(&mut limit, 2, unit(d.budget.window));
    put_bytes(&mut m, 2, &limit);
    let mut hits = Vec::with_capacity(11);
    if d.hits > 0 {
        put_varint_field(&mut hits, 1, d.hits);
    }
    put_bytes(&mut m, 3, &hits);
    if matches!(d.kind, Hits::Adjust { negative: true }) {
        put_varint_field(&mut m, 4, 1);
    }
    put_bytes(out, 2, &m);
}

/// What the service answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// `overall_code` is OVER_LIMIT.
    pub over_limit: bool,
    /// Per descriptor, in order: whether it was over its limit.
    pub descriptors_over: Vec<bool>,
    /// Per descriptor, in order, the hold ids the service returned (empty:
    /// it keeps no holds, or none for that descriptor).
    pub reservations: Vec<Box<str>>,
}

impl Answer {
    /// Index of the first descriptor over its limit (the first one when
    /// the service said OVER_LIMIT without per-descriptor statuses).
    pub fn first_over(&self) -> Option<usize> {
        if !self.over_limit {
            return None;
        }
        Some(self.descriptors_over.iter().position(|o| *o).unwrap_or(0))
    }
}

/// An answer that is not a `RateLimitResponse` Tollgate can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Decodes a `RateLimitResponse`. An `overall_code` other than OK and
/// OVER_LIMIT (UNKNOWN, absent) is [`Malformed`]: the service did not say.
pub fn decode_answer(bytes: &[u8]) -> Result<Answer, Malformed> {
    let mut answer = Answer::default();
    let mut code = 0;
    let mut r = Reader(bytes);
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(c)) => code = c,
            (2, Value::Bytes(status)) => {
                let mut s = Reader(status);
                let mut over = false;
                while let Some((f, v)) = s.field()? {
                    if let (1, Value::Varint(c)) = (f, v) {
                        over = c == 2;
                    }
                }
                answer.descriptors_over.push(over);
            }
            (3, Value::Bytes(header)) => {
                let mut h = Reader(header);
                let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
                while let Some((f, v)) = h.field()? {
                    match (f, v) {
                        (1, Value::Bytes(k)) => key = k,
                        (2 | 3, Value::Bytes(v)) => value = v,
                        _ => {}
                    }
                }
                if key.eq_ignore_ascii_case(RESERVATION_HEADER.as_bytes()) {
                    let id = core::str::from_utf8(value).map_err(|_| Malformed)?;
                    answer.reservations.push(id.into());
                }
            }
            _ => {}
        }
    }
    match code {
        1 => {}
        2 => answer.over_limit = true,
        _ => return Err(Malformed),
    }
    Ok(answer)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, n: u64) {
    put_varint(out, field << 3);
    put_varint(out, n);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// A protobuf field reader over a message's bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut n = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
            self.0 = rest;
            n |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(Malformed)
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next field, `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, Malformed> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Value::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Value::Bytes(self.skip(n)?)
            }
            5 => {
                self.skip(4)?;
                Value::Fixed
            }
            _ => return Err(Malformed),
        };
        Ok(Some((tag >> 3, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn budget(metric: Metric, limit: u64, scope: Scope) -> Budget {
        Budget {
            name: "team".into(),
            metric,
            limit,
            window: Window::Day,
            scope,
            tier: super::super::Tier::Global,
        }
    }

    /// Walks a message into (field, value-as-bytes-or-number) pairs.
    fn fields(bytes: &[u8]) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        let mut r = Reader(bytes);
        let mut out = Vec::new();
        while let Some((f, v)) = r.field().unwrap() {
            out.push((
                f,
                match v {
                    Value::Varint(n) => Err(n),
                    Value::Bytes(b) => Ok(b.to_vec()),
                    Value::Fixed => Err(u64::MAX),
                },
            ));
        }
        out
    }

    #[test]
    fn admission_descriptor_carries_budget_subject_window_limit_and_hits() {
        let b = budget(Metric::Tokens, 20_000_000, Scope::PerWorkload { slots: 64 });
        let d = Descriptor {
            budget: &b,
            subject: 0xabc,
            window_start: 1_764_460_800,
            hits: 300,
            kind: Hits::Reserve,
        };
        let msg = encode_request("tollgate", &[d]);
        let top = fields(&msg);
        assert_eq!(top[0], (1, Ok(b"tollgate".to_vec())));
        let Ok(desc) = &top[1].1 else { panic!() };
        let desc = fields(desc);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = desc
            .iter()
            .filter(|(f, _)| *f == 1)
            .map(|(_, v)| {
                let e = fields(v.as_ref().unwrap());
                (e[0].1.clone().unwrap(), e[1].1.clone().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                (b"tollgate_budget".to_vec(), b"team".to_vec()),
                (b"subject".to_vec(), b"0000000000000abc".to_vec()),
                (b"window".to_vec(), b"1764460800".to_vec()),
            ]
        );
        let limit = desc.iter().find(|(f, _)| *f == 2).unwrap();
        assert_eq!(
            fields(limit.1.as_ref().unwrap()),
            vec![(1, Err(20_000_000)), (2, Err(4))]
        );
        let hits = desc.iter().find(|(f, _)| *f == 3).unwrap();
        assert_eq!(fields(hits.1.as_ref().unwrap()), vec![(1, Err(300))]);
        assert!(desc.iter().all(|(f, _)| *f != 4));
    }

    #[test]
    fn settlements_commit_a_hold_or_adjust_by_the_difference() {
        let b = budget(Metric::Requests, 10, Scope::Shared);
        let commit = Descriptor {
            budget: &b,
            subject: 7,
            window_start: 0,
            hits: 0,
            kind: Hits::Commit { reservation: "r-1" },
        };
        let desc = fields(
            fields(&encode_request("d", &[commit.clone()]))[1]
                .1
                .as_ref()
                .unwrap(),
        );
        let entries: Vec<_> = desc.iter().filter(|(f, _)| *f == 1).collect();
        assert_eq!(entries.len(), 4);
        let last = fields(entries[3].1.as_ref().unwrap());
        assert_eq!(last[1].1, Ok(b"r-1".to_vec()));
        let subject = fields(entries[1].1.as_ref().unwrap());
        assert_eq!(subject[1].1, Ok(b"shared".to_vec()));
        // Zero hits: the wrapper is present and empty (an explicit 0).
        assert!(desc.contains(&(3, Ok(Vec::new()))));
        let refund = Descriptor {
            kind: Hits::Adjust { negative: true },
            hits: 5,
            ..commit
        };
        let desc = fields(
            fields(&encode_request("d", &[refund]))[1]
                .1
                .as_ref()
                .unwrap(),
        );
        assert!(desc.contains(&(4, Err(1))));
        assert_eq!(desc.iter().filter(|(f, _)| *f == 1).count(), 3);
    }

    #[test]
    fn cost_travels_in_tenths_of_a_cent_never_looser() {
        let b = budget(Metric::Cost, 5_000_000_999, Scope::Shared);
        assert_eq!(limit_units(&b), Some(5_000_000));
        assert_eq!(units(Metric::Cost, 1), 1);
        assert_eq!(units(Metric::Cost, 2_000), 2);
        assert_eq!(units(Metric::Cost, 2_001), 3);
        assert_eq!(units(Metric::Tokens, 2_001), 2_001);
        let too_big = budget(Metric::Tokens, u64::from(u32::MAX) + 1, Scope::Shared);
        assert_eq!(limit_units(&too_big), None);
        assert_eq!(limit_units(&budget(Metric::Cost, 999, Scope::Shared)), None);
    }

    fn answer(code: u64, statuses: &[u64], ids: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint_field(&mut out, 1, code);
        for s in statuses {
            let mut m = Vec::new();
            put_varint_field(&mut m, 1, *s);
            put_varint_field(&mut m, 3, 17);
            put_bytes(&mut out, 2, &m);
        }
        for id in ids {
            let mut h = Vec::new();
            put_bytes(&mut h, 1, RESERVATION_HEADER.as_bytes());
            put_bytes(&mut h, 2, id.as_bytes());
            put_bytes(&mut out, 3, &h);
        }
        // An unknown field of each wire type is skipped.
        put_varint_field(&mut out, 9, 1);
        out.extend_from_slice(&[(10 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&[(11 << 3) | 5, 0, 0, 0, 0]);
        out
    }

    #[test]
    fn answers_decode_and_garbage_is_malformed() {
        let ok = decode_answer(&answer(1, &[1, 1], &["a", "b"])).unwrap();
        assert!(!ok.over_limit);
        assert_eq!(ok.reservations, vec!["a".into(), "b".into()]);
        assert_eq!(ok.first_over(), None);
        let over = decode_answer(&answer(2, &[1, 2], &[])).unwrap();
        assert_eq!(over.first_over(), Some(1));
        assert_eq!(
            decode_answer(&answer(2, &[], &[])).unwrap().first_over(),
            Some(0)
        );
        assert_eq!(decode_answer(&answer(0, &[], &[])), Err(Malformed));
        assert_eq!(decode_answer(b""), Err(Malformed));
        let full = answer(1, &[1], &["a"]);
        for cut in 1..full.len() {
            // Any truncation either fails or still decodes: never panics.
            let _ = decode_answer(&full[..cut]);
        }
        assert_eq!(decode_answer(&[0x0f]), Err(Malformed));
        assert_eq!(decode_answer(&[0x12, 0x05, 1]), Err(Malformed));
    }
}
