//! The running daemon: wires config, store, ingest, delivery and admin together.
//!
//! [`start`] binds every listener (port 0 works: the handle reports the real
//! addresses), opens the store, starts the writer, the delivery lanes and the
//! retention sweeper. [`Handle::reload`] applies a new config file without
//! dropping connections; [`Handle::shutdown`] drains and flushes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Route};
use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::server::{self, ConnLimit, ConnSettings, ListenerOptions, Settings};
use crate::store::{Committer, Store};
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
    fn new(config: Config) -> Self {
        let routes = config
            .routes
            .iter()
            .map(|r| {
                (
                    r.path.clone(),
                    Arc::new(RouteState {
                        route: r.clone(),
                        fallback_logged: AtomicBool::new(false),
                    }),
                )
            })
            .collect();
        Live { config, routes }
    }
}

/// Shared state of the daemon.
pub struct App {
    live: RwLock<Arc<Live>>,
    pub store: Store,
    pub committer: Committer,
    pub metrics: Arc<Metrics>,
    pub delivery: Delivery,
    /// The last write to the store succeeded.
    pub store_ok: AtomicBool,
    /// Listeners bound and not shutting down.
    pub serving: AtomicBool,
    tls: Option<tls::Reloadable>,
    /// Timeouts, HTTP/2 streams and grace of every listener (reloadable).
    listener_settings: Settings,
    /// The public listeners' open-connection cap (reloadable).
    connections: Arc<ConnLimit>,
}

fn conn_settings(config: &Config) -> ConnSettings {
    ConnSettings {
        read_timeout: config.server.read_timeout,
        idle_timeout: config.server.idle_timeout,
        http2_max_streams: config.server.http2_max_streams,
        grace: config.server.shutdown_grace,
    }
}

impl App {
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ready: serving and the store writable.
    pub fn ready(&self) -> bool {
        self.serving.load(Ordering::Relaxed) && self.store_ok.load(Ordering::Relaxed)
    }
}

/// A started daemon.
pub struct Handle {
    pub app: Arc<App>,
    /// The public listeners' bound addresses, in config order.
    pub ingest_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({what}): {e}"))
}

/// Start the daemon with a validated config.
pub async fn start(config: Config) -> anyhow::Result<Handle> {
    tls::install_provider();
    let store = Store::open(&config.store.path, config.store.cache_bytes)
        .map_err(|e| anyhow::anyhow!("cannot open store at {}: {e}", config.store.path.display()))?
        .with_min_free(config.store.min_free);
    let store_ok = store.check_writable().is_ok();
    if !store_ok {
        tracing::error!(path = %config.store.path.display(), "store is not writable; ingest will answer 503 until it is");
    }
    let metrics = Arc::new(Metrics::new());
    let delivery = Delivery::new(store.clone(), metrics.clone());
    let subscribers: Vec<_> = config
        .routes
        .iter()
        .flat_map(|r| r.subscribers.iter().cloned())
        .collect();
    let waker = delivery.clone();
    let committer = store.committer(4096, Arc::new(move |subs: &[String]| waker.wake(subs)));
    // Lanes count their backlog through the writer, in commit order.
    delivery.set_committer(committer.clone());
    delivery.configure(&subscribers)?;
    let tls = match &config.server.tls {
        Some(files) => Some(tls::Reloadable::new(tls::load_server_config(files)?)),
        None => None,
    };

    let mut ingest_listeners = Vec::new();
    for addr in &config.server.listen {
        ingest_listeners.push(bind(*addr, "server.listen").await?);
    }
    let admin_listener = bind(config.admin.listen, "admin.listen").await?;
    let ingest_addrs: Vec<SocketAddr> = ingest_listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;
    let admin_addr = admin_listener.local_addr()?;

    let app = Arc::new(App {
        live: RwLock::new(Arc::new(Live::new(config.clone()))),
        store,
        committer,
        metrics,
        delivery,
        store_ok: AtomicBool::new(store_ok),
        serving: AtomicBool::new(false),
        tls: tls.clone(),
        listener_settings: Settings::new(conn_settings(&config)),
        connections: ConnLimit::new(config.server.max_connections),
    });

    let (shutdown, shutdown_rx) = watch::channel(false);
    let opts = ListenerOptions {
        tls,
        settings: app.listener_settings.clone(),
        connections: app.connections.clone(),
    };
    let mut listeners = Vec::new();
    for (listener, addr) in ingest_listeners.into_iter().zip(&ingest_addrs) {
        tracing::info!(addr = %addr, tls = opts.tls.is_some(), "listening for callbacks");
        let app2 = app.clone();
        let svc = move |req, peer| crate::ingest::handle(app2.clone(), req, peer);
        listeners.push(tokio::spawn(server::serve(
            listener,
            opts.clone(),
            svc,
            shutdown_rx.clone(),
        )));
    }
    let admin_opts = ListenerOptions {
        tls: None,
        connections: ConnLimit::new(64),
        ..opts.clone()
    };
    tracing::info!(addr = %admin_addr, "admin API listening");
    let app2 = app.clone();
    let admin_svc = move |req, _peer| crate::admin::handle(app2.clone(), req);
    let admin_task = tokio::spawn(server::serve(
        admin_listener,
        admin_opts,
        admin_svc,
        shutdown_rx.clone(),
    ));

    let background = vec![admin_task, tokio::spawn(sweeper(app.clone(), shutdown_rx.clone()))];
    app.serving.store(true, Ordering::Relaxed);
    Ok(Handle {
        app,
        ingest_addrs,
        admin_addr,
        shutdown,
        listeners,
        background,
    })
}

