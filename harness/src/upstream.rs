//! Calls to clusters backed by a real server: HTTP/1.1 (`cluster_http`) and
//! unary gRPC over plaintext HTTP/2 with prior knowledge (`cluster_grpc`).
//!
//! Invariants:
//! - The gateway owns the tokio runtime; calls run there and report back over
//!   a channel, so guest callbacks still only run on the test thread.
//! - The call timeout is real time here (a zero timeout, which Envoy treats
//!   as none, is capped at `MAX_REAL_TIMEOUT`).
//! - HTTP: when the timeout expires the guest gets Envoy's local `504` with
//!   body `upstream request timeout`. A connect failure or a reset before
//!   headers gives `503` with body `upstream connect error or
//!   disconnect/reset before headers`.
//! - gRPC (Envoy's `Grpc::AsyncClientImpl` behind its router): the request
//!   is `POST /{service}/{method}` with `:authority` the cluster name,
//!   `te: trailers`, `grpc-timeout` (always, `0m` for a zero timeout, as
//!   Envoy sends it), `content-type: application/grpc`, then the guest's
//!   metadata; the body is one uncompressed length-prefixed frame. The
//!   answer is mapped by `grpc_outcome`, a pure function. A timeout closes
//!   the call with DEADLINE_EXCEEDED (4) `upstream request timeout` (Envoy
//!   since PR 44479, `grpc_timeout_returns_deadline_exceeded`); a connect
//!   failure or a reset before headers with UNAVAILABLE (14) and the
//!   connect-error text; a reset after the headers with INTERNAL (13).
//!   Each call uses its own connection.

use crate::call::{grpc_status, CallRequest, GrpcRequest};
use crate::pairs::Pairs;
use crate::state::{CallDelivery, Completion, Delivery, GrpcDelivery};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

pub const CONNECT_ERROR_BODY: &str = "upstream connect error or disconnect/reset before headers";
pub const TIMEOUT_BODY: &str = "upstream request timeout";

/// Used when the guest passes a zero timeout (Envoy: no timeout), so a test
/// can never hang for ever on a real call.
pub const MAX_REAL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Upstream {
    pub runtime: tokio::runtime::Runtime,
    pub client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    pub done_tx: mpsc::Sender<Completion>,
}

impl Upstream {
    pub fn new(done_tx: mpsc::Sender<Completion>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("tollgate-harness-upstream")
            .build()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Upstream {
            runtime,
            client,
            done_tx,
        })
    }

    /// Starts a call; its completion arrives on the gateway's channel.
    pub fn spawn(
        &self,
        worker: usize,
        token: u32,
        addr: SocketAddr,
        req: CallRequest,
    ) -> tokio::task::AbortHandle {
        let client = self.client.clone();
        let tx = self.done_tx.clone();
        let timeout = if req.timeout.is_zero() {
            MAX_REAL_TIMEOUT
        } else {
            req.timeout
        };
        let handle = self.runtime.spawn(async move {
            let delivery = match tokio::time::timeout(timeout, perform(&client, addr, req)).await {
                Ok(d) => d,
                Err(_) => Delivery::local(504, TIMEOUT_BODY),
            };
            let _ = tx.send(Completion {
                worker,
                token,
                delivery: CallDelivery::Http(delivery),
            });
        });
        handle.abort_handle()
    }

    /// Starts a unary gRPC call to an h2c server; its completion arrives on
    /// the gateway's channel.
    pub fn spawn_grpc(
        &self,
        worker: usize,
        token: u32,
        addr: SocketAddr,
        req: GrpcRequest,
    ) -> tokio::task::AbortHandle {
        let tx = self.done_tx.clone();
        let deadline = if req.timeout.is_zero() {
            MAX_REAL_TIMEOUT
        } else {
            req.timeout
        };
        let handle = self.runtime.spawn(async move {
            let delivery = match tokio::time::timeout(deadline, perform_grpc(addr, &req)).await {
                Ok(d) => d,
                Err(_) => GrpcDelivery::close(grpc_status::DEADLINE_EXCEEDED, TIMEOUT_BODY),
            };
            let _ = tx.send(Completion {
                worker,
                token,
                delivery: CallDelivery::Grpc(delivery),
            });
        });
        handle.abort_handle()
    }
}

