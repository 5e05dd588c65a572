//! The body path's upstream (`--body-path`): an HTTP/1.1 server that
//! stands in for the provider with two fixed answers, and remembers the
//! last request it received so the driver can check what each gateway
//! forwarded. The shared mock LLM (`crate::mock`) answers by prompt length
//! and so cannot give the fixed 4 KB body and 50-chunk stream.
//!
//! Answers: `POST /v1/chat/completions` whose body has `"stream":true` gets
//! [`Traffic::sse_events`], one write each, `--stream-gap-us` apart (a
//! provider's tokens arrive apart too, so each chunk reaches the gateway as
//! its own read); any other chat request gets [`Traffic::json_answer`];
//! any other path a 404.
//!
//! Invariants:
//! - Every request is recorded (authorization, body) before the answer
//!   starts, and counted.
//! - It runs on its own thread and single-threaded runtime, pinned where
//!   the driver thread was (the client CPU); dropping it stops accepting
//!   and aborts every connection, streams included.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::traffic::Traffic;
use super::CHAT_PATH;

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) authorization: Option<Vec<u8>>,
    pub(crate) body: Bytes,
}

/// The answers, shared by every connection.
struct Answers {
    json: Bytes,
    sse: Vec<Bytes>,
    gap: Duration,
}

#[derive(Default)]
struct Seen {
    last: Mutex<Option<Received>>,
    count: AtomicU64,
}

/// The running upstream. Stops on drop.
pub(crate) struct BodyUpstream {
    pub(crate) addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BodyUpstream {
    /// Starts serving `traffic`'s answers on a loopback port; stream chunks
    /// are written `gap` apart.
    pub(crate) fn start(traffic: &Traffic, gap: Duration) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the body-path upstream")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let answers = Arc::new(Answers {
            json: Bytes::from(traffic.json_answer.clone()),
            sse: traffic
                .sse_events
                .iter()
                .map(|e| Bytes::from(e.clone()))
                .collect(),
            gap,
        });
        let seen = Arc::new(Seen::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread_seen = seen.clone();
        let thread = std::thread::Builder::new()
            .name("body-upstream".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(serve(listener, answers, thread_seen, stopped)),
                    Err(e) => eprintln!("body-path upstream runtime: {e}"),
                }
            })
            .context("spawning the body-path upstream thread")?;
        Ok(Self {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The last request received, if any.
    pub(crate) fn last_request(&self) -> Option<Received> {
        self.seen.last.lock().ok().and_then(|l| l.clone())
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> u64 {
        self.seen.count.load(Ordering::SeqCst)
    }
}

impl Drop for BodyUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    answers: Arc<Answers>,
    seen: Arc<Seen>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("body-path upstream: cannot register the listener");
        return;
    };
    // Dropping the set (when this returns) aborts every connection.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    let (answers, seen) = (answers.clone(), seen.clone());
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            answer(req, answers.clone(), seen.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    answers: Arc<Answers>,
    seen: Arc<Seen>,
) -> Result<Response<FixedBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status_only(StatusCode::BAD_REQUEST)),
    };
    let chat = parts.method == Method::POST && parts.uri.path() == CHAT_PATH;
    let stream = chat && contains(&body, br#""stream":true"#);
    let received = Received {
        path: parts.uri.path().to_string(),
        authorization: parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec()),
        body,
    };
    if let Ok(mut last) = seen.last.lock() {
        *last = Some(received);
    }
    seen.count.fetch_add(1, Ordering::SeqCst);
    if !chat {
        return Ok(status_only(StatusCode::NOT_FOUND));
    }
    let (content_type, body) = if stream {
        (
            "text/event-stream; charset=utf-8",
            FixedBody::new(answers.sse.clone(), answers.gap),
        )
    } else {
        (
            "application/json",
            FixedBody::new(vec![answers.json.clone()], Duration::ZERO),
        )
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("x-request-id", HeaderValue::from_static("req_bench0001"));
    h.insert("openai-processing-ms", HeaderValue::from_static("312"));
    if stream {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(resp)
}

fn status_only(status: StatusCode) -> Response<FixedBody> {
    let mut resp = Response::new(FixedBody::new(vec![], Duration::ZERO));
    *resp.status_mut() = status;
    resp
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A body of fixed chunks, each a frame of its own, `gap` apart (none
/// before the first). Without a gap it has a known length (no chunked
/// encoding).
pub(crate) struct FixedBody {
    chunks: std::vec::IntoIter<Bytes>,
    /// Bytes not yet yielded.
    len: u64,
    gap: Duration,
    first: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FixedBody {
    fn new(chunks: Vec<Bytes>, gap: Duration) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        FixedBody {
            chunks: chunks.into_iter(),
            len,
            gap,
            first: true,
            sleep: None,
        }
    }
}

impl hyper::body::Body for FixedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.chunks.len() == 0 {
            return Poll::Ready(None);
        }
        if !this.first && !this.gap.is_zero() {
            let gap = this.gap;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        this.first = false;
        Poll::Ready(this.chunks.next().map(|c| {
            this.len = this.len.saturating_sub(c.len() as u64);
            Ok(Frame::data(c))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.len() == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.gap.is_zero() {
            hyper::body::SizeHint::with_exact(self.len)
        } else {
            hyper::body::SizeHint::default()
        }
    }
}
