//! An HTTP/2 subscriber's connection that goes silent (a NAT or load
//! balancer that dropped its state, a peer gone without a reset): the lane's
//! attempts share that one connection, so it must be found dead and replaced
//! rather than reused by every attempt until the kernel gives up on it.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy whose connections open so far can be frozen: from then on
/// they pass nothing either way, and stay open. Later connections pass.
pub(crate) struct FreezingProxy {
    pub(crate) addr: SocketAddr,
    frozen: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl FreezingProxy {
    pub(crate) async fn start(upstream: SocketAddr) -> FreezingProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let frozen: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let all = frozen.clone();
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                let flag = Arc::new(AtomicBool::new(false));
                all.lock().unwrap().push(flag.clone());
                let Ok(u) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = c.into_split();
                let (ur, uw) = u.into_split();
                tokio::spawn(pipe(cr, uw, flag.clone()));
                tokio::spawn(pipe(ur, cw, flag));
            }
        });
        FreezingProxy { addr, frozen }
    }

    pub(crate) fn freeze_all(&self) {
        for f in self.frozen.lock().unwrap().iter() {
            f.store(true, Ordering::SeqCst);
        }
    }

    fn connections(&self) -> usize {
        self.frozen.lock().unwrap().len()
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Swallow everything, keep both sockets open.
            let _keep = to;
            loop {
                if matches!(from.read(&mut buf).await, Ok(0) | Err(_)) {
                    std::future::pending::<()>().await;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn a_silent_http2_connection_is_replaced_not_reused_forever() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "sub");
    let sub = Sub::start_tls(&cert, Arc::new(|_, _| Behaviour::Status(200))).await;
    let proxy = FreezingProxy::start(sub.addr).await;
    let url = format!("https://localhost:{}/callbacks", proxy.addr.port());
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("h2", &url)
            .ca_file(&cert.cert)
            .timeout(secs(1))
            .retry([ms(100); 20])
            .circuit_threshold(1000),
    );
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("h2-first")).await;
    let got = sub.wait_for(secs(5), "the first delivery", |r| !r.is_empty()).await;
    assert_eq!(got[0].version, http::Version::HTTP_2);
    let before = proxy.connections();
    // The connection the lane keeps goes silent.
    proxy.freeze_all();
    accepted(h.ingest_addrs[0], &runway("h2-second")).await;
    let got = sub.wait_for(secs(8), "the second delivery", |r| r.len() >= 2).await;
    assert!(
        got.len() >= 2,
        "the second delivery never came: every attempt went to the silent connection \
         ({} connection(s) opened, {before} before the freeze)",
        proxy.connections()
    );
    h.shutdown().await;
}
