//! One HTTP stream (an HTTP context in the guest): its two directions
//! (`crate::flow::Flow`), its local reply, and the filter state the guest
//! set.
//!
//! Invariants:
//! - Request headers are mutable only while Envoy's `request_headers_`
//!   pointer is set (`Flow::headers_ptr`, see `flow`); what went upstream is
//!   the copy taken when they passed the filter. Response headers likewise.
//! - `live` is true from `proxy_on_context_create` until `proxy_on_delete`;
//!   after that the record stays only so the test can read the outcome.
//! - Header names are stored lowercase; values are raw bytes.
//! - Filter state: `proxy_set_property(path, value)` is Envoy's
//!   `Context::setProperty` (source/extensions/common/wasm/context.cc): the
//!   key is `"wasm." + path` with the path bytes verbatim (NUL separators,
//!   if any, are kept, not joined or split), stored in the stream's
//!   FilterState (life span FilterChain), so it stays readable after the
//!   stream ended (`Gateway::filter_state`). Every write is recorded in order.

use crate::flow::{BodyPiece, Flow};
use crate::outcome::{Forwarded, LocalReply, Outcome, Response};
use crate::pairs::Pairs;
use std::collections::{BTreeMap, HashMap};

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
    pub chunks: Vec<Vec<u8>>,
    pub trailers: Option<Pairs>,
    /// The upstream has not finished: more may come (see `Flow::open`).
    pub open: bool,
}

/// The filter state the guest set on a stream.
///
/// Envoy facts this mirrors (read in the Envoy sources):
/// - `Context::setProperty` (source/extensions/common/wasm/context.cc) builds
///   the key as `absl::StrAppend(&key, "wasm.", path)`: the path bytes are
///   used verbatim as one string (a `\0` in them stays a `\0`; nothing is
///   split or joined), stored as a mutable `CelState` with the default
///   prototype's life span (FilterChain) unless `declare_property` said
///   otherwise; NotFound without stream info (root context).
/// - `Context::findValue` (same file) reads filter state `wasm.<name>` for
///   the first path segment only.
/// - Order at stream end, `ConnectionManagerImpl::doDeferredStreamDestroy`
///   (source/common/http/conn_manager_impl.cc): `filter_manager_.log()` runs
///   every access-log handler, then `destroyFilters()` (wasm `onDestroy`:
///   `proxy_on_done`, `proxy_on_delete`). The handler list is
///   `ActiveStream::accessLogHandlers()` (conn_manager_impl.h): filter
///   handlers (the wasm filter's `Context::log`, i.e. `proxy_on_log`) are put
///   before the HCM `access_log` entries when
///   `envoy.reloadable_features.filter_access_loggers_first` is on; that
///   guard defaulted to true and was removed in 1.35, so in 1.40 `proxy_on_log`
///   always runs first. Hence a value set in `proxy_on_log` is visible to the
///   HCM access log; one set in `proxy_on_done` is not (`at_access_log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterState {
    /// Key (`wasm.<path>`) -> value as it stands now.
    pub values: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every write, in order.
    pub writes: Vec<(Vec<u8>, Vec<u8>)>,
    /// The values when `proxy_on_log` returned: what Envoy's HCM access log
    /// sees (it runs after the filter's own log handler and before
    /// `proxy_on_done`).
    pub at_access_log: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl FilterState {
    pub const PREFIX: &'static [u8] = b"wasm.";

    pub fn set(&mut self, path: &[u8], value: &[u8]) {
        let mut key = Self::PREFIX.to_vec();
        key.extend_from_slice(path);
        self.writes.push((key.clone(), value.to_vec()));
        self.values.insert(key, value.to_vec());
    }

    /// Envoy's `getProperty` of a top-level name not otherwise known:
    /// the filter state `wasm.<name>`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        let mut key = Self::PREFIX.to_vec();
        key.extend_from_slice(name);
        self.values.get(&key).map(|v| v.as_slice())
    }
}

#[derive(Debug)]
pub struct Stream {
    pub context_id: u32,
    pub live: bool,
    pub req: Flow,
    /// True during `proxy_on_log` (Envoy's access-log phase: maps readable again).
    pub in_log: bool,

    pub upstream_response: Option<UpstreamResponse>,
    pub resp: Option<Flow>,
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
    /// What the guest set with `proxy_set_property`.
    pub filter_state: FilterState,
}

impl Stream {
    pub fn new(
        context_id: u32,
        headers: Pairs,
        chunks: Vec<Vec<u8>>,
        trailers: Option<Pairs>,
        properties: HashMap<Vec<u8>, Vec<u8>>,
    ) -> Self {
        Stream {
            context_id,
            live: true,
            req: Flow::new(headers, chunks, trailers),
            in_log: false,
            upstream_response: None,
            resp: None,
            downstream_response: None,
            local_reply_sent: false,
            local_reply: None,
            local_reply_encoded: false,
            reset: false,
            cancelled: false,
            properties,
            filter_state: FilterState::default(),
        }
    }

    /// Whether the stream is over for the request path (no more request callbacks).
    pub fn ended(&self) -> bool {
        self.local_reply.is_some() || self.reset || self.cancelled || !self.live
    }

