//! One response body on its way to the client: usage learnt from it (SSE
//! events or a whole JSON body), the usage-only chunk removed when the
//! gateway asked for it, and the injected key redacted, chunk by chunk.
//!
//! Invariants:
//! - Every chunk goes on as it arrives, except bytes that may still turn
//!   out to be part of a key (the redactor's held tail) or of an event being
//!   edited (the decoder's partial event, only when removing the usage-only
//!   event and the `"usage":null` the other OpenAI chunks then carry).
//! - Redaction is the last stage: nothing reaches the client around it.
//! - Memory is bounded: an SSE event by [`MAX_EVENT_BYTES`], a JSON body's
//!   copy by [`MAX_JSON_COPY`] (beyond it usage is not read, and the record
//!   says so).

use super::dlp::{Cut, ResponseDlp};
use super::null_usage;
use super::redact::Redactor;
use super::sse::{SseDecoder, SseEvent, Verdict};
use super::usage::{self, Dialect, EventKind, StreamUsage, Usage};

/// The largest SSE event read for usage.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The largest non-streamed JSON body kept to read usage from.
pub const MAX_JSON_COPY: usize = 4 * 1024 * 1024;

/// How the body is read for usage.
enum Reader {
    None,
    Sse {
        decoder: SseDecoder,
        usage: StreamUsage,
        drop_usage_chunk: bool,
    },
    Json {
        dialect: Dialect,
        copy: Vec<u8>,
        overflowed: bool,
    },
}

/// What one chunk produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes to send on instead of the chunk; `None` when the chunk goes
    /// on exactly as it came (the common case, which then costs no copy).
    pub out: Option<Vec<u8>>,
    /// Key echoes replaced in it.
    pub redactions: u32,
    /// DLP matches redacted from the output it released.
    pub dlp_redactions: u32,
    /// The response must be cut here: DLP could not scan it (nothing of
    /// this chunk may go on).
    pub cut: Option<Cut>,
}

impl Chunk {
    /// The bytes sent on for `chunk`, the input that produced this result.
    pub fn bytes<'a>(&'a self, chunk: &'a [u8]) -> &'a [u8] {
        self.out.as_deref().unwrap_or(chunk)
    }
}

pub struct ResponseTap {
    reader: Reader,
    /// Model output through the rule's DLP detectors, before key-echo
    /// redaction.
    dlp: Option<ResponseDlp>,
    redactor: Option<Redactor>,
    /// Usage read from a whole JSON body at its end.
    json_usage: Option<Usage>,
    /// Bytes seen (before any change).
    pub bytes_in: u64,
    pub usage_chunks_dropped: u32,
}

impl core::fmt::Debug for ResponseTap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResponseTap")
            .field("bytes_in", &self.bytes_in)
            .field("redacting", &self.redactor.is_some())
            .finish()
    }
}

impl ResponseTap {
    /// A tap for a response in `dialect` (if known); `sse` when its
    /// content type is `text/event-stream`. `drop_usage_chunk` removes the
    /// usage-only event (the client did not ask for it); `redactor` finds
    /// the injected credential value.
    pub fn new(
        dialect: Option<Dialect>,
        sse: bool,
        drop_usage_chunk: bool,
        redactor: Option<Redactor>,
        dlp: Option<ResponseDlp>,
    ) -> Self {
        let reader = match (dialect, sse) {
            (Some(d), true) => Reader::Sse {
                decoder: SseDecoder::new(MAX_EVENT_BYTES, drop_usage_chunk),
                usage: StreamUsage::new(d),
                drop_usage_chunk,
            },
            (Some(d), false) => Reader::Json {
                dialect: d,
                copy: Vec::new(),
                overflowed: false,
            },
            (None, _) => Reader::None,
        };
        ResponseTap {
            reader,
            dlp,
            redactor,
            json_usage: None,
            bytes_in: 0,
            usage_chunks_dropped: 0,
        }
    }

