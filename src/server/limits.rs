//! The connection-level limits a reload can change while listeners run: the
//! open-connection cap ([`ConnLimit`]) with each client's share of it, and
//! the per-connection settings
//! ([`Settings`]: timeouts, HTTP/2 streams, shutdown grace). New connections
//! take the current values; open ones keep those they started with (the
//! shutdown grace is read when the shutdown starts).
//!
//! This module does not accept connections nor know what they carry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{watch, Notify};

use crate::ingest::Client;

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
    /// When a stop's grace ends (set as the stop begins): the listeners'
    /// drain ends then, however late they were told to stop.
    stop_by: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

pub struct Current {
    pub values: ConnSettings,
    /// Either protocol, told apart by the HTTP/2 preface: cleartext, or
    /// TLS with no protocol agreed by ALPN.
    pub builder: auto::Builder<TokioExecutor>,
    /// HTTP/2 only: TLS connections that agreed on `h2` by ALPN.
    pub h2_only: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 only: TLS connections that agreed on `http/1.1`.
    pub h1_only: auto::Builder<TokioExecutor>,
}

impl Current {
    fn new(values: ConnSettings) -> Current {
        let b = builder(&values);
        Current {
            h2_only: b.clone().http2_only(),
            h1_only: b.clone().http1_only(),
            builder: b,
            values,
        }
    }

    /// The builder for a connection whose TLS handshake agreed on `alpn`
    /// (None: cleartext, or no protocol agreed): a client must speak the
    /// protocol it negotiated (RFC 7301, RFC 9113 §3.3), not the other one.
    pub fn builder_for(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.h2_only,
            Some(b"http/1.1") => &self.h1_only,
            _ => &self.builder,
        }
    }
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
            current: Arc::new(RwLock::new(Arc::new(Current::new(values)))),
            stop_by: Arc::default(),
        }
    }

    /// A stop began: its grace ends at `at` for every listener's drain.
    pub fn stop_by(&self, at: tokio::time::Instant) {
        *self.stop_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// When the listeners' drain must end: the stop's grace, or (no stop
    /// begun through [`Self::stop_by`]) the grace from now.
    pub fn drain_until(&self) -> tokio::time::Instant {
        let set = *self.stop_by.lock().unwrap_or_else(|e| e.into_inner());
        set.unwrap_or_else(|| tokio::time::Instant::now() + self.current().values.grace)
    }

    /// For connections accepted from now on.
    pub fn set(&self, values: ConnSettings) {
        let next = Arc::new(Current::new(values));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub fn current(&self) -> Arc<Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A cap on open connections that can be raised or lowered while they are
/// open: lowering it lets the surplus finish and holds new ones back.
///
/// Each client (an IPv4 address, an IPv6 /64, IPv4-mapped addresses as
/// IPv4: [`Client`]) may hold a quarter of the cap, rounded up: without that
/// share one stranger keeping idle connections open (each cut at
/// `read_timeout` and simply opened again) held every slot, and a provider's
/// callbacks waited behind it in the kernel's accept queue until they timed
/// out. The share is checked once the connection is accepted, so a
/// connection past it is closed at once rather than left in that queue.
/// The client is the TCP peer: behind a proxy, the proxy.
///
/// A connection accepted while every slot is taken makes the listeners
/// *crowded* ([`Self::crowding`]) until a sixteenth of the slots is free
/// again: meanwhile connections give their slots up sooner (see
/// `activity::CROWDED_WAIT`), so idle keep-alive connections and slow
/// clients from many addresses do not keep a provider waiting for
/// `read_timeout` or `idle_timeout`.
pub struct ConnLimit {
    limit: AtomicUsize,
    open: AtomicUsize,
    /// Wakes acceptors waiting for a slot (a connection closed, the cap rose).
    freed: Notify,
    shares: Mutex<Shares>,
    /// Whether a connection waited for a slot and not enough have been
    /// freed since; told to every open connection as it changes.
    crowded: watch::Sender<bool>,
    /// The crowdings' warning, at most once a minute for this cap.
    crowding_warned: Mutex<super::once_a_minute::OnceAMinute>,
}

/// Connections held by each client that holds any.
struct Shares {
    held: HashMap<Client, usize>,
    /// When a refusal was last logged at `warn` (at most once a minute).
    warned: Option<Instant>,
}

/// A slot of [`ConnLimit`], given back when dropped.
pub struct ConnPermit {
    limit: Arc<ConnLimit>,
    /// Set once the slot counts against its client's share.
    client: Option<Client>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            let mut s = self.limit.shares();
            if let Some(n) = s.held.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    s.held.remove(&client);
                }
            }
        }
        let open = self.limit.open.fetch_sub(1, Ordering::AcqRel) - 1;
        self.limit.uncrowd_if_room(open);
        self.limit.freed.notify_waiters();
    }
}

