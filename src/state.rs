//! The daemon's shared state: what request handlers (ingest, admin) read and
//! what the wiring ([`crate::app`]) builds and reloads. Handlers import this,
//! never the wiring.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::acme::Acme;
use crate::config::{Config, Route};
use crate::delivery::Delivery;
use crate::ingest::refused::{RefusedBy, RefusedLog, RefusedRequests};
use crate::media::Archiver;
use crate::metrics::Metrics;
use crate::server::{ConnLimit, ConnSettings, Settings};
use crate::store::Store;
use crate::tls;

/// A route with its per-route runtime state.
pub struct RouteState {
    pub route: Route,
    /// The dedupe fallback is logged once per route (and counted every time).
    pub fallback_logged: AtomicBool,
}

/// The part of the state that a reload replaces as a whole.
pub struct Live {
    pub config: Config,
    /// By exact path.
    pub routes: HashMap<String, Arc<RouteState>>,
}

impl Live {
    pub fn new(config: Config) -> Self {
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let state = RouteState {
                    route: r.clone(),
                    fallback_logged: AtomicBool::new(false),
                };
                (r.path.clone(), Arc::new(state))
            })
            .collect();
        Live { config, routes }
    }
}

/// The listener settings a config asks for.
pub fn conn_settings(config: &Config) -> ConnSettings {
    ConnSettings {
        read_timeout: config.server.read_timeout,
        idle_timeout: config.server.idle_timeout,
        http2_max_streams: config.server.http2_max_streams,
        grace: config.server.shutdown_grace,
    }
}

/// Shared state of the daemon.
pub struct App {
    /// The configuration in force; a reload swaps it whole, so a request sees
    /// one consistent version from start to end.
    live: RwLock<Arc<Live>>,
    /// Reloads between telling the store the new topology and swapping
    /// [`Self::live`] ([`Self::reload_begins`]): a store refusal
    /// (`RouteChanged`) meanwhile is worth waiting out.
    reloads_pending: AtomicU64,
    /// Woken when [`Self::live`] is swapped, or a pending reload ends.
    live_swapped: tokio::sync::Notify,
    /// Durable storage: events, work, results.
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The subscribers' lanes.
    pub delivery: Delivery,
    /// The media archiver (its settings follow reloads).
    pub media: Arc<Archiver>,
    /// The last write to the store succeeded (readiness).
    pub store_ok: AtomicBool,
    /// Why it did not, when it did not (for `/readyz` and the status API),
    /// and what is lacking: a store it can write, or room on its disk.
    store_problem: Mutex<Option<(Lack, String)>>,
    /// Successful writes to the store (ingest), counted.
    store_writes: AtomicU64,
    /// Callbacks refused because the store could not take them, since it
    /// was last lost ([`Self::store_refused_callback`]).
    refusals: Mutex<Refusals>,
    /// Ingest requests refused (no route, refused by the route's checks),
    /// for their rate-limited log ([`Self::request_refused`]).
    refused_requests: Mutex<RefusedRequests>,
    /// Wrong admin tokens by client, for their `429` (admin API).
    pub(crate) wrong_admin_tokens: crate::admin::WrongTokens,
    /// Listeners bound and not shutting down (readiness).
    pub serving: AtomicBool,
    /// The public listeners' TLS configuration, when TLS is on (file
    /// certificates are swapped on reload; ACME renews inside it).
    pub tls: Option<tls::Reloadable>,
    /// The certificate manager when `server.tls.acme` is set: its status for
    /// the API and metrics, its settings for a reload to compare with.
    pub acme: Option<Acme>,
    /// The public listeners' bound addresses, in config order (port 0 resolved), for the status API.
    pub ingest_addrs: Vec<SocketAddr>,
    /// When the daemon started (ms since the epoch, `crate::clock`): uptime.
    pub started_ms: u64,
    /// The configuration the daemon started with: what settings that need a
    /// restart are running with ([`crate::reload`] compares with it).
    pub started_with: Arc<Config>,
    /// Timeouts, HTTP/2 streams and grace of every listener (swapped on reload).
    pub listener_settings: Settings,
    /// The public listeners' open-connection cap (resized on reload).
    pub connections: Arc<ConnLimit>,
    /// The memory request bodies being received may hold together
    /// (`server.max_body_memory`, resized on reload).
    pub bodies: Arc<crate::ingest::BodyBudget>,
    /// Wakes the reconciler when a task is registered (its schedule changed).
    pub tasks_wake: Arc<tokio::sync::Notify>,
    /// The last reload: when, and why it was refused (`/api/status`).
    last_reload: Mutex<Option<ReloadOutcome>>,
}