/// Envoy's `Grpc::Common::toGrpcTimeout`: milliseconds while they fit in 8
/// digits, then seconds, minutes, hours (clipped).
pub fn grpc_timeout_header(ms: u64) -> String {
    const MAX: u64 = 99_999_999;
    let units = [b'm', b'S', b'M', b'H'];
    let (mut time, mut unit) = (ms, 0);
    if time > MAX {
        time /= 1000;
        unit = 1;
    }
    while time > MAX {
        if unit == 3 {
            time = MAX;
        } else {
            time /= 60;
            unit += 1;
        }
    }
    format!("{time}{}", units[unit] as char)
}

/// One uncompressed gRPC length-prefixed message frame.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Why a response body is not a valid gRPC frame sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError;

/// The last complete message in a response body (a unary call keeps the
/// last, as Envoy's `AsyncRequestImpl::onReceiveMessageRaw` does), or None
/// if no frame is complete. A trailing partial frame is ignored (Envoy's
/// decoder keeps it buffered). Reserved flag bits, or a compressed
/// non-empty frame (Envoy decodes no compression), are a `FrameError`.
pub fn last_grpc_message(mut body: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
    let mut last = None;
    while body.len() >= 5 {
        let flags = body[0];
        if flags & !1 != 0 {
            return Err(FrameError);
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() - 5 < len {
            break;
        }
        if len > 0 && flags != 0 {
            return Err(FrameError);
        }
        last = Some(body[5..5 + len].to_vec());
        body = &body[5 + len..];
    }
    if !body.is_empty() && body.len() < 5 && body[0] & !1 != 0 {
        return Err(FrameError);
    }
    Ok(last)
}

fn header<'a>(map: &'a Pairs, name: &[u8]) -> Option<&'a [u8]> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Envoy's `Http::Utility::PercentEncoding::decode`: `%XX` becomes the byte;
/// anything else (a malformed escape included) stays as it is.
pub fn percent_decode(v: &[u8]) -> Vec<u8> {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// Envoy's `Grpc::Common::getGrpcStatus` (absent: None; not a number from 0
/// to 16: `INVALID_CODE`).
fn grpc_status_of(map: &Pairs) -> Option<u32> {
    let v = header(map, b"grpc-status")?;
    if v.is_empty() {
        return None;
    }
    Some(
        std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|c| *c <= 16)
            .map_or(grpc_status::INVALID_CODE, |c| c as u32),
    )
}

/// Envoy's `AsyncStreamImpl::onTrailers` then `AsyncRequestImpl::onRemoteClose`.
fn close_with(map: &Pairs, message: Option<Vec<u8>>) -> GrpcDelivery {
    let status = grpc_status_of(map).unwrap_or(grpc_status::UNKNOWN);
    let text = percent_decode(header(map, b"grpc-message").unwrap_or_default());
    match (status, message) {
        (grpc_status::OK, Some(m)) => GrpcDelivery::ok(m),
        (grpc_status::OK, None) => GrpcDelivery::close(grpc_status::INTERNAL, ""),
        (s, _) => GrpcDelivery {
            status: s,
            message: Vec::new(),
            status_message: text,
        },
    }
}

/// What a unary call reports for a complete HTTP/2 response, as Envoy's gRPC
/// async client does (`source/common/grpc/async_client_impl.cc`):
/// - a headers-only response is trailers-only: its headers are the trailers
///   (if `:status` is not 200, only when they carry `grpc-status`);
/// - any other non-200 `:status` is CANCELLED (1);
/// - a malformed frame is INTERNAL (13); a body without trailers is
///   UNKNOWN (2);
/// - trailers: `grpc-status` (absent: UNKNOWN) and the percent-decoded
///   `grpc-message`; status 0 without a complete message is INTERNAL.
///
/// A body that is empty with no trailers is taken as headers-only.
pub fn grpc_outcome(
    status: u16,
    headers: &Pairs,
    body: &[u8],
    trailers: Option<&Pairs>,
) -> GrpcDelivery {
    let headers_only = body.is_empty() && trailers.is_none();
    if status != 200 {
        if headers_only && grpc_status_of(headers).is_some() {
            return close_with(headers, None);
        }
        return GrpcDelivery::close(grpc_status::CANCELLED, "");
    }
    if headers_only {
        return close_with(headers, None);
    }
    let Ok(message) = last_grpc_message(body) else {
        return GrpcDelivery::close(grpc_status::INTERNAL, "");
    };
    match trailers {
        None => GrpcDelivery::close(grpc_status::UNKNOWN, ""),
        Some(t) => close_with(t, message),
    }
}