/// Removes finished events older than the retention, in bounded batches.
async fn sweeper(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut first = true;
    loop {
        let wait = if first {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(60)
        };
        first = false;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let retention = app.live().config.store.retention;
        let cutoff = crate::store::now_ms().saturating_sub(retention.as_millis() as u64);
        let mut cursor = None;
        let mut total = 0;
        loop {
            let store = app.store.clone();
            let r = tokio::task::spawn_blocking(move || store.sweep(cutoff, cursor, 500)).await;
            match r {
                Ok(Ok((next, removed))) => {
                    total += removed;
                    match next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "retention sweep failed");
                    break;
                }
                Err(_) => break,
            }
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if total > 0 {
            tracing::info!(removed = total, "retention: removed expired events");
        }
    }
}

impl Handle {
    /// Re-read the config file and apply it: routes, tokens, allowlists,
    /// subscribers, every server limit (connection cap, timeouts and HTTP/2
    /// streams for new connections, shutdown grace) and the TLS certificate.
    /// Listen addresses, TLS on/off, the store's path, cache and min_free and the
    /// log settings need a restart (logged). An invalid file changes nothing.
    pub fn reload(&self) -> Result<(), String> {
        let old = self.app.live();
        let new = Config::load(&old.config.file).map_err(|e| e.to_string())?;
        reload_with(&self.app, &old.config, new)
    }

    /// Stop accepting, let requests in flight finish (bounded), stop delivery
    /// (attempts in flight are retried after restart), flush the store.
    pub async fn shutdown(self) {
        self.app.serving.store(false, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        for l in self.listeners {
            let _ = l.await;
        }
        self.app.delivery.stop().await;
        for b in self.background {
            b.abort();
            let _ = b.await;
        }
        // A failed sled can block for ever in flush: leave it to the restart.
        if !self.app.store.has_failed() {
            self.app.committer.stop().await;
            let store = self.app.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        }
    }
}

fn reload_with(app: &App, old: &Config, new: Config) -> Result<(), String> {
    if new.server.listen != old.server.listen || new.admin.listen != old.admin.listen {
        tracing::warn!("listen addresses changed; they take effect after a restart");
    }
    for (changed, key) in [
        (new.store.path != old.store.path, "store.path"),
        (new.store.cache_bytes != old.store.cache_bytes, "store.cache"),
        (new.store.min_free != old.store.min_free, "store.min_free"),
        (new.log.level != old.log.level, "log.level"),
        (new.log.format != old.log.format, "log.format"),
    ] {
        if changed {
            tracing::warn!("{key} changed; it takes effect after a restart");
        }
    }
    match (&new.server.tls, &app.tls) {
        (Some(files), Some(current)) => {
            let cfg = tls::load_server_config(files).map_err(|e| e.to_string())?;
            current.set(cfg);
        }
        (Some(_), None) | (None, Some(_)) => {
            tracing::warn!("turning TLS on or off takes effect after a restart");
        }
        (None, None) => {}
    }
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    let subscribers: Vec<_> = new.routes.iter().flat_map(|r| r.subscribers.iter().cloned()).collect();
    app.delivery.configure(&subscribers).map_err(|e| e.to_string())?;
    // Validated like the rest: nothing below can fail.
    app.listener_settings.set(conn_settings(&new));
    app.connections.set_limit(new.server.max_connections);
    let routes = new.routes.len();
    *app.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Live::new(new));
    tracing::info!(routes, subscribers = subscribers.len(), "configuration reloaded");
    Ok(())
}
