//! A connection's reads yield to the other tasks after each [`BURST`] bytes
//! read without a wait (counted by [`Burst`], in the connection's I/O,
//! `activity::Tracked`).
//!
//! hyper decodes what a read brings before it asks again, and a socket that
//! always has bytes never makes its task wait: a chunked body of a megabyte
//! of `0`s (a chunk size that never ends, read a byte at a time; hyper
//! drains it even after a `401`) held a worker thread for milliseconds per
//! connection, and 1,024 such connections stalled every listener, the admin
//! one too, for seconds (edge review, stop 72). Each connection now gives
//! its thread up after each burst, and hyper's drain of a refused body ends
//! at the first wait.

use std::task::Context;

/// Bytes read in one go before the task yields: a callback's request
/// rarely reaches it, a 1 MiB body yields 64 times (a microsecond each),
/// and a connection streaming a chunk size of `0`s costs 2 ms of CPU where
/// it cost 32 (measured on a debug build: 20 connections of 1 MB each;
/// with 128 such connections reconnecting, a callback's answer took 240 ms
/// at the median instead of 913).
pub const BURST: usize = 16 << 10;

/// Bytes a connection read since its last wait.
#[derive(Debug, Default)]
pub struct Burst {
    run: usize,
}

impl Burst {
    /// Before a read: after a whole burst the task is woken and gives its
    /// thread up (true: answer `Pending` without reading).
    pub fn yields(&mut self, cx: &mut Context<'_>) -> bool {
        if self.run < BURST {
            return false;
        }
        self.run = 0;
        cx.waker().wake_by_ref();
        true
    }

    /// After a read: the bytes it brought, or None when it waited.
    pub fn after(&mut self, read: Option<usize>) {
        self.run = read.map_or(0, |n| self.run + n);
    }
}

#[cfg(test)]
mod tests {
    use super::{Burst, BURST};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

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
    /// on; a wait starts the count again.
    #[test]
    fn a_source_that_never_waits_yields_after_each_burst() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut burst = Burst::default();
        let (mut read, mut yielded) = (0, 0);
        for _ in 0..100 {
            if burst.yields(&mut cx) {
                assert_eq!(read % BURST, 0, "a yield only after a whole burst");
                yielded += 1;
            } else {
                burst.after(Some(4096));
                read += 4096;
            }
        }
        // 100 polls: 4 reads of 4 KiB per burst, then one yield.
        assert_eq!((yielded, woken.0.load(Ordering::SeqCst)), (20, 20));
        assert_eq!(read, 80 * 4096);
        // A read that waited: the next burst starts from nothing.
        burst.after(Some(BURST - 1));
        burst.after(None);
        burst.after(Some(BURST - 1));
        assert!(!burst.yields(&mut cx));
    }
}