/// Free slots that end a crowding: a sixteenth of the cap, at least one
/// (a gap, so that a listener at its cap is not told crowded and back with
/// every connection it accepts: each change wakes every open connection).
fn room(limit: usize) -> usize {
    (limit / 16).max(1)
}

/// One client's share of a cap of `limit` connections: a quarter, rounded
/// up, so at least one.
pub fn share_of(limit: usize) -> usize {
    limit.div_ceil(4).max(1)
}

/// A connection refused because its client already holds its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverShare {
    /// The client's share (it holds that many).
    pub share: usize,
    /// Whether to log this refusal at `warn` (the first in a minute).
    pub warn: bool,
}

impl ConnLimit {
    pub fn new(limit: usize) -> Arc<ConnLimit> {
        Arc::new(ConnLimit {
            limit: AtomicUsize::new(limit),
            open: AtomicUsize::new(0),
            freed: Notify::new(),
            shares: Mutex::new(Shares {
                held: HashMap::new(),
                warned: None,
            }),
            crowded: watch::Sender::new(false),
            crowding_warned: Mutex::new(super::once_a_minute::OnceAMinute::new()),
        })
    }

    /// A crowding began: `Some(n)` to warn (`n` begun since the last
    /// warning), `None` to log it at debug.
    pub fn crowding_noted(&self) -> Option<u64> {
        self.crowding_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(Instant::now())
    }

    /// Whether the listeners are crowded now, and its changes.
    pub fn crowding(&self) -> watch::Receiver<bool> {
        self.crowded.subscribe()
    }

    /// Crowded no more once `open` leaves enough slots free.
    fn uncrowd_if_room(&self, open: usize) {
        let limit = self.limit.load(Ordering::Acquire);
        if open + room(limit) <= limit {
            self.crowded.send_if_modified(|c| std::mem::replace(c, false));
        }
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, Shares> {
        // Nothing panics while holding it; a poisoned count is still right.
        self.shares.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lowered below what a client holds, it keeps those and gets no more
    /// until enough have closed.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
        self.uncrowd_if_room(self.open.load(Ordering::Acquire));
        self.freed.notify_waiters();
    }

    /// Wait for a free slot for a connection just accepted (the listener
    /// accepts no other meanwhile, so the cap holds the next ones back in
    /// the kernel's queue); [`ConnPermit::claim`] it for the connection's
    /// client. A wait makes the listeners crowded: the `bool` says whether
    /// this call began the crowding.
    pub async fn acquire(self: &Arc<Self>) -> (ConnPermit, bool) {
        let mut began = false;
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
                    let permit = ConnPermit {
                        limit: self.clone(),
                        client: None,
                    };
                    return (permit, began);
                }
                continue;
            }
            began |= self.crowded.send_if_modified(|c| !std::mem::replace(c, true));
            // Slots freed between the look and the flag found it down.
            self.uncrowd_if_room(self.open.load(Ordering::Acquire));
            freed.await;
        }
    }

    /// Connections `client` holds now.
    #[cfg(test)]
    fn held_by(&self, client: Client) -> usize {
        self.shares().held.get(&client).copied().unwrap_or(0)
    }
}

impl ConnPermit {
    /// Count this slot against the share of the client at `peer`; refused,
    /// and the slot given back, if that client already holds its share.
    pub fn claim(mut self, peer: IpAddr) -> Result<ConnPermit, OverShare> {
        debug_assert!(self.client.is_none(), "claimed twice");
        let client = Client::of(Some(peer));
        let share = share_of(self.limit.limit.load(Ordering::Acquire));
        let mut s = self.limit.shares();
        let mine = s.held.entry(client).or_insert(0);
        if *mine >= share {
            let now = Instant::now();
            let warn = s
                .warned
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
            if warn {
                s.warned = Some(now);
            }
            return Err(OverShare { share, warn });
        }
        *mine += 1;
        drop(s);
        self.client = Some(client);
        Ok(self)
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