    pub fn forwarded(&self) -> Option<Forwarded> {
        if !self.req.complete {
            return None;
        }
        Some(Forwarded {
            headers: self.req.sent_headers.clone().unwrap_or_default(),
            body: self.req.sent_body.clone(),
            trailers: self.req.sent_trailers.clone().unwrap_or_default(),
            body_pieces: self.req.pieces.clone(),
            headers_sent_at: self.req.headers_sent_at,
        })
    }

    pub fn outcome(&self) -> Outcome {
        if let Some(r) = &self.local_reply {
            return Outcome::LocalReply(r.clone());
        }
        match self.forwarded() {
            Some(f) => Outcome::Forwarded(f),
            None => Outcome::Pending,
        }
    }

    /// The request headers as they went upstream, else as they are now.
    pub fn request_headers_seen(&self) -> &Pairs {
        self.req.sent_headers.as_ref().unwrap_or(&self.req.headers)
    }

    /// Envoy's `request_headers_ != nullptr`.
    pub fn request_headers_available(&self) -> bool {
        self.req.headers_ptr
    }

    pub fn response_headers_available(&self) -> bool {
        self.resp.as_ref().is_some_and(|f| f.headers_ptr)
    }

    pub fn response_headers(&self) -> Option<&Pairs> {
        self.resp.as_ref().map(|f| &f.headers)
    }
}

pub(crate) fn response_of(f: &Flow) -> Response {
    let headers = f.sent_headers.clone().unwrap_or_default();
    let status = headers::get(&headers, b":status")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        headers,
        body: f.sent_body.clone(),
        trailers: f.sent_trailers.clone().unwrap_or_default(),
        body_pieces: f.pieces.clone(),
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

fn put_opt(out: &mut Vec<u8>, v: Option<usize>) {
    put_u32(out, v.map_or(u32::MAX, |v| v as u32));
}

fn put_pieces(out: &mut Vec<u8>, p: &[BodyPiece]) {
    put_u32(out, p.len() as u32);
    for piece in p {
        put_bytes(out, &piece.bytes);
        put_opt(out, piece.callback);
        out.push(piece.by_resume as u8);
    }
}

fn put_map(out: &mut Vec<u8>, m: &BTreeMap<Vec<u8>, Vec<u8>>) {
    put_u32(out, m.len() as u32);
    for (k, v) in m {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

fn put_response(out: &mut Vec<u8>, r: &Response) {
    put_u32(out, r.status as u32);
    put_pairs(out, &r.headers);
    put_bytes(out, &r.body);
    put_pairs(out, &r.trailers);
    put_pieces(out, &r.body_pieces);
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
    fn opt(&mut self) -> Option<usize> {
        let v = self.u32();
        (v != u32::MAX).then_some(v as usize)
    }
    fn pieces(&mut self) -> Vec<BodyPiece> {
        let n = self.u32() as usize;
        (0..n)
            .map(|_| BodyPiece {
                bytes: self.bytes(),
                callback: self.opt(),
                by_resume: self.u8() != 0,
            })
            .collect()
    }
    fn map(&mut self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.pairs().into_iter().collect()
    }
    fn response(&mut self) -> Response {
        Response {
            status: self.u32() as u16,
            headers: self.pairs(),
            body: self.bytes(),
            trailers: self.pairs(),
            body_pieces: self.pieces(),
        }
    }
}

impl EndedStreams {
    /// The context ids of every ended stream recorded, ascending.
    pub fn contexts(&self) -> impl Iterator<Item = u32> + '_ {
        self.index
            .iter()
            .enumerate()
            .filter(|(_, at)| **at != u64::MAX)
            .map(|(ctx, _)| ctx as u32)
    }

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
            match s.forwarded() {
                Some(f) => {
                    out.push(OUTCOME_FORWARDED);
                    put_pairs(out, &f.headers);
                    put_bytes(out, &f.body);
                    put_pairs(out, &f.trailers);
                    put_pieces(out, &f.body_pieces);
                    put_opt(out, f.headers_sent_at);
                }
                None => out.push(OUTCOME_PENDING),
            }
        }
        if let Some(r) = &s.downstream_response {
            put_response(out, r);
        }
        let fs = &s.filter_state;
        put_map(out, &fs.values);
        put_pairs(out, &fs.writes);
        match &fs.at_access_log {
            Some(m) => {
                out.push(1);
                put_map(out, m);
            }
            None => out.push(0),
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
            OUTCOME_FORWARDED => Outcome::Forwarded(Forwarded {
                headers: r.pairs(),
                body: r.bytes(),
                trailers: r.pairs(),
                body_pieces: r.pieces(),
                headers_sent_at: r.opt(),
            }),
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
        Some(r.response())
    }

    /// The filter state an ended stream left.
    pub fn filter_state(&self, ctx: u32) -> Option<FilterState> {
        let mut r = self.reader(ctx)?;
        let flags = r.u8();
        Self::read_outcome(&mut r);
        if flags & ENDED_RESPONSE != 0 {
            r.response();
        }
        let values = r.map();
        let writes = r.pairs();
        let at_access_log = (r.u8() == 1).then(|| r.map());
        Some(FilterState {
            values,
            writes,
            at_access_log,
        })
    }
}
