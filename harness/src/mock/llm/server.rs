//! The mock LLM upstream as a real HTTP/1.1 server on tokio (hyper).
//!
//! Job: accept TCP connections (plain HTTP, as an Envoy gateway that
//! originates TLS to the real provider would reach a local stand-in), read
//! each request's body, let `MockLlm::exchange` decide and record the
//! reply, then wait out its delay and write it, streaming event by event.
//!
//! Invariants:
//! - The request is recorded before any delay, so tests see it in flight.
//! - Every reply carries `content-type`; OpenAI and Azure replies carry
//!   `x-request-id`, Anthropic's `request-id`, as the real APIs do.
//! - A body larger than [`MAX_BODY_BYTES`] is not read past the limit; the
//!   reply is a 413 and the connection is closed.
//! - Dropping or shutting down the [`ServedLlm`] stops accepting and aborts
//!   every open connection, streams included; no task outlives it.
//! - Nothing here logs; request handling never panics.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::sse::ReplyBody;
use super::{BodyRead, MockLlm, ProviderKind, MAX_BODY_BYTES};

/// A running mock LLM server. Stops on [`shutdown`](Self::shutdown) or drop.
pub struct ServedLlm {
    /// The bound address (the real port when bound to port 0).
    pub addr: SocketAddr,
    task: Option<JoinHandle<Infallible>>,
}

impl fmt::Debug for ServedLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedLlm")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ServedLlm {
    /// `http://{addr}`: the base URL for every provider (OpenAI's SDK wants
    /// `{url}/v1`).
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

impl Drop for ServedLlm {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl MockLlm {
    /// Serves this mock (sharing its state) over HTTP/1.1 on `addr`; use
    /// port 0 for an ephemeral port. Must be called within a tokio runtime.
    pub async fn serve(&self, addr: SocketAddr) -> io::Result<ServedLlm> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, self.clone()));
        Ok(ServedLlm {
            addr,
            task: Some(task),
        })
    }
}

async fn accept_loop(listener: TcpListener, mock: MockLlm) -> Infallible {
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

async fn serve_connection(stream: TcpStream, mock: MockLlm) {
    let svc = service_fn(move |req: Request<Incoming>| {
        let mock = mock.clone();
        async move { Ok::<_, Infallible>(respond(&mock, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

async fn respond(mock: &MockLlm, req: Request<Incoming>) -> Response<ReplyBody> {
    let (parts, body) = req.into_parts();
    let (body, trailers) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned().unwrap_or_default();
            (BodyRead::Complete(c.to_bytes()), trailers)
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            (BodyRead::TooLarge, HeaderMap::new())
        }
        Err(_) => (BodyRead::Broken, HeaderMap::new()),
    };
    let too_large = matches!(body, BodyRead::TooLarge);
    let reply = mock.exchange(parts.method, parts.uri, parts.headers, body, trailers);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }

    let content_type = reply.content.content_type();
    let stream = reply.content.is_stream();
    let mut resp = Response::new(reply.content.into_body(reply.chunk_delay));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if stream {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if too_large {
        // The rest of the body was never read; the connection cannot be reused.
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    for (name, value) in &reply.headers {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.insert(*name, v);
        }
    }
    let request_id = match reply.provider {
        Some(ProviderKind::OpenAi | ProviderKind::AzureOpenAi) => Some("x-request-id"),
        Some(ProviderKind::Anthropic) => Some("request-id"),
        Some(ProviderKind::Gemini) | None => None,
    };
    if let Some(name) = request_id {
        if let Ok(v) = HeaderValue::from_str(&format!("req_mock{:08}", reply.seq)) {
            h.insert(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::{ECHOED_KEY_HEADER, ECHO_KEY_HEADER};
    use super::*;

    const KEY: &str = "sk-mock-echo-0123456789";

    async fn started() -> (MockLlm, ServedLlm) {
        let mock = MockLlm::new();
        mock.accept_key(KEY);
        let served = mock
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("serve");
        (mock, served)
    }

    /// Writes `raw`, then reads until the server closes (every request
    /// here says `connection: close`).
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(raw).await.expect("write");
        let mut out = vec![];
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("answer in time")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn chat(extra: &str) -> Vec<u8> {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\nconnection: close\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn the_echo_header_gets_a_401_echoing_the_key_whole_or_in_pieces() {
        let (mock, served) = started().await;
        let whole = exchange(served.addr, &chat(&format!("{ECHO_KEY_HEADER}: 0\r\n"))).await;
        assert!(whole.starts_with("HTTP/1.1 401"), "{whole}");
        assert!(whole.contains("content-length:"), "one piece: {whole}");
        assert!(whole.contains(&format!("{ECHOED_KEY_HEADER}: Bearer {KEY}")));
        assert!(whole.contains(&format!("Incorrect API key provided: {KEY}.")));
        let split = exchange(served.addr, &chat(&format!("{ECHO_KEY_HEADER}: 5\r\n"))).await;
        assert!(split.starts_with("HTTP/1.1 401"), "{split}");
        assert!(split.contains("transfer-encoding: chunked"), "{split}");
        // Chunks of 5 bytes: the key is cut by chunk framing on the wire.
        let (_, wire_body) = split.split_once("\r\n\r\n").expect("head");
        assert!(!wire_body.contains(KEY), "{split}");
        assert!(wire_body.contains("\r\n5\r\n"), "{split}");
        let last = mock.last_request().expect("recorded");
        assert_eq!(
            (last.status, last.stream, last.accepted),
            (401, false, true)
        );
        // Without the header, errors never echo the key.
        let plain = exchange(served.addr, &chat("")).await;
        assert!(plain.starts_with("HTTP/1.1 200") && !plain.contains(KEY));
    }

    #[tokio::test]
    async fn trailers_are_recorded_and_a_broken_body_is_marked_incomplete() {
        let (mock, served) = started().await;
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\nx-trailer: v\r\n\r\n",
            body.len()
        );
        let answer = exchange(served.addr, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let r = mock.last_request().expect("recorded");
        assert_eq!(r.trailer("x-trailer"), Some(&b"v"[..]));
        assert!(r.body_complete);
        assert_eq!(r.body, body.as_bytes());

        // Headers, part of the body, then the connection goes away.
        let mut s = TcpStream::connect(served.addr).await.expect("connect");
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: 100\r\nx-case: broken\r\n\r\n{{\"model\""
        );
        s.write_all(head.as_bytes()).await.expect("write");
        drop(s);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let broken = loop {
            if let Some(r) = mock
                .requests()
                .into_iter()
                .find(|r| r.header("x-case") == Some(b"broken"))
            {
                break r;
            }
            assert!(std::time::Instant::now() < deadline, "never recorded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(!broken.body_complete);
        assert!(broken.body.is_empty());
        assert!(broken.trailers.is_empty());
    }
}
