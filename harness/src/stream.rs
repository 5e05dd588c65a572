//! One HTTP stream (an HTTP context in the guest) and its phases.
//!
//! Invariants:
//! - Request headers are mutable only while the request is in its headers
//!   phase (in `on_request_headers` or paused there) and no resume is pending;
//!   once the stream continues they are frozen (they have gone upstream) and
//!   mutations fail with BadArgument. Response headers likewise.
//! - A body is delivered to the guest only once its headers have continued
//!   (`StopAllIterationAndWatermark`), in one chunk with `end_of_stream`.
//! - `live` is true from `proxy_on_context_create` until `proxy_on_delete`;
//!   after that the record stays only so the test can read the outcome.
//! - Header names are stored lowercase; values are raw bytes.

use crate::outcome::{Forwarded, LocalReply, Outcome, Response};
use crate::pairs::Pairs;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Headers delivered (or being delivered); the guest has not returned Continue.
    Headers,
    /// The guest returned Pause from the headers callback.
    HeadersPaused,
    /// Headers continued; the body is yet to be delivered.
    Body,
    /// The guest returned Pause from the body callback.
    BodyPaused,
    /// Fully passed through the filter.
    Complete,
}

impl Phase {
    pub fn headers_mutable(self) -> bool {
        matches!(self, Phase::Headers | Phase::HeadersPaused)
    }
    /// Whether the body has reached the guest (so buffer calls see it).
    pub fn body_visible(self) -> bool {
        matches!(self, Phase::BodyPaused | Phase::Complete)
    }
}

/// Which direction a stream-control call refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// The response a test asked the upstream to send (`Gateway::respond`).
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Stream {
    pub context_id: u32,
    pub live: bool,
    pub request_headers: Pairs,
    pub request_body: Vec<u8>,
    pub request_trailers: Pairs,
    pub req: Phase,
    /// True while the body callback is running (so the body buffer is visible).
    pub in_request_body: bool,
    /// True during `proxy_on_log` (Envoy's access-log phase: maps readable again).
    pub in_log: bool,
    /// A `continue_stream(Request)` is pending for this callback.
    pub resume_pending: bool,
    pub forwarded_headers: Option<Pairs>,
    pub forwarded_body: Option<Vec<u8>>,

    pub upstream_response: Option<UpstreamResponse>,
    pub response_headers: Option<Pairs>,
    pub response_body: Vec<u8>,
    pub response_trailers: Pairs,
    pub resp: Option<Phase>,
    pub in_response_body: bool,
    pub response_resume_pending: bool,
    pub downstream_response: Option<Response>,

    /// `send_local_response` was called (a second call is BadArgument).
    pub local_reply_sent: bool,
    pub local_reply: Option<LocalReply>,
    /// The local reply has been run through the response callbacks.
    pub local_reply_encoded: bool,
    /// The stream was reset (`proxy_close_stream` or a VM failure).
    pub reset: bool,
    pub cancelled: bool,

    /// Properties the test set for this stream, by NUL-joined path.
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Properties the guest set with `proxy_set_property`.
    pub guest_properties: HashMap<Vec<u8>, Vec<u8>>,
}

impl Stream {
    pub fn new(
        context_id: u32,
        headers: Pairs,
        body: Vec<u8>,
        properties: HashMap<Vec<u8>, Vec<u8>>,
    ) -> Self {
        Stream {
            context_id,
            live: true,
            request_headers: headers,
            request_body: body,
            request_trailers: Vec::new(),
            req: Phase::Headers,
            in_request_body: false,
            in_log: false,
            resume_pending: false,
            forwarded_headers: None,
            forwarded_body: None,
            upstream_response: None,
            response_headers: None,
            response_body: Vec::new(),
            response_trailers: Vec::new(),
            resp: None,
            in_response_body: false,
            response_resume_pending: false,
            downstream_response: None,
            local_reply_sent: false,
            local_reply: None,
            local_reply_encoded: false,
            reset: false,
            cancelled: false,
            properties,
            guest_properties: HashMap::new(),
        }
    }

    /// Whether the stream is over for the request path (no more request callbacks).
    pub fn ended(&self) -> bool {
        self.local_reply.is_some() || self.reset || self.cancelled || !self.live
    }

