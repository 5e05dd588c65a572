//! Which provider and endpoint a request path belongs to.
//!
//! Job: map the raw request path (query excluded, not percent-decoded) to a
//! [`ProviderKind`] and, when the path names an endpoint the mock serves, an
//! [`Endpoint`].
//!
//! Invariants:
//! - The provider comes from the path: `/v1beta/…` is Gemini, and so is
//!   `/v1/models/{model}:{method}` (google-genai 3.x defaults to API version
//!   `v1`; a `:` never appears in OpenAI's or Anthropic's model paths);
//!   `/openai/…` is Azure OpenAI; `/v1/messages…` is Anthropic; any other
//!   `/v1/…` is OpenAI, except `/v1/models`, which is Anthropic's when the
//!   request carries `anthropic-version` or `x-api-key` (both APIs list
//!   models there).
//! - A provider without an endpoint means "unknown path of a known API" (404
//!   in that API's shape); no provider means a path no API has.
//! - Pure and total: no I/O, no panics, borrowed slices of the path only.

use hyper::header::HeaderMap;
use hyper::Method;

use super::ProviderKind;

/// An endpoint the mock serves. Names borrowed from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint<'a> {
    OpenAiChat,
    OpenAiResponses,
    OpenAiEmbeddings,
    OpenAiModels,
    AzureChat { deployment: &'a str },
    AzureEmbeddings { deployment: &'a str },
    AnthropicMessages,
    AnthropicCountTokens,
    AnthropicModels,
    GeminiGenerate { model: &'a str },
    GeminiStream { model: &'a str },
    GeminiCountTokens { model: &'a str },
    GeminiEmbed { model: &'a str },
    GeminiBatchEmbed { model: &'a str },
    GeminiModels,
}

impl Endpoint<'_> {
    /// The one method the endpoint answers.
    pub(crate) fn method(&self) -> Method {
        match self {
            Endpoint::OpenAiModels | Endpoint::AnthropicModels | Endpoint::GeminiModels => {
                Method::GET
            }
            _ => Method::POST,
        }
    }
}

/// The provider and endpoint of `path` (without its query).
pub(crate) fn route<'a>(
    path: &'a str,
    headers: &HeaderMap,
) -> (Option<ProviderKind>, Option<Endpoint<'a>>) {
    if let Some(rest) = path.strip_prefix("/v1beta/") {
        return (Some(ProviderKind::Gemini), gemini(rest));
    }
    if let Some(rest) = path.strip_prefix("/openai/") {
        return (Some(ProviderKind::AzureOpenAi), azure(rest));
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return (None, None);
    };
    if rest.starts_with("models/") && rest.contains(':') {
        return (Some(ProviderKind::Gemini), gemini(rest));
    }
    match rest {
        "messages" => (
            Some(ProviderKind::Anthropic),
            Some(Endpoint::AnthropicMessages),
        ),
        "messages/count_tokens" => (
            Some(ProviderKind::Anthropic),
            Some(Endpoint::AnthropicCountTokens),
        ),
        r if r.starts_with("messages/") => (Some(ProviderKind::Anthropic), None),
        "models" if looks_like_anthropic(headers) => (
            Some(ProviderKind::Anthropic),
            Some(Endpoint::AnthropicModels),
        ),
        "models" => (Some(ProviderKind::OpenAi), Some(Endpoint::OpenAiModels)),
        "chat/completions" => (Some(ProviderKind::OpenAi), Some(Endpoint::OpenAiChat)),
        "responses" => (Some(ProviderKind::OpenAi), Some(Endpoint::OpenAiResponses)),
        "embeddings" => (Some(ProviderKind::OpenAi), Some(Endpoint::OpenAiEmbeddings)),
        _ => (Some(ProviderKind::OpenAi), None),
    }
}

fn looks_like_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version") || headers.contains_key("x-api-key")
}

/// `models` or `models/{model}:{method}` under `/v1beta/`.
fn gemini(rest: &str) -> Option<Endpoint<'_>> {
    if rest == "models" {
        return Some(Endpoint::GeminiModels);
    }
    let (model, method) = rest.strip_prefix("models/")?.split_once(':')?;
    if !is_name(model) {
        return None;
    }
    Some(match method {
        "generateContent" => Endpoint::GeminiGenerate { model },
        "streamGenerateContent" => Endpoint::GeminiStream { model },
        "countTokens" => Endpoint::GeminiCountTokens { model },
        "embedContent" => Endpoint::GeminiEmbed { model },
        "batchEmbedContents" => Endpoint::GeminiBatchEmbed { model },
        _ => return None,
    })
}

/// `deployments/{d}/chat/completions` or `deployments/{d}/embeddings` under
/// `/openai/`.
fn azure(rest: &str) -> Option<Endpoint<'_>> {
    let (deployment, op) = rest.strip_prefix("deployments/")?.split_once('/')?;
    if !is_name(deployment) {
        return None;
    }
    match op {
        "chat/completions" => Some(Endpoint::AzureChat { deployment }),
        "embeddings" => Some(Endpoint::AzureEmbeddings { deployment }),
        _ => None,
    }
}

/// A model or deployment name: non-empty `[A-Za-z0-9._-]`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The first value of query parameter `name`, percent-decoded (`+` is a
/// space); `None` if absent.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    query_params(query, name).next()
}

