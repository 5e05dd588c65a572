//! Calls to clusters backed by a real HTTP server (`cluster_http`).
//!
//! Invariants:
//! - The gateway owns the tokio runtime; calls run there and report back over
//!   a channel, so guest callbacks still only run on the test thread.
//! - The call timeout is real time here; when it expires the guest gets
//!   Envoy's local `504` with body `upstream request timeout`. A connect
//!   failure or a reset before headers gives `503` with body
//!   `upstream connect error or disconnect/reset before headers`.

use crate::call::CallRequest;
use crate::state::{Completion, Delivery};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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
                delivery,
            });
        });
        handle.abort_handle()
    }
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
