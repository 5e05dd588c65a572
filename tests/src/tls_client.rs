//! An HTTPS client for the Envoy suites that presents (or withholds) a
//! workload certificate.
//!
//! Job: send one HTTP/1.1 request over a fresh mTLS connection to the
//! gateway, with exact control over the `Host` header and raw header bytes,
//! and report either the response or the TLS-layer failure. A fresh
//! connection per request keeps identity per request unambiguous.
//!
//! Invariants: the server is verified against the development CA under the
//! name `localhost`; header values are sent as given, byte for byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What a TLS client presents.
#[derive(Clone)]
pub struct ClientIdentity {
    /// PEM certificate and key, or `None` to send no certificate.
    pub cert: Option<(String, String)>,
}

/// One request to the gateway.
#[derive(Clone, Debug)]
pub struct HttpsRequest {
    pub method: String,
    /// The `Host` header (the provider host).
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The gateway's answer.
#[derive(Clone, Debug)]
pub struct HttpsResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl HttpsResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Where a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake (or the first read after it, where TLS 1.3 servers
    /// report a refused client certificate) failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The connection was closed before any response: with TLS 1.3, how a
    /// server's refusal of the client certificate reaches the client.
    #[error("closed before any response: {0}")]
    ClosedBeforeResponse(String),
    #[error("http: {0}")]
    Http(String),
    #[error("bad client identity: {0}")]
    Identity(String),
}

impl HttpsError {
    /// Whether the listener refused the connection before HTTP: the
    /// handshake failed, or (TLS 1.3) the connection closed before any
    /// response. Tests pair this with Envoy's `ssl.*` counters.
    pub fn is_refused_before_http(&self) -> bool {
        matches!(
            self,
            HttpsError::Tls(_) | HttpsError::ClosedBeforeResponse(_)
        )
    }
}

/// A client config trusting `ca_pem` and presenting `identity`.
pub fn client_config(
    ca_pem: &str,
    identity: &ClientIdentity,
) -> Result<Arc<rustls::ClientConfig>, HttpsError> {
    let bad = |e: &dyn std::fmt::Display| HttpsError::Identity(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots);
    let cfg = match &identity.cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Sends `req` over a new TLS connection to `addr`.
pub async fn send(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    req: &HttpsRequest,
) -> Result<HttpsResponse, HttpsError> {
    tokio::time::timeout(Duration::from_secs(60), send_inner(addr, config, req))
        .await
        .map_err(|_| HttpsError::Http("no answer within 60s".into()))?
}

async fn send_inner(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    req: &HttpsRequest,
) -> Result<HttpsResponse, HttpsError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(HttpsError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").map_err(|e| HttpsError::Tls(e.to_string()))?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| HttpsError::Tls(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| HttpsError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);

    let mut builder = Request::builder()
        .method(req.method.as_str())
        .uri(req.path.as_str())
        .header("host", req.host.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_slice());
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body.clone())))
        .map_err(|e| HttpsError::Http(e.to_string()))?;
    let result = sender.send_request(request).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            // With TLS 1.3 the server checks the client certificate after
            // the client considers the handshake done, so a refusal shows up
            // as the connection closing (with an alert) before any response.
            return Err(if let Some(alert) = tls_alert(&e) {
                HttpsError::Tls(alert)
            } else if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
                HttpsError::ClosedBeforeResponse(format!("{e:?}"))
            } else {
                HttpsError::Http(format!("{e:?}"))
            });
        }
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| HttpsError::Http(e.to_string()))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(HttpsResponse {
        status,
        headers,
        body,
    })
}

/// The TLS alert (as rustls reports it) somewhere in `e`'s source chain.
fn tls_alert(e: &hyper::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(format!("{tls:?}"));
            }
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("{tls:?}"));
        }
        cur = err.source();
    }
    None
}
