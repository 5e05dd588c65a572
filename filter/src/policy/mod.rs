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
//! - Rules are immutable once compiled; evaluation allocates nothing beyond
//!   the caller's scratch vector.

pub mod endpoint_pattern;
pub mod workload_pattern;

use crate::provider::ProviderId;
use crate::reason::DenyReason;
use crate::request_path::RequestTarget;
use crate::spiffe::SpiffeId;
use endpoint_pattern::EndpointPattern;
use workload_pattern::WorkloadIndex;

/// Index of a rule in the policy, in configuration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(pub u32);

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Box<str>,
    /// Sorted, deduplicated.
    pub providers: Vec<ProviderId>,
    pub endpoints: Vec<EndpointPattern>,
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
    rules: Vec<Rule>,
    index: WorkloadIndex,
}

impl Policy {
    /// Builds a policy. `workloads[i]` are rule `i`'s parsed patterns.
    pub fn new(rules: Vec<Rule>, workloads: Vec<Vec<workload_pattern::WorkloadPattern>>) -> Policy {
        let mut index = WorkloadIndex::default();
        for (i, patterns) in workloads.iter().enumerate() {
            for p in patterns {
                index.insert(p, i as u32);
            }
        }
        Policy { rules, index }
    }

    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(id.0 as usize)
    }

    pub fn rule_name(&self, id: RuleId) -> &str {
        self.rule(id).map_or("", |r| &r.name)
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
            if rule.providers.binary_search(&provider).is_err() {
                continue;
            }
            provider_seen = true;
            if rule.endpoints.iter().any(|e| e.matches(method, target)) {
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

#[cfg(test)]
mod tests {
    use super::workload_pattern::WorkloadPattern;
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> Policy {
        let rules = vec![
            Rule {
                name: "support-chat".into(),
                providers: vec![ProviderId(0)],
                endpoints: vec![EndpointPattern::parse("POST /v1/chat/completions").unwrap()],
            },
            Rule {
                name: "batch-embeddings".into(),
                providers: vec![ProviderId(0), ProviderId(1)],
                endpoints: vec![EndpointPattern::parse("POST /v1/embeddings").unwrap()],
            },
        ];
        let workloads = vec![
            vec![WorkloadPattern::parse("spiffe://td/ns/support/*").unwrap()],
            vec![WorkloadPattern::parse("spiffe://td/ns/batch/sa/embedder").unwrap()],
        ];
        Policy::new(rules, workloads)
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
