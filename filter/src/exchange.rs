//! Which LLM API a request calls, from its provider kind and normalised path:
//! where its model is named, which body field caps its output, whether it
//! streams by path, and how its response reports usage.
//!
//! Invariants:
//! - Classification reads only the path the filter forwards (normalised,
//!   credential parameters removed), so the model the policy checks is the
//!   model the provider reads.
//! - A path model (Gemini `models/{model}:…`, Azure `deployments/{name}/…`)
//!   is taken whole from one segment; a segment that is empty or longer than
//!   [`MAX_MODEL_LEN`] gives no model (and a rule with `models` then denies
//!   with `model_missing`).
//! - An API Tollgate does not know is [`Api::Other`]: no cap field, no usage
//!   dialect; nothing is guessed.

use crate::provider::ProviderKind;
use crate::response::usage::Dialect;

/// Longer model names are not names.
pub const MAX_MODEL_LEN: usize = 256;

/// The APIs whose bodies and responses Tollgate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI (or Azure) `chat/completions`.
    OpenAiChat,
    /// OpenAI (or Azure) legacy `completions`.
    OpenAiCompletions,
    /// OpenAI (or Azure) `responses`.
    OpenAiResponses,
    /// OpenAI (or Azure) `embeddings`.
    OpenAiEmbeddings,
    /// Anthropic `v1/messages`.
    AnthropicMessages,
    /// Anthropic `v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// Gemini `:generateContent`.
    GeminiGenerate,
    /// Gemini `:streamGenerateContent`.
    GeminiStreamGenerate,
    /// Gemini `:countTokens`.
    GeminiCountTokens,
    /// Gemini `:embedContent` / `:batchEmbedContents`.
    GeminiEmbed,
    Other,
}

/// Where a request names its output-token cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapFields {
    /// Every field that caps output; each one present is checked.
    pub read: &'static [&'static [&'static str]],
    /// The field written when none is present.
    pub write: &'static [&'static str],
}

const CHAT_CAPS: CapFields = CapFields {
    read: &[&["max_tokens"], &["max_completion_tokens"]],
    write: &["max_completion_tokens"],
};
/// Azure deployments: API versions before 2024-09 know only `max_tokens`.
const AZURE_DEPLOYMENT_CHAT_CAPS: CapFields = CapFields {
    read: &[&["max_tokens"], &["max_completion_tokens"]],
    write: &["max_tokens"],
};
const COMPLETIONS_CAPS: CapFields = CapFields {
    read: &[&["max_tokens"]],
    write: &["max_tokens"],
};
const RESPONSES_CAPS: CapFields = CapFields {
    read: &[&["max_output_tokens"]],
    write: &["max_output_tokens"],
};
const ANTHROPIC_CAPS: CapFields = CapFields {
    read: &[&["max_tokens"]],
    write: &["max_tokens"],
};
const GEMINI_CAPS: CapFields = CapFields {
    read: &[&["generationConfig", "maxOutputTokens"]],
    write: &["generationConfig", "maxOutputTokens"],
};

/// One request's API, and its model when the path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub api: Api,
    /// The model (Gemini) or deployment (Azure) named by the path.
    pub path_model: Option<String>,
    /// Azure `deployments/{name}/…` (affects the cap field written).
    azure_deployment: bool,
}

impl Exchange {
    /// Classifies `path` (normalised, without the query) for a provider kind.
    pub fn classify(kind: ProviderKind, path: &str) -> Exchange {
        let path = path.split('?').next().unwrap_or("");
        let mut ex = Exchange {
            api: Api::Other,
            path_model: None,
            azure_deployment: false,
        };
        match kind {
            ProviderKind::OpenAi => ex.api = openai_api(path.strip_prefix("/v1/")),
            ProviderKind::AzureOpenAi => {
                if let Some(rest) = path.strip_prefix("/openai/deployments/") {
                    let (name, api) = rest.split_once('/').unwrap_or((rest, ""));
                    ex.path_model = model_name(name);
                    ex.azure_deployment = true;
                    ex.api = openai_api(Some(api));
                } else {
                    let rest = path
                        .strip_prefix("/openai/v1/")
                        .or_else(|| path.strip_prefix("/openai/"));
                    ex.api = openai_api(rest);
                }
            }
            ProviderKind::Anthropic => {
                ex.api = match path {
                    "/v1/messages" => Api::AnthropicMessages,
                    "/v1/messages/count_tokens" => Api::AnthropicCountTokens,
                    _ => Api::Other,
                }
            }
            ProviderKind::Gemini => {
                if let Some((model, method)) = gemini_target(path) {
                    ex.api = match method {
                        "generateContent" => Api::GeminiGenerate,
                        "streamGenerateContent" => Api::GeminiStreamGenerate,
                        "countTokens" => Api::GeminiCountTokens,
                        "embedContent" | "batchEmbedContents" => Api::GeminiEmbed,
                        _ => Api::Other,
                    };
                    ex.path_model = model_name(model);
                }
            }
            ProviderKind::Generic => {}
        }
        ex
    }

    /// Whether the model is named in the body (`model`) rather than the path.
    pub fn model_in_body(&self) -> bool {
        self.path_model.is_none()
            && !self.azure_deployment
            && matches!(
                self.api,
                Api::OpenAiChat
                    | Api::OpenAiCompletions
                    | Api::OpenAiResponses
                    | Api::OpenAiEmbeddings
                    | Api::AnthropicMessages
                    | Api::AnthropicCountTokens
            )
    }

