//! A mock LLM provider upstream: the server an Envoy egress gateway running
//! Tollgate forwards to, speaking enough of the OpenAI, Anthropic, Gemini and
//! Azure OpenAI HTTP APIs that the official Python SDKs work against it,
//! non-streaming and streaming (SSE), with realistic usage fields.
//!
//! Layout: this file holds the state and the public API; `route` maps a path
//! to a provider and endpoint; `auth` finds the credential a request presents;
//! `model` is the deterministic "model" (reply text and token counts);
//! `openai`, `anthropic` and `gemini` render each API's bodies and errors
//! (Azure OpenAI reuses `openai`); `embedding` makes deterministic vectors;
//! `sse` frames events and paces the streamed body; `server` is the hyper
//! HTTP/1.1 server.
//!
//! Job: answer every request through one I/O-free function
//! (`MockLlm::exchange`) that decides the reply and records the request, so
//! tests can assert on what the gateway actually forwarded: the path, the
//! `Host`, every header (duplicates included) and the credential.
//!
//! Invariants:
//! - The provider is decided by the path only (see `route`; `GET /v1/models`,
//!   shared by OpenAI and Anthropic, goes to Anthropic when the request
//!   carries `anthropic-version` or `x-api-key`). Gemini is served under both
//!   `/v1beta/` and `/v1/`. The `Host` is recorded, never used.
//! - A request is served only if it presents exactly one credential, in its
//!   provider's place, and that credential is accepted: a fixed key
//!   ([`MockLlm::accept_key`]) or a value a credential service has handed out
//!   ([`MockLlm::accept_issued_by`], checked live on every request). Anything
//!   else is a 401 in the provider's error shape. Auth is checked before the
//!   endpoint, method and body.
//! - Nothing here panics on any input; malformed JSON or a missing required
//!   field is a 400, an unknown path a 404, a wrong method a 405, a body over
//!   [`MAX_BODY_BYTES`] a 413, each in the provider's error shape.
//! - No secret is ever printed: `Debug` of [`LlmRequest`] and [`MockLlm`]
//!   redacts keys, credential headers and the `key=` query parameter, and
//!   error bodies never echo a key, except when a request asks for it with
//!   [`ECHO_KEY_HEADER`] (a provider that echoes the key it was sent, for
//!   testing the gateway's redaction).
//! - Recording is bounded: the newest [`DEFAULT_LOG_CAPACITY`] requests (or
//!   the capacity given to [`MockLlm::with_log_capacity`]) plus counters that
//!   never wrap in practice. A request is recorded when its reply is decided,
//!   before any delay, so an in-flight request is already visible.
//! - The state lock is never held across an `.await` and recovers from poison.
//! - Nothing logs.

mod anthropic;
mod auth;
mod embedding;
mod gemini;
mod model;
mod openai;
mod route;
mod server;
mod sse;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Uri};
use serde_json::Value;

use super::credential_service::MockCredentialService;
use auth::Presented;
use route::Endpoint;
pub use server::ServedLlm;
use sse::Content;

/// How many requests [`MockLlm::requests`] keeps by default (the newest).
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;
/// Largest request body read; a larger one gets a 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Request header: delay this response's head by N milliseconds.
pub const DELAY_HEADER: &str = "x-mock-delay-ms";
/// Request header: gap between streamed events, in milliseconds.
pub const CHUNK_DELAY_HEADER: &str = "x-mock-chunk-delay-ms";
/// Gap between streamed events when the request does not set one.
pub const DEFAULT_CHUNK_DELAY: Duration = Duration::from_millis(1);
/// Upper bound on either delay header, so a typo cannot hang a test.
pub const MAX_HEADER_DELAY: Duration = Duration::from_secs(600);
/// Request header: answer an accepted request with a 401 that echoes the
/// credential it presented, in the provider's error body and in the
/// [`ECHOED_KEY_HEADER`] response header, as some providers' errors do.
/// The value is the size of the pieces the body is sent in (paced like a
/// stream, so a piece boundary can fall inside the key); `0` or anything
/// not a number sends it whole.
pub const ECHO_KEY_HEADER: &str = "x-mock-echo-key";
/// Response header of an [`ECHO_KEY_HEADER`] reply: `Bearer {key}`.
pub const ECHOED_KEY_HEADER: &str = "x-mock-echoed-credential";
/// Request header: label the response with this `content-encoding` (the
/// body is not compressed): an upstream that ignores `accept-encoding`.
pub const CONTENT_ENCODING_HEADER: &str = "x-mock-content-encoding";

