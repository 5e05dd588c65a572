//! Tollgate's descriptors on Envoy's rate-limit protocol, and their limitador
//! form. Pure: no I/O, no clock.
//!
//! Job: turn a `RateLimitRequest` into a [`Call`] (an admission or a
//! settlement of typed [`BudgetHit`]s), and each hit into the limitador
//! [`Limit`] and [`Context`] that count it.
//!
//! The wire contract (Tollgate's filter is written against exactly this):
//! - `domain` is the limitador namespace (any non-empty string).
//! - Each descriptor is one budget of one subject, with the entries
//!   `tollgate_budget`, `subject`, `window` in this order, then on
//!   settlements only `reservation` (the id returned at admission; an empty
//!   id means "nothing was held").
//! - `limit` (a `RateLimitOverride` with unit MINUTE, HOUR, DAY or MONTH) is
//!   required on every descriptor, settlements included: the limit is built
//!   from it, so a settlement reaching a restarted service still finds it.
//! - The amount is the descriptor's `hits_addend` when present (0 is 0), else
//!   the request's `hits_addend`, where 0 means 1 (as in Envoy).
//! - `is_negative_hits` is refused.
//! - A request is an admission (no descriptor has a `reservation` entry) or
//!   a settlement (every descriptor has one); mixing them is refused.
//!
//! Invariants:
//! - Every refusal is a [`ProtocolError`] naming the descriptor index; the
//!   service answers it with gRPC INVALID_ARGUMENT. Nothing is dropped
//!   silently.
//! - One limitador [`Limit`] per (namespace, budget, unit): its conditions
//!   select the budget name and the unit, its variables are `subject` and
//!   `window`, so counters are per subject per window. `max` is not part of
//!   the limit's identity (limitador ignores it in `Eq`/`Hash` and in counter
//!   keys), so a changed max keeps the window's spend, while a changed unit is
//!   a new limit with new counters (the old one no longer matches).
//! - A limit's `seconds` is only its counters' TTL (minute 60, hour 3600,
//!   day 86400, month 31 days): windows are aligned by the window id that
//!   Tollgate sends, never by the TTL.

use std::collections::HashMap;
use std::fmt::Write as _;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use limitador::limit::{Context, Expression, Limit, ParseError, Predicate};

/// Descriptor entry 1: the budget's name.
pub const BUDGET_KEY: &str = "tollgate_budget";
/// Descriptor entry 2: the subject (a hash per workload, or `shared`).
pub const SUBJECT_KEY: &str = "subject";
/// Descriptor entry 3: the window id (e.g. `d20261130`).
pub const WINDOW_KEY: &str = "window";
/// Descriptor entry 4, settlements only: the id returned at admission.
pub const RESERVATION_KEY: &str = "reservation";
/// The response header carrying one reservation id per admitted descriptor
/// (empty when nothing was held), in descriptor order.
pub const RESERVATION_HEADER: &str = "x-tollgate-reservation";

/// The context binding holding the unit, so that a budget whose unit changed
/// no longer matches its old limit. Not a descriptor entry.
const UNIT_BINDING: &str = "tollgate_unit";

/// A budget's window unit, as Envoy's `RateLimitUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Month,
}

impl Unit {
    /// The counters' TTL: a month is 31 days (the longest one).
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Month => 31 * 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Month => "month",
        }
    }

    /// Envoy's `RateLimitUnit` value.
    pub fn to_proto(self) -> i32 {
        match self {
            Unit::Minute => RateLimitUnit::Minute as i32,
            Unit::Hour => RateLimitUnit::Hour as i32,
            Unit::Day => RateLimitUnit::Day as i32,
            Unit::Month => RateLimitUnit::Month as i32,
        }
    }

    fn from_proto(unit: i32) -> Option<Self> {
        match RateLimitUnit::try_from(unit).ok()? {
            RateLimitUnit::Minute => Some(Unit::Minute),
            RateLimitUnit::Hour => Some(Unit::Hour),
            RateLimitUnit::Day => Some(Unit::Day),
            RateLimitUnit::Month => Some(Unit::Month),
            RateLimitUnit::Unknown | RateLimitUnit::Second | RateLimitUnit::Year => None,
        }
    }
}

