//! DLP on responses (model output): a rule's detectors over what goes back
//! to the client, each match of a `block` or `redact` detector replaced by
//! `[REDACTED:<detector>]` (a response cannot be refused once it has begun),
//! each match of an `audit` detector only counted.
//!
//! - **Not streamed:** the body is held whole, up to [`MAX_WHOLE_BYTES`],
//!   and scanned at its end as a request body is (every decoded string
//!   value, JSON inside strings followed; a body that is not JSON as one
//!   text); it then goes on in one piece.
//! - **SSE:** a model's text arrives a few characters per event, so a key it
//!   repeats is split across events and their JSON framing, and across DATA
//!   frames. The strings that carry the output (values of [`OUTPUT_KEYS`]:
//!   `content`, `text`, `delta`, `arguments`, …, whichever provider) are
//!   decoded and joined, across events, into one text, and that text is
//!   scanned; every other string (an error message, an id) is scanned within
//!   its event. An event goes on only once `holdback` bytes of output text
//!   have followed it (or the stream has ended), so a match up to `holdback`
//!   bytes long is complete, and redacted, before any of it is sent. The
//!   redaction label stands where the match began; the rest of the match
//!   is removed from the later events that held it.
//!
//! The cost is to time to first token: the first text goes on when
//! `holdback` more bytes of text have been generated (with the default 256,
//! about 60 tokens of English) or the stream ends; events that carry no
//! text (a role, usage) wait only behind text before them.
//!
//! Not scanned in a stream: comment lines, `event:` and `id:` fields, and
//! blocks without `data:` (the server's framing, not model output; the
//! injected key is still caught there by key-echo redaction).
//!
//! Invariants:
//! - no data byte is sent before it has been scanned as described; every
//!   byte outside a match goes on unchanged and in order (comments, blank
//!   lines and events without data keep their place);
//! - memory is bounded: [`MAX_WHOLE_BYTES`] for a whole body, and for a
//!   stream [`MAX_HELD_BYTES`] held plus the SSE decoder's event bound. Past
//!   a bound the response is cut ([`Cut`]): it is never sent unscanned;
//! - the matched text never leaves this module: only detector names and
//!   counts do.

use core::ops::Range;
use std::rc::Rc;

use super::sse::{SseDecoder, SseEvent, Verdict};
use crate::body::dlp_scan::{self, DlpAction, DlpPolicy, Findings};
use crate::body::json;
use crate::body::splice::{splice, Edit};
use crate::dlp::Match;

/// The largest non-streamed response held for scanning.
pub const MAX_WHOLE_BYTES: usize = 4 * 1024 * 1024;
/// The most stream bytes held back at once.
pub const MAX_HELD_BYTES: usize = 1024 * 1024;
/// The largest SSE event (as the usage reader's).
const MAX_EVENT_BYTES: usize = super::tap::MAX_EVENT_BYTES;
/// Output text kept before the first held event, so that detectors see what
/// precedes a match (a digit run's start, a key's prefix).
const CONTEXT: usize = 64;
/// The holdback when the policy sets none, in bytes of output text.
pub const DEFAULT_HOLDBACK: usize = 256;

/// Object keys whose string values are model output, joined across events.
pub const OUTPUT_KEYS: [&[u8]; 8] = [
    b"content",
    b"text",
    b"delta",
    b"arguments",
    b"partial_json",
    b"thinking",
    b"refusal",
    b"reasoning_content",
];

/// Why a response was cut instead of sent unscanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cut {
    /// A non-streamed body over [`MAX_WHOLE_BYTES`].
    TooLarge,
    /// An SSE event over the decoder's bound, more than [`MAX_HELD_BYTES`]
    /// held back, or a redaction that cannot be placed (in an event of
    /// several `data:` lines, which providers do not send).
    Unscannable,
}

impl Cut {
    pub const ALL: [Cut; 2] = [Cut::TooLarge, Cut::Unscannable];

    /// The stable reason code, in the audit record, the log and a metric.
    pub fn code(self) -> &'static str {
        match self {
            Cut::TooLarge => "dlp_response_too_large",
            Cut::Unscannable => "dlp_unscannable",
        }
    }
}

