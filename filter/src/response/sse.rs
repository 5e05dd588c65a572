//! Server-sent events (`text/event-stream`) read incrementally from body
//! chunks, in bounded memory, optionally removing chosen events from the bytes
//! sent on to the client.
//!
//! Parsing follows the WHATWG event-stream rules: a line ends at CRLF, LF or
//! CR; `data` lines are joined with `\n`; `event` and `id` are kept; a line
//! starting with `:` is a comment; one space after the colon is stripped; a
//! blank line dispatches the event, and an event without `data` lines is not
//! dispatched. A UTF-8 byte order mark at the very start is ignored. Unlike a
//! browser, [`SseDecoder::finish`] also dispatches an unterminated final event
//! so that usage it carries is not lost.
//!
//! Invariants, whatever the input and however it is split into chunks:
//! - chunk boundaries mean nothing: a CR ending one chunk and an LF starting
//!   the next are one line end, and feeding a stream in any split gives the
//!   same events, in the same order, and the same output as feeding it whole;
//! - the decoder works on bytes and never decodes UTF-8;
//! - it holds at most `max_event_bytes` raw bytes of the current event; an
//!   event longer than that is not dispatched, is counted in
//!   [`SseDecoder::oversized`], and is skipped to its end in bounded memory;
//! - with filtering on, the output is the input minus exactly the raw bytes
//!   (first line through terminating blank line) of the events the callback
//!   dropped, and with the bytes the callback gave in place of those it
//!   replaced: bytes outside events go out at once, the bytes of an event are
//!   held only until it completes, an oversized event goes out unchanged, and
//!   `finish` emits whatever is still held;
//! - with filtering off nothing is written to `out`: the caller forwards its
//!   chunks untouched and the decoder only observes.

/// One dispatched event; its fields borrow from the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The event type (`event:` field); empty when absent, which WHATWG reads
    /// as `message`.
    pub event: &'a [u8],
    /// The `data:` lines of the event joined with `\n`.
    pub data: &'a [u8],
    /// The last `id:` field of this event, when it had one without a NUL.
    pub id: Option<&'a [u8]>,
    /// The event's bytes as they came, through its terminating blank line
    /// (a byte order mark at the start of the stream excluded); `data` lies
    /// inside it when the event has one data line.
    pub raw: &'a [u8],
    /// The stream offset just past `raw` (bytes fed since the stream
    /// began): `raw` is the stream's `end - raw.len()..end`.
    pub end: u64,
}

/// What to do with an event's bytes in filtering mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the event on unchanged.
    Keep,
    /// Remove the event's bytes from the output.
    Drop,
    /// Send these bytes instead of the event's [`SseEvent::raw`]; they
    /// must end the event as the raw bytes did (with its blank line).
    Replace(Vec<u8>),
}

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn is_line_end(byte: u8) -> bool {
    byte == CR || byte == LF
}

/// Where the decoder stands within the current line of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinePos {
    /// At the start of a line: a line end here is a blank line.
    Start,
    /// Just after a CR that ended a line: an LF here completes that line end.
    AfterCr,
    /// Inside a line that has content.
    Middle,
}

/// Where the current event's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// Within the bound: held in `raw`.
    Held,
    /// Over the bound: passed on (filtering) or skipped (observing) until the
    /// event ends, then counted as oversized.
    Over,
}

/// What happens to an LF that directly follows the CR ending the last line
/// outside an event (that LF completes a CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailingLf {
    /// The previous byte was not a CR.
    None,
    /// The CR was sent on; so is the LF.
    Emit,
    /// The CR ended an event that was dropped; so is the LF.
    Discard,
}

/// The decoder's position in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between events, at the start of a line.
    Between { lf: TrailingLf },
    /// Inside an event (from its first byte to its terminating blank line).
    InEvent {
        line: LinePos,
        fit: Fit,
        /// Whether the event began at the first byte of the stream (where a
        /// byte order mark is ignored).
        at_stream_start: bool,
    },
}

/// An incremental, bounded event-stream decoder for one response stream.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    filtering: bool,
    state: State,
    /// Whether no byte of the stream has been fed yet.
    fresh: bool,
    /// The raw bytes of the current event while it fits the bound.
    raw: Vec<u8>,
    /// Scratch for joining the data lines of a multi-line event.
    joined: Vec<u8>,
    /// Events dropped because they were longer than `max_event_bytes`.
    pub oversized: u32,
    /// Bytes of the stream read so far (before the current step).
    pos: u64,
    /// The stream offset of the current event's first byte (meaningful
    /// while in an event).
    event_start: u64,
}

