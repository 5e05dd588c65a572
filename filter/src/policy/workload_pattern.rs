//! Workload patterns (which SPIFFE IDs a rule covers) and the index that finds
//! every rule covering a given ID.
//!
//! A pattern is either an exact SPIFFE ID, or a SPIFFE ID followed by `/*`,
//! which covers every ID strictly under it: one or more further path segments
//! (`spiffe://td/ns/support/*` covers `spiffe://td/ns/support/sa/bot` but not
//! `spiffe://td/ns/support` nor `spiffe://td/ns/supportx/a`; `spiffe://td/*`
//! covers every ID of `td` with a non-empty path). A `*` anywhere else is an
//! error, never a literal.
//!
//! Invariants of [`WorkloadIndex`]: each list of rule numbers is ascending and
//! free of duplicates; a lookup costs one hash probe for the exact ID plus one
//! per `/` in the ID, plus the hits, whatever the number of rules. A pattern
//! named by one rule (the usual case) costs its ID (the one its rule parsed,
//! kept as is) and one table slot, with no list allocated.

use core::fmt;
use core::str::FromStr;

use core::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::spiffe::{SpiffeId, SpiffeIdError, SCHEME};

/// Why a workload pattern was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadPatternError {
    /// The ID (or the part before `/*`) is not a valid SPIFFE ID.
    InvalidId(SpiffeIdError),
    /// A `*` appears other than as the whole final path segment.
    MisplacedWildcard,
}

impl fmt::Display for WorkloadPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidId(e) => fmt::Display::fmt(e, f),
            Self::MisplacedWildcard => f.write_str(
                "a workload pattern may use '*' only as its whole final path segment ('spiffe://td/ns/x/*')",
            ),
        }
    }
}

impl std::error::Error for WorkloadPatternError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidId(e) => Some(e),
            Self::MisplacedWildcard => None,
        }
    }
}

impl From<SpiffeIdError> for WorkloadPatternError {
    fn from(e: SpiffeIdError) -> Self {
        Self::InvalidId(e)
    }
}

/// Which SPIFFE IDs a rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkloadPattern {
    /// Exactly this ID.
    Exact(SpiffeId),
    /// Every ID with one or more path segments under `parent`, written
    /// `<parent>/*`.
    Prefix {
        /// The ID the covered IDs sit under; not itself covered.
        parent: SpiffeId,
    },
}

impl WorkloadPattern {
    /// Parses `spiffe://td/path` or `spiffe://td/path/*` (or `spiffe://td/*`).
    pub fn parse(text: &str) -> Result<WorkloadPattern, WorkloadPatternError> {
        if let Some(parent) = text.strip_suffix("/*") {
            if parent.contains('*') || !parent.starts_with(SCHEME) {
                return Err(WorkloadPatternError::MisplacedWildcard);
            }
            return Ok(WorkloadPattern::Prefix {
                parent: SpiffeId::parse(parent.as_bytes())?,
            });
        }
        if text.contains('*') {
            return Err(WorkloadPatternError::MisplacedWildcard);
        }
        Ok(WorkloadPattern::Exact(SpiffeId::parse(text.as_bytes())?))
    }

    /// Whether `id` is covered by this pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(exact) => exact == id,
            Self::Prefix { parent } => id
                .as_str()
                .strip_prefix(parent.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
        }
    }
}

impl fmt::Display for WorkloadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => fmt::Display::fmt(id, f),
            Self::Prefix { parent } => write!(f, "{parent}/*"),
        }
    }
}

impl FromStr for WorkloadPattern {
    type Err = WorkloadPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkloadPattern::parse(s)
    }
}

/// The rules that name one pattern, ascending and without duplicates.
#[derive(Debug, Clone)]
enum RuleList {
    One(u32),
    Many(Vec<u32>),
}

impl RuleList {
    fn as_slice(&self) -> &[u32] {
        match self {
            Self::One(rule) => core::slice::from_ref(rule),
            Self::Many(rules) => rules,
        }
    }

    fn insert(&mut self, rule: u32) {
        match self {
            Self::One(first) if *first == rule => {}
            Self::One(first) => {
                let mut rules = vec![*first, rule];
                crate::sort::sort(&mut rules);
                *self = Self::Many(rules);
            }
            Self::Many(rules) => {
                if let Err(at) = rules.binary_search(&rule) {
                    rules.insert(at, rule);
                }
            }
        }
    }
}

/// Maps workload patterns to the numbers of the rules that name them.
#[derive(Debug, Clone, Default)]
pub struct WorkloadIndex {
    /// Exact ID -> rules, hashed by the ID's text.
    exact: HashTable<(SpiffeId, RuleList)>,
    /// Parent ID (without the `/*`) -> rules, hashed by the ID's text.
    prefix: HashTable<(SpiffeId, RuleList)>,
    hasher: DefaultHashBuilder,
}

