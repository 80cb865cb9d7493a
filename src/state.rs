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
use crate::readiness::{Lack, StoreHealth};
pub use crate::readiness::{Refusal, REFUSAL_SUMMARY_MS};
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
    /// What the relay lacks of the store for readiness (a store it can
    /// write, room on its disk), and callbacks refused while it is away.
    health: StoreHealth,
    /// Held across a look at the store's disk and its recording
    /// ([`Self::look_at_space`]), so the space watcher and the watchdog do
    /// not judge with a stale view of each other's finding.
    space_look: std::sync::Mutex<()>,
    /// Successful writes to the store (ingest), counted.
    store_writes: AtomicU64,
    /// Problems recorded with the store (each failed write or check),
    /// counted: a check that passed clears none recorded after it began.
    store_problems: AtomicU64,
    /// Ingest requests refused (no route, refused by the route's checks),
    /// for their rate-limited log ([`Self::request_refused`]).
    refused_requests: Mutex<RefusedRequests>,
    /// Duplicates answered `200`, for their rate-limited log
    /// ([`Self::duplicate_accepted`]).
    duplicates_log: Mutex<crate::ingest::duplicates::DuplicatesLog>,
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
    /// The expected tasks' figures for `/metrics`, a slow walk of them reused a while.
    pub task_figures: crate::admin::task_figures::TaskFigures,
    /// An operator's replays and media retries, each run to its end in a
    /// task of its own (its caller may go away): a stop waits for them
    /// (within `server.shutdown_grace`) before it closes the store.
    pub operator_work: tokio_util::task::TaskTracker,
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
        metrics.put_in_force(config.routes.iter().map(|r| r.name.as_str()), || {});
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
            health: StoreHealth::new(),
            space_look: std::sync::Mutex::new(()),
            store_writes: AtomicU64::new(0),
            store_problems: AtomicU64::new(0),
            refused_requests: Mutex::default(),
            duplicates_log: Mutex::default(),
            wrong_admin_tokens: crate::admin::WrongTokens::default(),
            serving: AtomicBool::new(false),
            tls,
            acme,
            ingest_addrs,
            started_ms: crate::clock::now_ms(),
            tasks_wake: Arc::default(),
            task_figures: Default::default(),
            operator_work: tokio_util::task::TaskTracker::new(),
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
        let names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
        let live = Arc::new(Live::new(config));
        self.metrics.put_in_force(names.iter().map(String::as_str), || {
            *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        });
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

    /// Record whether the store can be written (`None`) or why not (each
    /// change logged once, whoever noticed it: the store watcher, a failed
    /// or successful write); a want of room is kept apart. Whether the
    /// store could not be written before.
    pub fn set_store_state(&self, problem: Option<String>) -> bool {
        if problem.is_some() {
            self.store_problems.fetch_add(1, Ordering::Relaxed);
        }
        if problem.is_none() && self.store.has_failed() {
            // A write that went through (or a check) before the failure was
            // marked does not make a failed store writable.
            return self.lacks_store();
        }
        self.health.set(Lack::Store, problem)
    }

    /// Record whether the embedded store's disk has room (`None`) or why not
    /// ([`crate::store::Store::low_space`]), apart from whether the store
    /// can be written. Whether there was no room before.
    pub fn set_space_state(&self, problem: Option<String>) -> bool {
        self.health.set(Lack::Space, problem)
    }

    /// Look at the room on the store's disk and record it: no room makes
    /// the relay not ready; once it lacked room, it has room again only
    /// with a margin ([`crate::store::Store::low_space`]). One look at a
    /// time, each recording what it found, so the space watcher and the
    /// watchdog looking at once do not undo each other's finding with a
    /// stale view (a look before the other's recording).
    pub fn look_at_space(&self) {
        let _one = self.space_look.lock().unwrap_or_else(|e| e.into_inner());
        let lacking = self.lacks_space();
        let low = self.store.low_space(lacking);
        if low.is_some() || lacking {
            self.set_space_state(low);
        }
    }

    /// Not ready for want of room on the store's disk (set by
    /// [`Self::set_space_state`]): the space watcher clears it.
    pub fn lacks_space(&self) -> bool {
        self.health.lacks(Lack::Space)
    }

    /// Not ready because the store could not be written (a failed write or
    /// check, a write not confirmed in time): a write or a check clears it.
    pub fn lacks_store(&self) -> bool {
        self.health.lacks(Lack::Store)
    }

    /// A write to the store succeeded: it is writable (a recovery is logged
    /// by [`Self::set_store_state`]; a want of room stays until the space
    /// watcher finds room), and the store watcher does not take a failed
    /// check made meanwhile as a loss.
    pub fn store_took_write(&self) {
        self.store_writes.fetch_add(1, Ordering::Relaxed);
        if self.lacks_store() {
            self.set_store_state(None);
        }
    }

    /// A probe write ([`crate::store::Store::check_writable`]) was
    /// confirmed after `took`: the store is writable again if it answers as
    /// fast as a callback's write must be ([`crate::ingest::COMMIT_TIMEOUT`];
    /// a slower disk still answers callbacks `503`).
    /// `since`: [`Self::store_problems`] when the probe began; a problem
    /// recorded meanwhile (a callback refused as NATS went away while the
    /// probe's answer was on its way) is newer than what it found, and stays.
    pub fn store_answered_probe(&self, took: std::time::Duration, since: u64) {
        if took <= crate::ingest::COMMIT_TIMEOUT && self.store_problems() == since {
            self.set_store_state(None);
        }
    }

    /// How many problems with the store were recorded so far (see
    /// [`Self::store_answered_probe`]).
    pub fn store_problems(&self) -> u64 {
        self.store_problems.load(Ordering::Relaxed)
    }

    /// Count a callback refused because the store could not take it, and
    /// say how to log it (see [`StoreHealth::refused_callback`]).
    pub fn store_refused_callback(&self) -> Refusal {
        self.health.refused_callback(crate::clock::now_ms())
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

    /// A duplicate answered `200` on `route`: how to log it (each route's
    /// first few in a window in full, the rest at debug, summed up after).
    pub fn duplicate_accepted(&self, route: &str, source: &str) -> crate::ingest::duplicates::DuplicateLine {
        self.duplicates_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(route, source, crate::clock::now_ms())
    }

    /// Sum up the duplicates' windows that are over (called every second by
    /// the store's watcher: a flood that stopped is summed up too).
    pub fn log_duplicates_over(&self) {
        let over = self
            .duplicates_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .over(crate::clock::now_ms());
        for summary in &over {
            summary.log();
        }
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
        self.health.why_not()
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