impl SseDecoder {
    /// A decoder for a new stream. `max_event_bytes` bounds the raw size of
    /// one event (its lines, line ends and terminating blank line); with
    /// `filtering`, `feed` and `finish` write the bytes to send on to `out`.
    pub fn new(max_event_bytes: usize, filtering: bool) -> Self {
        SseDecoder {
            max_event_bytes,
            filtering,
            state: State::Between {
                lf: TrailingLf::None,
            },
            fresh: true,
            raw: Vec::new(),
            joined: Vec::new(),
            oversized: 0,
            pos: 0,
            event_start: 0,
        }
    }

    /// Whether this decoder writes output (filtering mode).
    pub fn is_filtering(&self) -> bool {
        self.filtering
    }

    /// The raw bytes of an incomplete event held right now (never more than
    /// `max_event_bytes`).
    pub fn held_bytes(&self) -> usize {
        self.raw.len()
    }

    /// Where the event being read began (a stream offset), while one is
    /// open: its bytes, held or passed, are not complete yet.
    pub fn open_event_start(&self) -> Option<u64> {
        match self.state {
            State::InEvent { .. } => Some(self.event_start),
            State::Between { .. } => None,
        }
    }

    /// Feeds one chunk: calls `on_event` for each event it completes and, in
    /// filtering mode, appends the bytes to send on to `out`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        on_event: &mut dyn FnMut(&SseEvent<'_>) -> Verdict,
    ) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let before = rest.len();
            rest = match self.state {
                State::Between { lf } => self.step_between(lf, rest, out),
                State::InEvent {
                    line,
                    fit,
                    at_stream_start,
                } => self.step_in_event(line, fit, at_stream_start, rest, out, on_event),
            };
            self.pos = self
                .pos
                .saturating_add(before.saturating_sub(rest.len()) as u64);
            self.fresh = false;
        }
    }

    /// Ends the stream: an unterminated final event is offered to `on_event`
    /// (when it has data) and, in filtering mode, always emitted to `out` as
    /// it came, whatever the verdict. The decoder is then ready for a new
    /// stream.
    pub fn finish(
        &mut self,
        out: &mut Vec<u8>,
        on_event: &mut dyn FnMut(&SseEvent<'_>) -> Verdict,
    ) {
        if let State::InEvent {
            fit,
            at_stream_start,
            ..
        } = self.state
        {
            match fit {
                Fit::Held => {
                    if let Some(event) =
                        parse_event(&self.raw, at_stream_start, &mut self.joined, self.pos)
                    {
                        let _ignored = on_event(&event);
                    }
                    if self.filtering {
                        out.extend_from_slice(&self.raw);
                    }
                }
                Fit::Over => self.oversized = self.oversized.saturating_add(1),
            }
        }
        self.raw.clear();
        self.joined.clear();
        self.state = State::Between {
            lf: TrailingLf::None,
        };
        self.fresh = true;
        self.pos = 0;
    }

    /// Reads between events: a blank line passes through; any other byte
    /// starts an event (and is left for the next step). Returns the input
    /// not yet read.
    fn step_between<'c>(&mut self, lf: TrailingLf, rest: &'c [u8], out: &mut Vec<u8>) -> &'c [u8] {
        let Some((&byte, after_byte)) = rest.split_first() else {
            return rest;
        };
        if byte == LF && lf != TrailingLf::None {
            if lf == TrailingLf::Emit {
                self.emit(out, &[LF]);
            }
            self.state = State::Between {
                lf: TrailingLf::None,
            };
            return after_byte;
        }
        if is_line_end(byte) {
            self.emit(out, &[byte]);
            let lf = if byte == CR {
                TrailingLf::Emit
            } else {
                TrailingLf::None
            };
            self.state = State::Between { lf };
            return after_byte;
        }
        self.raw.clear();
        self.event_start = self.pos;
        self.state = State::InEvent {
            line: LinePos::Start,
            fit: Fit::Held,
            at_stream_start: self.fresh,
        };
        rest
    }

    /// Reads inside an event: one line end, or the text up to the next one.
    /// A line end at the start of a line completes the event. Returns the
    /// input not yet read.
    fn step_in_event<'c>(
        &mut self,
        line: LinePos,
        fit: Fit,
        at_stream_start: bool,
        rest: &'c [u8],
        out: &mut Vec<u8>,
        on_event: &mut dyn FnMut(&SseEvent<'_>) -> Verdict,
    ) -> &'c [u8] {
        let Some((&byte, after_byte)) = rest.split_first() else {
            return rest;
        };
        let in_event = |line, fit| State::InEvent {
            line,
            fit,
            at_stream_start,
        };
        if line == LinePos::AfterCr && byte == LF {
            let fit = self.take(fit, &[LF], out);
            self.state = in_event(LinePos::Start, fit);
            return after_byte;
        }
        if is_line_end(byte) {
            let fit = self.take(fit, &[byte], out);
            match line {
                LinePos::Middle if byte == CR => self.state = in_event(LinePos::AfterCr, fit),
                LinePos::Middle => self.state = in_event(LinePos::Start, fit),
                LinePos::Start | LinePos::AfterCr => {
                    self.end_event(fit, at_stream_start, byte == CR, out, on_event)
                }
            }
            return after_byte;
        }
        let text_len = rest
            .iter()
            .position(|&b| is_line_end(b))
            .unwrap_or(rest.len());
        let (text, after_text) = rest.split_at_checked(text_len).unwrap_or((rest, &[]));
        let fit = self.take(fit, text, out);
        self.state = in_event(LinePos::Middle, fit);
        after_text
    }

    /// Appends bytes to the output in filtering mode.
    fn emit(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.filtering {
            out.extend_from_slice(bytes);
        }
    }

    /// Takes bytes of the current event: holds them while the event fits the
    /// bound, otherwise releases what is held and lets them pass.
    fn take(&mut self, fit: Fit, bytes: &[u8], out: &mut Vec<u8>) -> Fit {
        if fit == Fit::Held && hold_within(&mut self.raw, bytes, self.max_event_bytes) {
            return Fit::Held;
        }
        if self.filtering {
            out.extend_from_slice(&self.raw);
            out.extend_from_slice(bytes);
        }
        self.raw.clear();
        Fit::Over
    }

    /// Completes the current event at its terminating blank line (already
    /// taken): dispatches it, and emits or drops its bytes by the verdict.
    fn end_event(
        &mut self,
        fit: Fit,
        at_stream_start: bool,
        ended_by_cr: bool,
        out: &mut Vec<u8>,
        on_event: &mut dyn FnMut(&SseEvent<'_>) -> Verdict,
    ) {
        let verdict = match fit {
            Fit::Held => {
                // The terminating line end is this step's one byte.
                let end = self.pos.saturating_add(1);
                let verdict = match parse_event(&self.raw, at_stream_start, &mut self.joined, end) {
                    Some(event) => on_event(&event),
                    None => Verdict::Keep,
                };
                if self.filtering {
                    match &verdict {
                        Verdict::Keep => out.extend_from_slice(&self.raw),
                        Verdict::Drop => {}
                        Verdict::Replace(bytes) => {
                            if at_stream_start && self.raw.starts_with(BOM) {
                                out.extend_from_slice(BOM);
                            }
                            out.extend_from_slice(bytes);
                        }
                    }
                }
                verdict
            }
            Fit::Over => {
                self.oversized = self.oversized.saturating_add(1);
                Verdict::Keep
            }
        };
        self.raw.clear();
        let lf = match (ended_by_cr, verdict) {
            (false, _) => TrailingLf::None,
            (true, Verdict::Keep | Verdict::Replace(_)) => TrailingLf::Emit,
            (true, Verdict::Drop) => TrailingLf::Discard,
        };
        self.state = State::Between { lf };
    }
}

