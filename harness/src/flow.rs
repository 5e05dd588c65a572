//! One direction of a stream (request or response) as Envoy's filter
//! manager moves it through one filter: headers, body chunks, trailers, and
//! what has passed the filter so far.
//!
//! Read in Envoy (source/extensions/common/wasm/context.cc `decodeData`,
//! `decodeTrailers`, `continueStream`) and proxy-wasm-cpp-host
//! (src/context.cc `convertVmCallResultToFilterHeadersStatus`):
//! - Pause from a headers callback is StopAllIterationAndWatermark unless the
//!   plugin sets `allow_on_headers_stop_iteration`, then StopIteration.
//!   StopAll: no body/trailers callback until the filter continues; the data
//!   that arrived meanwhile is then delivered in one callback. StopIteration:
//!   body and trailers callbacks still come, headers stay held (and the wasm
//!   context keeps its `request_headers_` pointer, so they stay editable).
//! - A body callback gets the size of the buffer it sees: after Pause
//!   (StopIterationAndBuffer) the next callback sees the accumulated buffer;
//!   after Continue only new data. Continue (from a body or trailers
//!   callback, or `continue_stream`) sends, in order, the held headers, the
//!   buffer as the guest left it, and the trailers.
//! - With trailers, no body callback has end_of_stream = true.
//! - `continue_stream` clears the headers pointer at once; a Continue
//!   returned from a headers callback clears it too. A Continue returned
//!   from a body callback does not (Envoy's `decodeData` leaves
//!   `request_headers_` set): edits then return Ok but reach nobody.
//!
//! Invariants: `sent_*` only grow; `buffer` is what the filter holds now;
//! `complete` means end of stream has passed the filter.

use crate::pairs::Pairs;
use std::collections::VecDeque;

/// A piece of body that passed the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPiece {
    pub bytes: Vec<u8>,
    /// Index (0-based) of the body callback that released it, or of the
    /// last body callback before the release (`None` if no body callback
    /// had run, e.g. released by the trailers callback).
    pub callback: Option<usize>,
    /// Released by `proxy_continue_stream` rather than by a returned Continue.
    pub by_resume: bool,
}

/// Why the filter holds this direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    None,
    /// StopAllIterationAndWatermark from the headers callback.
    All,
    /// StopIteration from the headers callback (allow_on_headers_stop_iteration).
    Headers,
    /// StopIterationAndBuffer from a body callback.
    Body,
    /// StopIteration from the trailers callback.
    Trailers,
}

#[derive(Debug, Clone)]
pub struct Flow {
    /// The header map as the guest edits it.
    pub headers: Pairs,
    /// Whether the headers callback has returned.
    pub headers_done: bool,
    /// Envoy's `request_headers_`/`response_headers_` pointer is set.
    pub headers_ptr: bool,
    /// The headers as they passed the filter (None: still held).
    pub sent_headers: Option<Pairs>,
    /// Body callback index (or None) at which the headers passed.
    pub headers_sent_at: Option<usize>,
    /// Chunks that arrived and are not yet given to the filter.
    pub pending: VecDeque<Vec<u8>>,
    /// What the filter holds: the chunk of the running body callback, or
    /// the buffer accumulated while it returns Pause.
    pub buffer: Vec<u8>,
    pub stop: Stop,
    pub trailers: Option<Pairs>,
    pub trailers_delivered: bool,
    /// True while the trailers callback runs or is paused.
    pub trailers_ptr: bool,
    pub sent_trailers: Option<Pairs>,
    pub sent_body: Vec<u8>,
    pub pieces: Vec<BodyPiece>,
    pub body_callbacks: usize,
    pub in_body: bool,
    /// The running body callback has end_of_stream.
    pub eos_delivered: bool,
    pub complete: bool,
    /// More chunks may come after `pending` (a response still arriving):
    /// no end_of_stream is given, and the flow waits when `pending` is empty.
    pub open: bool,
}

