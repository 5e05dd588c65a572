//! Every way a request can be refused, as one closed enum.
//!
//! Invariants:
//! - Each variant has one stable snake_case code. The code is what operators
//!   see in the `x-tollgate-reason` reply header, in the reply body, in the
//!   audit log line and in the metric name `tollgate.decision.deny.<code>`.
//!   Codes never change meaning; new reasons get new codes.
//! - Messages are static text. They never echo request data, so a reply can
//!   never reflect a header, a path or a credential back to the caller.

/// Why a request was (or, in dry run, would have been) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No validated mTLS peer certificate with a URI SAN.
    IdentityMissing,
    /// The peer's URI SAN is not a well-formed SPIFFE ID.
    IdentityInvalid,
    /// The SPIFFE ID's trust domain is not one the gateway trusts.
    TrustDomainUntrusted,
    /// `:method`, `:authority` or `:path` is missing or unreadable.
    RequestInvalid,
    /// The `:authority` is not `host[:port]` with an RFC 1123 host name.
    AuthorityInvalid,
    /// A method-override header asks for another method than `:method`.
    MethodOverride,
    /// A protocol upgrade (WebSocket, extended CONNECT): not supported.
    UpgradeNotSupported,
    /// The `:path` is ambiguous (dot segments, encoded separators, fragment, NUL…).
    PathInvalid,
    /// The `:authority` is not a configured provider host.
    UnknownUpstream,
    /// No rule names this workload.
    WorkloadNotPermitted,
    /// Rules name this workload, but none for this provider.
    ProviderNotPermitted,
    /// Rules allow this workload and provider, but not this method and path.
    EndpointNotPermitted,
    /// The credential service refused this credential (HTTP 403).
    CredentialDenied,
    /// No valid credential could be had: the service is down, slow, or answered badly.
    CredentialUnavailable,
    /// The filter could not do its job (a host call failed). Fail closed.
    InternalError,
    /// The rule lists models and the request's model is not among them.
    ModelNotPermitted,
    /// The rule lists models and the request names none Tollgate can read.
    ModelMissing,
    /// The request asks for more output tokens than the rule's cap (`deny`).
    MaxTokensExceeded,
    /// The body is larger than the rule's `max_body_bytes`.
    BodyTooLarge,
    /// The body must be inspected but is not plain JSON (content type or
    /// content encoding).
    BodyUnsupported,
    /// The body is not strict JSON (or a field the policy reads is malformed).
    BodyInvalid,
    /// The body never arrived (held mode without Envoy's
    /// `allow_on_headers_stop_iteration`, or a client that stalled).
    BodyTimeout,
    /// A `requests` budget of the rule is spent for this window.
    RateLimited,
    /// A `tokens` budget of the rule cannot hold this request's reservation.
    TokenBudgetExhausted,
    /// A budget's record could not be read or written (fail closed).
    BudgetUnavailable,
    /// A `cost` budget of the rule cannot hold this request's reservation.
    CostBudgetExhausted,
    /// The rule has a `cost` budget and the request's model has no price.
    PriceUnknown,
    /// The prompt is far above the workload's usual size (prompt guard).
    PromptAnomaly,
    /// A DLP detector whose rule action is `block` found something in the
    /// request body.
    DlpBlocked,
}