/// Appends `bytes` to `held` if the result stays within `max` bytes, growing
/// the allocation by doubling but never beyond `max`.
fn hold_within(held: &mut Vec<u8>, bytes: &[u8], max: usize) -> bool {
    let Some(len) = held.len().checked_add(bytes.len()) else {
        return false;
    };
    if len > max {
        return false;
    }
    if len > held.capacity() {
        let target = held.capacity().saturating_mul(2).max(len).min(max);
        held.reserve_exact(target.saturating_sub(held.len()));
    }
    held.extend_from_slice(bytes);
    true
}

/// The lines of a complete event's raw bytes, without their line ends.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(end) = self.rest.iter().position(|&b| is_line_end(b)) else {
            let line = self.rest;
            self.rest = &[];
            return Some(line);
        };
        let (line, ending) = self.rest.split_at_checked(end)?;
        self.rest = match ending {
            [CR, LF, after @ ..] => after,
            [_, after @ ..] => after,
            [] => &[],
        };
        Some(line)
    }
}

/// A line's field name and value (one leading space of the value removed);
/// a comment line has an empty name.
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return (line, &[]);
    };
    let name = line.get(..colon).unwrap_or_default();
    let value = line.get(colon.saturating_add(1)..).unwrap_or_default();
    (name, value.strip_prefix(b" ").unwrap_or(value))
}