/// A reload between registering its topology and swapping the config
/// ([`App::reload_begins`]).
pub struct ReloadPending<'a>(&'a App);

impl Drop for ReloadPending<'_> {
    fn drop(&mut self) {
        self.0.reloads_pending.fetch_sub(1, Ordering::AcqRel);
        self.0.live_swapped.notify_waiters();
    }
}

/// What the last reload did.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub at_ms: u64,
    /// Why it was refused (the running configuration stayed); None: applied.
    pub refused: Option<String>,
}

/// How often refused callbacks are summed up in the log while the store is
/// away (at most; only when callbacks keep coming).
pub const REFUSAL_SUMMARY_MS: u64 = 10_000;

/// Callbacks refused for the store since it was lost.
#[derive(Default)]
struct Refusals {
    /// In all (said when the store is back).
    total: u64,
    /// Since the last summary (or the first refusal), not counting it.
    in_window: u64,
    window_start_ms: u64,
}

/// How to log a callback refused because the store could not take it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The first since the store was lost: an error with the reason.
    First,
    /// One more, counted: debug.
    Counted,
    /// Time for a summary: `refused` callbacks in the last `secs` seconds.
    Summary { refused: u64, secs: u64 },
}

/// The public listeners as the wiring set them up: their TLS and addresses.
pub struct Public {
    pub tls: Option<tls::Reloadable>,
    pub acme: Option<Acme>,
    /// Bound addresses, in config order (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
}

impl App {
    pub fn new(
        config: Config,
        store: Store,
        metrics: Arc<Metrics>,
        delivery: Delivery,
        media: Arc<Archiver>,
        public: Public,
    ) -> App {
        let Public {
            tls,
            acme,
            addrs: ingest_addrs,
        } = public;
        App {
            listener_settings: Settings::new(conn_settings(&config)),
            connections: ConnLimit::new(config.server.max_connections),
            bodies: crate::ingest::BodyBudget::new(config.server.max_body_memory, config.server.max_body),
            started_with: Arc::new(config.clone()),
            live: RwLock::new(Arc::new(Live::new(config))),
            reloads_pending: AtomicU64::new(0),
            live_swapped: tokio::sync::Notify::new(),
            store,
            metrics,
            delivery,
            media,
            store_ok: AtomicBool::new(true),
            store_problem: Mutex::new(None),
            store_writes: AtomicU64::new(0),
            refusals: Mutex::default(),
            refused_requests: Mutex::default(),
            wrong_admin_tokens: crate::admin::WrongTokens::default(),
            serving: AtomicBool::new(false),
            tls,
            acme,
            ingest_addrs,
            started_ms: crate::clock::now_ms(),
            tasks_wake: Arc::default(),
            last_reload: Mutex::new(None),
        }
    }

