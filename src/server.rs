//! Listeners: accept TCP, optionally terminate TLS, serve HTTP/1.1 and HTTP/2.
//!
//! Owns the connection-level limits: a cap on open connections (a semaphore
//! taken before `accept`), the TLS handshake and header read timeouts, the
//! HTTP/2 stream limit, and the graceful drain on shutdown. What a request
//! means is for the service function given to [`serve`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::tls;

/// Connection-level settings of one listener.
#[derive(Clone)]
pub struct ListenerOptions {
    pub tls: Option<tls::Reloadable>,
    pub read_timeout: Duration,
    pub http2_max_streams: u32,
    /// Shared by every public listener.
    pub connections: Arc<Semaphore>,
    pub grace: Duration,
}

fn builder(opts: &ListenerOptions) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.read_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.http2_max_streams)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serve `listener` until `shutdown` turns true, then stop accepting and give
/// open connections `grace` to finish their requests.
pub async fn serve<S, F>(listener: TcpListener, opts: ListenerOptions, service: S, mut shutdown: watch::Receiver<bool>)
where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = Arc::new(builder(&opts));
    // Every connection task holds a clone; when all are dropped, all are done.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            p = opts.connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let svc = hyper::service::service_fn(move |req| {
            let fut = service(req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let builder = builder.clone();
        let alive = alive_tx.clone();
        let acceptor = opts.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.get()));
        let timeout = opts.read_timeout;
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let _permit = permit;
            match acceptor {
                None => serve_conn(&builder, stream, svc, stop, peer).await,
                Some(acceptor) => {
                    let tls_stream = tokio::select! {
                        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(peer = %peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        _ = stop.changed() => return,
                    };
                    serve_conn(&builder, tls_stream, svc, stop, peer).await
                }
            }
        });
    }
    drop(listener);
    drop(alive_tx);
    if tokio::time::timeout(opts.grace, alive_rx.recv()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

async fn serve_conn<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    if *stop.borrow_and_update() {
        conn.as_mut().graceful_shutdown();
    }
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}