impl DenyReason {
    /// Every reason, for metric definition and documentation tests.
    pub const ALL: [DenyReason; 29] = [
        DenyReason::IdentityMissing,
        DenyReason::IdentityInvalid,
        DenyReason::TrustDomainUntrusted,
        DenyReason::RequestInvalid,
        DenyReason::AuthorityInvalid,
        DenyReason::MethodOverride,
        DenyReason::UpgradeNotSupported,
        DenyReason::PathInvalid,
        DenyReason::UnknownUpstream,
        DenyReason::WorkloadNotPermitted,
        DenyReason::ProviderNotPermitted,
        DenyReason::EndpointNotPermitted,
        DenyReason::CredentialDenied,
        DenyReason::CredentialUnavailable,
        DenyReason::InternalError,
        DenyReason::ModelNotPermitted,
        DenyReason::ModelMissing,
        DenyReason::MaxTokensExceeded,
        DenyReason::BodyTooLarge,
        DenyReason::BodyUnsupported,
        DenyReason::BodyInvalid,
        DenyReason::BodyTimeout,
        DenyReason::RateLimited,
        DenyReason::TokenBudgetExhausted,
        DenyReason::BudgetUnavailable,
        DenyReason::CostBudgetExhausted,
        DenyReason::PriceUnknown,
        DenyReason::PromptAnomaly,
        DenyReason::DlpBlocked,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            DenyReason::IdentityMissing => "identity_missing",
            DenyReason::IdentityInvalid => "identity_invalid",
            DenyReason::TrustDomainUntrusted => "trust_domain_untrusted",
            DenyReason::RequestInvalid => "request_invalid",
            DenyReason::AuthorityInvalid => "authority_invalid",
            DenyReason::MethodOverride => "method_override",
            DenyReason::UpgradeNotSupported => "upgrade_not_supported",
            DenyReason::PathInvalid => "path_invalid",
            DenyReason::UnknownUpstream => "unknown_upstream",
            DenyReason::WorkloadNotPermitted => "workload_not_permitted",
            DenyReason::ProviderNotPermitted => "provider_not_permitted",
            DenyReason::EndpointNotPermitted => "endpoint_not_permitted",
            DenyReason::CredentialDenied => "credential_denied",
            DenyReason::CredentialUnavailable => "credential_unavailable",
            DenyReason::InternalError => "internal_error",
            DenyReason::ModelNotPermitted => "model_not_permitted",
            DenyReason::ModelMissing => "model_missing",
            DenyReason::MaxTokensExceeded => "max_tokens_exceeded",
            DenyReason::BodyTooLarge => "body_too_large",
            DenyReason::BodyUnsupported => "body_unsupported",
            DenyReason::BodyInvalid => "body_invalid",
            DenyReason::BodyTimeout => "body_timeout",
            DenyReason::RateLimited => "rate_limited",
            DenyReason::TokenBudgetExhausted => "token_budget_exhausted",
            DenyReason::BudgetUnavailable => "budget_unavailable",
            DenyReason::CostBudgetExhausted => "cost_budget_exhausted",
            DenyReason::PriceUnknown => "price_unknown",
            DenyReason::PromptAnomaly => "prompt_anomaly",
            DenyReason::DlpBlocked => "dlp_blocked",
        }
    }

    /// The HTTP status of the local reply.
    pub const fn status(self) -> u32 {
        match self {
            DenyReason::RequestInvalid
            | DenyReason::PathInvalid
            | DenyReason::AuthorityInvalid
            | DenyReason::MethodOverride
            | DenyReason::BodyInvalid => 400,
            DenyReason::BodyTimeout => 408,
            DenyReason::BodyTooLarge => 413,
            DenyReason::BodyUnsupported => 415,
            DenyReason::UpgradeNotSupported => 501,
            DenyReason::RateLimited
            | DenyReason::TokenBudgetExhausted
            | DenyReason::CostBudgetExhausted => 429,
            DenyReason::CredentialUnavailable | DenyReason::BudgetUnavailable => 503,
            DenyReason::InternalError => 500,
            _ => 403,
        }
    }

    /// A human-readable explanation. Static: never contains request data.
    pub const fn message(self) -> &'static str {
        match self {
            DenyReason::IdentityMissing => {
                "Tollgate: the request has no mTLS peer identity; call through the mesh with a workload certificate"
            }
            DenyReason::IdentityInvalid => {
                "Tollgate: the peer certificate's URI SAN is not a valid SPIFFE ID"
            }
            DenyReason::TrustDomainUntrusted => {
                "Tollgate: the caller's SPIFFE trust domain is not trusted by this gateway"
            }
            DenyReason::RequestInvalid => {
                "Tollgate: the request lacks a readable :method, :authority or :path"
            }
            DenyReason::AuthorityInvalid => {
                "Tollgate: the request authority is not a plain host name with an optional port"
            }
            DenyReason::MethodOverride => {
                "Tollgate: method-override headers are refused; send the method you mean as the request method"
            }
            DenyReason::UpgradeNotSupported => {
                "Tollgate: protocol upgrades (WebSocket) are not supported by this gateway"
            }
            DenyReason::PathInvalid => {
                "Tollgate: the request path is ambiguous (dot segments, encoded separators, fragments or control bytes are refused)"
            }
            DenyReason::UnknownUpstream => {
                "Tollgate: the requested host is not a configured provider"
            }
            DenyReason::WorkloadNotPermitted => {
                "Tollgate: no access rule permits this workload"
            }
            DenyReason::ProviderNotPermitted => {
                "Tollgate: this workload is not permitted to call this provider"
            }
            DenyReason::EndpointNotPermitted => {
                "Tollgate: this workload is not permitted to call this endpoint of the provider"
            }
            DenyReason::CredentialDenied => {
                "Tollgate: the credential service refused a credential for this workload"
            }
            DenyReason::CredentialUnavailable => {
                "Tollgate: no provider credential is available right now; retry later"
            }
            DenyReason::InternalError => "Tollgate: internal error; the request was not forwarded",
            DenyReason::ModelNotPermitted => {
                "Tollgate: this workload is not permitted to use this model"
            }
            DenyReason::ModelMissing => {
                "Tollgate: the request names no model, and this workload may use only listed models"
            }
            DenyReason::MaxTokensExceeded => {
                "Tollgate: the request asks for more output tokens than this workload may use"
            }
            DenyReason::BodyTooLarge => "Tollgate: the request body is larger than this gateway accepts",
            DenyReason::BodyUnsupported => {
                "Tollgate: the request body must be uncompressed JSON (content-type: application/json, no content-encoding)"
            }
            DenyReason::BodyInvalid => {
                "Tollgate: the request body is not strict JSON (duplicate keys, invalid UTF-8, trailing data, deep nesting or a malformed token limit)"
            }
            DenyReason::BodyTimeout => "Tollgate: the request body did not arrive in time",
            DenyReason::RateLimited => {
                "Tollgate: this workload's request budget for the current window is spent; retry after the time in retry-after"
            }
            DenyReason::TokenBudgetExhausted => {
                "Tollgate: this workload's token budget for the current window cannot hold this request; retry after the time in retry-after"
            }
            DenyReason::BudgetUnavailable => {
                "Tollgate: the budget could not be checked; the request was refused rather than let through unmetered"
            }
            DenyReason::CostBudgetExhausted => {
                "Tollgate: this workload's spend budget for the current window cannot hold this request; retry after the time in retry-after"
            }
            DenyReason::PriceUnknown => {
                "Tollgate: the request's model has no price in the gateway's policy, so its cost cannot be metered"
            }
            DenyReason::PromptAnomaly => {
                "Tollgate: the prompt is far larger than this workload usually sends"
            }
            DenyReason::DlpBlocked => {
                "Tollgate: the request carries data that the gateway's DLP policy blocks (secrets or personal data); remove it and retry"
            }
        }
    }

    /// True for verdicts of the access policy proper (rules, body rules,
    /// budgets), the ones dry_run mode only logs. Identity, upstream, path and credential failures are always
    /// enforced: forwarding them would hand a key to an unknown caller or host.
    pub const fn is_policy_verdict(self) -> bool {
        matches!(
            self,
            DenyReason::WorkloadNotPermitted
                | DenyReason::ProviderNotPermitted
                | DenyReason::EndpointNotPermitted
                | DenyReason::ModelNotPermitted
                | DenyReason::ModelMissing
                | DenyReason::MaxTokensExceeded
                | DenyReason::RateLimited
                | DenyReason::TokenBudgetExhausted
                | DenyReason::BudgetUnavailable
                | DenyReason::CostBudgetExhausted
                | DenyReason::PriceUnknown
                | DenyReason::PromptAnomaly
                | DenyReason::DlpBlocked
        )
    }
}

impl core::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DenyReason::ALL {
            let c = r.code();
            assert!(seen.insert(c), "duplicate code {c}");
            assert!(
                c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c}"
            );
        }
    }

    #[test]
    fn only_access_rules_are_shadowable() {
        let shadowable: Vec<_> = DenyReason::ALL
            .iter()
            .filter(|r| r.is_policy_verdict())
            .collect();
        // The access rules, the body rules, the budgets and DLP.
        assert_eq!(shadowable.len(), 13);
        assert!(DenyReason::DlpBlocked.is_policy_verdict());
        assert!(DenyReason::TokenBudgetExhausted.is_policy_verdict());
        assert!(!DenyReason::IdentityMissing.is_policy_verdict());
        assert!(!DenyReason::CredentialUnavailable.is_policy_verdict());
    }
}
