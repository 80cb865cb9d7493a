//! Lingering close of HTTP/1.1 connections. When the relay ends a connection
//! while the client may still be sending (an early `413`, `415` or `503`
//! answered before the body was read, and the connection closed), closing
//! the socket at once with unread bytes in it (or with more arriving) makes
//! the kernel send a reset, and a client still writing its body then gets
//! "connection reset" instead of the answer already sent. So once hyper is
//! done with the connection, its write side is shut down (the client reads
//! the answer and the end of it) and whatever the client still sends is read
//! and discarded, for at most [`LINGER_TIME`] and [`LINGER_BYTES`], before
//! the socket is closed. A client that closed first ends it at once, and so
//! does a shutdown of the relay.
//!
//! [`Lent`] hands the I/O back when hyper drops it (hyper's auto connection
//! gives no `into_parts`). Not here: when to linger (the server: HTTP/1 only).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{oneshot, watch};

/// Longest a closing connection is drained.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// Most bytes read (and discarded) from a closing connection.
pub const LINGER_BYTES: usize = 8 << 20;

/// A connection's I/O, passed through unchanged; handed back through the
/// receiver [`Lent::new`] returns when it is dropped.
pub struct Lent<I> {
    /// `None` only once dropped.
    io: Option<I>,
    back: Option<oneshot::Sender<I>>,
}

impl<I> Lent<I> {
    pub fn new(io: I) -> (Self, oneshot::Receiver<I>) {
        let (tx, rx) = oneshot::channel();
        (
            Lent {
                io: Some(io),
                back: Some(tx),
            },
            rx,
        )
    }

    fn io(&mut self) -> &mut I {
        self.io.as_mut().expect("the I/O is there until dropped")
    }
}

impl<I> Drop for Lent<I> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let _ = back.send(io);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Lent<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.io()).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Lent<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(self.io()).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.io()).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.io()).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.io()).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }
}

/// Shut down the write side of `io`, then read and discard what the client
/// still sends until it closes, [`LINGER_BYTES`] were read, [`LINGER_TIME`]
/// passed or `stop` turned true (a shutdown does not wait for a lingering
/// client); `io` is closed when this returns. How many bytes were discarded.
pub async fn drain<I: AsyncRead + AsyncWrite + Unpin>(mut io: I, mut stop: watch::Receiver<bool>) -> usize {
    let mut total = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let _ = io.shutdown().await;
        // Watched until its sender is gone (then never true).
        let mut watching = !*stop.borrow_and_update();
        if !watching {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        while total < LINGER_BYTES {
            tokio::select! {
                r = io.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                },
                r = stop.changed(), if watching => match r {
                    Ok(()) if *stop.borrow_and_update() => break,
                    Ok(()) => {}
                    Err(_) => watching = false,
                },
            }
        }
    })
    .await;
    total
}
