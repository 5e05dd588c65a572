//! The ext_authz gateway's authorization service (HTTP mode), in-process.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::{ALLOWED_PREFIX, AUTHZ_PREFIX, CHAT_PATH, REAL_BEARER};

/// The out-of-process authorizer, on its own thread and single-threaded
/// runtime, as a separate one-core service would be. Stops on drop.
pub(crate) struct AuthzService {
    pub(crate) addr: SocketAddr,
    /// The service thread's id, for its CPU time.
    pub(crate) tid: i32,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

impl AuthzService {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the authz service")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ext-authz".into())
            .spawn(move || {
                // SAFETY: gettid(2) has no preconditions.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(authz_serve(listener, stopped)),
                    Err(e) => eprintln!("ext-authz runtime: {e}"),
                }
            })
            .context("spawning the authz thread")?;
        let tid = tid_rx.recv().context("the authz thread died at start")?;
        Ok(Self {
            addr,
            tid,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for AuthzService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn authz_serve(
    listener: std::net::TcpListener,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("ext-authz: cannot register the listener");
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
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(authz_check);
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

async fn authz_check(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let xfcc = req
        .headers()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok());
    let mut resp = Response::new(Full::new(Bytes::new()));
    match authorize(req.method(), req.uri().path(), xfcc) {
        Ok(()) => {
            resp.headers_mut().insert(
                AUTHORIZATION,
                hyper::header::HeaderValue::from_static(REAL_BEARER),
            );
        }
        Err(reason) => {
            *resp.status_mut() = StatusCode::FORBIDDEN;
            resp.headers_mut().insert(
                "x-authz-reason",
                hyper::header::HeaderValue::from_static(reason),
            );
        }
    }
    Ok(resp)
}

/// The same decision as the rbac policy and Tollgate's rule. The caller is
/// the URI of the single XFCC element Envoy set (`SANITIZE_SET`).
fn authorize(method: &Method, path: &str, xfcc: Option<&str>) -> Result<(), &'static str> {
    if path.strip_prefix(AUTHZ_PREFIX) != Some(CHAT_PATH) || method != Method::POST {
        return Err("endpoint_not_permitted");
    }
    let xfcc = xfcc.ok_or("no_identity")?;
    if xfcc.contains(',') {
        return Err("several_identities");
    }
    let mut uris = xfcc.split(';').filter_map(|kv| kv.strip_prefix("URI="));
    match (uris.next(), uris.next()) {
        (Some(id), None) if id.starts_with(ALLOWED_PREFIX) => Ok(()),
        (Some(_), None) => Err("workload_not_permitted"),
        _ => Err("no_identity"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authz_allows_only_the_policy() {
        let xfcc = "Hash=ab12;URI=spiffe://cluster.local/ns/support/sa/chatbot";
        let chat = format!("{AUTHZ_PREFIX}{CHAT_PATH}");
        assert_eq!(authorize(&Method::POST, &chat, Some(xfcc)), Ok(()));
        assert!(authorize(&Method::GET, &chat, Some(xfcc)).is_err());
        assert!(authorize(&Method::POST, "/authz/v1/embeddings", Some(xfcc)).is_err());
        assert!(authorize(&Method::POST, &chat, None).is_err());
        let other = "Hash=ab12;URI=spiffe://cluster.local/ns/default/sa/x";
        assert_eq!(
            authorize(&Method::POST, &chat, Some(other)),
            Err("workload_not_permitted")
        );
        let two = format!("{xfcc},{xfcc}");
        assert!(authorize(&Method::POST, &chat, Some(&two)).is_err());
    }
}
