//! The mock credential service as a real HTTP/1.1 server on tokio (hyper).
//!
//! Job: accept TCP connections, hand every request to
//! [`MockCredentialService::answer`] and write its answer back, so a filter
//! running in a real Envoy (or any HTTP client) can use the mock.
//!
//! Invariants:
//! - Behaviour equals in-process mode: the same `answer` decides; the request
//!   is counted when it arrives, before any delay.
//! - `Delay` sleeps for real (tokio time) before responding.
//! - `Reset` writes nothing: the connection is closed with `SO_LINGER` 0, so
//!   the client sees a TCP RST (or EOF) instead of a response.
//! - Dropping or shutting down the [`ServedMock`] stops accepting and aborts
//!   every open connection; no task outlives it.
//! - Nothing here logs; request handling never panics.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::credential_service::MockCredentialService;

/// A running mock server. Stops on [`shutdown`](Self::shutdown) or drop.
pub struct ServedMock {
    /// The bound address (the real port when bound to port 0).
    pub addr: SocketAddr,
    task: Option<JoinHandle<Infallible>>,
}

impl fmt::Debug for ServedMock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedMock")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ServedMock {
    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, aborts open connections, and waits until the
    /// listener is closed.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ServedMock {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl MockCredentialService {
    /// Serves this mock (sharing its state) over HTTP/1.1 on `addr`; use port
    /// 0 for an ephemeral port. Must be called within a tokio runtime.
    pub async fn serve(&self, addr: SocketAddr) -> io::Result<ServedMock> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, self.clone()));
        Ok(ServedMock {
            addr,
            task: Some(task),
        })
    }
}

async fn accept_loop(listener: TcpListener, mock: MockCredentialService) -> Infallible {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_connection(stream, mock.clone()));
                }
                // E.g. out of file descriptors: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, mock: MockCredentialService) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResetOnDrop {
        inner: stream,
        reset: reset.clone(),
    });
    let svc = service_fn(move |req: Request<Incoming>| {
        let mock = mock.clone();
        let reset = reset.clone();
        async move { respond(&mock, &reset, req).await }
    });
    // A service error (our reset) ends the connection without a response.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

async fn respond(
    mock: &MockCredentialService,
    reset: &AtomicBool,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let headers: Vec<(Vec<u8>, Vec<u8>)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let answer = mock.answer(req.method().as_str().as_bytes(), path.as_bytes(), &headers);
    drop(req);

    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    if answer.reset {
        reset.store(true, Ordering::SeqCst);
        return Err(ResetConnection);
    }
    let mut resp = Response::new(Full::new(Bytes::from(answer.body)));
    // hyper cannot send a 1xx as a final response; out-of-range codes → 500.
    *resp.status_mut() = match StatusCode::from_u16(answer.status) {
        Ok(s) if !s.is_informational() => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    for (k, v) in answer.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(&k), HeaderValue::from_bytes(&v)) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
}

/// The service's way of telling hyper to drop the connection.
#[derive(Debug)]
struct ResetConnection;

impl fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// A TCP stream that, once flagged, closes with a RST instead of a FIN.
struct ResetOnDrop {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