/// The event in a complete event's raw bytes, or `None` when it has no data
/// lines. `joined` is scratch for the data of multi-line events.
fn parse_event<'a>(
    raw: &'a [u8],
    at_stream_start: bool,
    joined: &'a mut Vec<u8>,
    end: u64,
) -> Option<SseEvent<'a>> {
    let raw = match raw.strip_prefix(BOM) {
        Some(after) if at_stream_start => after,
        _ => raw,
    };
    let mut event: &[u8] = &[];
    let mut id = None;
    let mut first_data: Option<&[u8]> = None;
    let mut data_lines = 0usize;
    joined.clear();
    for line in (Lines { rest: raw }) {
        let (name, value) = split_field(line);
        match name {
            b"data" => {
                data_lines = data_lines.saturating_add(1);
                match first_data {
                    None => first_data = Some(value),
                    Some(first) => {
                        if data_lines == 2 {
                            joined.extend_from_slice(first);
                        }
                        joined.push(LF);
                        joined.extend_from_slice(value);
                    }
                }
            }
            b"event" => event = value,
            b"id" if !value.contains(&0) => id = Some(value),
            _ => {}
        }
    }
    let joined: &'a Vec<u8> = joined;
    let data = match (data_lines, first_data) {
        (_, None) => return None,
        (1, Some(first)) => first,
        _ => joined.as_slice(),
    };
    Some(SseEvent {
        event,
        data,
        id,
        raw,
        end,
    })
}

/// Helpers for tests that feed streams in every split (used by the usage
/// tests too).
#[cfg(test)]
pub(crate) mod testing {
    use super::{SseDecoder, SseEvent, Verdict};

    /// A tiny deterministic PRNG (xorshift64*), enough to pick split points.
    pub(crate) struct XorShift(u64);

    impl XorShift {
        pub(crate) fn new(seed: u64) -> Self {
            XorShift(seed.max(1))
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A number in `0..bound` (0 when `bound` is 0).
        pub(crate) fn below(&mut self, bound: usize) -> usize {
            if bound == 0 {
                return 0;
            }
            (self.next_u64() % bound as u64) as usize
        }
    }

    /// `len` cut at up to `max_cuts` random points: sorted, may repeat
    /// (giving empty chunks).
    pub(crate) fn random_cuts(rng: &mut XorShift, len: usize, max_cuts: usize) -> Vec<usize> {
        let n = rng.below(max_cuts) + 1;
        let mut cuts: Vec<usize> = (0..n).map(|_| rng.below(len + 1)).collect();
        cuts.sort_unstable();
        cuts
    }

    /// An owned copy of a dispatched event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Owned {
        pub(crate) event: Vec<u8>,
        pub(crate) data: Vec<u8>,
        pub(crate) id: Option<Vec<u8>>,
    }

    impl Owned {
        pub(crate) fn of(event: &SseEvent<'_>) -> Self {
            Owned {
                event: event.event.to_vec(),
                data: event.data.to_vec(),
                id: event.id.map(<[u8]>::to_vec),
            }
        }
    }

