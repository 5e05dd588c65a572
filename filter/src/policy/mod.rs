//! The access policy: which workload may call which provider endpoints.
//!
//! Evaluation ([`Policy::evaluate`]) is deny-by-default and first-match by
//! rule order. A permit names the rule that matched. When nothing matches,
//! the denial says how far the request got: no rule for the workload at all,
//! rules for the workload but not this provider, or rules for both but not
//! this method and path.
//!
//! Invariants:
//! - Exact and prefix workload lookup goes through [`WorkloadIndex`], whose
//!   cost depends on the SPIFFE ID's depth, not on the number of rules.
//! - Rules are immutable once built ([`PolicyBuilder::build`]); evaluation
//!   allocates nothing beyond the caller's scratch vector.
//! - Identical provider sets and identical endpoint-pattern sets are stored
//!   once and shared by index (10,000 rules typically share a handful), so a
//!   rule costs its name (end to end with the others' in one string), its
//!   workload keys and two indices.

pub mod endpoint_pattern;
pub mod limits;
pub mod model_pattern;
pub mod workload_pattern;

use core::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::provider::ProviderId;
use crate::reason::DenyReason;
use crate::request_path::RequestTarget;
use crate::spiffe::SpiffeId;
use endpoint_pattern::EndpointPattern;
use limits::ExchangeLimits;
use workload_pattern::{WorkloadIndex, WorkloadPattern};

/// Index of a rule in the policy, in configuration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(pub u32);

/// A compiled rule; its workloads live in the policy's [`WorkloadIndex`].
#[derive(Debug)]
struct Rule {
    /// Where its name ends in the policy's names; it starts where the
    /// previous rule's ends.
    name_end: u32,
    /// Index into [`Policy::provider_sets`].
    providers: u32,
    /// Index into [`Policy::endpoint_sets`].
    endpoints: u32,
    /// Models, output cap, body size; `None` for a header-only rule.
    limits: Option<Box<ExchangeLimits>>,
    /// The budgets its requests draw on (indices into `Config::budgets`).
    budgets: Box<[crate::budget::BudgetId]>,
    /// Its prompt guard (an index into `Config::guards`).
    guard: Option<u16>,
    /// Its DLP policy (an index into `Config::dlp`).
    dlp: Option<u16>,
}

/// A permit: which rule allowed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    pub rule: RuleId,
}

/// The policy's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(Permit),
    Deny(DenyReason),
}

#[derive(Debug, Default)]
pub struct Policy {
    rules: Box<[Rule]>,
    /// The rules' names, end to end.
    names: Box<str>,
    /// Each distinct provider set, sorted and deduplicated.
    provider_sets: Box<[Box<[ProviderId]>]>,
    /// Each distinct endpoint-pattern list.
    endpoint_sets: Box<[Box<[EndpointPattern]>]>,
    index: WorkloadIndex,
}

impl Policy {
    pub fn rule_name(&self, id: RuleId) -> &str {
        name(&self.rules, &self.names, id.0)
    }

    /// The rule's exchange limits; `None` for a header-only rule.
    pub fn limits(&self, id: RuleId) -> Option<&ExchangeLimits> {
        self.rules
            .get(id.0 as usize)
            .and_then(|r| r.limits.as_deref())
    }

    /// The budgets the rule's requests draw on (none: empty).
    pub fn budgets(&self, id: RuleId) -> &[crate::budget::BudgetId] {
        self.rules.get(id.0 as usize).map_or(&[], |r| &r.budgets)
    }

    /// The rule's prompt guard, if it has one.
    pub fn guard(&self, id: RuleId) -> Option<u16> {
        self.rules.get(id.0 as usize).and_then(|r| r.guard)
    }

    /// The rule's DLP policy, if it has one.
    pub fn dlp(&self, id: RuleId) -> Option<u16> {
        self.rules.get(id.0 as usize).and_then(|r| r.dlp)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides one request. `scratch` is reused across calls to avoid
    /// allocating.
    pub fn evaluate(
        &self,
        workload: &SpiffeId,
        provider: ProviderId,
        method: &[u8],
        target: &RequestTarget,
        scratch: &mut Vec<u32>,
    ) -> Decision {
        self.index.candidates(workload, scratch);
        if scratch.is_empty() {
            return Decision::Deny(DenyReason::WorkloadNotPermitted);
        }
        let mut provider_seen = false;
        for &i in scratch.iter() {
            let Some(rule) = self.rules.get(i as usize) else {
                continue;
            };
            let providers = self.provider_sets.get(rule.providers as usize);
            if providers.is_none_or(|p| p.binary_search(&provider).is_err()) {
                continue;
            }
            provider_seen = true;
            let endpoints = self.endpoint_sets.get(rule.endpoints as usize);
            if endpoints.is_some_and(|e| e.iter().any(|e| e.matches(method, target))) {
                return Decision::Allow(Permit { rule: RuleId(i) });
            }
        }
        Decision::Deny(if provider_seen {
            DenyReason::EndpointNotPermitted
        } else {
            DenyReason::ProviderNotPermitted
        })
    }
}

/// The name of rule number `i` of `rules`, whose names are `names`.
fn name<'a>(rules: &[Rule], names: &'a str, i: u32) -> &'a str {
    let i = i as usize;
    let start = i
        .checked_sub(1)
        .and_then(|p| rules.get(p))
        .map_or(0, |r| r.name_end as usize);
    let end = rules.get(i).map_or(start, |r| r.name_end as usize);
    names.get(start..end).unwrap_or("")
}