/// Request headers whose values `LlmRequest`'s `Debug` redacts.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
];

/// The provider API a request was routed to, by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
    AzureOpenAi,
}

/// One request as the mock received it, and how it was answered.
#[derive(Clone)]
pub struct LlmRequest {
    pub method: String,
    /// Path as sent, query included (lossy UTF-8).
    pub path: String,
    /// The request's authority: the absolute-form URI's, else the `Host`
    /// header (lossy UTF-8; empty if neither).
    pub authority: String,
    /// Every header (lowercase names, raw values), duplicates included; all
    /// values of one name are adjacent, names in order of first appearance.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `None` when the path belongs to no provider.
    pub provider: Option<ProviderKind>,
    /// The credential presented where the provider expects it (`Bearer`
    /// stripped; the first one if several were presented).
    pub key: Option<Vec<u8>>,
    /// The credential came from Gemini's `?key=` query parameter.
    pub key_in_query: bool,
    /// The credential was accepted (exactly one, and a known key).
    pub accepted: bool,
    /// The status the mock answered with.
    pub status: u16,
    /// The reply was a stream (SSE, or Gemini's streamed JSON array).
    pub stream: bool,
    /// The request's trailers (lowercase names, raw values), when it had
    /// any (HTTP/1.1 chunked trailers).
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The body was read to its end. False when the connection broke
    /// mid-body (e.g. a gateway reset the upstream stream) or the body was
    /// over [`MAX_BODY_BYTES`]: `body` is then empty.
    pub body_complete: bool,
}

impl LlmRequest {
    /// First value of a header, by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of a header, in order (case-insensitive name).
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// First value of a trailer, by name (case-insensitive).
    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

impl fmt::Debug for LlmRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let sensitive = SENSITIVE_HEADERS.iter().any(|s| k.eq_ignore_ascii_case(s));
                let v = if sensitive {
                    "<redacted>".to_owned()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("LlmRequest")
            .field("method", &self.method)
            .field("path", &auth::redact_query_key(&self.path))
            .field("authority", &self.authority)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("provider", &self.provider)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_in_query", &self.key_in_query)
            .field("accepted", &self.accepted)
            .field("status", &self.status)
            .field("stream", &self.stream)
            .field(
                "trailers",
                &self.trailers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_complete", &self.body_complete)
            .finish()
    }
}

/// Request counters since creation or the last [`MockLlm::clear`]; unlike
/// the request log they are never trimmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LlmCounts {
    /// Every request answered.
    pub total: u64,
    /// Requests whose credential was accepted.
    pub accepted: u64,
    /// 401 replies.
    pub unauthorized: u64,
    /// Streamed replies.
    pub streams: u64,
    /// Requests per provider, in [`ProviderKind`] order: OpenAI, Anthropic,
    /// Gemini, Azure OpenAI.
    pub by_provider: [u64; 4],
    /// Requests whose path belongs to no provider.
    pub unrouted: u64,
}

impl LlmCounts {
    /// Requests routed to `provider`.
    pub fn for_provider(&self, provider: ProviderKind) -> u64 {
        self.by_provider[provider as usize]
    }
}

/// A request kept in the log: the parsed parts, moved in without copying.
struct Recorded {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    trailers: HeaderMap,
    body_complete: bool,
    provider: Option<ProviderKind>,
    key: Option<Bytes>,
    key_in_query: bool,
    accepted: bool,
    status: u16,
    stream: bool,
}