impl WorkloadIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index with room for `exact` exact patterns before it grows
    /// (growing holds the old and the new table at once).
    pub fn with_capacity(exact: usize) -> Self {
        WorkloadIndex {
            exact: HashTable::with_capacity(exact),
            ..WorkloadIndex::default()
        }
    }

    /// Records that rule `rule` covers `pattern`. Idempotent.
    pub fn insert(&mut self, pattern: &WorkloadPattern, rule: u32) {
        self.insert_owned(pattern.clone(), rule);
    }

    /// [`WorkloadIndex::insert`], keeping the pattern's ID when it is new.
    pub fn insert_owned(&mut self, pattern: WorkloadPattern, rule: u32) {
        let (table, id) = match pattern {
            WorkloadPattern::Exact(id) => (&mut self.exact, id),
            WorkloadPattern::Prefix { parent } => (&mut self.prefix, parent),
        };
        let hasher = &self.hasher;
        let same = |(k, _): &(SpiffeId, RuleList)| k.as_str() == id.as_str();
        let rehash = |(k, _): &(SpiffeId, RuleList)| hasher.hash_one(k.as_str());
        match table.entry(hasher.hash_one(id.as_str()), same, rehash) {
            Entry::Occupied(mut e) => e.get_mut().1.insert(rule),
            Entry::Vacant(e) => {
                e.insert((id, RuleList::One(rule)));
            }
        }
    }

    /// The rules of the pattern with ID text `text` in `table`.
    fn find<'a>(
        &self,
        table: &'a HashTable<(SpiffeId, RuleList)>,
        text: &str,
    ) -> Option<&'a RuleList> {
        let hash = self.hasher.hash_one(text);
        table
            .find(hash, |(k, _)| k.as_str() == text)
            .map(|(_, rules)| rules)
    }

    /// Clears `out`, then fills it with every rule whose pattern covers `id`,
    /// ascending and without duplicates.
    pub fn candidates(&self, id: &SpiffeId, out: &mut Vec<u32>) {
        out.clear();
        let text = id.as_str();
        let mut lists = 0usize;
        if let Some(rules) = self.find(&self.exact, text) {
            out.extend_from_slice(rules.as_slice());
            lists += 1;
        }
        if !self.prefix.is_empty() {
            // Every '/' after the scheme ends a parent of `id`; since an ID
            // never ends with '/', something non-empty always follows it.
            let after_scheme = text.get(SCHEME.len()..).unwrap_or("");
            for (at, _) in after_scheme.match_indices('/') {
                let end = SCHEME.len() + at;
                if let Some(rules) = text.get(..end).and_then(|key| self.find(&self.prefix, key)) {
                    out.extend_from_slice(rules.as_slice());
                    lists += 1;
                }
            }
        }
        if lists > 1 {
            crate::sort::sort(out);
            out.dedup();
        }
    }

    /// Number of distinct patterns indexed.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len()
    }

    /// Whether no pattern is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pat(s: &str) -> WorkloadPattern {
        WorkloadPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_exact_and_prefix_patterns_and_round_trips() {
        for text in [
            "spiffe://cluster.local/ns/support/sa/bot",
            "spiffe://cluster.local",
            "spiffe://cluster.local/ns/support/*",
            "spiffe://td/*",
        ] {
            assert_eq!(pat(text).to_string(), text);
        }
        assert!(matches!(pat("spiffe://td/a"), WorkloadPattern::Exact(_)));
        assert!(matches!(
            pat("spiffe://td/a/*"),
            WorkloadPattern::Prefix { .. }
        ));
    }

    #[test]
    fn rejects_misplaced_wildcards_and_invalid_ids() {
        use WorkloadPatternError::*;
        let cases: &[(&str, WorkloadPatternError)] = &[
            ("spiffe://td/a*", MisplacedWildcard),
            ("spiffe://td/*/b", MisplacedWildcard),
            ("spiffe://td/*/*", MisplacedWildcard),
            ("spiffe://td/**", MisplacedWildcard),
            ("spiffe://*/a", MisplacedWildcard),
            ("spiffe://*", MisplacedWildcard),
            ("*", MisplacedWildcard),
            ("/*", MisplacedWildcard),
            ("spiffe://td*", MisplacedWildcard),
            ("spiffe://td/a/", InvalidId(SpiffeIdError::TrailingSlash)),
            ("spiffe://td//*", InvalidId(SpiffeIdError::TrailingSlash)),
            (
                "spiffe://TD/*",
                InvalidId(SpiffeIdError::TrustDomainUppercase),
            ),
            ("spiffe://td/../*", InvalidId(SpiffeIdError::DotSegment)),
            ("https://td/a", InvalidId(SpiffeIdError::Scheme)),
        ];
        for &(text, want) in cases {
            assert_eq!(WorkloadPattern::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn prefix_covers_only_ids_strictly_under_it() {
        let support = pat("spiffe://cluster.local/ns/support/*");
        let cases = [
            ("spiffe://cluster.local/ns/support/sa/bot", true),
            ("spiffe://cluster.local/ns/support/x", true),
            ("spiffe://cluster.local/ns/support", false),
            ("spiffe://cluster.local/ns/supportx/sa/bot", false),
            ("spiffe://cluster.local/ns/other/sa/bot", false),
            ("spiffe://other.local/ns/support/sa/bot", false),
        ];
        for (text, want) in cases {
            assert_eq!(support.matches(&id(text)), want, "{text}");
        }
        let whole = pat("spiffe://td/*");
        assert!(whole.matches(&id("spiffe://td/a")));
        assert!(whole.matches(&id("spiffe://td/a/b")));
        assert!(!whole.matches(&id("spiffe://td")));
        assert!(!whole.matches(&id("spiffe://tdx/a")));
        assert!(pat("spiffe://td/a").matches(&id("spiffe://td/a")));
        assert!(!pat("spiffe://td/a").matches(&id("spiffe://td/a/b")));
    }

    #[test]
    fn candidates_are_every_matching_rule_ascending_and_deduplicated() {
        let mut index = WorkloadIndex::new();
        index.insert(&pat("spiffe://td/ns/a/sa/x"), 7);
        index.insert(&pat("spiffe://td/ns/a/sa/x"), 2);
        index.insert(&pat("spiffe://td/ns/a/*"), 5);
        index.insert(&pat("spiffe://td/ns/a/*"), 2);
        index.insert(&pat("spiffe://td/*"), 9);
        index.insert(&pat("spiffe://td/*"), 9);
        index.insert(&pat("spiffe://td"), 1);
        index.insert(&pat("spiffe://other/*"), 3);
        let mut out = vec![99];
        let cases: &[(&str, &[u32])] = &[
            ("spiffe://td/ns/a/sa/x", &[2, 5, 7, 9]),
            ("spiffe://td/ns/a/sa/y", &[2, 5, 9]),
            ("spiffe://td/ns/a", &[9]),
            ("spiffe://td/ns/ab/c", &[9]),
            ("spiffe://td", &[1]),
            ("spiffe://other/z", &[3]),
            ("spiffe://none/z", &[]),
        ];
        for &(text, want) in cases {
            index.candidates(&id(text), &mut out);
            assert_eq!(out, want, "{text}");
        }
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn index_of_ten_thousand_workloads_agrees_with_linear_matching() {
        let mut patterns = Vec::new();
        for n in 0..10_000u32 {
            patterns.push(pat(&format!(
                "spiffe://cluster.local/ns/ns{}/sa/sa{n}",
                n % 100
            )));
        }
        for ns in [0u32, 17, 99] {
            patterns.push(pat(&format!("spiffe://cluster.local/ns/ns{ns}/*")));
        }
        patterns.push(pat("spiffe://cluster.local/*"));
        patterns.push(pat("spiffe://cluster.local/ns/*"));
        let mut index = WorkloadIndex::new();
        for (rule, p) in patterns.iter().enumerate() {
            index.insert(p, u32::try_from(rule).unwrap());
        }
        let probes = [
            "spiffe://cluster.local/ns/ns17/sa/sa117",
            "spiffe://cluster.local/ns/ns0/sa/sa9900",
            "spiffe://cluster.local/ns/ns99/sa/sa9999",
            "spiffe://cluster.local/ns/ns5/sa/sa6",
            "spiffe://cluster.local/ns/ns17",
            "spiffe://cluster.local/ns/ns170/sa/x",
            "spiffe://cluster.local",
            "spiffe://elsewhere/ns/ns17/sa/sa117",
        ];
        let mut out = Vec::new();
        for text in probes {
            let probe = id(text);
            index.candidates(&probe, &mut out);
            let linear: Vec<u32> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| p.matches(&probe))
                .map(|(rule, _)| u32::try_from(rule).unwrap())
                .collect();
            assert_eq!(out, linear, "{text}");
        }
        index.candidates(&id("spiffe://cluster.local/ns/ns17/sa/sa117"), &mut out);
        assert_eq!(out, [117, 10_001, 10_003, 10_004]);
    }
}