/// Builds a [`Policy`] one rule at a time, in configuration order, so a
/// large policy never exists twice (once as input, once compiled).
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    rules: Vec<Rule>,
    /// The rules' names, end to end.
    names_text: String,
    /// Rule numbers by name, for [`PolicyBuilder::has_rule_named`].
    names: HashTable<u32>,
    provider_sets: Interner<ProviderId>,
    endpoint_sets: Interner<EndpointPattern>,
    index: WorkloadIndex,
    hasher: DefaultHashBuilder,
}

impl PolicyBuilder {
    /// A builder with room for `rules` rules (and as many exact workload
    /// patterns) before anything has to grow.
    pub fn with_capacity(rules: usize) -> Self {
        PolicyBuilder {
            rules: Vec::with_capacity(rules),
            names: HashTable::with_capacity(rules),
            index: WorkloadIndex::with_capacity(rules),
            ..PolicyBuilder::default()
        }
    }

    /// Whether a rule named `name` was already added.
    pub fn has_rule_named(&self, name: &str) -> bool {
        let hash = self.hasher.hash_one(name);
        let (rules, text) = (&self.rules, &self.names_text);
        self.names
            .find(hash, |&i| self::name(rules, text, i) == name)
            .is_some()
    }

    /// Adds the next rule; it matches requests from any of `workloads` to any
    /// of `providers` (in any order, repeats allowed) at any of `endpoints`.
    pub fn push(
        &mut self,
        name: &str,
        workloads: &[WorkloadPattern],
        providers: Vec<ProviderId>,
        endpoints: Vec<EndpointPattern>,
    ) -> RuleId {
        let providers = self.provider_set(providers);
        let endpoints = self.endpoint_set(endpoints);
        self.push_sets(name, &mut workloads.to_vec(), providers, endpoints)
    }

    /// The number of a provider set (in any order, repeats allowed), for
    /// [`PolicyBuilder::push_sets`]; each distinct set is stored once.
    pub fn provider_set(&mut self, mut providers: Vec<ProviderId>) -> u32 {
        crate::sort::sort(&mut providers);
        providers.dedup();
        self.provider_sets.intern(providers)
    }

    /// The number of an endpoint-pattern list, for
    /// [`PolicyBuilder::push_sets`]; each distinct list is stored once.
    pub fn endpoint_set(&mut self, endpoints: Vec<EndpointPattern>) -> u32 {
        self.endpoint_sets.intern(endpoints)
    }

    /// [`PolicyBuilder::push`] with sets numbered by this builder's
    /// [`PolicyBuilder::provider_set`] and [`PolicyBuilder::endpoint_set`]
    /// (so a caller that sees the same list again need not parse it again),
    /// taking the workload patterns out of `workloads` (left empty, for the
    /// caller to reuse).
    pub fn push_sets(
        &mut self,
        name: &str,
        workloads: &mut Vec<WorkloadPattern>,
        providers: u32,
        endpoints: u32,
    ) -> RuleId {
        let id = RuleId(self.rules.len() as u32);
        for w in workloads.drain(..) {
            self.index.insert_owned(w, id.0);
        }
        self.names_text.push_str(name);
        self.rules.push(Rule {
            name_end: self.names_text.len() as u32,
            providers,
            endpoints,
            limits: None,
            budgets: Box::new([]),
            guard: None,
            dlp: None,
        });
        let hash = self.hasher.hash_one(name);
        let (rules, text, hasher) = (&self.rules, &self.names_text, &self.hasher);
        self.names
            .insert_unique(hash, id.0, |&i| hasher.hash_one(self::name(rules, text, i)));
        id
    }

    /// Gives rule `id` its exchange limits.
    pub fn set_limits(&mut self, id: RuleId, limits: ExchangeLimits) {
        if let Some(r) = self.rules.get_mut(id.0 as usize) {
            r.limits = Some(Box::new(limits));
        }
    }

    /// Gives rule `id` a DLP policy.
    pub fn set_dlp(&mut self, id: RuleId, dlp: u16) {
        if let Some(r) = self.rules.get_mut(id.0 as usize) {
            r.dlp = Some(dlp);
        }
    }

    /// Gives rule `id` a prompt guard.
    pub fn set_guard(&mut self, id: RuleId, guard: u16) {
        if let Some(r) = self.rules.get_mut(id.0 as usize) {
            r.guard = Some(guard);
        }
    }

    /// Gives rule `id` the budgets its requests draw on.
    pub fn set_budgets(&mut self, id: RuleId, budgets: Box<[crate::budget::BudgetId]>) {
        if let Some(r) = self.rules.get_mut(id.0 as usize) {
            r.budgets = budgets;
        }
    }