/// The DLP stage of one response.
pub struct ResponseDlp {
    policy: Rc<DlpPolicy>,
    mode: Mode,
    /// dry_run: matches are counted, nothing is redacted.
    record_only: bool,
    /// Matches by detector name, in first-seen order.
    pub counts: Vec<(Box<str>, u32)>,
    /// Matches replaced by a label.
    pub redacted: u32,
}

impl core::fmt::Debug for ResponseDlp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResponseDlp")
            .field("policy", &self.policy.name)
            .field("redacted", &self.redacted)
            .finish()
    }
}

enum Mode {
    Whole(Vec<u8>),
    Stream(Box<Stream>),
}

impl ResponseDlp {
    /// The stage for a response; `sse` when it is `text/event-stream`;
    /// `record_only` in dry_run (matches counted, nothing changed).
    pub fn new(policy: Rc<DlpPolicy>, sse: bool, record_only: bool) -> Self {
        let mode = if sse {
            Mode::Stream(Box::new(Stream {
                decoder: SseDecoder::new(MAX_EVENT_BYTES, false),
                holdback: policy.response_holdback,
                pending: Vec::new(),
                pending_at: 0,
                held: Vec::new(),
                text: Vec::new(),
                text_at: 0,
                decided: 0,
            }))
        } else {
            Mode::Whole(Vec::new())
        };
        ResponseDlp {
            policy,
            mode,
            record_only,
            counts: Vec::new(),
            redacted: 0,
        }
    }

    /// Feeds the next bytes of the body (`end` on the last); appends to
    /// `out` the bytes that may now go on. An error means the response must
    /// be cut: nothing more may be sent.
    pub fn feed(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) -> Result<(), Cut> {
        let mut tally = Tally {
            counts: &mut self.counts,
            redacted: &mut self.redacted,
            record_only: self.record_only,
        };
        match &mut self.mode {
            Mode::Whole(held) => {
                if held.len().saturating_add(bytes.len()) > MAX_WHOLE_BYTES {
                    *held = Vec::new();
                    return Err(Cut::TooLarge);
                }
                held.extend_from_slice(bytes);
                if !end {
                    return Ok(());
                }
                let body = core::mem::take(held);
                let found = match json::inspect_strings(&body, &[]) {
                    Ok(seen) => dlp_scan::scan_response(&self.policy, &body, &seen.strings),
                    Err(_) => dlp_scan::scan_response_text(&self.policy, &body),
                };
                let edits = tally.take(found);
                if edits.is_empty() {
                    out.extend_from_slice(&body);
                } else {
                    out.extend(splice(&body, edits).map_err(|_| Cut::Unscannable)?);
                }
                Ok(())
            }
            Mode::Stream(s) => s.feed(&self.policy, bytes, end, out, &mut tally),
        }
    }
}

/// Where findings are counted.
struct Tally<'a> {
    counts: &'a mut Vec<(Box<str>, u32)>,
    redacted: &'a mut u32,
    /// Count only: no redaction is made.
    record_only: bool,
}

impl Tally<'_> {
    fn note(&mut self, name: &str, n: u32) {
        dlp_scan::add_count(self.counts, name, n);
    }

    /// Counts a scan's findings and returns its redactions (none when
    /// recording only).
    fn take(&mut self, found: Findings) -> Vec<Edit> {
        for (name, n) in &found.counts {
            self.note(name, *n);
        }
        if self.record_only {
            return Vec::new();
        }
        *self.redacted = self
            .redacted
            .saturating_add(u32::try_from(found.edits.len()).unwrap_or(u32::MAX));
        found.edits
    }
}

/// An SSE response being scanned.
struct Stream {
    /// Observes events (their positions come with them).
    decoder: SseDecoder,
    holdback: usize,
    /// Stream bytes not sent yet, from stream offset `pending_at`.
    pending: Vec<u8>,
    pending_at: u64,
    /// Complete events not sent yet, in stream order.
    held: Vec<Held>,
    /// Output text from text offset `text_at`: a little context already
    /// sent, then the text of the held events.
    text: Vec<u8>,
    text_at: u64,
    /// Matches that start before this text offset have been dealt with.
    decided: u64,
}

