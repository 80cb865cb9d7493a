//! Listeners: accept TCP, optionally terminate TLS, serve HTTP/1.1 and HTTP/2.
//!
//! Owns the connection-level limits: a cap on open connections (a connection
//! accepted at the cap waits for a slot before the next is accepted, and
//! makes the listeners crowded: waits for clients shortened, see
//! `limits::ConnLimit`) and each client's share of it (a connection past
//! it is closed at once), the deadline of every phase that waits for the
//! client (TLS handshake, protocol detection and headers under
//! `read_timeout`; an answer the client does not take, under `read_timeout`
//! too; idle keep-alive under `idle_timeout`, see `activity`; an
//! HTTP/2 header still arriving is found by `h2_frames`), the HTTP/2 stream
//! limit (a client closed for flooding it is logged by `flood`), and the
//! graceful drain on shutdown; a reload changes them through `limits`.
//! Failed TLS handshakes are counted and, when a client refuses the
//! certificate, warned about by `handshake`.
//! An HTTP/1 connection that ends (not one cut for a deadline) is closed
//! lingering (`linger`): what the client still sends is drained, bounded,
//! so it reads the answer instead of a reset.
//! A connection's reads yield to the other tasks after each burst
//! (`fair_read`): a client that never lets its socket run dry does not
//! hold a worker thread.
//! A connection that negotiated `acme-tls/1` (an ACME CA validating, see
//! `acme`) is closed after its handshake, never served HTTP.
//! What a request means is for the service function given to [`serve`] (which
//! bounds the body itself).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::tls;

mod activity;
mod fair_read;
mod flood;
mod h2_frames;
pub mod handshake;
mod limits;
mod linger;
mod once_a_minute;
mod plain_http;

/// Failed accepts, for their warning at most once a minute (the process's
/// file descriptors are shared by every listener).
static ACCEPT_FAILED: std::sync::Mutex<once_a_minute::OnceAMinute> =
    std::sync::Mutex::new(once_a_minute::OnceAMinute::new());
/// The wait after a failed accept, doubled while they fail.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

use activity::{Activity, GuardedBody, Next, Tracked};
pub use limits::{ConnLimit, ConnSettings, Settings};

