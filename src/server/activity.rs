//! Phase deadlines of one connection: when a connection that is not serving a
//! request has waited long enough and must be closed.
//!
//! A connection is tracked through its requests (started/finished by the
//! service wrapper) and through the bytes it sends while no request is being
//! served (seen by [`Tracked`], a transparent wrapper of its I/O). From that:
//! - before its first request: closed `read_timeout` after it was accepted (or
//!   after the TLS handshake), whatever it sent (protocol detection, headers);
//! - HTTP/1 between requests: closed `read_timeout` after the first byte of the
//!   next request if its header is not complete by then, else after
//!   `idle_timeout` of silence;
//! - HTTP/2 with no stream being served: closed (GOAWAY first) after
//!   `idle_timeout`, whatever whole frames it sends meanwhile (pings); a
//!   frame or a header block still arriving ([`super::h2_frames`]) is closed
//!   at once `read_timeout` after it began (a new frame after a whole one
//!   begins again; counted from the end of the last request if it began
//!   during one), unless the idle close (graceful) comes first.
//!
//! This module does not know the limits' values (the caller passes them), nor
//! what a request means, nor how the connection is closed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::h2_frames::Frames;

/// Shared between a connection's task, its I/O wrapper and its service.
pub struct Activity {
    state: Mutex<State>,
    /// Wakes the connection task to recompute its deadline.
    pub changed: Notify,
}

struct State {
    /// When the connection became usable (after any TLS handshake).
    opened: Instant,
    /// Requests being served (several on HTTP/2).
    in_flight: usize,
    /// Requests started so far; 0 means the first request is still awaited.
    started: u64,
    /// When the last request finished (idle time counts from here).
    idle_since: Instant,
    /// First byte read while no request was being served: a new request's
    /// header is arriving (on HTTP/1; on HTTP/2 these are control frames).
    bytes_while_idle: Option<Instant>,
    /// The connection speaks HTTP/2 (known from its first request).
    h2: bool,
    /// Since when an HTTP/2 frame or header block has been arriving.
    h2_mid_since: Option<Instant>,
}

/// What the connection task should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A request is being served: its own limits apply.
    Busy,
    /// Close at `at`: gracefully (idle between requests) or at once (a phase
    /// that did not finish within `read_timeout`).
    Close { at: Instant, graceful: bool },
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        let now = Instant::now();
        Arc::new(Activity {
            state: Mutex::new(State {
                opened: now,
                in_flight: 0,
                started: 0,
                idle_since: now,
                bytes_while_idle: None,
                h2: false,
                h2_mid_since: None,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's header is complete; the guard marks its end when dropped
    /// (also when the request's future is cancelled).
    pub fn request_started(self: &Arc<Self>, version: http::Version) -> RequestGuard {
        {
            let mut s = self.state();
            s.in_flight += 1;
            s.started += 1;
            s.h2 = version == http::Version::HTTP_2;
            s.bytes_while_idle = None;
        }
        self.changed.notify_one();
        RequestGuard(self.clone())
    }

    fn request_finished(&self) {
        {
            let mut s = self.state();
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
                s.bytes_while_idle = None;
            }
        }
        self.changed.notify_one();
    }

    /// Bytes arrived; on HTTP/2, `h2` says whether a frame or header block
    /// (still) arrives (`Some(true)`: one began) or none does (`Some(false)`).
    fn bytes_read(&self, h2: Option<bool>) {
        let mut s = self.state();
        let mut changed = false;
        if s.in_flight == 0 && s.bytes_while_idle.is_none() {
            s.bytes_while_idle = Some(Instant::now());
            changed = true;
        }
        if let Some(mid) = h2 {
            s.h2_mid_since = mid.then(Instant::now);
            // While a request is served its end recomputes the deadline.
            changed |= s.in_flight == 0;
        }
        drop(s);
        if changed {
            self.changed.notify_one();
        }
    }

    /// The deadline that applies now.
    pub fn next(&self, read_timeout: Duration, idle_timeout: Duration) -> Next {
        let s = self.state();
        if s.in_flight > 0 {
            return Next::Busy;
        }
        if s.started == 0 {
            return Next::Close {
                at: s.opened + read_timeout,
                graceful: false,
            };
        }
        let idle = s.idle_since + idle_timeout;
        // An HTTP/2 frame or header block still arriving: read_timeout from
        // when it began (not before the connection went idle), unless the
        // idle close comes first.
        let h2_cut = s
            .h2_mid_since
            .map(|t| t.max(s.idle_since) + read_timeout)
            .filter(|at| *at < idle);
        match (s.bytes_while_idle, h2_cut) {
            (Some(t), _) if !s.h2 => Next::Close {
                at: t + read_timeout,
                graceful: false,
            },
            (_, Some(at)) => Next::Close { at, graceful: false },
            _ => Next::Close {
                at: idle,
                graceful: true,
            },
        }
    }
}

/// Marks the end of a request when dropped.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request counted as in flight until the
/// body is sent (a streamed file can take longer than `idle_timeout`).
pub struct GuardedBody<B> {
    body: B,
    guard: Option<RequestGuard>,
}

impl<B> GuardedBody<B> {
    pub fn new(body: B, guard: RequestGuard) -> Self {
        GuardedBody {
            body,
            guard: Some(guard),
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's I/O, passed through unchanged; notes bytes that arrive while
/// no request is being served, and on HTTP/2 when a frame or header block
/// begins and ends arriving.
pub struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
    frames: Frames,
    mid: bool,
}

impl<I> Tracked<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Tracked {
            io,
            activity,
            frames: Frames::default(),
            mid: false,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let me = &mut *self;
            me.frames.feed(&buf.filled()[before..]);
            let (mid, fresh) = (me.frames.mid_message(), me.frames.take_fresh());
            // Only news: what arrives changed, or a new frame began.
            let h2 = (mid != me.mid || mid && fresh).then_some(mid);
            me.mid = mid;
            me.activity.bytes_read(h2);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "activity_tests.rs"]
mod tests;
