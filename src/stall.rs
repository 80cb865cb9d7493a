//! An outgoing connection whose peer takes nothing we write for the
//! request's timeout is closed (subscribers' lanes, `hookrelay forward`'s
//! local service and relay, S3; the provider's requests are bodies of 1 MiB
//! at most, which the kernel's socket buffers take whole). A request that times out
//! gives up, but hyper's connection task stays blocked on writing what is
//! left of the body to a peer that never reads (its window shut), and so
//! does one whose peer answered early without reading the body: without this
//! each such request kept a socket and its buffers for as long as the peer
//! held the connection, and every retry added one. The guard sits under TLS,
//! on the TCP stream, so it sees the peer's window whatever the scheme.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::time::Sleep;

/// Wraps a connector: its connections fail a write that makes no progress for `limit`.
#[derive(Clone)]
pub(crate) struct StallGuard<C> {
    inner: C,
    limit: Duration,
}

impl<C> StallGuard<C> {
    pub(crate) fn new(inner: C, limit: Duration) -> StallGuard<C> {
        StallGuard { inner, limit }
    }
}

type Connecting<T, E> = Pin<Box<dyn Future<Output = Result<Guarded<T>, E>> + Send>>;

impl<C> tower_service::Service<Uri> for StallGuard<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
{
    type Response = Guarded<C::Response>;
    type Error = C::Error;
    type Future = Connecting<C::Response, C::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            Ok(Guarded {
                io: connecting.await?,
                limit,
                stalled: None,
            })
        })
    }
}

/// A connection whose writes (and flushes, and the shutdown) fail once
/// they have waited `limit` without progress.
pub(crate) struct Guarded<T> {
    io: T,
    limit: Duration,
    /// Set while a write waits: when it gives up.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> Guarded<T> {
    fn guard<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took nothing sent for {}", humantime::format_duration(limit)),
            )));
        }
        Poll::Pending
    }
}

impl<T: Read + Unpin> Read for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, polled)
    }
}

impl<T: Connection> Connection for Guarded<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