/// One budget's limit, from the descriptor's `RateLimitOverride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetLimit {
    pub max: u32,
    pub unit: Unit,
}

/// Which counter a descriptor counts against, and under which limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetHit {
    pub budget: String,
    pub subject: String,
    pub window: String,
    pub limit: BudgetLimit,
    /// Admission: the amount to hold. Settlement: the actual amount to charge.
    pub amount: u64,
}

/// A settlement of one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub hit: BudgetHit,
    /// `None` when admission held nothing (it answered an empty id).
    pub reservation: Option<String>,
}

/// A whole `ShouldRateLimit` call, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Hold every hit's amount, all or nothing.
    Admit {
        namespace: String,
        hits: Vec<BudgetHit>,
    },
    /// Charge the actual amounts and release the holds; never refuses.
    Settle {
        namespace: String,
        settlements: Vec<Settlement>,
    },
}

/// Why a request was refused as malformed (gRPC INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("domain is empty (it names the limitador namespace)")]
    EmptyDomain,
    #[error("no descriptors")]
    NoDescriptors,
    #[error("descriptors[{index}]: entry {position} must be {expected:?}, not {found:?}")]
    UnexpectedEntry {
        index: usize,
        position: usize,
        expected: &'static str,
        found: String,
    },
    #[error("descriptors[{index}]: {entries} entries; expected tollgate_budget, subject, window[, reservation]")]
    EntryCount { index: usize, entries: usize },
    #[error("descriptors[{index}]: {key} is empty")]
    EmptyValue { index: usize, key: &'static str },
    #[error("descriptors[{index}]: no limit override (requests_per_unit and unit are required)")]
    MissingLimit { index: usize },
    #[error("descriptors[{index}]: unit {unit} is not MINUTE, HOUR, DAY or MONTH")]
    UnsupportedUnit { index: usize, unit: i32 },
    #[error("descriptors[{index}]: is_negative_hits is not supported")]
    NegativeHits { index: usize },
    #[error("descriptors[{index}]: admissions and settlements cannot share a request")]
    MixedRequest { index: usize },
}

/// Validates a request into a [`Call`].
pub fn parse(req: &RateLimitRequest) -> Result<Call, ProtocolError> {
    if req.domain.is_empty() {
        return Err(ProtocolError::EmptyDomain);
    }
    if req.descriptors.is_empty() {
        return Err(ProtocolError::NoDescriptors);
    }
    let default_amount = u64::from(req.hits_addend.max(1));
    let mut hits = Vec::with_capacity(req.descriptors.len());
    let mut settling = None;
    for (index, d) in req.descriptors.iter().enumerate() {
        let (hit, reservation) = parse_descriptor(index, d, default_amount)?;
        let is_settlement = reservation.is_some();
        if *settling.get_or_insert(is_settlement) != is_settlement {
            return Err(ProtocolError::MixedRequest { index });
        }
        hits.push((hit, reservation));
    }
    let namespace = req.domain.clone();
    Ok(if settling == Some(true) {
        Call::Settle {
            namespace,
            settlements: hits
                .into_iter()
                .map(|(hit, reservation)| Settlement {
                    hit,
                    reservation: reservation.filter(|r| !r.is_empty()),
                })
                .collect(),
        }
    } else {
        Call::Admit {
            namespace,
            hits: hits.into_iter().map(|(hit, _)| hit).collect(),
        }
    })
}