    /// The body fields that cap output tokens, if this API has one.
    pub fn cap_fields(&self) -> Option<CapFields> {
        Some(match self.api {
            Api::OpenAiChat if self.azure_deployment => AZURE_DEPLOYMENT_CHAT_CAPS,
            Api::OpenAiChat => CHAT_CAPS,
            Api::OpenAiCompletions => COMPLETIONS_CAPS,
            Api::OpenAiResponses => RESPONSES_CAPS,
            Api::AnthropicMessages => ANTHROPIC_CAPS,
            Api::GeminiGenerate | Api::GeminiStreamGenerate => GEMINI_CAPS,
            _ => return None,
        })
    }

    /// Whether the client can ask for an OpenAI stream whose usage comes only
    /// with `stream_options.include_usage`.
    pub fn usage_needs_stream_option(&self) -> bool {
        matches!(self.api, Api::OpenAiChat | Api::OpenAiCompletions)
    }

    /// Whether the path alone makes the response a stream.
    pub fn streams_by_path(&self) -> bool {
        self.api == Api::GeminiStreamGenerate
    }

    /// How the response reports usage.
    pub fn dialect(&self) -> Option<Dialect> {
        Some(match self.api {
            Api::OpenAiChat | Api::OpenAiCompletions => Dialect::OpenAiChat,
            Api::OpenAiResponses => Dialect::OpenAiResponses,
            Api::OpenAiEmbeddings => Dialect::OpenAiEmbeddings,
            Api::AnthropicMessages => Dialect::Anthropic,
            Api::GeminiGenerate | Api::GeminiStreamGenerate | Api::GeminiEmbed => Dialect::Gemini,
            Api::AnthropicCountTokens | Api::GeminiCountTokens | Api::Other => return None,
        })
    }
}

/// `chat/completions`, `completions`, `responses`, `embeddings` after the
/// API's prefix.
fn openai_api(rest: Option<&str>) -> Api {
    match rest {
        Some("chat/completions") => Api::OpenAiChat,
        Some("completions") => Api::OpenAiCompletions,
        Some("responses") => Api::OpenAiResponses,
        Some("embeddings") => Api::OpenAiEmbeddings,
        _ => Api::Other,
    }
}

/// `/{version}/models/{model}:{method}` → (model, method).
fn gemini_target(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (version, rest) = rest.split_once('/')?;
    if !matches!(version, "v1" | "v1beta" | "v1alpha") {
        return None;
    }
    let target = rest.strip_prefix("models/")?;
    if target.contains('/') {
        return None;
    }
    target.rsplit_once(':')
}

fn model_name(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= MAX_MODEL_LEN && !s.contains(':')).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn openai_and_anthropic_name_the_model_in_the_body() {
        let ex = Exchange::classify(ProviderKind::OpenAi, "/v1/chat/completions");
        assert_eq!(ex.api, Api::OpenAiChat);
        assert!(ex.model_in_body());
        assert_eq!(
            ex.cap_fields().map(|c| c.write),
            Some(&["max_completion_tokens"][..])
        );
        let ex = Exchange::classify(ProviderKind::Anthropic, "/v1/messages");
        assert_eq!(ex.api, Api::AnthropicMessages);
        assert!(ex.model_in_body());
        assert_eq!(ex.dialect(), Some(Dialect::Anthropic));
        let ex = Exchange::classify(ProviderKind::OpenAi, "/v1/models");
        assert_eq!(ex.api, Api::Other);
        assert!(!ex.model_in_body());
        assert_eq!(ex.cap_fields(), None);
    }

    #[test]
    fn gemini_names_the_model_in_the_path() {
        let ex = Exchange::classify(
            ProviderKind::Gemini,
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        );
        assert_eq!(ex.api, Api::GeminiStreamGenerate);
        assert_eq!(ex.path_model.as_deref(), Some("gemini-2.0-flash"));
        assert!(!ex.model_in_body());
        assert!(ex.streams_by_path());
        assert_eq!(
            ex.cap_fields().map(|c| c.write),
            Some(&["generationConfig", "maxOutputTokens"][..])
        );
        for (method, api) in [
            ("generateContent", Api::GeminiGenerate),
            ("countTokens", Api::GeminiCountTokens),
            ("embedContent", Api::GeminiEmbed),
        ] {
            let ex = Exchange::classify(ProviderKind::Gemini, &format!("/v1/models/m:{method}"));
            assert_eq!((ex.api, ex.path_model.as_deref()), (api, Some("m")));
        }
        let ex = Exchange::classify(ProviderKind::Gemini, "/v1beta/models/a/b:generateContent");
        assert_eq!((ex.api, ex.path_model), (Api::Other, None));
        let ex = Exchange::classify(ProviderKind::Gemini, "/v1beta/models/:generateContent");
        assert_eq!(ex.path_model, None, "an empty model is no model");
    }

    #[test]
    fn azure_deployments_name_the_model_in_the_path_and_v1_in_the_body() {
        let ex = Exchange::classify(
            ProviderKind::AzureOpenAi,
            "/openai/deployments/gpt4o-prod/chat/completions",
        );
        assert_eq!(ex.api, Api::OpenAiChat);
        assert_eq!(ex.path_model.as_deref(), Some("gpt4o-prod"));
        assert!(!ex.model_in_body());
        assert_eq!(ex.cap_fields().map(|c| c.write), Some(&["max_tokens"][..]));
        let ex = Exchange::classify(ProviderKind::AzureOpenAi, "/openai/v1/chat/completions");
        assert_eq!(ex.api, Api::OpenAiChat);
        assert!(ex.model_in_body());
        assert_eq!(ex.dialect(), Some(Dialect::OpenAiChat));
    }

    #[test]
    fn unknown_apis_have_no_cap_and_no_dialect() {
        let ex = Exchange::classify(ProviderKind::Generic, "/v1/chat/completions");
        assert_eq!(ex.api, Api::Other);
        assert_eq!((ex.cap_fields(), ex.dialect()), (None, None));
    }
}
