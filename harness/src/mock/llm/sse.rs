//! Reply bodies: a whole JSON document, or a stream sent piece by piece.
//!
//! Job: frame server-sent events the way each provider writes them, and
//! give hyper a body that really streams: each event is its own frame, and a
//! gap (real tokio time) before every event after the first makes hyper
//! flush it on its own, as a provider's token-by-token stream would arrive.
//!
//! Invariants:
//! - An event is `event: {name}\n` (when named) then `data: {json}\n\n`;
//!   `data` is compact JSON on one line, so it never contains `\n`.
//! - A streamed body ends right after its last piece; dropping it (client
//!   gone) cancels any pending gap. Nothing here spawns a task.
//! - A whole body reports its exact length (hyper sends `content-length`);
//!   a stream reports none (hyper uses chunked encoding).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use serde::Serialize;
use serde_json::Value;
use tokio::time::{Instant, Sleep};

/// What a reply carries.
pub(crate) enum Content {
    /// One JSON document (`application/json`).
    Json(Vec<u8>),
    /// Server-sent events (`text/event-stream`), one piece per event.
    Sse(Vec<Bytes>),
    /// A JSON array streamed element by element (`application/json`), as
    /// Gemini streams without `alt=sse`.
    JsonStream(Vec<Bytes>),
    /// One JSON document (`application/json`, not a stream) sent in these
    /// pieces, paced like a stream: a body that reaches the gateway split.
    JsonPieces(Vec<Bytes>),
}

impl Content {
    pub(crate) fn json<T: Serialize + ?Sized>(v: &T) -> Self {
        Content::Json(serde_json::to_vec(v).unwrap_or_default())
    }

    pub(crate) fn is_stream(&self) -> bool {
        !matches!(self, Content::Json(_) | Content::JsonPieces(_))
    }

    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Content::Sse(_) => "text/event-stream",
            Content::Json(_) | Content::JsonStream(_) | Content::JsonPieces(_) => {
                "application/json"
            }
        }
    }

    /// The body, paced by `gap` between pieces when streamed.
    pub(crate) fn into_body(self, gap: Duration) -> ReplyBody {
        match self {
            Content::Json(b) => ReplyBody::whole(Bytes::from(b)),
            Content::Sse(pieces) | Content::JsonStream(pieces) | Content::JsonPieces(pieces) => {
                ReplyBody::paced(pieces, gap)
            }
        }
    }
}

/// `data: {json}\n\n`.
pub(crate) fn data<T: Serialize + ?Sized>(v: &T) -> Bytes {
    frame(None, v)
}

/// `event: {name}\ndata: {json}\n\n`.
pub(crate) fn event<T: Serialize + ?Sized>(name: &str, v: &T) -> Bytes {
    frame(Some(name), v)
}

/// OpenAI's end of stream: `data: [DONE]\n\n`.
pub(crate) fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

fn frame<T: Serialize + ?Sized>(name: Option<&str>, v: &T) -> Bytes {
    let mut out = BytesMut::with_capacity(256).writer();
    if let Some(name) = name {
        out.get_mut().put_slice(b"event: ");
        out.get_mut().put_slice(name.as_bytes());
        out.get_mut().put_slice(b"\n");
    }
    out.get_mut().put_slice(b"data: ");
    // Writing JSON into memory cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out.get_mut().put_slice(b"\n\n");
    out.into_inner().freeze()
}

/// Elements of a JSON array, framed so their concatenation is the array:
/// `[` + first, `,` + each next, `]` alone at the end.
pub(crate) fn json_array_pieces(items: &[Value]) -> Vec<Bytes> {
    let mut pieces: Vec<Bytes> = items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut b = if i == 0 {
                b"[".to_vec()
            } else {
                b",\r\n".to_vec()
            };
            let _ = serde_json::to_writer(&mut b, v);
            Bytes::from(b)
        })
        .collect();
    pieces.push(Bytes::from_static(if items.is_empty() {
        b"[]"
    } else {
        b"]"
    }));
    pieces
}

/// The response body hyper writes.
pub(crate) struct ReplyBody(Inner);

enum Inner {
    Whole(Option<Bytes>),
    Paced {
        pieces: std::vec::IntoIter<Bytes>,
        gap: Duration,
        /// Armed before every piece after the first when `gap` is not zero.
        sleep: Option<Pin<Box<Sleep>>>,
        armed: bool,
    },
}

impl ReplyBody {
    pub(crate) fn whole(b: Bytes) -> Self {
        ReplyBody(Inner::Whole((!b.is_empty()).then_some(b)))
    }

    pub(crate) fn paced(pieces: Vec<Bytes>, gap: Duration) -> Self {
        ReplyBody(Inner::Paced {
            pieces: pieces.into_iter(),
            gap,
            sleep: None,
            armed: false,
        })
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Inner::Whole(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Paced {
                pieces,
                gap,
                sleep,
                armed,
            } => {
                if *armed {
                    if let Some(s) = sleep.as_mut() {
                        ready!(s.as_mut().poll(cx));
                    }
                    *armed = false;
                }
                let Some(piece) = pieces.next() else {
                    return Poll::Ready(None);
                };
                if !gap.is_zero() && pieces.len() > 0 {
                    let deadline = Instant::now() + *gap;
                    match sleep.as_mut() {
                        Some(s) => s.as_mut().reset(deadline),
                        None => *sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    *armed = true;
                }
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Whole(b) => b.is_none(),
            Inner::Paced { pieces, .. } => pieces.len() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Paced { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    #[test]
    fn events_are_framed_on_one_data_line() {
        assert_eq!(
            &event("ping", &json!({"type": "ping", "t": "a\nb"}))[..],
            b"event: ping\ndata: {\"t\":\"a\\nb\",\"type\":\"ping\"}\n\n"
        );
        assert_eq!(&data(&json!([1]))[..], b"data: [1]\n\n");
    }

    #[test]
    fn array_pieces_concatenate_to_the_array() {
        let items = [json!({"a": 1}), json!({"b": 2})];
        let all: Vec<u8> = json_array_pieces(&items).concat();
        assert_eq!(
            serde_json::from_slice::<Value>(&all).ok(),
            Some(json!(items))
        );
        assert_eq!(json_array_pieces(&[]).concat(), b"[]");
    }

    #[tokio::test]
    async fn paced_bodies_send_every_piece_with_gaps() {
        let pieces = vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        ];
        let start = std::time::Instant::now();
        let body = ReplyBody::paced(pieces, Duration::from_millis(20));
        assert_eq!(body.size_hint().exact(), None);
        let got = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(got.ok().as_deref(), Some(&b"abc"[..]));
        assert!(start.elapsed() >= Duration::from_millis(40));

        let whole = ReplyBody::whole(Bytes::from_static(b"xyz"));
        assert_eq!(whole.size_hint().exact(), Some(3));
        assert!(ReplyBody::whole(Bytes::new()).is_end_stream());
    }
}