/// One descriptor: its hit, and `Some(id)` when it has a `reservation`
/// entry (possibly empty).
fn parse_descriptor(
    index: usize,
    d: &RateLimitDescriptor,
    default_amount: u64,
) -> Result<(BudgetHit, Option<String>), ProtocolError> {
    let RateLimitDescriptor {
        entries,
        limit,
        hits_addend,
        is_negative_hits,
    } = d;
    if *is_negative_hits {
        return Err(ProtocolError::NegativeHits { index });
    }
    if !(3..=4).contains(&entries.len()) {
        return Err(ProtocolError::EntryCount {
            index,
            entries: entries.len(),
        });
    }
    let expected = [BUDGET_KEY, SUBJECT_KEY, WINDOW_KEY, RESERVATION_KEY];
    for (position, (entry, key)) in entries.iter().zip(expected).enumerate() {
        if entry.key != key {
            return Err(ProtocolError::UnexpectedEntry {
                index,
                position: position + 1,
                expected: key,
                found: entry.key.clone(),
            });
        }
        if entry.value.is_empty() && key != RESERVATION_KEY {
            return Err(ProtocolError::EmptyValue { index, key });
        }
    }
    let limit = limit.ok_or(ProtocolError::MissingLimit { index })?;
    let unit = Unit::from_proto(limit.unit).ok_or(ProtocolError::UnsupportedUnit {
        index,
        unit: limit.unit,
    })?;
    let hit = BudgetHit {
        budget: entries[0].value.clone(),
        subject: entries[1].value.clone(),
        window: entries[2].value.clone(),
        limit: BudgetLimit {
            max: limit.requests_per_unit,
            unit,
        },
        amount: hits_addend.map_or(default_amount, |h| h.value),
    };
    Ok((hit, entries.get(3).map(|e| e.value.clone())))
}

/// The limitador limit that counts `budget` with `limit` in `namespace`.
///
/// `Err` only if the generated CEL does not parse, which would be a bug in
/// [`cel_string`].
pub fn limit_for(namespace: &str, budget: &str, limit: BudgetLimit) -> Result<Limit, ParseError> {
    let conditions = [
        Predicate::parse(format!("{BUDGET_KEY} == {}", cel_string(budget)))?,
        Predicate::parse(format!(
            "{UNIT_BINDING} == {}",
            cel_string(limit.unit.as_str())
        ))?,
    ];
    let variables = [
        Expression::parse(SUBJECT_KEY)?,
        Expression::parse(WINDOW_KEY)?,
    ];
    let mut l = Limit::new(
        namespace,
        u64::from(limit.max),
        limit.unit.seconds(),
        conditions,
        variables,
    );
    l.set_name(budget.to_string());
    Ok(l)
}

/// The limitador context that selects `hit`'s limit and counter.
pub fn context_for(hit: &BudgetHit) -> Context<'static> {
    HashMap::from([
        (BUDGET_KEY.to_string(), hit.budget.clone()),
        (SUBJECT_KEY.to_string(), hit.subject.clone()),
        (WINDOW_KEY.to_string(), hit.window.clone()),
        (
            UNIT_BINDING.to_string(),
            hit.limit.unit.as_str().to_string(),
        ),
    ])
    .into()
}