impl Recorded {
    fn to_request(&self) -> LlmRequest {
        let authority = match self.uri.authority() {
            Some(a) => a.as_str().to_owned(),
            None => self
                .headers
                .get(hyper::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                .unwrap_or_default(),
        };
        LlmRequest {
            method: self.method.as_str().to_owned(),
            path: self
                .uri
                .path_and_query()
                .map_or_else(|| self.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            authority,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: self.body.to_vec(),
            provider: self.provider,
            key: self.key.as_ref().map(|k| k.to_vec()),
            key_in_query: self.key_in_query,
            accepted: self.accepted,
            status: self.status,
            stream: self.stream,
            trailers: self
                .trailers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body_complete: self.body_complete,
        }
    }
}

struct Log {
    capacity: usize,
    ring: VecDeque<Recorded>,
    counts: LlmCounts,
}

/// Which credentials the mock accepts.
#[derive(Default)]
struct Keys {
    fixed: HashSet<Vec<u8>>,
    issuers: Vec<MockCredentialService>,
}

impl Keys {
    fn accepts(&self, key: &[u8]) -> bool {
        !key.is_empty()
            && (self.fixed.contains(key) || self.issuers.iter().any(|c| c.has_issued(key)))
    }
}

struct Shared {
    keys: RwLock<Keys>,
    log: Mutex<Log>,
    /// Default delay before the response head, in microseconds.
    response_delay_us: AtomicU64,
    /// Numbers the ids in response bodies.
    seq: AtomicU64,
}

/// The mock LLM upstream. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MockLlm {
    shared: Arc<Shared>,
}

impl Default for MockLlm {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MockLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fixed, issuers) = {
            let keys = self.keys();
            (keys.fixed.len(), keys.issuers.len())
        };
        f.debug_struct("MockLlm")
            .field("fixed_keys", &fixed)
            .field("issuers", &issuers)
            .field("counts", &self.counts())
            .field("response_delay", &self.response_delay())
            .finish_non_exhaustive()
    }
}

/// The decided answer to one request, before any delay or I/O.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) provider: Option<ProviderKind>,
    pub(crate) content: Content,
    /// Delay before the response head.
    pub(crate) delay: Duration,
    /// Gap between streamed events.
    pub(crate) chunk_delay: Duration,
    /// Numbers the request id header.
    pub(crate) seq: u64,
    /// Response headers beyond the ones every reply carries.
    pub(crate) headers: Vec<(&'static str, Bytes)>,
}

/// Why a request gets an error reply; each provider renders it in its shape.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Unauthorized(&'static str),
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    TooLarge,
    /// An accepted credential, echoed back on request ([`ECHO_KEY_HEADER`]).
    KeyEchoed(String),
}

impl Failure {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Failure::Unauthorized(_) => 401,
            Failure::BadRequest(_) => 400,
            Failure::NotFound => 404,
            Failure::MethodNotAllowed => 405,
            Failure::TooLarge => 413,
            Failure::KeyEchoed(_) => 401,
        }
    }
}

/// What the body reader produced.
pub(crate) enum BodyRead {
    Complete(Bytes),
    TooLarge,
    /// The client went away or sent a broken body.
    Broken,
}

impl MockLlm {
    /// A mock that accepts no key until told ([`accept_key`](Self::accept_key),
    /// [`accept_issued_by`](Self::accept_issued_by)), keeping the newest
    /// [`DEFAULT_LOG_CAPACITY`] requests.
    pub fn new() -> Self {
        Self::with_log_capacity(DEFAULT_LOG_CAPACITY)
    }