    pub fn build(self) -> Policy {
        Policy {
            rules: self.rules.into_boxed_slice(),
            names: self.names_text.into_boxed_str(),
            provider_sets: self.provider_sets.into_sets(),
            endpoint_sets: self.endpoint_sets.into_sets(),
            index: self.index,
        }
    }
}

/// Stores each distinct list once and names it by its index.
#[derive(Debug)]
struct Interner<T> {
    sets: Vec<Box<[T]>>,
    /// Indices into `sets`, by content.
    find: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            sets: Vec::new(),
            find: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<T: Hash + Eq> Interner<T> {
    /// The index of a list equal to `items`, added if new.
    fn intern(&mut self, items: Vec<T>) -> u32 {
        let hash = self.hasher.hash_one(items.as_slice());
        let sets = &self.sets;
        let same = |&i: &u32| sets.get(i as usize).is_some_and(|s| **s == *items);
        if let Some(&i) = self.find.find(hash, same) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(items.into_boxed_slice());
        let (sets, hasher) = (&self.sets, &self.hasher);
        self.find.insert_unique(hash, i, |&i| {
            hasher.hash_one(sets.get(i as usize).map_or(&[][..], |s| &**s))
        });
        i
    }

    fn into_sets(self) -> Box<[Box<[T]>]> {
        self.sets.into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> Policy {
        let mut b = PolicyBuilder::with_capacity(2);
        let ep = |text: &str| vec![EndpointPattern::parse(text).unwrap()];
        let wl = |text: &str| [WorkloadPattern::parse(text).unwrap()];
        b.push(
            "support-chat",
            &wl("spiffe://td/ns/support/*"),
            vec![ProviderId(0)],
            ep("POST /v1/chat/completions"),
        );
        b.push(
            "batch-embeddings",
            &wl("spiffe://td/ns/batch/sa/embedder"),
            vec![ProviderId(1), ProviderId(0), ProviderId(1)],
            ep("POST /v1/embeddings"),
        );
        assert!(b.has_rule_named("support-chat"));
        assert!(!b.has_rule_named("support"));
        b.build()
    }

    fn eval(p: &Policy, who: &str, provider: u16, method: &str, path: &str) -> Decision {
        let id = SpiffeId::parse(who.as_bytes()).unwrap();
        let t = RequestTarget::parse(path.as_bytes()).unwrap();
        p.evaluate(
            &id,
            ProviderId(provider),
            method.as_bytes(),
            &t,
            &mut Vec::new(),
        )
    }

    #[test]
    fn identical_provider_and_endpoint_sets_are_stored_once() {
        let mut b = PolicyBuilder::with_capacity(1000);
        for i in 0..1000 {
            let workload = format!("spiffe://td/ns/tenant{i}/sa/app");
            b.push(
                &format!("w{i}"),
                &[WorkloadPattern::parse(&workload).unwrap()],
                vec![ProviderId((i % 2) as u16), ProviderId(0)],
                vec![EndpointPattern::parse("POST /v1/chat/completions").unwrap()],
            );
        }
        let p = b.build();
        assert_eq!(p.len(), 1000);
        assert_eq!(p.provider_sets.len(), 2);
        assert_eq!(p.endpoint_sets.len(), 1);
        assert_eq!(p.rule_name(RuleId(999)), "w999");
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/tenant999/sa/app",
                1,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Allow(Permit { rule: RuleId(999) })
        );
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/tenant998/sa/app",
                1,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Deny(DenyReason::ProviderNotPermitted)
        );
    }

    #[test]
    fn permits_name_the_matching_rule() {
        let p = policy();
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/support/sa/bot",
                0,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Allow(Permit { rule: RuleId(0) })
        );
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/batch/sa/embedder",
                1,
                "POST",
                "/v1/embeddings"
            ),
            Decision::Allow(Permit { rule: RuleId(1) })
        );
    }

    #[test]
    fn denials_say_how_far_the_request_got() {
        let p = policy();
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/other/sa/x",
                0,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Deny(DenyReason::WorkloadNotPermitted)
        );
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/support/sa/bot",
                1,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Deny(DenyReason::ProviderNotPermitted)
        );
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/support/sa/bot",
                0,
                "GET",
                "/v1/chat/completions"
            ),
            Decision::Deny(DenyReason::EndpointNotPermitted)
        );
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/support/sa/bot",
                0,
                "POST",
                "/v1/embeddings"
            ),
            Decision::Deny(DenyReason::EndpointNotPermitted)
        );
    }

    #[test]
    fn the_namespace_prefix_does_not_match_the_namespace_itself_or_siblings() {
        let p = policy();
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/support",
                0,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Deny(DenyReason::WorkloadNotPermitted)
        );
        assert_eq!(
            eval(
                &p,
                "spiffe://td/ns/supportx/sa/bot",
                0,
                "POST",
                "/v1/chat/completions"
            ),
            Decision::Deny(DenyReason::WorkloadNotPermitted)
        );
    }
}