    pub fn outcome(&self) -> Outcome {
        if let Some(r) = &self.local_reply {
            return Outcome::LocalReply(r.clone());
        }
        match (&self.forwarded_headers, &self.forwarded_body) {
            (Some(h), Some(b)) if self.req == Phase::Complete => Outcome::Forwarded(Forwarded {
                headers: h.clone(),
                body: b.clone(),
            }),
            _ => Outcome::Pending,
        }
    }

    /// Envoy's `request_headers_ != nullptr`: set while the request is in its
    /// headers phase, cleared when it continues (also by `continue_stream`,
    /// at once, within the same callback).
    pub fn request_headers_available(&self) -> bool {
        self.req.headers_mutable() && !self.resume_pending
    }

    pub fn response_headers_available(&self) -> bool {
        self.resp.is_some_and(Phase::headers_mutable) && self.response_headers.is_some()
    }

    /// Freezes the request headers: they go upstream as they are now.
    pub fn freeze_request(&mut self) {
        if self.forwarded_headers.is_none() {
            self.forwarded_headers = Some(self.request_headers.clone());
        }
    }
}

/// Header-map edits with Envoy's semantics.
pub mod headers {
    use crate::pairs::Pairs;

    pub fn lower(name: &[u8]) -> Vec<u8> {
        name.to_ascii_lowercase()
    }

    /// Whether a stored name equals `name` lowercased (without allocating).
    fn is(stored: &[u8], name: &[u8]) -> bool {
        stored.len() == name.len()
            && stored
                .iter()
                .zip(name)
                .all(|(a, b)| *a == b.to_ascii_lowercase())
    }

    /// First value of `name`.
    pub fn get<'a>(map: &'a Pairs, name: &[u8]) -> Option<&'a [u8]> {
        map.iter()
            .find(|(k, _)| is(k, name))
            .map(|(_, v)| v.as_slice())
    }

    /// Appends a value. Pseudo-headers stay ahead of regular headers, as in
    /// Envoy's header map.
    pub fn add(map: &mut Pairs, name: &[u8], value: &[u8]) {
        let name = lower(name);
        if name.first() == Some(&b':') {
            let at = map
                .iter()
                .take_while(|(k, _)| k.first() == Some(&b':'))
                .count();
            map.insert(at, (name, value.to_vec()));
        } else {
            map.push((name, value.to_vec()));
        }
    }

    /// Removes every value of `name`.
    pub fn remove(map: &mut Pairs, name: &[u8]) {
        map.retain(|(k, _)| !is(k, name));
    }

    /// Replaces all values of `name` with one value, in place of the first
    /// one; adds it if absent (Envoy's `setCopy`).
    pub fn replace(map: &mut Pairs, name: &[u8], value: &[u8]) {
        let name = lower(name);
        match map.iter().position(|(k, _)| *k == name) {
            Some(i) => {
                map[i].1 = value.to_vec();
                let mut n = 0;
                map.retain(|(k, _)| {
                    if *k == name {
                        n += 1;
                        n == 1
                    } else {
                        true
                    }
                });
            }
            None => add(map, &name, value),
        }
    }

    /// Replaces the whole map (names lowercased).
    pub fn set_all(map: &mut Pairs, pairs: Pairs) {
        map.clear();
        for (k, v) in pairs {
            add(map, &k, &v);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn m(items: &[(&str, &str)]) -> Pairs {
            items
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        }

        #[test]
        fn replace_collapses_duplicates_and_adds_when_absent() {
            let mut map = m(&[(":path", "/"), ("a", "1"), ("b", "x"), ("a", "2")]);
            replace(&mut map, b"A", b"3");
            assert_eq!(map, m(&[(":path", "/"), ("a", "3"), ("b", "x")]));
            replace(&mut map, b"c", b"4");
            assert_eq!(
                map,
                m(&[(":path", "/"), ("a", "3"), ("b", "x"), ("c", "4")])
            );
        }

        #[test]
        fn remove_drops_every_value_and_add_keeps_pseudo_first() {
            let mut map = m(&[(":path", "/"), ("a", "1"), ("a", "2")]);
            remove(&mut map, b"a");
            add(&mut map, b"x", b"1");
            add(&mut map, b":authority", b"h");
            assert_eq!(map, m(&[(":path", "/"), (":authority", "h"), ("x", "1")]));
            assert_eq!(get(&map, b"X"), Some(&b"1"[..]));
        }
    }
}

