//! The connection-level limits a reload can change while listeners run: the
//! open-connection cap ([`ConnLimit`]) and the per-connection settings
//! ([`Settings`]: timeouts, HTTP/2 streams, shutdown grace). New connections
//! take the current values; open ones keep those they started with (the
//! shutdown grace is read when the shutdown starts).
//!
//! This module does not accept connections nor know what they carry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::Notify;

/// Per-connection settings of the listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSettings {
    /// Bounds each phase that waits for the client: handshake, protocol
    /// detection, a request's header.
    pub read_timeout: Duration,
    /// How long a keep-alive connection may sit with no request in flight.
    pub idle_timeout: Duration,
    /// Concurrent streams announced to each new HTTP/2 connection.
    pub http2_max_streams: u32,
    /// How long a shutdown waits for requests in flight.
    pub grace: Duration,
}

/// The current settings with the hyper builder made from them; shared by the
/// listeners and replaced as a whole on reload.
#[derive(Clone)]
pub struct Settings {
    current: Arc<RwLock<Arc<Current>>>,
}

pub struct Current {
    pub values: ConnSettings,
    pub builder: auto::Builder<TokioExecutor>,
}

fn builder(s: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // Header deadlines are the server's (see `activity`): hyper's would also
    // run between requests and cut keep-alive at read_timeout.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.http2_max_streams)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

impl Settings {
    pub fn new(values: ConnSettings) -> Settings {
        Settings {
            current: Arc::new(RwLock::new(Arc::new(Current {
                builder: builder(&values),
                values,
            }))),
        }
    }

    /// For connections accepted from now on.
    pub fn set(&self, values: ConnSettings) {
        let next = Arc::new(Current {
            builder: builder(&values),
            values,
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub fn current(&self) -> Arc<Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A cap on open connections that can be raised or lowered while they are
/// open: lowering it lets the surplus finish and holds new ones back.
pub struct ConnLimit {
    limit: AtomicUsize,
    open: AtomicUsize,
    /// Wakes acceptors waiting for a slot (a connection closed, the cap rose).
    freed: Notify,
}

/// A slot of [`ConnLimit`], given back when dropped.
pub struct ConnPermit(Arc<ConnLimit>);

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

impl ConnLimit {
    pub fn new(limit: usize) -> Arc<ConnLimit> {
        Arc::new(ConnLimit {
            limit: AtomicUsize::new(limit),
            open: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
        self.freed.notify_waiters();
    }

    /// Wait for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> ConnPermit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between is not missed.
            freed.as_mut().enable();
            let open = self.open.load(Ordering::Acquire);
            if open < self.limit.load(Ordering::Acquire) {
                if self
                    .open
                    .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return ConnPermit(self.clone());
                }
                continue;
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cap_follows_its_limit() {
        let limit = ConnLimit::new(1);
        let first = limit.acquire().await;
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        limit.set_limit(2);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        // Lowered below what is open: nothing new until enough have closed.
        limit.set_limit(1);
        let third = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "two were open, the cap is one");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .unwrap()
            .unwrap();
    }
}
