//! What became of a request, as a test asserts it.
//!
//! Invariants:
//! - `Forwarded` means the request left the gateway: its headers are exactly
//!   those frozen when the stream continued past the headers phase, and its
//!   body is the (possibly rewritten) body once the body phase completed.
//! - `LocalReply` means the gateway answered by itself (a guest
//!   `send_local_response`, or a failed VM); its headers are the reply as the
//!   downstream client sees it, after the filter's own response callbacks ran.
//! - A local reply wins over an earlier forward: Envoy resets the upstream
//!   request when a filter replies after forwarding.

pub use crate::flow::BodyPiece;
use std::fmt;

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fmt_headers(f: &mut fmt::Formatter<'_>, headers: &[(Vec<u8>, Vec<u8>)]) -> fmt::Result {
    f.debug_list()
        .entries(
            headers
                .iter()
                .map(|(k, v)| format!("{}: {}", lossy(k), lossy(v))),
        )
        .finish()
}

fn first<'a>(headers: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

fn all<'a>(headers: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// The state of one downstream request.
#[derive(Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Neither forwarded nor answered yet (paused, or waiting on a call).
    Pending,
    Forwarded(Forwarded),
    LocalReply(LocalReply),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => f.write_str("Pending"),
            Outcome::Forwarded(x) => x.fmt(f),
            Outcome::LocalReply(x) => x.fmt(f),
        }
    }
}

impl Outcome {
    pub fn is_pending(&self) -> bool {
        matches!(self, Outcome::Pending)
    }

    #[track_caller]
    pub fn expect_forwarded(&self) -> &Forwarded {
        match self {
            Outcome::Forwarded(f) => f,
            other => panic!("expected the request to be forwarded, but it is {other:#?}"),
        }
    }

    #[track_caller]
    pub fn expect_reply(&self) -> &LocalReply {
        match self {
            Outcome::LocalReply(r) => r,
            other => panic!("expected a local reply, but the request is {other:#?}"),
        }
    }

    #[track_caller]
    pub fn expect_pending(&self) {
        if !self.is_pending() {
            panic!("expected the request to be pending, but it is {self:#?}");
        }
    }
}

/// A request as it went upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The whole body as it went upstream (the pieces, concatenated).
    pub body: Vec<u8>,
    /// Trailers as they went upstream (empty: none).
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body as it passed the filter, piece by piece.
    pub body_pieces: Vec<BodyPiece>,
    /// The body callback (0-based) whose Continue (or the last one before a
    /// resume) sent the headers; None if they went before any body callback.
    pub headers_sent_at: Option<usize>,
}

impl fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Forwarded { headers: ")?;
        fmt_headers(f, &self.headers)?;
        write!(f, ", body: {:?} }}", lossy(&self.body))
    }
}

impl Forwarded {
    /// First value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(lossy)
    }
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        all(&self.headers, name)
    }
    pub fn body_str(&self) -> String {
        lossy(&self.body)
    }
    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        first(&self.trailers, name)
    }
}

/// A reply the gateway sent by itself.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Includes `:status`, `content-length`, `content-type` (when there is a
    /// body) and the headers the guest added.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Envoy's response code details (whitespace replaced by `_`).
    pub details: String,
}

impl fmt::Debug for LocalReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LocalReply {{ status: {}, details: {:?}, headers: ",
            self.status, self.details
        )?;
        fmt_headers(f, &self.headers)?;
        write!(f, ", body: {:?} }}", lossy(&self.body))
    }
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(lossy)
    }
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        all(&self.headers, name)
    }
    pub fn body_str(&self) -> String {
        lossy(&self.body)
    }
    #[track_caller]
    pub fn body_json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "local reply body is not JSON ({e}): {:?}",
                lossy(&self.body)
            ),
        }
    }
}

/// The response the downstream client received for a forwarded request,
/// after the filter's response callbacks.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Everything the client received (the pieces, concatenated).
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// What the filter let through, piece by piece, with the body callback
    /// that released each.
    pub body_pieces: Vec<BodyPiece>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response {{ status: {}, headers: ", self.status)?;
        fmt_headers(f, &self.headers)?;
        write!(f, ", body: {:?} }}", lossy(&self.body))
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(lossy)
    }
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        all(&self.headers, name)
    }
    pub fn body_str(&self) -> String {
        lossy(&self.body)
    }
    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        first(&self.trailers, name)
    }
}