/// Headers Envoy's HTTP/2 codec never sends (connection-specific), and the
/// pseudo-headers: metadata with these names is not sent.
fn sendable_metadata(name: &[u8]) -> bool {
    !(name.first() == Some(&b':')
        || [
            &b"connection"[..],
            b"keep-alive",
            b"proxy-connection",
            b"transfer-encoding",
            b"upgrade",
            b"host",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n)))
}

fn grpc_http_request(addr: SocketAddr, req: &GrpcRequest) -> Option<hyper::Request<Full<Bytes>>> {
    let path = req.path();
    let uri = hyper::Uri::try_from(format!("http://{}{path}", req.cluster))
        .ok()
        .filter(|u| u.path() == path)
        .or_else(|| hyper::Uri::try_from(format!("http://{addr}{path}")).ok())?;
    let mut builder = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(uri)
        .header("te", "trailers")
        .header(
            "grpc-timeout",
            grpc_timeout_header(req.timeout.as_millis() as u64),
        )
        .header("content-type", "application/grpc");
    for (k, v) in &req.metadata {
        let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k),
            hyper::header::HeaderValue::from_bytes(v),
        ) else {
            continue;
        };
        if sendable_metadata(k) {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(Full::new(Bytes::from(grpc_frame(&req.message))))
        .ok()
}