/// What the filter gets next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Body { len: usize, eos: bool },
    Trailers { n: usize },
    Wait,
    Complete,
}

impl Flow {
    pub fn new(headers: Pairs, chunks: Vec<Vec<u8>>, trailers: Option<Pairs>) -> Self {
        Flow {
            headers,
            headers_done: false,
            headers_ptr: true,
            sent_headers: None,
            headers_sent_at: None,
            pending: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            buffer: Vec::new(),
            stop: Stop::None,
            trailers: trailers.filter(|t| !t.is_empty()),
            trailers_delivered: false,
            trailers_ptr: false,
            sent_trailers: None,
            sent_body: Vec::new(),
            pieces: Vec::new(),
            body_callbacks: 0,
            in_body: false,
            eos_delivered: false,
            complete: false,
            open: false,
        }
    }

    /// end_of_stream for the headers callback.
    pub fn headers_eos(&self) -> bool {
        !self.open && self.pending.is_empty() && self.trailers.is_none()
    }

    /// Whether the guest may see the body buffer now.
    pub fn body_visible(&self) -> bool {
        self.in_body || self.stop == Stop::Body || (self.trailers_ptr && !self.buffer.is_empty())
    }

    fn send_headers(&mut self) {
        if self.sent_headers.is_none() {
            self.sent_headers = Some(self.headers.clone());
            self.headers_sent_at = self.body_callbacks.checked_sub(1);
        }
    }

    /// Sends what the filter holds: headers, buffer, and delivered trailers.
    fn release(&mut self, by_resume: bool) {
        self.send_headers();
        if !self.buffer.is_empty() {
            let bytes = std::mem::take(&mut self.buffer);
            self.sent_body.extend_from_slice(&bytes);
            self.pieces.push(BodyPiece {
                bytes,
                callback: self.body_callbacks.checked_sub(1),
                by_resume,
            });
        }
        if self.trailers_delivered && self.sent_trailers.is_none() {
            self.sent_trailers = self.trailers.clone();
        }
        self.stop = Stop::None;
    }

    /// The headers callback returned (`go`: Continue).
    pub fn headers_returned(&mut self, go: bool, allow_stop_iteration: bool) {
        self.headers_done = true;
        if go {
            self.headers_ptr = false;
            self.send_headers();
        } else {
            self.stop = if allow_stop_iteration {
                Stop::Headers
            } else {
                Stop::All
            };
        }
    }

    /// What to give the filter next; for a body, moves the next chunk into
    /// the buffer (appending when buffering).
    pub fn step(&mut self) -> Next {
        if !self.headers_done || self.complete {
            return if self.complete {
                Next::Complete
            } else {
                Next::Wait
            };
        }
        if matches!(self.stop, Stop::All | Stop::Trailers) {
            return Next::Wait;
        }
        if let Some(chunk) = self.pending.pop_front() {
            if self.stop == Stop::Body {
                self.buffer.extend_from_slice(&chunk);
            } else {
                self.buffer = chunk;
            }
            let eos = !self.open && self.pending.is_empty() && self.trailers.is_none();
            self.eos_delivered = eos;
            return Next::Body {
                len: self.buffer.len(),
                eos,
            };
        }
        if self.open {
            return Next::Wait;
        }
        if let (Some(t), false) = (&self.trailers, self.trailers_delivered) {
            return Next::Trailers { n: t.len() };
        }
        if self.stop == Stop::None && self.sent_headers.is_some() {
            self.complete = true;
            return Next::Complete;
        }
        Next::Wait
    }

    /// A body callback returned.
    pub fn body_returned(&mut self, go: bool) {
        self.in_body = false;
        self.body_callbacks += 1;
        if go {
            self.release(false);
        } else {
            self.stop = Stop::Body;
        }
    }

    pub fn trailers_started(&mut self) {
        self.trailers_delivered = true;
        self.trailers_ptr = true;
    }