/// What one listener needs; the limits are shared and a reload changes them.
#[derive(Clone)]
pub struct ListenerOptions {
    pub tls: Option<tls::Reloadable>,
    /// Timeouts, HTTP/2 streams, shutdown grace: read for each new connection.
    pub settings: Settings,
    /// Open connections; shared by every public listener. Each client may
    /// hold a share of them (see [`ConnLimit`]).
    pub connections: Arc<ConnLimit>,
    /// `hookrelay_tls_handshake_failures_total` (see [`handshake`]).
    pub handshake_failures: prometheus_client::metrics::family::Family<
        crate::metrics::ReasonLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

/// Serve `listener` until `shutdown` turns true, then stop accepting and give
/// open connections the shutdown grace to finish their requests.
pub async fn serve<S, F, B>(
    listener: TcpListener,
    opts: ListenerOptions,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Every connection task holds a clone; when all are dropped, all are done.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    // EMFILE and friends: backed off (doubling from 50 ms to 1 s) instead of
    // spinning, and warned about at most once a minute (every 50 ms on each
    // listener before, 40 lines a second while a stranger held connections
    // open: observability review, stop 62).
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    let warn = ACCEPT_FAILED.lock().unwrap_or_else(|e| e.into_inner()).note(std::time::Instant::now());
                    match warn {
                        Some(between) => tracing::warn!(
                            error = %e, listener = %local, failed_since_last_warning = between,
                            "accept failed (out of file descriptors? see LimitNOFILE); retrying with back-off, warned at most once a minute"
                        ),
                        None => tracing::debug!(error = %e, listener = %local, "accept failed"),
                    }
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        backoff = ACCEPT_BACKOFF_FIRST;
        let (permit, crowding_began) = tokio::select! {
            _ = shutdown.changed() => break,
            p = opts.connections.acquire() => p,
        };
        if crowding_began {
            crowding_began_log(&opts.connections, &local);
        }
        let permit = match permit.claim(peer.ip()) {
            Ok(p) => p,
            Err(over) => {
                // Closed at once, with a reset: not left in the accept queue
                // (where it would hold others back), and no TIME_WAIT here.
                let _ = stream.set_zero_linger();
                drop(stream);
                if over.warn {
                    tracing::warn!(
                        peer = %peer.ip(), listener = %local, share = over.share,
                        "a client holds its share of the connections (a quarter of the cap): \
                         its further connections are closed at once (this warning at most once a minute, each one at debug)"
                    );
                } else {
                    tracing::debug!(peer = %peer, share = over.share, "connection past its client's share; closed");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let current = opts.settings.current();
        let alive = alive_tx.clone();
        let acceptor = opts.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.get()));
        let limits = Limits {
            read_timeout: current.values.read_timeout,
            idle_timeout: current.values.idle_timeout,
        };
        let mut stop = shutdown.clone();
        let failures = opts.handshake_failures.clone();
        let mut crowding = opts.connections.crowding();
        tokio::spawn(async move {
            let _alive = alive;
            let _permit = permit;
            match acceptor {
                None => serve_conn(&current.builder, stream, service, stop, peer, limits, crowding).await,
                Some(acceptor) => {
                    let accepted = tokio::time::Instant::now();
                    // The permit holds the sender: never closed here, but a
                    // closed one would make `changed` ready at once.
                    let mut watching = true;
                    // Its first byte, within the handshake's time: plain
                    // HTTP is answered as such.
                    let plain = loop {
                        let wait = limits.wait(*crowding.borrow_and_update());
                        tokio::select! {
                            plain = plain_http::sent(&stream) => break plain,
                            _ = tokio::time::sleep_until(accepted + wait) => return handshake::failed(&failures, peer, None),
                            r = crowding.changed(), if watching => watching = r.is_ok(),
                            _ = stop.changed() => return,
                        }
                    };
                    if plain {
                        let e = std::io::Error::other("plain HTTP sent to the TLS listener; answered 400");
                        handshake::failed(&failures, peer, Some(&e));
                        return plain_http::answer(stream, stop).await;
                    }
                    let handshake = acceptor.accept(stream);
                    tokio::pin!(handshake);
                    let tls_stream = loop {
                        let wait = limits.wait(*crowding.borrow_and_update());
                        tokio::select! {
                            r = handshake.as_mut() => match r {
                                Ok(s) => break s,
                                Err(e) => return handshake::failed(&failures, peer, Some(&e)),
                            },
                            _ = tokio::time::sleep_until(accepted + wait) => return handshake::failed(&failures, peer, None),
                            r = crowding.changed(), if watching => watching = r.is_ok(),
                            _ = stop.changed() => return,
                        }
                    };
                    // TLS-ALPN-01 validation: the handshake was the answer (RFC 8737).
                    if crate::acme::is_challenge(tls_stream.get_ref().1) {
                        return;
                    }
                    let builder = current.builder_for(tls_stream.get_ref().1.alpn_protocol());
                    serve_conn(builder, tls_stream, service, stop, peer, limits, crowding).await
                }
            }
        });
    }
    drop(listener);
    drop(alive_tx);
    // The stop's grace, begun when it began (the pull lanes' acknowledgements
    // may have had part of it: `Handle::shutdown`), not a new one: a stop
    // took twice the grace, and the supervisor abandoned it (change review,
    // stop 67).
    if tokio::time::timeout_at(opts.settings.drain_until(), alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; the stop goes on without waiting for them (they end with the process)");
    }
}

/// Every connection slot was taken as a connection came (see
/// [`ConnLimit`]): warned about at most once a minute for each cap (the
/// public listeners', the admin listener's: crowding one does not hide the
/// other's).
fn crowding_began_log(limit: &ConnLimit, listener: &str) {
    match limit.crowding_noted() {
        Some(between) => tracing::warn!(
            listener = %listener, crowded_since_last_warning = between,
            wait = ?activity::CROWDED_WAIT,
            "every connection slot of the listener is taken (server.max_connections; the admin listener's: 64): until a sixteenth \
             is free, idle keep-alive connections are closed and a client gets at most `wait` for its TLS handshake, a request's \
             header or taking an answer (this warning at most once a minute)"
        ),
        None => tracing::debug!(listener = %listener, "every connection slot is taken"),
    }
}

/// The waiting limits of one connection.
#[derive(Clone, Copy)]
struct Limits {
    read_timeout: Duration,
    idle_timeout: Duration,
}

impl Limits {
    /// How long a phase that waits for the client may last: `read_timeout`,
    /// or while the listeners are `crowded` at most [`activity::CROWDED_WAIT`].
    fn wait(&self, crowded: bool) -> Duration {
        match crowded {
            true => self.read_timeout.min(activity::CROWDED_WAIT),
            false => self.read_timeout,
        }
    }
}

async fn serve_conn<I, S, F, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
    limits: Limits,
    mut crowding: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let tracker = activity.clone();
    let service = Arc::new(service);
    let crowd = crowding.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = tracker.request_started(req.version());
        let service = service.clone();
        let version = req.version();
        let crowd = crowd.clone();
        async move {
            // Built and boxed only when the stream's task first runs, so a
            // stream accepted but not yet served holds its request, not the
            // handler's whole state; the box is freed once the answer is
            // produced, while its body may wait on the client's window.
            let mut resp = Box::pin(service(req, peer)).await;
            // Crowded, the connection would be closed as soon as it is idle:
            // said in the answer, so that the client does not send its next
            // request into the close (HTTP/2 has its GOAWAY).
            if version == http::Version::HTTP_11 && *crowd.borrow() {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            // The request counts as served until its body is sent.
            Ok::<_, Infallible>(resp.map(|b| GuardedBody::new(b, guard)))
        }
    });
    let (io, returned) = linger::Lent::new(io);
    let result = {
        let conn = builder.serve_connection(TokioIo::new(Tracked::new(io, activity.clone())), svc);
        tokio::pin!(conn);
        let mut stopping = *stop.borrow_and_update();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        // Set once an idle connection was asked to close: a peer that does not
        // cooperate (h2 GOAWAY ignored, response never read) is then dropped.
        let mut closing_since: Option<tokio::time::Instant> = None;
        // Whether the crowding's sender is there to tell changes.
        let mut watching = true;
        // The loop's value, the connection's end; `conn` (and with it the I/O,
        // back through `returned`) is dropped with this block.
        loop {
            let crowded = *crowding.borrow_and_update();
            let (at, graceful) = match (
                closing_since,
                activity.next(limits.read_timeout, limits.idle_timeout, crowded),
            ) {
                // A request still served (an HTTP/2 stream that came before
                // the GOAWAY) has read_timeout, crowded or not.
                (Some(since), Next::Busy) => (Some(since + limits.read_timeout), false),
                (Some(since), _) => (Some(since + limits.wait(crowded)), false),
                (None, Next::Busy) => (None, false),
                (None, Next::Close { at, graceful }) => (Some(at), graceful),
            };
            tokio::select! {
                r = conn.as_mut() => break r,
                r = stop.changed(), if !stopping => {
                    stopping = true;
                    if r.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = activity.changed.notified() => {}
                r = crowding.changed(), if watching => watching = r.is_ok(),
                _ = tokio::time::sleep_until(at.unwrap_or_else(tokio::time::Instant::now)), if at.is_some() => {
                    if closing_since.is_none() {
                        // A request may have started as the timer fired: look again.
                        let still = activity.next(limits.read_timeout, limits.idle_timeout, *crowding.borrow());
                        if !matches!(still, Next::Close { at: a, .. } if a <= tokio::time::Instant::now()) {
                            continue;
                        }
                    }
                    if graceful {
                        tracing::debug!(peer = %peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(tokio::time::Instant::now());
                    } else {
                        tracing::debug!(peer = %peer, "connection did not finish a request in time; closed");
                        return;
                    }
                }
            }
        }
    };
    match result {
        Err(e) if flood::closed_for_flooding(&*e) => flood::log_closed(peer, &*e),
        Err(e) => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
        Ok(()) => {}
    }
    // HTTP/1: the client may still be sending a body the answer refused;
    // closing now would reset the connection before it reads the answer.
    if !activity.is_h2() {
        if let Ok(io) = returned.await {
            let discarded = linger::drain(io, stop).await;
            if discarded > 0 {
                tracing::debug!(peer = %peer, discarded, "drained what the client still sent before closing");
            }
        }
    }
}