    /// One chunk of the body; `end` on the last.
    pub fn on_chunk(&mut self, chunk: &[u8], end: bool) -> Chunk {
        self.bytes_in = self.bytes_in.saturating_add(chunk.len() as u64);
        let mut passed = Vec::new();
        let mut dropped = 0u32;
        let forwarded: &[u8] = match &mut self.reader {
            Reader::None => chunk,
            Reader::Sse {
                decoder,
                usage,
                drop_usage_chunk,
            } => {
                let drop = *drop_usage_chunk;
                let mut on_event = |ev: &SseEvent<'_>| match usage.on_event(ev) {
                    EventKind::UsageOnly if drop => {
                        dropped += 1;
                        Verdict::Drop
                    }
                    // The other chunks lose the `"usage":null` that asking
                    // for usage added to them.
                    _ if drop => match null_usage::strip(ev.raw, ev.data) {
                        Some(bytes) => Verdict::Replace(bytes),
                        None => Verdict::Keep,
                    },
                    _ => Verdict::Keep,
                };
                decoder.feed(chunk, &mut passed, &mut on_event);
                if end {
                    decoder.finish(&mut passed, &mut on_event);
                }
                if decoder.is_filtering() {
                    &passed
                } else {
                    chunk
                }
            }
            Reader::Json {
                dialect,
                copy,
                overflowed,
            } => {
                if !*overflowed && copy.len().saturating_add(chunk.len()) > MAX_JSON_COPY {
                    *overflowed = true;
                    *copy = Vec::new();
                }
                if !*overflowed && end {
                    // The whole body in one chunk (Envoy's usual delivery of
                    // a small answer) is read where it is, without a copy.
                    self.json_usage = if copy.is_empty() {
                        usage::from_json(*dialect, chunk)
                    } else {
                        copy.extend_from_slice(chunk);
                        usage::from_json(*dialect, copy)
                    };
                    *copy = Vec::new();
                } else if !*overflowed {
                    copy.extend_from_slice(chunk);
                }
                chunk
            }
        };
        self.usage_chunks_dropped += dropped;
        let mut scanned = Vec::new();
        let mut dlp_redactions = 0;
        let forwarded: &[u8] = match &mut self.dlp {
            Some(dlp) => {
                let before = dlp.redacted;
                let fed = dlp.feed(forwarded, end, &mut scanned);
                dlp_redactions = dlp.redacted.saturating_sub(before);
                if let Err(cut) = fed {
                    return Chunk {
                        out: Some(Vec::new()),
                        cut: Some(cut),
                        ..Chunk::default()
                    };
                }
                &scanned
            }
            None => forwarded,
        };
        let unchanged =
            core::ptr::eq(forwarded, chunk) && self.redactor.as_mut().is_none_or(|r| r.pass(chunk));
        if unchanged {
            return Chunk::default();
        }
        let mut out = Vec::with_capacity(forwarded.len());
        let mut redactions = 0;
        match &mut self.redactor {
            Some(r) => {
                redactions += r.feed(forwarded, &mut out);
                if end {
                    redactions += r.finish(&mut out);
                }
            }
            None => out.extend_from_slice(forwarded),
        }
        Chunk {
            out: Some(out),
            redactions,
            dlp_redactions,
            cut: None,
        }
    }

    /// The DLP stage, for what it found in the output so far: counts by
    /// detector, and the matches redacted.
    pub fn dlp(&self) -> Option<&ResponseDlp> {
        self.dlp.as_ref()
    }

    /// The usage seen so far (a stream cut short keeps what it had).
    pub fn usage(&self) -> Option<Usage> {
        match &self.reader {
            Reader::Sse { usage, .. } => usage.usage(),
            Reader::Json { .. } => self.json_usage,
            Reader::None => None,
        }
    }

    /// A response header value with the key replaced, if it held it.
    pub fn redact_header(&self, value: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.redactor.as_ref()?.redact_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &[u8] = b"sk-real-openai-7f3a9c1e5b2d4f6a8c0e";

    fn run(tap: &mut ResponseTap, body: &[u8], piece: usize) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let mut n = 0;
        let chunks: Vec<&[u8]> = body.chunks(piece.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            let r = tap.on_chunk(c, i + 1 == chunks.len());
            out.extend_from_slice(r.bytes(c));
            n += r.redactions;
        }
        (out, n)
    }

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn a_stream_the_client_did_not_ask_usage_for_loses_only_the_usage_chunk() {
        for piece in [1, 2, 5, 17, 1000] {
            let mut tap = ResponseTap::new(
                Some(Dialect::OpenAiChat),
                true,
                true,
                Redactor::new(KEY),
                None,
            );
            let (out, _) = run(&mut tap, STREAM.as_bytes(), piece);
            let want = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
            assert_eq!(String::from_utf8(out).unwrap(), want, "pieces of {piece}");
            let u = tap.usage().unwrap();
            assert_eq!((u.input, u.output, u.total), (Some(9), Some(12), Some(21)));
            assert_eq!(tap.usage_chunks_dropped, 1);
        }
    }

    #[test]
    fn a_client_that_asked_for_usage_gets_the_stream_unchanged() {
        let mut tap = ResponseTap::new(
            Some(Dialect::OpenAiChat),
            true,
            false,
            Redactor::new(KEY),
            None,
        );
        let (out, _) = run(&mut tap, STREAM.as_bytes(), 3);
        assert_eq!(out, STREAM.as_bytes());
        assert_eq!(tap.usage().and_then(|u| u.total), Some(21));
    }

    #[test]
    fn a_key_echo_is_redacted_across_chunks_in_json_and_sse() {
        let body = format!(
            "{{\"error\":{{\"message\":\"Incorrect API key provided: {}\"}}}}",
            core::str::from_utf8(KEY).unwrap()
        );
        for piece in [1, 3, 8, 64] {
            let mut tap = ResponseTap::new(
                Some(Dialect::OpenAiChat),
                false,
                false,
                Redactor::new(KEY),
                None,
            );
            let (out, n) = run(&mut tap, body.as_bytes(), piece);
            assert_eq!(out.len(), body.len());
            assert!(!out.windows(KEY.len()).any(|w| w == KEY));
            assert_eq!(n, 1);
        }
        let sse = format!(
            "event: error\ndata: {{\"key\":\"{}\"}}\n\n",
            core::str::from_utf8(KEY).unwrap()
        );
        let mut tap = ResponseTap::new(
            Some(Dialect::Anthropic),
            true,
            false,
            Redactor::new(KEY),
            None,
        );
        let (out, n) = run(&mut tap, sse.as_bytes(), 4);
        assert!(!out.windows(KEY.len()).any(|w| w == KEY));
        assert_eq!(n, 1);
    }

    #[test]
    fn json_usage_is_read_at_the_end_and_an_oversized_body_is_passed_unread() {
        let body = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let mut tap = ResponseTap::new(Some(Dialect::OpenAiChat), false, false, None, None);
        let (out, _) = run(&mut tap, body, 7);
        assert_eq!(out, body);
        assert_eq!(tap.usage().and_then(|u| u.total), Some(7));
    }
}
