//! A TCP proxy that holds each new connection a while before passing it on:
//! a slow provider or subscriber at the network level, for tests that need
//! an attempt to be somewhere in particular when something else happens.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A proxy to `upstream` that holds each new connection `delay` before
/// passing it on; its address and a count of connections.
pub async fn slow_proxy(upstream: SocketAddr, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    scripted_proxy(upstream, move |_| Conn::PassAfter(delay)).await
}

/// What [`scripted_proxy`] does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Answer `HTTP 429` itself (the provider's envelope) and close: the
    /// client cannot keep the connection for its next call.
    TooMany,
    /// Accept and never pass on: a provider that does not answer.
    Hold,
    /// Pass on to the upstream at once.
    Pass,
    /// Hold the connection this long, then pass it on.
    PassAfter(Duration),
}

/// A proxy to `upstream` that treats its `n`th connection (from 0) as
/// `script(n)` says; its address and a count of connections.
pub async fn scripted_proxy(
    upstream: SocketAddr,
    script: impl Fn(usize) -> Conn + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let plan = script(count.fetch_add(1, Ordering::SeqCst));
            tokio::spawn(async move {
                match plan {
                    Conn::TooMany => {
                        // Read the request's head before answering.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match c.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => head.extend_from_slice(&buf[..k]),
                            }
                        }
                        let body = r#"{"code":429,"msg":"Too many requests, please slow down"}"#;
                        let answer = format!(
                            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = c.write_all(answer.as_bytes()).await;
                        let _ = c.shutdown().await;
                    }
                    Conn::Hold => {
                        let mut buf = [0u8; 4096];
                        while let Ok(k) = c.read(&mut buf).await {
                            if k == 0 {
                                break;
                            }
                        }
                    }
                    Conn::Pass | Conn::PassAfter(_) => {
                        if let Conn::PassAfter(delay) = plan {
                            tokio::time::sleep(delay).await;
                        }
                        if let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                        }
                    }
                }
            });
        }
    });
    (addr, n)
}

/// A proxy to `upstream` that passes what the client sends at once and what
/// the upstream answers after the latency set in the returned cell (in ms, 0
/// at first; changed at any time, it applies to bytes read from then on),
/// in order: a server that answers, slowly (an overloaded NATS cluster).
pub async fn latency_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    latency_proxy_watching(upstream, |_, _| {}).await
}

/// [`latency_proxy`], with `watch` shown each chunk the client sends (and
/// the latency cell) before it is passed on: a test can make the answers
/// to one kind of request late.
pub async fn latency_proxy_watching(
    upstream: SocketAddr,
    watch: impl Fn(&[u8], &Arc<std::sync::atomic::AtomicU64>) + Send + Sync + 'static,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let watch = Arc::new(watch);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let latency = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cell = latency.clone();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let Ok(u) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let latency = cell.clone();
            let (mut cr, mut cw) = c.into_split();
            let (mut ur, mut uw) = u.into_split();
            let (watch, seen) = (watch.clone(), latency.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(k) = cr.read(&mut buf).await {
                    watch(&buf[..k], &seen);
                    if k == 0 || uw.write_all(&buf[..k]).await.is_err() {
                        break;
                    }
                }
            });
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(k) = ur.read(&mut buf).await {
                    let delay = Duration::from_millis(latency.load(Ordering::Relaxed));
                    if k == 0
                        || tx
                            .send((tokio::time::Instant::now() + delay, buf[..k].to_vec()))
                            .is_err()
                    {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some((at, bytes)) = rx.recv().await {
                    tokio::time::sleep_until(at).await;
                    if cw.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, latency)
}