/// `s` as a double-quoted CEL string literal: letters, digits and `-_.:/`
/// as they are, every other character as `\UXXXXXXXX`, so any name is safe.
fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/') {
            out.push(c);
        } else {
            let _ = write!(out, "\\U{:08x}", u32::from(c));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
        Entry, RateLimitOverride,
    };
    use envoy_types::pb::google::protobuf::UInt64Value;
    use limitador::counter::Counter;

    fn entry(k: &str, v: &str) -> Entry {
        Entry {
            key: k.into(),
            value: v.into(),
        }
    }

    fn descriptor(
        entries: &[(&str, &str)],
        unit: RateLimitUnit,
        hits: Option<u64>,
    ) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries.iter().map(|(k, v)| entry(k, v)).collect(),
            limit: Some(RateLimitOverride {
                requests_per_unit: 100,
                unit: unit as i32,
            }),
            hits_addend: hits.map(|value| UInt64Value { value }),
            is_negative_hits: false,
        }
    }

    const ADMIT: [(&str, &str); 3] = [
        ("tollgate_budget", "tokens"),
        ("subject", "ab12"),
        ("window", "d20261130"),
    ];
    const SETTLE: [(&str, &str); 4] = [
        ("tollgate_budget", "tokens"),
        ("subject", "ab12"),
        ("window", "d20261130"),
        ("reservation", "r-1"),
    ];

    fn request(descriptors: Vec<RateLimitDescriptor>, hits_addend: u32) -> RateLimitRequest {
        RateLimitRequest {
            domain: "tollgate".into(),
            descriptors,
            hits_addend,
        }
    }

    #[test]
    fn an_admission_is_parsed_into_typed_hits() {
        let call = parse(&request(
            vec![descriptor(&ADMIT, RateLimitUnit::Day, Some(40))],
            0,
        ))
        .unwrap();
        assert_eq!(
            call,
            Call::Admit {
                namespace: "tollgate".into(),
                hits: vec![BudgetHit {
                    budget: "tokens".into(),
                    subject: "ab12".into(),
                    window: "d20261130".into(),
                    limit: BudgetLimit {
                        max: 100,
                        unit: Unit::Day
                    },
                    amount: 40,
                }],
            }
        );
    }

    #[test]
    fn a_settlement_carries_its_reservation_and_an_empty_id_means_none() {
        let mut empty = SETTLE;
        empty[3].1 = "";
        let call = parse(&request(
            vec![
                descriptor(&SETTLE, RateLimitUnit::Hour, Some(0)),
                descriptor(&empty, RateLimitUnit::Hour, Some(7)),
            ],
            0,
        ))
        .unwrap();
        let Call::Settle { settlements, .. } = call else {
            panic!("not a settlement: {call:?}")
        };
        assert_eq!(settlements[0].reservation.as_deref(), Some("r-1"));
        assert_eq!(settlements[0].hit.amount, 0, "an explicit 0 is 0");
        assert_eq!(settlements[1].reservation, None);
        assert_eq!(settlements[1].hit.amount, 7);
    }

    #[test]
    fn the_amount_falls_back_to_the_request_hits_addend_where_0_means_1() {
        for (request_hits, expected) in [(0, 1), (1, 1), (25, 25)] {
            let Call::Admit { hits, .. } = parse(&request(
                vec![descriptor(&ADMIT, RateLimitUnit::Minute, None)],
                request_hits,
            ))
            .unwrap() else {
                panic!("not an admission")
            };
            assert_eq!(
                hits[0].amount, expected,
                "request hits_addend {request_hits}"
            );
        }
    }

    #[test]
    fn malformed_requests_are_refused_with_the_descriptor_index() {
        let ok = || descriptor(&ADMIT, RateLimitUnit::Day, Some(1));
        let with = |f: &dyn Fn(&mut RateLimitDescriptor)| {
            let mut d = ok();
            f(&mut d);
            request(vec![ok(), d], 0)
        };
        let cases: Vec<(RateLimitRequest, ProtocolError)> = vec![
            (
                RateLimitRequest {
                    domain: String::new(),
                    ..request(vec![ok()], 0)
                },
                ProtocolError::EmptyDomain,
            ),
            (request(vec![], 0), ProtocolError::NoDescriptors),
            (
                with(&|d| d.limit = None),
                ProtocolError::MissingLimit { index: 1 },
            ),
            (
                with(&|d| d.limit.as_mut().unwrap().unit = RateLimitUnit::Second as i32),
                ProtocolError::UnsupportedUnit { index: 1, unit: 1 },
            ),
            (
                with(&|d| d.limit.as_mut().unwrap().unit = 42),
                ProtocolError::UnsupportedUnit { index: 1, unit: 42 },
            ),
            (
                with(&|d| d.is_negative_hits = true),
                ProtocolError::NegativeHits { index: 1 },
            ),
            (
                with(&|d| d.entries.truncate(2)),
                ProtocolError::EntryCount {
                    index: 1,
                    entries: 2,
                },
            ),
            (
                with(&|d| d.entries.swap(1, 2)),
                ProtocolError::UnexpectedEntry {
                    index: 1,
                    position: 2,
                    expected: "subject",
                    found: "window".into(),
                },
            ),
            (
                with(&|d| d.entries.push(entry("other", "x"))),
                ProtocolError::UnexpectedEntry {
                    index: 1,
                    position: 4,
                    expected: "reservation",
                    found: "other".into(),
                },
            ),
            (
                with(&|d| d.entries[0].value.clear()),
                ProtocolError::EmptyValue {
                    index: 1,
                    key: "tollgate_budget",
                },
            ),
            (
                with(&|d| d.entries.push(entry("reservation", "r"))),
                ProtocolError::MixedRequest { index: 1 },
            ),
        ];
        for (req, expected) in cases {
            assert_eq!(parse(&req), Err(expected.clone()), "{expected}");
        }
    }

    fn hit(budget: &str, subject: &str, window: &str, unit: Unit) -> BudgetHit {
        BudgetHit {
            budget: budget.into(),
            subject: subject.into(),
            window: window.into(),
            limit: BudgetLimit { max: 10, unit },
            amount: 1,
        }
    }

    /// Whether `limit` applies to `hit`, and the counter's variables if so.
    fn counts(limit: &Limit, hit: &BudgetHit) -> Option<Vec<(String, String)>> {
        let ctx = context_for(hit);
        if !limit.applies(&ctx) {
            return None;
        }
        let counter = Counter::new(limit.clone(), &ctx).unwrap()?;
        Some(
            counter
                .set_variables()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn a_limit_selects_its_budget_and_unit_and_counts_per_subject_and_window() {
        let limit = limit_for(
            "ns",
            "tokens",
            BudgetLimit {
                max: 10,
                unit: Unit::Day,
            },
        )
        .unwrap();
        assert_eq!(limit.seconds(), 86_400);
        assert_eq!(limit.max_value(), 10);
        assert_eq!(
            counts(&limit, &hit("tokens", "ab", "d1", Unit::Day)),
            Some(vec![
                ("subject".into(), "ab".into()),
                ("window".into(), "d1".into())
            ])
        );
        assert_eq!(counts(&limit, &hit("tokens2", "ab", "d1", Unit::Day)), None);
        assert_eq!(counts(&limit, &hit("token", "ab", "d1", Unit::Day)), None);
        assert_eq!(
            counts(&limit, &hit("tokens", "ab", "d1", Unit::Hour)),
            None,
            "a changed unit is another limit"
        );
    }

    #[test]
    fn any_budget_name_is_quoted_safely() {
        let names = [
            "a\"b",
            "a\\b",
            "a'b",
            "x\" || true || \"",
            "new\nline",
            "ünïcode ✌ 🦀",
            "${x}",
            " ",
        ];
        for name in names {
            let limit = limit_for(
                "ns",
                name,
                BudgetLimit {
                    max: 1,
                    unit: Unit::Minute,
                },
            )
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert!(
                counts(&limit, &hit(name, "s", "w", Unit::Minute)).is_some(),
                "{name:?} must select itself"
            );
            for other in names.iter().filter(|o| **o != name) {
                assert!(
                    counts(&limit, &hit(other, "s", "w", Unit::Minute)).is_none(),
                    "{name:?} must not select {other:?}"
                );
            }
        }
    }

    #[test]
    fn limits_differ_by_unit_but_not_by_max() {
        let day = |max| {
            limit_for(
                "ns",
                "b",
                BudgetLimit {
                    max,
                    unit: Unit::Day,
                },
            )
            .unwrap()
        };
        let hour = limit_for(
            "ns",
            "b",
            BudgetLimit {
                max: 5,
                unit: Unit::Hour,
            },
        )
        .unwrap();
        // limitador's identity of a limit (and so of its counters' keys)
        // leaves the max out: the service relies on this to keep spend when
        // a policy changes a budget's max.
        assert_eq!(day(5), day(6));
        assert_ne!(day(5), hour);
    }
}
