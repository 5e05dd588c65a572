//! A recording TCP relay: listens on loopback, forwards every connection to
//! a target, and keeps the bytes clients sent.
//!
//! It sits between the gateway's credential cluster (plain HTTP/1.1) and
//! the agent, so the requests the filter sent can be read back verbatim,
//! headers included. When the target refuses a connection, the client's
//! connection is closed without a byte, as a dead upstream behind a proxy
//! would look.
//!
//! Invariants: dropping the [`Recorder`] stops accepting and aborts every
//! relayed connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

type Captures = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A running relay.
pub struct Recorder {
    addr: SocketAddr,
    captured: Captures,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts relaying from a free loopback port to `target`. Must be called
    /// inside a tokio runtime.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the recorder")?;
        let addr = listener.local_addr().context("recorder address")?;
        let captured: Captures = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            captured.clone(),
            tasks.clone(),
        ));
        Ok(Self {
            addr,
            captured,
            tasks,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bytes each connection sent so far, oldest connection first.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        lock(&self.captured)
            .iter()
            .map(|c| lock(c).clone())
            .collect()
    }

    /// Everything every client sent, as text (lossy), for scanning.
    pub fn sent_text(&self) -> String {
        self.sent()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The request heads sent (one HTTP/1.1 request head per element).
    pub fn request_heads(&self) -> Vec<String> {
        let text = self.sent_text();
        text.split("\r\n\r\n")
            .filter(|h| h.contains(" HTTP/1."))
            .map(|h| h.trim_start_matches(['\r', '\n']).to_string())
            .collect()
    }

    /// How many requests for `path` (exactly, with or without a query) were
    /// sent with `method`: the OpenBao side of a credential service's
    /// request count.
    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        let start = format!("{method} {path}");
        self.request_heads()
            .iter()
            .filter(|h| {
                h.strip_prefix(&start)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('?'))
            })
            .count()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.accept.abort();
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    captured: Captures,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let capture = Arc::new(Mutex::new(Vec::new()));
        lock(&captured).push(capture.clone());
        let t = tokio::spawn(relay(client, target, capture));
        let mut tasks = lock(&tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(t);
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, capture: Arc<Mutex<Vec<u8>>>) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        // Target down: close without answering.
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = {
        let (r, w) = upstream.into_split();
        (r, w)
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    lock(&capture).extend_from_slice(&buf[..n]);
                    if uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = uw.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}
