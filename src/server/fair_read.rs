//! A connection's reads yield to the other tasks after each [`BURST`] bytes.
//!
//! hyper decodes what a read brings before it asks again, and a socket that
//! always has bytes never makes its task wait: a chunked body of a megabyte
//! of `0`s (a chunk size that never ends, read a byte at a time; hyper
//! drains it even after a `401`) held a worker thread for milliseconds per
//! connection, and 1,024 such connections stalled every listener, the admin
//! one too, for seconds (edge review, stop 72). Each connection now gives
//! its thread up after each burst: the CPU it costs is the same, the others
//! are served between its bursts.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read in one go before the task yields: a callback's request
/// rarely reaches it, a 1 MiB body yields 64 times (a microsecond each),
/// and a connection streaming a chunk size of `0`s costs 2 ms of CPU where
/// it cost 32 (measured on a debug build: 20 connections of 1 MB each;
/// with 128 such connections reconnecting, a callback's answer took 240 ms
/// at the median instead of 913).
pub const BURST: usize = 16 << 10;

/// `I` whose reads return `Pending` (the task woken at once) after each
/// [`BURST`] bytes read without a wait.
pub struct FairRead<I> {
    io: I,
    /// Bytes read since the last `Pending`.
    run: usize,
}

impl<I> FairRead<I> {
    pub fn new(io: I) -> FairRead<I> {
        FairRead { io, run: 0 }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FairRead<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.run >= BURST {
            self.run = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        match r {
            Poll::Pending => self.run = 0,
            Poll::Ready(Ok(())) => self.run += buf.filled().len() - before,
            Poll::Ready(Err(_)) => {}
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FairRead<I> {
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
    use super::{FairRead, BURST};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use tokio::io::{AsyncRead, ReadBuf};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A source that always has bytes (a client streaming `0`s faster than
    /// they are decoded) gives the thread up after each burst, woken to go
    /// on; nothing is lost in between.
    #[test]
    fn a_source_that_never_waits_yields_after_each_burst() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = FairRead::new(tokio::io::repeat(b'0'));
        let mut chunk = [0u8; 4096];
        let (mut read, mut pending) = (0, 0);
        for _ in 0..100 {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut io).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) => read += buf.filled().len(),
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => {
                    assert_eq!(read % BURST, 0, "a yield only after a whole burst");
                    pending += 1;
                }
            }
        }
        // 100 polls: 4 reads of 4 KiB per burst, then one yield.
        assert_eq!((pending, woken.0.load(Ordering::SeqCst)), (20, 20));
        assert_eq!(read, 80 * 4096);
    }
}