    /// Note a reload's outcome (a refused one is counted).
    pub fn record_reload(&self, refused: Option<String>) {
        if refused.is_some() {
            self.metrics.reload_failures.inc();
        }
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadOutcome {
            at_ms: crate::clock::now_ms(),
            refused,
        });
    }

    /// The last reload since start, if there was one.
    pub fn last_reload(&self) -> Option<ReloadOutcome> {
        self.last_reload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How the public listeners do TLS: `acme`, `file` or `off`.
    pub fn tls_kind(&self) -> &'static str {
        match (&self.acme, &self.tls) {
            (Some(_), _) => "acme",
            (None, Some(_)) => "file",
            (None, None) => "off",
        }
    }

    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Put a new configuration in force.
    pub fn set_live(&self, config: Config) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Live::new(config));
        self.live_swapped.notify_waiters();
    }

    /// A reload is about to tell the store its new topology: until the
    /// returned guard is dropped (after [`Self::set_live`], or when the
    /// reload fails), a request the store refuses as `RouteChanged` waits
    /// for the swap ([`Self::live_after_reload`]).
    pub fn reload_begins(&self) -> ReloadPending<'_> {
        self.reloads_pending.fetch_add(1, Ordering::AcqRel);
        ReloadPending(self)
    }

    /// The configuration in force, if it is not `seen` (the one a request
    /// read) or becomes another within `limit`: waited for only while a
    /// reload is between registering its topology and swapping the config.
    /// Not on the hot path: only after the store refused with `RouteChanged`.
    pub async fn live_after_reload(&self, seen: &Arc<Live>, limit: std::time::Duration) -> Option<Arc<Live>> {
        let swapped = self.live_swapped.notified();
        tokio::pin!(swapped);
        swapped.as_mut().enable();
        let changed = |s: &App| Some(s.live()).filter(|now| !Arc::ptr_eq(now, seen));
        if let Some(now) = changed(self) {
            return Some(now);
        }
        if self.reloads_pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let _ = tokio::time::timeout(limit, swapped).await;
        changed(self)
    }

    /// Ready: serving and the store writable. The certificate is not part
    /// of it: a balancer that routes only to ready relays would keep the
    /// ACME CA's validation (through the same listener) from ever reaching a
    /// relay without one; [`Self::certificate_problem`] is its own signal.
    pub fn ready(&self) -> bool {
        self.not_ready_because().is_none()
    }

    /// Ask the store whether it can be written, within `limit`: None, or why not.
    pub async fn check_store(&self, limit: std::time::Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.store.check_writable()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {}", humantime::format_duration(limit))),
        }
    }

    /// Record whether the store can be written (`None`) or why not; the
    /// previous readiness of the store. Every change is logged here, once,
    /// whoever noticed it (the store watcher, a failed or successful write):
    /// a loss at `error` with its reason, a recovery at `info`.
    pub fn set_store_state(&self, problem: Option<String>) -> bool {
        self.set_state(problem, Lack::Store)
    }

    /// Record whether the embedded store's disk has room (`None`) or why not
    /// ([`crate::store::Store::low_space`]): readiness as
    /// [`Self::set_store_state`], logged as the disk's want of room.
    pub fn set_space_state(&self, problem: Option<String>) -> bool {
        self.set_state(problem, Lack::Space)
    }

    fn set_state(&self, problem: Option<String>, lack: Lack) -> bool {
        let ok = problem.is_none();
        // Under the lock, so two callers noticing the same change log it once.
        let mut held = self.store_problem.lock().unwrap_or_else(|e| e.into_inner());
        let was_ok = self.store_ok.swap(ok, Ordering::Relaxed);
        // A recovery is logged as what was lacking, whoever noticed it.
        let lacked = held.as_ref().map_or(lack, |(l, _)| *l);
        match (&problem, was_ok) {
            (Some(why), true) => {
                *self.refusals.lock().unwrap_or_else(|e| e.into_inner()) = Refusals::default();
                match lack {
                    Lack::Store => tracing::error!(
                        error = %why,
                        "store unreachable (cannot be written); ingest answers 503 and /readyz is not ready until it is back"
                    ),
                    Lack::Space => tracing::error!(
                        error = %why,
                        "no room for callbacks on the store's disk; /readyz is not ready until there is"
                    ),
                }
            }
            (None, false) => {
                let refused = std::mem::take(&mut *self.refusals.lock().unwrap_or_else(|e| e.into_inner())).total;
                match lacked {
                    Lack::Store => tracing::info!(refused_callbacks = refused, "store reachable again; ready"),
                    Lack::Space => tracing::info!("room on the store's disk again; ready"),
                }
            }
            _ => {}
        }
        *held = problem.map(|why| (lack, why));
        was_ok
    }

    /// Not ready for want of room on the store's disk (set by
    /// [`Self::set_space_state`]): the space watcher clears it.
    pub fn lacks_space(&self) -> bool {
        let held = self.store_problem.lock().unwrap_or_else(|e| e.into_inner());
        !self.store_ok.load(Ordering::Relaxed) && matches!(*held, Some((Lack::Space, _)))
    }

    /// A write to the store succeeded: it is writable (a recovery is logged
    /// by [`Self::set_store_state`]), and the store watcher does not take a
    /// failed check made meanwhile as a loss.
    pub fn store_took_write(&self) {
        self.store_writes.fetch_add(1, Ordering::Relaxed);
        // Not ready for want of room on the disk: a write (a duplicate's
        // `200`, a small callback) does not change that; the space watcher
        // makes the relay ready when there is room.
        if !self.store_ok.load(Ordering::Relaxed) && !self.lacks_space() {
            self.set_store_state(None);
        }
    }

    /// Count a callback refused because the store could not take it, and
    /// say how to log it: the first since the store was lost at `error`, the
    /// rest at `debug` with a summary every [`REFUSAL_SUMMARY_MS`] (a relay
    /// taking thousands of callbacks a second must not write as many lines
    /// while the store is away).
    pub fn store_refused_callback(&self) -> Refusal {
        let now = crate::clock::now_ms();
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        r.total += 1;
        if r.total == 1 {
            r.window_start_ms = now;
            return Refusal::First;
        }
        r.in_window += 1;
        let took_ms = now.saturating_sub(r.window_start_ms);
        if took_ms < REFUSAL_SUMMARY_MS {
            return Refusal::Counted;
        }
        let refused = std::mem::take(&mut r.in_window);
        r.window_start_ms = now;
        Refusal::Summary {
            refused,
            secs: took_ms / 1000,
        }
    }

    /// An ingest request was refused: how to log it. Each kind (no route;
    /// each route) in full at info when it is the first of that kind for
    /// [`crate::ingest::refused::REFUSED_REQUESTS_SUMMARY_MS`], the rest at debug, summed up (by
    /// route and status) at most once every [`crate::ingest::refused::REFUSED_REQUESTS_SUMMARY_MS`]
    /// while they keep coming.
    pub fn request_refused(&self, by: RefusedBy<'_>) -> RefusedLog {
        self.refused_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(by, crate::clock::now_ms())
    }

    /// How many writes the store took so far (see [`Self::store_took_write`]).
    pub fn store_writes(&self) -> u64 {
        self.store_writes.load(Ordering::Relaxed)
    }

    /// Why it is not ready, if it is not.
    pub fn not_ready_because(&self) -> Option<String> {
        if !self.serving.load(Ordering::Relaxed) {
            return Some("not serving (starting or stopping)".into());
        }
        if !self.store_ok.load(Ordering::Relaxed) {
            let why = self.store_problem.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Some(match why {
                Some((Lack::Store, why)) => format!("the store cannot be written: {why}"),
                Some((Lack::Space, why)) => format!("no room for callbacks on the store's disk: {why}"),
                None => "the store cannot be written".into(),
            });
        }
        None
    }

    /// Why TLS handshakes fail now, if they do: no certificate yet (ACME
    /// before its first order), or the served one expired (or not yet valid).
    pub fn certificate_problem(&self) -> Option<&'static str> {
        match self.served_certificate() {
            Some(None) => Some("no TLS certificate yet: every handshake fails"),
            Some(Some(c)) if !c.valid_at(crate::clock::time_of_day()) => {
                Some("the TLS certificate is expired (or not yet valid): every handshake fails")
            }
            Some(Some(_)) if self.acme.as_ref().is_some_and(|a| a.status().stand_in.is_some()) => Some(
                "the TLS certificate served is a stand-in from the ACME cache that lacks some configured domains \
                 or comes from another ACME directory: some clients refuse it until the order for the \
                 configured domains succeeds",
            ),
            _ => None,
        }
    }

    /// The certificate the public listeners serve: None without TLS,
    /// Some(None) while there is none yet (ACME before its first order).
    pub fn served_certificate(&self) -> Option<Option<tls::CertInfo>> {
        match (&self.acme, &self.tls) {
            (Some(acme), _) => Some(acme.status().certificate),
            (None, Some(tls)) => Some(tls.certificate()),
            (None, None) => None,
        }
    }
}

/// What a relay not ready lacks, for the log: a store it can write, or room
/// on the embedded store's disk.
#[derive(Clone, Copy)]
enum Lack {
    Store,
    Space,
}
