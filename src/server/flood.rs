//! HTTP/2 connections closed for flooding: hyper's HTTP/2 layer ends a
//! connection with `GOAWAY ENHANCE_YOUR_CALM` when a client opens and resets
//! streams faster than it serves them (rapid reset, CVE-2023-44487), sends a
//! header block in endless CONTINUATION frames, or floods it with control
//! frames. An operator should see that it happens (an attack, or a client
//! gone wrong), but a stranger must not control the log's volume: the first
//! one is a warning, the next ones for a minute at debug, summed up in the
//! next warning.

use std::error::Error;
use std::sync::Mutex;
use std::time::Instant;

use super::once_a_minute::OnceAMinute;

/// Whether `e` (a connection's error, or one of its causes) is HTTP/2's
/// `ENHANCE_YOUR_CALM` sent by this side: the connection was closed for
/// flooding it. One the client sent (it says the relay flooded it) is not.
pub fn closed_for_flooding(e: &(dyn Error + 'static)) -> bool {
    std::iter::successors(Some(e), |&e| e.source())
        .filter_map(|e| e.downcast_ref::<h2::Error>())
        .any(|h2| h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) && !h2.is_remote())
}

static LOG: Mutex<OnceAMinute> = Mutex::new(OnceAMinute::new());

/// Log a connection from `peer` closed for flooding.
pub fn log_closed(peer: std::net::SocketAddr, e: &(dyn Error + 'static)) {
    let warn = LOG.lock().unwrap_or_else(|p| p.into_inner()).note(Instant::now());
    match warn {
        Some(earlier) => tracing::warn!(
            peer = %peer.ip(), error = %e, earlier_in_the_last_minute = earlier,
            "an HTTP/2 client flooded its connection (streams opened and reset, endless CONTINUATION frames \
             or the like) and was closed with ENHANCE_YOUR_CALM (this warning at most once a minute, each one at debug)"
        ),
        None => tracing::debug!(peer = %peer, error = %e, "HTTP/2 connection closed for flooding"),
    }
}
