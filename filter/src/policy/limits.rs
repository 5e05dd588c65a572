//! What a rule allows a workload to do inside an exchange: which models,
//! how many output tokens per request, how large a body. Compiled once, at
//! load, from the rule's `models`, `max_output_tokens`,
//! `max_output_tokens_action` and `max_body_bytes`.
//!
//! Invariants:
//! - A rule without `models` and without `max_output_tokens` has no
//!   [`ExchangeLimits`]: its requests keep the header-only path.
//! - `max_body_bytes` is at most [`MAX_BODY_BYTES`], so a body the filter
//!   holds is always bounded.

use super::model_pattern::ModelPattern;

/// The default `max_body_bytes`: what a chat request with a long prompt
/// needs, and below Envoy's default buffer limit (1 MiB), so Tollgate's 413
/// comes first even where the operator kept Envoy's default.
pub const DEFAULT_MAX_BODY_BYTES: u32 = 512 * 1024;
/// The largest `max_body_bytes` a rule may set (Envoy's buffer limit must be
/// set above the largest one in use; README, "Bodies").
pub const MAX_BODY_BYTES: u32 = 64 * 1024 * 1024;
/// The largest output cap a rule may set.
pub const MAX_OUTPUT_TOKENS: u32 = 10_000_000;

/// What happens to a request asking for more output tokens than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapAction {
    /// The request's value is rewritten to the cap.
    Clamp,
    /// The request is refused (`max_tokens_exceeded`).
    Deny,
}

impl CapAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            CapAction::Clamp => "clamp",
            CapAction::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    pub limit: u32,
    pub action: CapAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeLimits {
    /// `None`: any model.
    pub models: Option<Box<[ModelPattern]>>,
    pub max_output_tokens: Option<OutputCap>,
    pub max_body_bytes: u32,
}

impl ExchangeLimits {
    /// Whether `model` is on the allow-list (always, without one).
    pub fn permits_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p.matches(model)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_model_list_permits_only_its_models() {
        let l = ExchangeLimits {
            models: Some(
                vec![
                    ModelPattern::parse("gpt-4o-mini").unwrap(),
                    ModelPattern::parse("claude-*-haiku-*").unwrap(),
                ]
                .into(),
            ),
            max_output_tokens: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        };
        assert!(l.permits_model("gpt-4o-mini"));
        assert!(l.permits_model("claude-3-5-haiku-latest"));
        assert!(!l.permits_model("gpt-4o"));
        let any = ExchangeLimits { models: None, ..l };
        assert!(any.permits_model("gpt-4o"));
    }
}
