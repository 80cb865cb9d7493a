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
//!   during one), unless the idle close (graceful) comes first;
//! - an answer waiting for the client to take it (an HTTP/2 client that opens
//!   no flow-control window, a reader that stalls): closed at once when no
//!   answer of the connection made progress (a body chunk taken) for
//!   `read_timeout`, counted from when the first one began to wait; and
//!   already after [`CROWDED_STALL`] without progress when more than
//!   [`MAX_WAITING_ANSWERS`] wait together (each holds its request's state).
//!   A client that reads is never cut by the latter: HTTP/2 flow control
//!   (one connection window shared by all streams) keeps many answers
//!   waiting for an instant, but each piece taken is progress;
//! - while the listeners are crowded (every slot taken, a connection
//!   waiting for one): [`CROWDED_WAIT`] in place of `read_timeout`, and no
//!   idle time at all.
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

use bytes::Bytes;

use super::h2_frames::Frames;

/// Answers of one connection that may wait together for the client to take
/// them with the full `read_timeout` to make progress; past this the
/// connection is closed once none of them made progress for
/// [`CROWDED_STALL`]. A client that opens no window would otherwise have each
/// of its streams (`http2_max_streams`) hold its request's state until
/// `read_timeout`; one that reads has many answers waiting behind its shared
/// HTTP/2 connection window, but takes a piece of one of them all the time.
pub const MAX_WAITING_ANSWERS: usize = 16;

/// How long more than [`MAX_WAITING_ANSWERS`] waiting answers may go without
/// any of them making progress (at most `read_timeout`).
pub const CROWDED_STALL: Duration = Duration::from_secs(1);

/// While the listeners are crowded (a connection waited for a slot, see
/// `limits::ConnLimit`): the longest a connection may take over its TLS
/// handshake, its first request's header or the next one's, and the
/// longest its answers may wait with none taken (each at most
/// `read_timeout`); an idle keep-alive connection is closed (gracefully) at
/// once. A client that means to send a request has sent its header by then;
/// one that holds a slot without doing so gives it up to one that waits.
pub const CROWDED_WAIT: Duration = Duration::from_secs(2);