/// Every value of query parameter `name`, percent-decoded, in order.
pub(crate) fn query_params<'a>(
    query: Option<&'a str>,
    name: &'a str,
) -> impl Iterator<Item = Vec<u8>> + 'a {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name.as_bytes()).then(|| percent_decode(v))
        })
}

/// `%XX` → byte, `+` → space; a malformed escape is kept as is.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex(c: Option<&u8>) -> Option<u8> {
    let c = *c?;
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str) -> (Option<ProviderKind>, Option<Endpoint<'_>>) {
        route(path, &HeaderMap::new())
    }

    #[test]
    fn paths_pick_the_provider_and_endpoint() {
        use ProviderKind::*;
        let cases: &[(&str, Option<ProviderKind>, Option<Endpoint<'_>>)] = &[
            (
                "/v1/chat/completions",
                Some(OpenAi),
                Some(Endpoint::OpenAiChat),
            ),
            (
                "/v1/responses",
                Some(OpenAi),
                Some(Endpoint::OpenAiResponses),
            ),
            (
                "/v1/embeddings",
                Some(OpenAi),
                Some(Endpoint::OpenAiEmbeddings),
            ),
            ("/v1/models", Some(OpenAi), Some(Endpoint::OpenAiModels)),
            ("/v1/files", Some(OpenAi), None),
            (
                "/v1/messages",
                Some(Anthropic),
                Some(Endpoint::AnthropicMessages),
            ),
            (
                "/v1/messages/count_tokens",
                Some(Anthropic),
                Some(Endpoint::AnthropicCountTokens),
            ),
            ("/v1/messages/batches", Some(Anthropic), None),
            (
                "/v1beta/models/gemini-2.5-flash:generateContent",
                Some(Gemini),
                Some(Endpoint::GeminiGenerate {
                    model: "gemini-2.5-flash",
                }),
            ),
            (
                "/v1beta/models/g:streamGenerateContent",
                Some(Gemini),
                Some(Endpoint::GeminiStream { model: "g" }),
            ),
            ("/v1beta/models/g:nope", Some(Gemini), None),
            ("/v1beta/models/:generateContent", Some(Gemini), None),
            ("/v1beta/models", Some(Gemini), Some(Endpoint::GeminiModels)),
            (
                "/v1/models/gemini-2.5-flash:streamGenerateContent",
                Some(Gemini),
                Some(Endpoint::GeminiStream {
                    model: "gemini-2.5-flash",
                }),
            ),
            ("/v1/models/g:nope", Some(Gemini), None),
            ("/v1/models/gpt-4o", Some(OpenAi), None),
            (
                "/openai/deployments/gpt4o/chat/completions",
                Some(AzureOpenAi),
                Some(Endpoint::AzureChat {
                    deployment: "gpt4o",
                }),
            ),
            (
                "/openai/deployments/e/embeddings",
                Some(AzureOpenAi),
                Some(Endpoint::AzureEmbeddings { deployment: "e" }),
            ),
            (
                "/openai/deployments//chat/completions",
                Some(AzureOpenAi),
                None,
            ),
            ("/healthz", None, None),
            ("/", None, None),
            ("", None, None),
        ];
        for (path, provider, endpoint) in cases {
            assert_eq!(r(path), (*provider, endpoint.clone()), "{path}");
        }
    }

    #[test]
    fn models_listing_goes_to_anthropic_by_its_headers() {
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", "2023-06-01".parse().expect("value"));
        assert_eq!(
            route("/v1/models", &h),
            (
                Some(ProviderKind::Anthropic),
                Some(Endpoint::AnthropicModels)
            )
        );
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(
            query_param(Some("alt=sse&key=a%2Bb+c"), "key"),
            Some(b"a+b c".to_vec())
        );
        assert_eq!(query_param(Some("key"), "key"), Some(vec![]));
        assert_eq!(query_param(None, "key"), None);
        assert_eq!(
            query_params(Some("key=1&x=2&key=3"), "key").collect::<Vec<_>>(),
            [b"1".to_vec(), b"3".to_vec()]
        );
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%41%"), b"A%");
    }
}