    /// Feeds `input` cut at `cuts` (sorted offsets), then finishes; returns
    /// the output. The decoder's memory bound is checked after every chunk.
    pub(crate) fn feed_cut(
        decoder: &mut SseDecoder,
        input: &[u8],
        cuts: &[usize],
        on_event: &mut dyn FnMut(&SseEvent<'_>) -> Verdict,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(core::iter::once(&input.len())) {
            decoder.feed(&input[start..cut], &mut out, on_event);
            assert!(decoder.held_bytes() <= decoder.max_event_bytes);
            assert!(decoder.raw.capacity() <= decoder.max_event_bytes);
            start = cut;
        }
        decoder.finish(&mut out, on_event);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::testing::{feed_cut, random_cuts, Owned, XorShift};
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const BOUND: usize = 64 * 1024;

    const RECORDED: &[(&str, &[u8])] = &[
        (
            "openai_chat_stream_usage",
            include_bytes!("testdata/openai_chat_stream_usage.sse"),
        ),
        (
            "openai_chat_stream_plain",
            include_bytes!("testdata/openai_chat_stream_plain.sse"),
        ),
        (
            "openai_responses_stream",
            include_bytes!("testdata/openai_responses_stream.sse"),
        ),
        (
            "anthropic_stream",
            include_bytes!("testdata/anthropic_stream.sse"),
        ),
        (
            "gemini_stream",
            include_bytes!("testdata/gemini_stream.sse"),
        ),
    ];

    /// Decodes `input` cut at `cuts`, dropping the events `drop` picks;
    /// returns the events seen and the output.
    fn run(
        input: &[u8],
        cuts: &[usize],
        bound: usize,
        filtering: bool,
        drop: &dyn Fn(&SseEvent<'_>) -> bool,
    ) -> (Vec<Owned>, Vec<u8>, u32) {
        let mut decoder = SseDecoder::new(bound, filtering);
        let mut events = Vec::new();
        let out = feed_cut(&mut decoder, input, cuts, &mut |ev| {
            events.push(Owned::of(ev));
            if drop(ev) {
                Verdict::Drop
            } else {
                Verdict::Keep
            }
        });
        (events, out, decoder.oversized)
    }

    fn keep_all(_: &SseEvent<'_>) -> bool {
        false
    }

    fn events(input: &[u8]) -> Vec<Owned> {
        run(input, &[], BOUND, false, &keep_all).0
    }

    fn data_of(input: &[u8]) -> Vec<String> {
        events(input)
            .into_iter()
            .map(|e| String::from_utf8(e.data).unwrap())
            .collect()
    }

    fn owned(event: &str, data: &str, id: Option<&str>) -> Owned {
        Owned {
            event: event.as_bytes().to_vec(),
            data: data.as_bytes().to_vec(),
            id: id.map(|i| i.as_bytes().to_vec()),
        }
    }

    #[test]
    fn dispatches_fields_of_one_event() {
        assert_eq!(
            events(b"event: message_start\nid: 7\ndata: {\"a\":1}\n\n"),
            [owned("message_start", "{\"a\":1}", Some("7"))]
        );
    }

    #[test]
    fn joins_data_lines_with_lf() {
        assert_eq!(
            data_of(b"data: a\ndata: b\ndata:\ndata: c\n\n"),
            ["a\nb\n\nc"]
        );
    }

    #[test]
    fn strips_exactly_one_space_after_the_colon() {
        assert_eq!(
            data_of(b"data:x\n\ndata: x\n\ndata:  x\n\n"),
            ["x", "x", " x"]
        );
    }

    #[test]
    fn reads_a_line_without_colon_as_a_field_with_empty_value() {
        assert_eq!(data_of(b"data\n\n"), [""]);
        assert_eq!(events(b"event\ndata: x\n\n"), [owned("", "x", None)]);
    }

    #[test]
    fn ignores_comments_and_unknown_fields() {
        assert_eq!(
            data_of(b": keep-alive\nretry: 10\nfoo: bar\ndata: x\n: more\n\n"),
            ["x"]
        );
    }

    #[test]
    fn does_not_dispatch_an_event_without_data_lines() {
        assert_eq!(events(b": ping\n\nevent: x\nid: 1\n\n\n\n"), []);
    }

    #[test]
    fn accepts_cr_lf_and_crlf_line_ends_mixed() {
        assert_eq!(
            data_of(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\rdata: e\n\n"),
            ["a\nb\nc", "d", "e"]
        );
    }

    #[test]
    fn reads_cr_then_lf_across_chunks_as_one_line_end() {
        let input = b"data: a\r\ndata: b\r\n\r\n";
        for cut in 0..=input.len() {
            let (events, out, _) = run(input, &[cut], BOUND, true, &keep_all);
            assert_eq!(events, [owned("", "a\nb", None)], "cut at {cut}");
            assert_eq!(out, input);
        }
    }

    #[test]
    fn ignores_a_byte_order_mark_only_at_stream_start() {
        assert_eq!(data_of(b"\xEF\xBB\xBFdata: x\n\n"), ["x"]);
        assert_eq!(data_of(b"\n\xEF\xBB\xBFdata: x\n\n"), Vec::<String>::new());
        let input = b"\xEF\xBB\xBFdata: x\n\n";
        for cut in 0..=input.len() {
            assert_eq!(run(input, &[cut], BOUND, false, &keep_all).0.len(), 1);
        }
    }

    #[test]
    fn ignores_an_id_holding_nul() {
        assert_eq!(events(b"id: a\0b\ndata: x\n\n"), [owned("", "x", None)]);
    }

    #[test]
    fn never_decodes_utf8_so_split_characters_survive() {
        let input = "data: héllo 世界 🎉\n\n".as_bytes();
        for cut in 0..=input.len() {
            let (events, _, _) = run(input, &[cut], BOUND, false, &keep_all);
            assert_eq!(events, [owned("", "héllo 世界 🎉", None)]);
        }
        assert_eq!(events(b"data: \xff\xfe\n\n")[0].data, b"\xff\xfe");
    }

    #[test]
    fn passes_bytes_outside_events_at_once() {
        let mut decoder = SseDecoder::new(BOUND, true);
        let mut out = Vec::new();
        decoder.feed(b"\r\n\n\r", &mut out, &mut |_| Verdict::Keep);
        assert_eq!(out, b"\r\n\n\r");
    }

    #[test]
    fn holds_an_incomplete_event_until_its_blank_line() {
        let mut decoder = SseDecoder::new(BOUND, true);
        let mut out = Vec::new();
        let mut seen = 0;
        let mut on_event = |_: &SseEvent<'_>| {
            seen += 1;
            Verdict::Keep
        };
        decoder.feed(b"data: a\n", &mut out, &mut on_event);
        assert_eq!(out, b"");
        decoder.feed(b"\nda", &mut out, &mut on_event);
        assert_eq!(out, b"data: a\n\n");
        decoder.feed(b"ta: b\n\n", &mut out, &mut on_event);
        assert_eq!(out, b"data: a\n\ndata: b\n\n");
        assert_eq!(seen, 2);
    }

    #[test]
    fn drops_exactly_the_raw_bytes_of_a_dropped_event() {
        let input = b": c\n\ndata: keep\r\n\r\n\nevent: x\r\ndata: drop\r\r\ndata: keep2\n\n";
        let expected = b": c\n\ndata: keep\r\n\r\n\ndata: keep2\n\n";
        let drop_x = |ev: &SseEvent<'_>| ev.event == b"x";
        for cut in 0..=input.len() {
            let (events, out, _) = run(input, &[cut], BOUND, true, &drop_x);
            assert_eq!(events.len(), 3);
            assert_eq!(out, expected, "cut at {cut}");
        }
    }

    #[test]
    fn drops_the_lf_of_a_crlf_ending_a_dropped_event_in_the_next_chunk() {
        let drop_all = |_: &SseEvent<'_>| true;
        let (_, out, _) = run(b"data: x\r\n\r\n\r\n", &[10], BOUND, true, &drop_all);
        assert_eq!(out, b"\r\n");
        let (_, out, _) = run(b"data: x\r\r\n\r\n", &[8], BOUND, true, &drop_all);
        assert_eq!(out, b"\r\n");
    }

    #[test]
    fn writes_nothing_in_observe_mode() {
        let input = include_bytes!("testdata/anthropic_stream.sse");
        let (events, out, _) = run(input, &[100, 200], BOUND, false, &|_| true);
        assert!(events.len() > 5);
        assert_eq!(out, b"");
    }

    #[test]
    fn finish_emits_and_offers_an_unterminated_final_event() {
        for input in [
            &b"data: a\n\ndata: b\n"[..],
            b"data: a\n\ndata: b",
            b"data: a\n\ndata: b\r",
        ] {
            for cut in 0..=input.len() {
                let (events, out, _) = run(input, &[cut], BOUND, true, &|_| true);
                assert_eq!(events, [owned("", "a", None), owned("", "b", None)]);
                assert_eq!(
                    out,
                    &input[9..],
                    "the final event is emitted whatever the verdict"
                );
            }
        }
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let mut decoder = SseDecoder::new(BOUND, true);
        let mut out = Vec::new();
        decoder.feed(b"data: a\r", &mut out, &mut |_| Verdict::Drop);
        decoder.finish(&mut out, &mut |_| Verdict::Drop);
        assert_eq!(out, b"data: a\r");
        out.clear();
        decoder.feed(b"\ndata: b\n\n", &mut out, &mut |_| Verdict::Keep);
        assert_eq!(
            out, b"\ndata: b\n\n",
            "the LF is a blank line of the new stream"
        );
        assert_eq!(decoder.held_bytes(), 0);
    }

    #[test]
    fn skips_an_oversized_event_passing_its_bytes_and_counting_it() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let input = format!("data: a\n\n{big}data: b\n\n");
        let input = input.as_bytes();
        for cut in 0..=input.len() {
            let (events, out, oversized) = run(input, &[cut], 64, true, &|_| true);
            assert_eq!(events, [owned("", "a", None), owned("", "b", None)]);
            assert_eq!(out, big.as_bytes(), "cut at {cut}");
            assert_eq!(oversized, 1);
        }
    }

    #[test]
    fn bound_counts_the_whole_raw_event_including_its_blank_line() {
        let input = b"data: 12\n\n";
        assert_eq!(run(input, &[], input.len(), false, &keep_all).2, 0);
        assert_eq!(run(input, &[], input.len() - 1, false, &keep_all).2, 1);
    }

    #[test]
    fn holds_at_most_the_bound_for_an_event_that_never_ends() {
        for filtering in [false, true] {
            let mut decoder = SseDecoder::new(1000, filtering);
            let mut out = Vec::new();
            let line = b"data: 0123456789abcdef\n";
            for _ in 0..10_000 {
                decoder.feed(line, &mut out, &mut |_| Verdict::Keep);
                assert!(decoder.held_bytes() <= 1000);
                assert!(decoder.raw.capacity() <= 1000);
            }
            if filtering {
                assert_eq!(out.len(), 10_000 * line.len(), "passed on, not held");
            }
            decoder.feed(b"\n", &mut out, &mut |_| Verdict::Keep);
            assert_eq!(decoder.oversized, 1);
        }
    }

    #[test]
    fn a_zero_bound_skips_every_event_and_keeps_every_byte() {
        let input = b"data: a\n\n\ndata: b\r\n\r\n";
        let (events, out, oversized) = run(input, &[3, 11], 0, true, &|_| true);
        assert_eq!(events, []);
        assert_eq!(out, input);
        assert_eq!(oversized, 2);
    }

    #[test]
    fn recorded_streams_give_the_same_events_and_bytes_in_every_two_way_split() {
        for (name, input) in RECORDED {
            let (whole_events, whole_out, _) = run(input, &[], BOUND, true, &keep_all);
            assert!(whole_events.len() >= 4, "{name}");
            assert_eq!(
                &whole_out, input,
                "{name}: keeping everything changes nothing"
            );
            for cut in 0..=input.len() {
                let (events, out, _) = run(input, &[cut], BOUND, true, &keep_all);
                assert_eq!(events, whole_events, "{name} cut at {cut}");
                assert_eq!(&out, input, "{name} cut at {cut}");
            }
        }
    }

    #[test]
    fn recorded_streams_give_the_same_events_and_bytes_in_random_splits() {
        let mut rng = XorShift::new(0x5EED_0001);
        // Drop every event whose data is even-length: arbitrary but fixed.
        let drop_even = |ev: &SseEvent<'_>| ev.data.len() & 1 == 0;
        for (name, input) in RECORDED {
            for filtering in [true, false] {
                let whole = run(input, &[], BOUND, filtering, &drop_even);
                for _ in 0..300 {
                    let cuts = random_cuts(&mut rng, input.len(), 40);
                    let split = run(input, &cuts, BOUND, filtering, &drop_even);
                    assert_eq!(split, whole, "{name} cuts {cuts:?}");
                }
                let bytewise: Vec<usize> = (1..input.len()).collect();
                assert_eq!(run(input, &bytewise, BOUND, filtering, &drop_even), whole);
            }
        }
    }

    #[test]
    fn splits_with_a_small_bound_agree_with_one_shot() {
        let mut rng = XorShift::new(7);
        for (name, input) in RECORDED {
            let whole = run(input, &[], 300, true, &|_| true);
            assert!(whole.2 > 0, "{name}: some events are over 300 bytes");
            for _ in 0..100 {
                let cuts = random_cuts(&mut rng, input.len(), 20);
                assert_eq!(run(input, &cuts, 300, true, &|_| true), whole, "{name}");
            }
        }
    }
}