/// Largest piece of an answer's body handed to hyper at once: each piece
/// taken is the progress the send deadline looks for.
const CHUNK: usize = 16 * 1024;

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
    /// Requests in flight whose answer waits for the client to take it (a
    /// part of `in_flight`).
    waiting: usize,
    /// When an answer last made progress: a body chunk was taken, or the
    /// first of those now waiting began to wait.
    send_progress: Instant,
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
                waiting: 0,
                send_progress: now,
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
        RequestGuard {
            activity: self.clone(),
            waiting: false,
        }
    }

    /// An answer begins (or again) to wait for the client to take it.
    fn answer_waits(&self) {
        let mut s = self.state();
        s.waiting += 1;
        if s.waiting == 1 {
            s.send_progress = Instant::now();
        }
        // A deadline appears, or comes closer (too many wait): the
        // connection task looks.
        let news = s.waiting == 1 || s.waiting == MAX_WAITING_ANSWERS + 1;
        drop(s);
        if news {
            self.changed.notify_one();
        }
    }

    /// A waiting answer no longer waits for the client (its body has nothing
    /// ready yet: the server's side is slow, not the client).
    fn answer_stops_waiting(&self) {
        let mut s = self.state();
        s.waiting = s.waiting.saturating_sub(1);
    }

    /// The client took a piece of an answer: the send deadline moves on (the
    /// connection task finds it when its timer fires).
    fn answer_progressed(&self) {
        self.state().send_progress = Instant::now();
    }

    fn request_finished(&self, waiting: bool) {
        {
            let mut s = self.state();
            if waiting {
                s.waiting = s.waiting.saturating_sub(1);
            }
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

    /// Whether the connection speaks HTTP/2 (known from its first request).
    pub fn is_h2(&self) -> bool {
        self.state().h2
    }

    /// The deadline that applies now; `crowded`: while the listeners are
    /// ([`CROWDED_WAIT`]).
    pub fn next(&self, read_timeout: Duration, idle_timeout: Duration, crowded: bool) -> Next {
        let (read_timeout, idle_timeout) = if crowded {
            (read_timeout.min(CROWDED_WAIT), Duration::ZERO)
        } else {
            (read_timeout, idle_timeout)
        };
        let s = self.state();
        if s.in_flight > 0 {
            if s.waiting > 0 {
                // Answers wait for the client: no progress for read_timeout
                // (for CROWDED_STALL when too many wait) and the connection
                // is closed.
                let stall = if s.waiting > MAX_WAITING_ANSWERS {
                    CROWDED_STALL.min(read_timeout)
                } else {
                    read_timeout
                };
                return Next::Close {
                    at: s.send_progress + stall,
                    graceful: false,
                };
            }
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
pub struct RequestGuard {
    activity: Arc<Activity>,
    /// Its answer counts among those waiting for the client.
    waiting: bool,
}

impl RequestGuard {
    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.activity.answer_waits();
            } else {
                self.activity.answer_stops_waiting();
            }
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.request_finished(self.waiting);
    }
}

/// A response body that keeps its request counted as in flight until the
/// body is sent (a streamed file can take longer than `idle_timeout`), and
/// as waiting for the client while a piece of it is ready and not taken (the
/// send deadline, see [`Activity::next`]). Large data frames are handed out
/// in pieces of at most [`CHUNK`], so that a slow reader of a large answer
/// shows progress.
pub struct GuardedBody<B> {
    body: B,
    /// The rest of a data frame larger than [`CHUNK`].
    rest: Bytes,
    guard: Option<RequestGuard>,
}

impl<B> GuardedBody<B> {
    /// The service produced its answer: from now on it waits for the client.
    pub fn new(body: B, mut guard: RequestGuard) -> Self {
        guard.set_waiting(true);
        GuardedBody {
            body,
            rest: Bytes::new(),
            guard: Some(guard),
        }
    }

    /// A piece was taken; `more`: another one may be ready at once.
    fn took(&mut self, more: bool) {
        if let Some(g) = self.guard.as_mut() {
            if g.waiting {
                // The last piece: hyper ends the request at once.
                if more {
                    g.activity.answer_progressed();
                }
            } else {
                g.set_waiting(true);
            }
        }
    }
}

impl<B: hyper::body::Body<Data = Bytes> + Unpin> hyper::body::Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let me = &mut *self;
        if !me.rest.is_empty() {
            let piece = me.rest.split_to(me.rest.len().min(CHUNK));
            me.took(true);
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))));
        }
        let r = Pin::new(&mut me.body).poll_frame(cx);
        match r {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(mut data) if data.len() > CHUNK => {
                        me.rest = data.split_off(CHUNK);
                        hyper::body::Frame::data(data)
                    }
                    Ok(data) => hyper::body::Frame::data(data),
                    Err(frame) => frame,
                };
                let more = !me.rest.is_empty() || !me.body.is_end_stream();
                me.took(more);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                me.guard = None;
                r
            }
            Poll::Pending => {
                // The body has nothing yet: the server's side, not the client.
                if let Some(g) = me.guard.as_mut() {
                    g.set_waiting(false);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = self.body.size_hint();
        let rest = self.rest.len() as u64;
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(hint.lower() + rest);
        hint
    }
}

/// A connection's I/O, passed through unchanged; notes bytes that arrive while
/// no request is being served, and on HTTP/2 when a frame or header block
/// begins and ends arriving; its reads yield after each burst
/// ([`super::fair_read`]).
pub struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
    frames: Frames,
    mid: bool,
    /// Its reads yield after each burst ([`super::fair_read`]).
    burst: super::fair_read::Burst,
}

impl<I> Tracked<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Tracked {
            io,
            activity,
            frames: Frames::default(),
            mid: false,
            burst: super::fair_read::Burst::default(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.burst.yields(cx) {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.burst.after((!r.is_pending()).then_some(read));
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
