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