    /// As [`new`](Self::new), keeping the newest `capacity` requests (at
    /// least one).
    pub fn with_log_capacity(capacity: usize) -> Self {
        MockLlm {
            shared: Arc::new(Shared {
                keys: RwLock::new(Keys::default()),
                log: Mutex::new(Log {
                    capacity: capacity.max(1),
                    ring: VecDeque::new(),
                    counts: LlmCounts::default(),
                }),
                response_delay_us: AtomicU64::new(0),
                seq: AtomicU64::new(0),
            }),
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.shared.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn keys_mut(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.shared.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts `key` from now on, for every provider.
    pub fn accept_key(&self, key: &str) {
        self.keys_mut().fixed.insert(key.as_bytes().to_vec());
    }

    /// Accepts, for every provider, any value `creds` has handed out in a
    /// 200 answer ([`MockCredentialService::has_issued`]), checked on each
    /// request: a key is accepted only once the service has issued it.
    pub fn accept_issued_by(&self, creds: &MockCredentialService) {
        self.keys_mut().issuers.push(creds.clone());
    }

    /// The recorded requests, oldest first (at most the log capacity: the
    /// newest ones).
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.log().ring.iter().map(Recorded::to_request).collect()
    }

    /// The newest recorded request.
    pub fn last_request(&self) -> Option<LlmRequest> {
        self.log().ring.back().map(Recorded::to_request)
    }

    /// Counters since creation or the last [`clear`](Self::clear).
    pub fn counts(&self) -> LlmCounts {
        self.log().counts
    }

    /// Forgets recorded requests and zeroes the counters. Accepted keys and
    /// the response delay stay.
    pub fn clear(&self) {
        let mut log = self.log();
        log.ring.clear();
        log.counts = LlmCounts::default();
    }

    /// Delays every response head by `d` (a request's `x-mock-delay-ms`
    /// header overrides it), e.g. to hold requests in flight.
    pub fn set_response_delay(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.shared.response_delay_us.store(us, Ordering::Relaxed);
    }

    /// The delay set by [`set_response_delay`](Self::set_response_delay).
    pub fn response_delay(&self) -> Duration {
        Duration::from_micros(self.shared.response_delay_us.load(Ordering::Relaxed))
    }

    /// Decides the reply to one request (with its trailers, empty if none)
    /// and records it. Pure apart from the log and the id counter; never
    /// panics.
    pub(crate) fn exchange(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: BodyRead,
        trailers: HeaderMap,
    ) -> Reply {
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let path = uri.path();
        let query = uri.query();
        let (provider, endpoint) = route::route(path, &headers);
        let presented = match provider {
            Some(p) => auth::presented(p, &headers, query),
            None => Presented::default(),
        };
        let accepted = presented.problem.is_none()
            && presented
                .key
                .as_ref()
                .is_some_and(|k| self.keys().accepts(k));

        let decided = match (provider, endpoint) {
            (None, _) => Err(Failure::NotFound),
            (Some(_), _) if !accepted => Err(Failure::Unauthorized(
                presented.problem.unwrap_or(auth::UNKNOWN_KEY),
            )),
            (Some(_), None) => Err(Failure::NotFound),
            (Some(_), Some(ep)) if ep.method() != method => Err(Failure::MethodNotAllowed),
            (Some(_), Some(ep)) => match &body {
                BodyRead::Complete(b) => answer(&ep, query, b, seq),
                BodyRead::TooLarge => Err(Failure::TooLarge),
                BodyRead::Broken => Err(Failure::BadRequest("could not read the body".into())),
            },
        };
        // Asked to echo the key: only once it was accepted, so the echo is
        // of a real credential (the one the gateway injected).
        let echo_pieces = match (&presented.key, accepted) {
            (Some(key), true) => headers
                .get(ECHO_KEY_HEADER)
                .map(|v| (key, v.to_str().ok().and_then(|v| v.trim().parse().ok()))),
            _ => None,
        };
        let mut extra_headers = vec![];
        let (status, content) = match (echo_pieces, decided) {
            (Some((key, piece)), _) => {
                let f = Failure::KeyEchoed(String::from_utf8_lossy(key).into_owned());
                let mut echoed = b"Bearer ".to_vec();
                echoed.extend_from_slice(key);
                extra_headers.push((ECHOED_KEY_HEADER, Bytes::from(echoed)));
                let content = match (error_body(provider, &f, &method, path), piece) {
                    (Content::Json(b), Some(n)) if n > 0 => {
                        Content::JsonPieces(b.chunks(n).map(Bytes::copy_from_slice).collect())
                    }
                    (c, _) => c,
                };
                (f.status(), content)
            }
            (None, Ok(content)) => (200, content),
            (None, Err(f)) => (f.status(), error_body(provider, &f, &method, path)),
        };
        if let Some(v) = headers.get(CONTENT_ENCODING_HEADER) {
            extra_headers.push(("content-encoding", Bytes::copy_from_slice(v.as_bytes())));
        }
        let stream = content.is_stream();

        let delay = header_ms(&headers, DELAY_HEADER).unwrap_or_else(|| self.response_delay());
        let chunk_delay = header_ms(&headers, CHUNK_DELAY_HEADER).unwrap_or(DEFAULT_CHUNK_DELAY);
        let (body, body_complete) = match body {
            BodyRead::Complete(b) => (b, true),
            BodyRead::TooLarge | BodyRead::Broken => (Bytes::new(), false),
        };
        self.record(Recorded {
            method,
            uri,
            headers,
            body,
            trailers,
            body_complete,
            provider,
            key: presented.key,
            key_in_query: presented.in_query,
            accepted,
            status,
            stream,
        });
        Reply {
            status,
            provider,
            content,
            delay,
            chunk_delay,
            seq,
            headers: extra_headers,
        }
    }

    fn record(&self, r: Recorded) {
        let mut log = self.log();
        let c = &mut log.counts;
        c.total += 1;
        c.accepted += u64::from(r.accepted);
        c.unauthorized += u64::from(r.status == 401);
        c.streams += u64::from(r.stream);
        match r.provider {
            Some(p) => c.by_provider[p as usize] += 1,
            None => c.unrouted += 1,
        }
        if log.ring.len() >= log.capacity {
            log.ring.pop_front();
        }
        log.ring.push_back(r);
    }
}

/// The 200 reply of an authorised request to a known endpoint.
fn answer(
    ep: &Endpoint<'_>,
    query: Option<&str>,
    body: &[u8],
    seq: u64,
) -> Result<Content, Failure> {
    let json = || parse_object(body);
    match ep {
        Endpoint::OpenAiChat => openai::chat(&json()?, None, seq),
        Endpoint::OpenAiResponses => openai::responses(&json()?, seq),
        Endpoint::OpenAiEmbeddings => openai::embeddings(&json()?, None),
        Endpoint::OpenAiModels => Ok(openai::models()),
        Endpoint::AzureChat { deployment } => openai::chat(&json()?, Some(deployment), seq),
        Endpoint::AzureEmbeddings { deployment } => openai::embeddings(&json()?, Some(deployment)),
        Endpoint::AnthropicMessages => anthropic::messages(&json()?, seq),
        Endpoint::AnthropicCountTokens => anthropic::count_tokens(&json()?),
        Endpoint::AnthropicModels => Ok(anthropic::models()),
        Endpoint::GeminiGenerate { model } => gemini::generate(&json()?, model, seq, None),
        Endpoint::GeminiStream { model } => {
            let sse = route::query_param(query, "alt").is_some_and(|v| v == b"sse");
            gemini::generate(&json()?, model, seq, Some(sse))
        }
        Endpoint::GeminiCountTokens { .. } => gemini::count_tokens(&json()?),
        Endpoint::GeminiEmbed { .. } => gemini::embed(&json()?),
        Endpoint::GeminiBatchEmbed { .. } => gemini::batch_embed(&json()?),
        Endpoint::GeminiModels => Ok(gemini::models()),
    }
}

fn error_body(provider: Option<ProviderKind>, f: &Failure, method: &Method, path: &str) -> Content {
    match provider {
        Some(ProviderKind::Anthropic) => anthropic::error(f),
        Some(ProviderKind::Gemini) => gemini::error(f),
        Some(ProviderKind::OpenAi | ProviderKind::AzureOpenAi) | None => {
            openai::error(f, method.as_str(), path)
        }
    }
}

/// The body as a JSON object, or a 400 naming the problem.
fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Failure::BadRequest("the body must be a JSON object".into())),
        Err(e) => Err(Failure::BadRequest(format!(
            "could not parse the JSON body of your request ({e})"
        ))),
    }
}

/// A delay header's value in milliseconds, capped at [`MAX_HEADER_DELAY`];
/// `None` if absent or not a number.
fn header_ms(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let v = headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(v).min(MAX_HEADER_DELAY))
}