/// A complete event held back.
struct Held {
    /// Its bytes in the stream.
    at: Range<u64>,
    data: Data,
    /// Its strings that are output text.
    pieces: Vec<Piece>,
    /// The text offset just past its output text.
    text_end: u64,
    /// Redactions, as edits of its data.
    edits: Vec<Edit>,
}

/// Where an event's data is.
enum Data {
    /// Within the event's bytes (one `data:` line): this range of them.
    Inline(Range<usize>),
    /// Several `data:` lines, joined with `\n`: scanned, but an edit cannot
    /// be placed in its lines (providers never send such events), so one
    /// that needs an edit cuts the response.
    Joined(Vec<u8>),
}

/// An output string of an event.
struct Piece {
    /// Its span in the event's data, quotes included.
    span: Range<usize>,
    /// Its decoded text's offsets in the output text.
    text: Range<u64>,
}

impl Stream {
    fn feed(
        &mut self,
        policy: &DlpPolicy,
        bytes: &[u8],
        end: bool,
        out: &mut Vec<u8>,
        tally: &mut Tally<'_>,
    ) -> Result<(), Cut> {
        self.pending.extend_from_slice(bytes);
        let mut sink = Vec::new();
        {
            let Stream {
                decoder,
                held,
                text,
                text_at,
                ..
            } = self;
            let mut scratch = Vec::new();
            let mut on_event = |ev: &SseEvent<'_>| {
                held.push(read_event(policy, ev, text, *text_at, &mut scratch, tally));
                Verdict::Keep
            };
            decoder.feed(bytes, &mut sink, &mut on_event);
            if end {
                decoder.finish(&mut sink, &mut on_event);
            }
        }
        if self.decoder.oversized > 0 || self.pending.len() > MAX_HELD_BYTES {
            self.pending = Vec::new();
            self.held.clear();
            return Err(Cut::Unscannable);
        }
        let cut = self.decide(policy, end, tally)?;
        self.release(cut, out)
    }

    /// Scans the text and deals with every match that is complete: with
    /// `holdback` bytes of text after it, or the stream ended. Returns the
    /// cut: the text offset up to which events may go.
    fn decide(&mut self, policy: &DlpPolicy, end: bool, tally: &mut Tally<'_>) -> Result<u64, Cut> {
        let text_end = self.text_at.saturating_add(self.text.len() as u64);
        let mut cut = if end {
            text_end
        } else {
            text_end.saturating_sub(self.holdback as u64)
        };
        let mut matches: Vec<Match> = Vec::new();
        if self.text.len() as u64 > self.decided.saturating_sub(self.text_at) {
            policy.set.scan(&self.text, &mut matches);
        }
        let text_at = self.text_at;
        let abs = |m: &Match| {
            (
                text_at.saturating_add(m.start as u64),
                text_at.saturating_add(m.end as u64),
            )
        };
        // A match still open at the cut holds back everything from its start.
        for m in &matches {
            let (a, b) = abs(m);
            if a >= self.decided && a < cut && b > cut {
                cut = a;
            }
        }
        for m in &matches {
            let (a, b) = abs(m);
            if a < self.decided || b > cut {
                continue;
            }
            self.decided = b;
            let name = policy.set.name(m.detector);
            tally.note(name, 1);
            if tally.record_only || policy.action(m.detector) == DlpAction::Audit {
                continue;
            }
            *tally.redacted = tally.redacted.saturating_add(1);
            let label = format!("[REDACTED:{name}]").into_bytes();
            self.redact(a..b, label)?;
        }
        Ok(cut)
    }

    /// Records the edits that remove the text `range` from the held events
    /// that carry it, the label standing where it begins.
    fn redact(&mut self, range: Range<u64>, label: Vec<u8>) -> Result<(), Cut> {
        let mut label = Some(label);
        let mut scratch = Vec::new();
        let mut map = Vec::new();
        let Stream {
            held,
            pending,
            pending_at,
            ..
        } = self;
        for h in held.iter_mut() {
            let Some(data) = event_data(pending, *pending_at, &h.at, &h.data) else {
                return Err(Cut::Unscannable);
            };
            for p in &h.pieces {
                let (a, b) = (range.start.max(p.text.start), range.end.min(p.text.end));
                if a >= b {
                    continue;
                }
                let rel = |x: u64| usize::try_from(x.saturating_sub(p.text.start)).unwrap_or(0);
                let (ra, rb) = (rel(a), rel(b));
                let inner_start = p.span.start.saturating_add(1);
                let inner = data
                    .get(inner_start..p.span.end.saturating_sub(1))
                    .ok_or(Cut::Unscannable)?;
                let (sa, sb) = if inner.contains(&b'\\') {
                    json::decode_mapped(inner, &mut scratch, &mut map).ok_or(Cut::Unscannable)?;
                    let at = |i: usize| map.get(i).map(|x| *x as usize);
                    (
                        at(ra).ok_or(Cut::Unscannable)?,
                        at(rb).ok_or(Cut::Unscannable)?,
                    )
                } else {
                    (ra, rb)
                };
                h.edits.push(Edit::Replace {
                    span: inner_start.saturating_add(sa)..inner_start.saturating_add(sb),
                    with: label.take().unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Sends on every byte before the first event that must stay (whose
    /// text ends after `cut`) or, with none held, before the event being
    /// read; drops what was sent and the text no longer needed.
    fn release(&mut self, cut: u64, out: &mut Vec<u8>) -> Result<(), Cut> {
        let mut at = self.pending_at;
        let mut sent_text = None;
        let going = self.held.iter().take_while(|h| h.text_end <= cut).count();
        for h in self.held.get(..going).unwrap_or_default() {
            out.extend_from_slice(self.slice(at..h.at.start));
            self.emit(h, out)?;
            at = h.at.end;
            sent_text = Some(h.text_end);
        }
        self.held = self.held.split_off(going.min(self.held.len()));
        let stream_end = self.pending_at.saturating_add(self.pending.len() as u64);
        let upto = match (self.held.first(), self.decoder.open_event_start()) {
            (Some(h), _) => h.at.start,
            (None, Some(open)) => open,
            (None, None) => stream_end,
        };
        out.extend_from_slice(self.slice(at..upto.max(at)));
        let done = usize::try_from(upto.max(at).saturating_sub(self.pending_at)).unwrap_or(0);
        drop_front(&mut self.pending, done);
        self.pending_at = upto.max(at);
        if let Some(sent) = sent_text {
            self.decided = self.decided.max(sent);
            let keep_from = sent.saturating_sub(CONTEXT as u64).max(self.text_at);
            let drop = usize::try_from(keep_from.saturating_sub(self.text_at)).unwrap_or(0);
            drop_front(&mut self.text, drop);
            self.text_at = keep_from;
        }
        Ok(())
    }

    /// The pending bytes at stream offsets `r`.
    fn slice(&self, r: Range<u64>) -> &[u8] {
        let from = usize::try_from(r.start.saturating_sub(self.pending_at)).unwrap_or(0);
        let to = usize::try_from(r.end.saturating_sub(self.pending_at)).unwrap_or(0);
        self.pending.get(from..to).unwrap_or_default()
    }

    /// Writes one released event, its redactions applied.
    fn emit(&self, h: &Held, out: &mut Vec<u8>) -> Result<(), Cut> {
        let raw = self.slice(h.at.clone());
        if h.edits.is_empty() {
            out.extend_from_slice(raw);
            return Ok(());
        }
        match &h.data {
            Data::Inline(r) => {
                let data = raw.get(r.clone()).ok_or(Cut::Unscannable)?;
                let edited = splice(data, h.edits.clone()).map_err(|_| Cut::Unscannable)?;
                out.extend_from_slice(raw.get(..r.start).unwrap_or_default());
                out.extend_from_slice(&edited);
                out.extend_from_slice(raw.get(r.end..).unwrap_or_default());
            }
            // Providers send one `data:` line per event; an edit in an
            // event of several cannot be placed in its lines, so the
            // response is cut rather than sent with the match.
            Data::Joined(_) => return Err(Cut::Unscannable),
        }
        Ok(())
    }
}

/// Removes the first `n` bytes of `v` (all, if it is shorter).
fn drop_front(v: &mut Vec<u8>, n: usize) {
    let n = n.min(v.len());
    v.copy_within(n.., 0);
    v.truncate(v.len() - n);
}

/// An event's data (the event at stream offsets `at`), from the pending
/// bytes or its joined copy.
fn event_data<'a>(
    pending: &'a [u8],
    pending_at: u64,
    at: &Range<u64>,
    data: &'a Data,
) -> Option<&'a [u8]> {
    match data {
        Data::Joined(d) => Some(d),
        Data::Inline(r) => {
            let start = usize::try_from(at.start.checked_sub(pending_at)?).ok()?;
            pending.get(start.checked_add(r.start)?..start.checked_add(r.end)?)
        }
    }
}

/// Reads one complete event: its output strings' text appended to `text`
/// (which starts at text offset `text_at`), every other string scanned
/// and its redactions recorded.
fn read_event(
    policy: &DlpPolicy,
    ev: &SseEvent<'_>,
    text: &mut Vec<u8>,
    text_at: u64,
    scratch: &mut Vec<u8>,
    tally: &mut Tally<'_>,
) -> Held {
    let start = ev.end.saturating_sub(ev.raw.len() as u64);
    let data = match offset_in(ev.raw, ev.data) {
        Some(r) => Data::Inline(r),
        None => Data::Joined(ev.data.to_vec()),
    };
    let mut pieces = Vec::new();
    let found = match json::inspect_strings(ev.data, &[]) {
        Ok(seen) => {
            let mut others = Vec::new();
            for span in seen.strings {
                let is_output =
                    key_before(ev.data, span.start).is_some_and(|k| OUTPUT_KEYS.contains(&k));
                let inner = ev
                    .data
                    .get(span.start.saturating_add(1)..span.end.saturating_sub(1))
                    .unwrap_or_default();
                if !is_output {
                    others.push(span);
                    continue;
                }
                let from = text_at.saturating_add(text.len() as u64);
                if inner.contains(&b'\\') {
                    if json::decode_into(inner, scratch, None).is_none() {
                        others.push(span);
                        continue;
                    }
                    text.extend_from_slice(scratch);
                } else {
                    text.extend_from_slice(inner);
                }
                let to = text_at.saturating_add(text.len() as u64);
                pieces.push(Piece {
                    span,
                    text: from..to,
                });
            }
            dlp_scan::scan_response(policy, ev.data, &others)
        }
        Err(_) => dlp_scan::scan_response_text(policy, ev.data),
    };
    Held {
        at: start..ev.end,
        data,
        pieces,
        text_end: text_at.saturating_add(text.len() as u64),
        edits: tally.take(found),
    }
}

/// Where `inner` lies within `outer`, when it is a subslice of it.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let at = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = at.checked_add(inner.len())?;
    (end <= outer.len()).then_some(at..end)
}

/// The raw key of the object member whose string value starts at `value`
/// (the opening quote), in valid JSON; `None` for an array element or the
/// root.
fn key_before(json: &[u8], value: usize) -> Option<&[u8]> {
    let before = json.get(..value)?.trim_ascii_end();
    let before = before.strip_suffix(b":")?.trim_ascii_end();
    let close = before.len().checked_sub(1)?;
    if before.get(close) != Some(&b'"') {
        return None;
    }
    // The opening quote: the nearest quote before it not escaped.
    let mut i = close;
    while i > 0 {
        i -= 1;
        if before.get(i) == Some(&b'"') {
            let slashes = before
                .get(..i)?
                .iter()
                .rev()
                .take_while(|&&c| c == b'\\')
                .count();
            if slashes % 2 == 0 {
                return before.get(i.saturating_add(1)..close);
            }
        }
    }
    None
}