async fn perform_grpc(addr: SocketAddr, req: &GrpcRequest) -> GrpcDelivery {
    let unreachable = || GrpcDelivery::close(grpc_status::UNAVAILABLE, CONNECT_ERROR_BODY);
    let Some(request) = grpc_http_request(addr, req) else {
        return GrpcDelivery::close(grpc_status::INTERNAL, "");
    };
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return unreachable();
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut send, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
    else {
        return unreachable();
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let Ok(response) = send.send_request(request).await else {
        return unreachable();
    };
    let status = response.status().as_u16();
    let headers: Pairs = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let (body, trailers) = match response.into_body().collect().await {
        Ok(c) => {
            let trailers: Option<Pairs> = c.trailers().map(|t| {
                t.iter()
                    .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect()
            });
            (c.to_bytes().to_vec(), trailers)
        }
        Err(_) => return GrpcDelivery::close(grpc_status::INTERNAL, ""),
    };
    grpc_outcome(status, &headers, &body, trailers.as_ref())
}

async fn perform(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    req: CallRequest,
) -> Delivery {
    let method = req.header(":method").unwrap_or(b"GET").to_vec();
    let path = req.header(":path").unwrap_or(b"/").to_vec();
    let authority = req.header(":authority").unwrap_or(b"").to_vec();
    let uri = format!("http://{addr}{}", String::from_utf8_lossy(&path));
    let mut builder = hyper::Request::builder()
        .method(hyper::Method::from_bytes(&method).unwrap_or(hyper::Method::GET))
        .uri(uri);
    builder = builder.header(hyper::header::HOST, authority.as_slice());
    for (k, v) in &req.headers {
        if k.first() == Some(&b':') || k.eq_ignore_ascii_case(b"host") {
            continue;
        }
        builder = builder.header(k.as_slice(), v.as_slice());
    }
    let request = match builder.body(Full::new(Bytes::from(req.body.clone()))) {
        Ok(r) => r,
        Err(_) => return Delivery::local(503, CONNECT_ERROR_BODY),
    };
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(_) => return Delivery::local(503, CONNECT_ERROR_BODY),
    };
    let status = response.status().as_u16();
    let mut headers = vec![(b":status".to_vec(), status.to_string().into_bytes())];
    for (k, v) in response.headers() {
        headers.push((k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    let (_, body) = response.into_parts();
    let (body, trailers) = match body.collect().await {
        Ok(c) => {
            let trailers = c
                .trailers()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            (c.to_bytes().to_vec(), trailers)
        }
        Err(_) => return Delivery::local(503, CONNECT_ERROR_BODY),
    };
    Delivery {
        headers,
        body,
        trailers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Pairs {
        p.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn grpc_timeouts_are_written_as_envoy_writes_them() {
        assert_eq!(grpc_timeout_header(0), "0m");
        assert_eq!(grpc_timeout_header(1500), "1500m");
        assert_eq!(grpc_timeout_header(99_999_999), "99999999m");
        assert_eq!(grpc_timeout_header(100_000_000), "100000S");
        assert_eq!(grpc_timeout_header(u64::from(u32::MAX)), "4294967S");
        assert_eq!(grpc_timeout_header(u64::MAX), "99999999H");
    }

    #[test]
    fn the_last_complete_frame_is_the_message() {
        let mut body = grpc_frame(b"one");
        body.extend(grpc_frame(b"two"));
        assert_eq!(last_grpc_message(&body), Ok(Some(b"two".to_vec())));
        body.extend_from_slice(&[0, 0, 0, 0, 9, b'x']);
        assert_eq!(last_grpc_message(&body), Ok(Some(b"two".to_vec())));
        assert_eq!(last_grpc_message(&[0, 0, 0]), Ok(None));
        assert_eq!(last_grpc_message(&grpc_frame(b"")), Ok(Some(Vec::new())));
    }

    #[test]
    fn reserved_flags_and_compressed_frames_are_errors() {
        assert_eq!(last_grpc_message(&[2, 0, 0, 0, 0]), Err(FrameError));
        assert_eq!(last_grpc_message(&[1, 0, 0, 0, 1, b'x']), Err(FrameError));
        assert_eq!(last_grpc_message(&[1, 0, 0, 0, 0]), Ok(Some(Vec::new())));
        assert_eq!(last_grpc_message(&[0x80]), Err(FrameError));
    }

    #[test]
    fn the_frame_split_at_every_byte_yields_nothing_or_the_message() {
        let frame = grpc_frame(b"hello");
        for cut in 0..frame.len() {
            assert_eq!(last_grpc_message(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(last_grpc_message(&frame), Ok(Some(b"hello".to_vec())));
    }

    #[test]
    fn responses_map_to_envoys_unary_outcomes() {
        let ok_headers = pairs(&[("content-type", "application/grpc")]);
        let body = grpc_frame(b"reply");
        // Success: a message and grpc-status 0 in the trailers.
        assert_eq!(
            grpc_outcome(
                200,
                &ok_headers,
                &body,
                Some(&pairs(&[("grpc-status", "0")]))
            ),
            GrpcDelivery::ok(b"reply".to_vec())
        );
        // Status 0 without a message is INTERNAL.
        assert_eq!(
            grpc_outcome(200, &ok_headers, &[], Some(&pairs(&[("grpc-status", "0")]))),
            GrpcDelivery::close(grpc_status::INTERNAL, "")
        );
        // An error in the trailers, with a percent-encoded message.
        assert_eq!(
            grpc_outcome(
                200,
                &ok_headers,
                &[],
                Some(&pairs(&[
                    ("grpc-status", "7"),
                    ("grpc-message", "no%20way")
                ]))
            ),
            GrpcDelivery::close(7, "no way")
        );
        // Trailers-only (headers only), on 200 and on another :status.
        let trailers_only = pairs(&[("grpc-status", "14"), ("grpc-message", "down")]);
        assert_eq!(
            grpc_outcome(200, &trailers_only, &[], None),
            GrpcDelivery::close(14, "down")
        );
        assert_eq!(
            grpc_outcome(503, &trailers_only, &[], None),
            GrpcDelivery::close(14, "down")
        );
        // A non-200 without grpc-status is CANCELLED; a 200 without any
        // status is UNKNOWN; a body without trailers is UNKNOWN.
        assert_eq!(
            grpc_outcome(404, &ok_headers, b"nope", None),
            GrpcDelivery::close(grpc_status::CANCELLED, "")
        );
        assert_eq!(
            grpc_outcome(200, &ok_headers, &[], None),
            GrpcDelivery::close(grpc_status::UNKNOWN, "")
        );
        assert_eq!(
            grpc_outcome(200, &ok_headers, &body, None),
            GrpcDelivery::close(grpc_status::UNKNOWN, "")
        );
        // A malformed frame is INTERNAL; an unknown status code is Envoy's InvalidCode.
        assert_eq!(
            grpc_outcome(
                200,
                &ok_headers,
                &[9, 0, 0, 0, 0],
                Some(&pairs(&[("grpc-status", "0")]))
            ),
            GrpcDelivery::close(grpc_status::INTERNAL, "")
        );
        assert_eq!(
            grpc_outcome(
                200,
                &ok_headers,
                &body,
                Some(&pairs(&[("grpc-status", "99")]))
            )
            .status,
            grpc_status::INVALID_CODE
        );
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode(b"a%20b"), b"a b");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
        assert_eq!(percent_decode(b"%E2%9C%93"), "\u{2713}".as_bytes());
    }
}
