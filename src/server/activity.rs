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
        let now = Instant::now();
        let mut s = self.state();
        let mut changed = false;
        if s.in_flight == 0 && s.bytes_while_idle.is_none() {
            s.bytes_while_idle = Some(now);
            changed = true;
        }
        if let Some(mid) = h2 {
            s.h2_mid_since = mid.then_some(now);
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
        match (s.bytes_while_idle, s.h2_mid_since) {
            (Some(t), _) if !s.h2 => Next::Close {
                at: t + read_timeout,
                graceful: false,
            },
            (_, Some(t)) if t.max(s.idle_since) + read_timeout < idle => Next::Close {
                at: t.max(s.idle_since) + read_timeout,
                graceful: false,
            },
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
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What `Tracked` reports as a client's bytes come in: a header block
    /// held open is held to `read_timeout` from its first byte, a new frame
    /// after a whole one starts that again, and whole frames end it.
    #[tokio::test(start_paused = true)]
    async fn tracked_reports_what_arrives_on_http2() {
        let frame = |kind: u8, flags: u8, payload: &[u8]| {
            let mut f = vec![0, 0, payload.len() as u8, kind, flags, 0, 0, 0, 1];
            f.extend_from_slice(payload);
            f
        };
        let a = Activity::new();
        let (mut client, server) = tokio::io::duplex(1024);
        let mut tracked = Tracked::new(server, a.clone());
        let mut buf = [0u8; 1024];
        // The preface and a first request (its header block whole).
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        client.write_all(&frame(0x1, 0x5, &[0x83])).await.unwrap();
        let _ = tracked.read(&mut buf).await.unwrap();
        drop(a.request_started(http::Version::HTTP_2));
        let idle = Instant::now();
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: idle + IDLE,
                graceful: true
            }
        );
        // Half a DATA frame: read_timeout from now.
        tokio::time::advance(Duration::from_secs(3)).await;
        let data = frame(0x0, 0, &[7; 20]);
        client.write_all(&data[..15]).await.unwrap();
        let _ = tracked.read(&mut buf).await.unwrap();
        let first = Instant::now();
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: first + READ,
                graceful: false
            }
        );
        // Its end and half of the next frame: the deadline starts again.
        tokio::time::advance(Duration::from_millis(500)).await;
        client.write_all(&[&data[15..], &data[..12]].concat()).await.unwrap();
        let _ = tracked.read(&mut buf).await.unwrap();
        let second = Instant::now();
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: second + READ,
                graceful: false
            }
        );
        // A header block opened and not closed by the next whole frames of it.
        client
            .write_all(&[&data[12..], &frame(0x1, 0x1, &[0x83])[..]].concat())
            .await
            .unwrap();
        let _ = tracked.read(&mut buf).await.unwrap();
        let block = Instant::now();
        tokio::time::advance(Duration::from_millis(500)).await;
        client.write_all(&frame(0x9, 0, &[0x84])).await.unwrap();
        let _ = tracked.read(&mut buf).await.unwrap();
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: block + READ,
                graceful: false
            }
        );
        // Its END_HEADERS: back to the idle time.
        client.write_all(&frame(0x9, 0x4, &[0x86])).await.unwrap();
        let _ = tracked.read(&mut buf).await.unwrap();
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: idle + IDLE,
                graceful: true
            }
        );
    }

    const READ: Duration = Duration::from_secs(1);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn phases_get_their_deadlines() {
        let a = Activity::new();
        let opened = Instant::now();
        // Nothing served yet: read_timeout from the start, bytes or not.
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: opened + READ,
                graceful: false
            }
        );
        a.bytes_read(None);
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: opened + READ,
                graceful: false
            }
        );
        let guard = a.request_started(http::Version::HTTP_11);
        assert_eq!(a.next(READ, IDLE), Next::Busy);
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(guard);
        let idle = Instant::now();
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: idle + IDLE,
                graceful: true
            }
        );
        // HTTP/1: the next request's first byte starts its header deadline.
        tokio::time::advance(Duration::from_secs(7)).await;
        a.bytes_read(None);
        assert_eq!(
            a.next(READ, IDLE),
            Next::Close {
                at: Instant::now() + READ,
                graceful: false
            }
        );
        // HTTP/2: control frames while idle do not shorten or extend the idle time.
        let b = Activity::new();
        drop(b.request_started(http::Version::HTTP_2));
        let idle = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        b.bytes_read(None);
        assert_eq!(
            b.next(READ, IDLE),
            Next::Close {
                at: idle + IDLE,
                graceful: true
            }
        );
        // …but a frame or header block still arriving has read_timeout from
        // when it began, and its end gives the idle time back.
        b.bytes_read(Some(true));
        let began = Instant::now();
        assert_eq!(
            b.next(READ, IDLE),
            Next::Close {
                at: began + READ,
                graceful: false
            }
        );
        b.bytes_read(Some(false));
        assert_eq!(
            b.next(READ, IDLE),
            Next::Close {
                at: idle + IDLE,
                graceful: true
            }
        );
        // One that began during a request counts from that request's end.
        let guard = b.request_started(http::Version::HTTP_2);
        b.bytes_read(Some(true));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.next(READ, IDLE), Next::Busy);
        drop(guard);
        let idle = Instant::now();
        assert_eq!(
            b.next(READ, IDLE),
            Next::Close {
                at: idle + READ,
                graceful: false
            }
        );
        // One that begins just before the idle time is up: the idle close
        // (graceful) comes first.
        b.bytes_read(Some(false));
        tokio::time::advance(IDLE - Duration::from_millis(500)).await;
        b.bytes_read(Some(true));
        assert_eq!(
            b.next(READ, IDLE),
            Next::Close {
                at: idle + IDLE,
                graceful: true
            }
        );
    }
}