    /// The trailers callback returned.
    pub fn trailers_returned(&mut self, go: bool) {
        if go {
            self.trailers_ptr = false;
            self.release(false);
        } else {
            self.stop = Stop::Trailers;
        }
    }

    /// `proxy_continue_stream` took effect (after the callback returned).
    pub fn resume(&mut self) {
        self.headers_ptr = false;
        match self.stop {
            Stop::None => {}
            Stop::All => {
                // What arrived while stopped is delivered in one callback.
                self.send_headers();
                self.stop = Stop::None;
                if self.pending.len() > 1 {
                    let all: Vec<u8> = self.pending.drain(..).flatten().collect();
                    self.pending.push_back(all);
                }
            }
            Stop::Headers | Stop::Body => self.release(true),
            Stop::Trailers => {
                self.trailers_ptr = false;
                self.release(true);
            }
        }
    }

    /// Forces everything through (a local reply's own encoding, where the
    /// filter's answers are not waited for).
    pub fn force_all(&mut self) {
        self.headers_done = true;
        self.headers_ptr = false;
        self.send_headers();
        let rest: Vec<u8> = self.pending.drain(..).flatten().collect();
        self.buffer.extend_from_slice(&rest);
        self.trailers_delivered = true;
        self.release(false);
        self.complete = true;
    }
}

/// Splits `body` at the given offsets (sorted, deduplicated, clamped).
pub fn split_at(body: &[u8], offsets: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = offsets
        .iter()
        .copied()
        .filter(|o| *o > 0 && *o < body.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for c in cuts {
        out.push(body[at..c].to_vec());
        at = c;
    }
    out.push(body[at..].to_vec());
    out
}

/// Splits `body` into `pieces` chunks at points drawn from `seed`
/// (deterministic: the same seed gives the same split).
pub fn split_random(body: &[u8], pieces: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut offsets = Vec::new();
    for _ in 1..pieces.max(1) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if body.len() > 1 {
            offsets.push(1 + (r % (body.len() as u64 - 1)) as usize);
        }
    }
    split_at(body, &offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_clamps_and_sorts() {
        assert_eq!(
            split_at(b"abcdef", &[4, 2, 2, 0, 9]),
            vec![b"ab".to_vec(), b"cd".to_vec(), b"ef".to_vec()]
        );
        assert_eq!(split_random(b"abcdef", 3, 7), split_random(b"abcdef", 3, 7));
        assert_eq!(split_random(b"abcdef", 3, 7).concat(), b"abcdef");
    }

    #[test]
    fn buffering_accumulates_and_continue_sends_the_buffer() {
        let mut f = Flow::new(vec![], vec![b"ab".to_vec(), b"cd".to_vec()], None);
        f.headers_returned(true, false);
        assert_eq!(f.step(), Next::Body { len: 2, eos: false });
        f.body_returned(false);
        assert_eq!(f.step(), Next::Body { len: 4, eos: true });
        f.body_returned(true);
        assert_eq!(f.step(), Next::Complete);
        assert_eq!(f.sent_body, b"abcd");
        assert_eq!(f.pieces.len(), 1);
    }

    #[test]
    fn stop_all_delivers_what_arrived_in_one_callback_after_resume() {
        let mut f = Flow::new(
            vec![],
            vec![b"ab".to_vec(), b"cd".to_vec()],
            Some(vec![(b"t".to_vec(), b"1".to_vec())]),
        );
        f.headers_returned(false, false);
        assert_eq!(f.step(), Next::Wait);
        f.resume();
        assert!(f.sent_headers.is_some());
        assert_eq!(f.step(), Next::Body { len: 4, eos: false });
        f.body_returned(true);
        assert_eq!(f.step(), Next::Trailers { n: 1 });
        f.trailers_started();
        f.trailers_returned(true);
        assert_eq!(f.step(), Next::Complete);
        assert!(f.sent_trailers.is_some());
    }
}