/// What finished streams leave behind for the test (`Gateway::outcome`,
/// `response`, `was_reset`), encoded compactly in one per-worker arena, so a
/// long run keeps a few hundred bytes per request instead of every stream's
/// full state (maps, properties, bodies).
#[derive(Debug, Default)]
pub struct EndedStreams {
    arena: Vec<u8>,
    /// By context id: where its record starts in `arena` (`u64::MAX`: none).
    index: Vec<u64>,
}

const ENDED_RESET: u8 = 1;
const ENDED_RESPONSE: u8 = 2;
const OUTCOME_PENDING: u8 = 0;
const OUTCOME_FORWARDED: u8 = 1;
const OUTCOME_REPLY: u8 = 2;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_pairs(out: &mut Vec<u8>, p: &[(Vec<u8>, Vec<u8>)]) {
    put_u32(out, p.len() as u32);
    for (k, v) in p {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.0[0];
        self.0 = &self.0[1..];
        v
    }
    fn u32(&mut self) -> u32 {
        let (a, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes([a[0], a[1], a[2], a[3]])
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        a.to_vec()
    }
    fn pairs(&mut self) -> Pairs {
        let n = self.u32() as usize;
        (0..n).map(|_| (self.bytes(), self.bytes())).collect()
    }
}

impl EndedStreams {
    /// Records what the test may still read of a stream that has ended.
    pub fn record(&mut self, s: &Stream) {
        let at = self.arena.len() as u64;
        let out = &mut self.arena;
        let mut flags = 0;
        if s.reset {
            flags |= ENDED_RESET;
        }
        if s.downstream_response.is_some() {
            flags |= ENDED_RESPONSE;
        }
        out.push(flags);
        if let Some(r) = &s.local_reply {
            out.push(OUTCOME_REPLY);
            put_u32(out, r.status as u32);
            put_pairs(out, &r.headers);
            put_bytes(out, &r.body);
            put_bytes(out, r.details.as_bytes());
        } else {
            match (&s.forwarded_headers, &s.forwarded_body) {
                (Some(h), Some(b)) if s.req == Phase::Complete => {
                    out.push(OUTCOME_FORWARDED);
                    put_pairs(out, h);
                    put_bytes(out, b);
                }
                _ => out.push(OUTCOME_PENDING),
            }
        }
        if let Some(r) = &s.downstream_response {
            put_u32(out, r.status as u32);
            put_pairs(out, &r.headers);
            put_bytes(out, &r.body);
        }
        let i = s.context_id as usize;
        if self.index.len() <= i {
            self.index.resize(i + 1, u64::MAX);
        }
        self.index[i] = at;
    }

    fn reader(&self, ctx: u32) -> Option<Reader<'_>> {
        let at = *self.index.get(ctx as usize)?;
        (at != u64::MAX).then(|| Reader(&self.arena[at as usize..]))
    }

    pub fn contains(&self, ctx: u32) -> bool {
        self.reader(ctx).is_some()
    }

    pub fn was_reset(&self, ctx: u32) -> bool {
        self.reader(ctx)
            .is_some_and(|mut r| r.u8() & ENDED_RESET != 0)
    }

    fn read_outcome(r: &mut Reader<'_>) -> Outcome {
        match r.u8() {
            OUTCOME_REPLY => {
                let status = r.u32() as u16;
                let headers = r.pairs();
                let body = r.bytes();
                let details = String::from_utf8_lossy(&r.bytes()).into_owned();
                Outcome::LocalReply(LocalReply {
                    status,
                    headers,
                    body,
                    details,
                })
            }
            OUTCOME_FORWARDED => {
                let headers = r.pairs();
                let body = r.bytes();
                Outcome::Forwarded(Forwarded { headers, body })
            }
            _ => Outcome::Pending,
        }
    }

    pub fn outcome(&self, ctx: u32) -> Option<Outcome> {
        let mut r = self.reader(ctx)?;
        r.u8();
        Some(Self::read_outcome(&mut r))
    }

    /// The downstream response of an ended stream (None if it has none or
    /// is not an ended stream).
    pub fn response(&self, ctx: u32) -> Option<Response> {
        let mut r = self.reader(ctx)?;
        if r.u8() & ENDED_RESPONSE == 0 {
            return None;
        }
        Self::read_outcome(&mut r);
        let status = r.u32() as u16;
        let headers = r.pairs();
        let body = r.bytes();
        Some(Response {
            status,
            headers,
            body,
        })
    }
}
