//! The running daemon: wires config, store, delivery, the listeners and the
//! background tasks together.
//!
//! [`start`] opens the store, binds every listener (port 0 works: the handle
//! reports the real addresses), loads the certificate (files, or the ACME
//! cache), starts the media archiver and then, once nothing else can fail
//! the start, the lanes, the retention sweeper and the ACME renewals.
//! [`Handle::reload`] applies a new config file without dropping connections;
//! [`Handle::shutdown`] drains, stops and closes the store.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acme::{self, Acme, AcmeError};
use crate::config::{Config, TlsSource};
use crate::delivery::{Delivery, DeliveryError};
use crate::media::{ArchiveSettings, Archiver, SetupError};
use crate::metrics::Metrics;
use crate::server::{self, ConnLimit, ListenerOptions};
use crate::state::{App, Public};
use crate::store::{Store, StoreError, Topology};
use crate::tls::{self, TlsError};

/// Open connections the admin listener takes (fixed; README "Bounded
/// resources"). One client (an address or an IPv6 /64) may hold a quarter:
/// 16, enough for a console's browser, the CLI and probes.
const ADMIN_CONNECTIONS: usize = 64;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open the store at {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Media(#[from] SetupError),
    #[error("cannot start the media archiver: {0}")]
    Archiver(std::io::Error),
}

/// Read the config file again and apply it ([`Handle::reload`]).
async fn reload_app(app: &App) -> Result<(), crate::reload::ReloadError> {
    let old = app.live();
    // Validated against the listeners as bound: a reload does not move them.
    let started = &app.started_with;
    let bound = crate::config::Bound {
        server: started.server.listen.clone(),
        admin: started.admin.listen,
        tls: started.server.tls.is_some(),
    };
    let applied = match crate::reload::read_config(old.config.file.clone(), bound).await {
        Ok(new) => crate::reload::apply(app, new).await,
        Err(e) => Err(e.into()),
    };
    app.record_reload(applied.as_ref().err().map(ToString::to_string));
    applied
}

/// A started daemon.
pub struct Handle {
    pub app: Arc<App>,
    /// The public listeners' bound addresses, in config order.
    pub ingest_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// Turns true to stop the listeners and background tasks.
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Listen on `addr`; IPv6 only when [`crate::config::listen::v6_only`] says
/// so among `all`, the addresses the daemon listens on.
async fn bind(addr: SocketAddr, all: &[SocketAddr], key: &'static str) -> Result<TcpListener, StartError> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if crate::config::listen::v6_only(addr, all) {
            rustix::net::sockopt::set_ipv6_v6only(&socket, true)?;
        }
        // As TcpListener::bind: a restart binds while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    listen().map_err(|source| StartError::Bind { addr, key, source })
}

/// Start the daemon with a validated config.
pub async fn start(config: Config) -> Result<Handle, StartError> {
    tls::install_provider();
    // What is read after a pause of this process is judged by it: answers
    // (`delivery::attempt`), messages in cluster mode (`store::nats::hold`).
    crate::clock::pauses::start();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let crate::config::StoreBackend::Nats(_) = config.store.backend {
        if let Some(w) = crate::store::sled::left_behind_warning(&config.store.path) {
            tracing::warn!("{w}");
        }
    }
    if let Some(w) = crate::store::sled::floor_warning(&config) {
        tracing::warn!("{w}");
    }
    crate::nofile::raise(&config);
    let store_err = |source| StartError::Store {
        path: match &config.store.backend {
            crate::config::StoreBackend::Sled => config.store.path.display().to_string(),
            crate::config::StoreBackend::Nats(n) => {
                let servers: Vec<String> = n.servers.iter().map(|u| crate::auth::redact_url(u)).collect();
                format!("nats {}", servers.join(","))
            }
        },
        source,
    };
    let store = Store::open(&config).await.map_err(store_err)?;
    store.register(&Topology::of(&config)).await.map_err(store_err)?;
    store.check_first_reads().await.map_err(store_err)?;
    // Due times of a previous run that its clock's step left too far off.
    if let Err(e) = store.bring_in_due(crate::delivery::due_caps(&config)).await {
        tracing::warn!(error = %e, "could not check the stored due times against the longest waits");
    }
    let store_problem = store.check_writable().await.err().map(|e| e.to_string());
    if let Some(why) = &store_problem {
        let (backend, location) = store.describe();
        tracing::error!(backend, store = %location, error = %why, "store is not writable; ingest will answer 503 until it is");
    }
    // Listening before any lane starts (see `delivery.apply` below).
    let mut ingest_listeners = Vec::new();
    let all: Vec<SocketAddr> = config
        .server
        .listen
        .iter()
        .copied()
        .chain([config.admin.listen])
        .collect();
    for addr in &config.server.listen {
        ingest_listeners.push(bind(*addr, &all, "server.listen").await?);
    }
    let admin_listener = bind(config.admin.listen, &all, "admin.listen").await?;
    let local = |l: &TcpListener, addr: SocketAddr| {
        l.local_addr().map_err(|source| StartError::Bind {
            addr,
            key: "server.listen",
            source,
        })
    };
    let mut ingest_addrs = Vec::new();
    for (l, a) in ingest_listeners.iter().zip(&config.server.listen) {
        ingest_addrs.push(local(l, *a)?);
    }
    let admin_addr = local(&admin_listener, config.admin.listen)?;
    let metrics = Arc::new(Metrics::new());
    let delivery = Delivery::new(store.clone(), metrics.clone());
    let media_settings = ArchiveSettings::build(&config, None)?;
    // The verifier knows its routes before any lane starts: a lane that took
    // a stored delivery of a `verify = "fetch"` route first would send it
    // unchecked.
    delivery.verifier().configure(&config, &media_settings.providers);
    // Each subscriber's client (a CA file read) now; the lanes start last.
    let subscribers: Vec<_> = config.subscribers().cloned().collect();
    let lanes = delivery.prepare(&subscribers)?;
    if config.archives_media() {
        tracing::info!(store = %media_settings.store.describe(), "media archive");
        crate::media::last_store::check(&config.store.path, &media_settings.store.location());
    }
    // ACME: a cached certificate is served at once; the renewal task starts below.
    let (tls, acme) = match &config.server.tls {
        Some(TlsSource::Files(files)) => {
            let (cfg, cert) = tls::load_files(files)?;
            for w in tls::file_warnings(files) {
                tracing::warn!("{w}");
            }
            if let Some(w) = tls::public_url_uncovered(config.server.public_url.as_deref(), &cert.names) {
                tracing::warn!("{w}");
            }
            // As check-config warns (the unit ran it before each start).
            if cert.names.is_empty() {
                tracing::warn!(
                    file = %files.cert.display(),
                    "the certificate names no host (no subjectAltName): TLS clients will refuse it"
                );
            }
            (Some(tls::Reloadable::new(cfg, Some(cert))), None)
        }
        Some(TlsSource::Acme(settings)) => {
            if let Some(w) = tls::public_url_uncovered(config.server.public_url.as_deref(), &settings.domains) {
                tracing::warn!("{w}");
            }
            let dir = acme::state_dir(&config.store.path);
            let failures = metrics.acme_failures.clone();
            let acme = Acme::new(settings, &dir, acme::Options::default(), failures)?;
            (Some(tls::Reloadable::new(acme.server_config()?, None)), Some(acme))
        }
        None => (None, None),
    };

    // Media work already on disk (from before a restart) starts now; new work
    // arrives with the events.
    let media = Archiver::start(store.clone(), metrics.clone(), media_settings).map_err(StartError::Archiver)?;
    if config.archives_media() {
        media.check_store(metrics.media_store_unavailable.clone());
    }
    // The lanes last, once nothing else can fail the start: a start
    // refused later (a certificate the service cannot read, a taken port)
    // delivered what was due first, at every restart.
    delivery.apply(lanes);
    let app = Arc::new(App::new(
        config,
        store,
        metrics,
        delivery,
        media,
        Public {
            tls: tls.clone(),
            acme: acme.clone(),
            addrs: ingest_addrs.clone(),
        },
    ));
    app.set_store_state(store_problem);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let opts = ListenerOptions {
        tls,
        settings: app.listener_settings.clone(),
        connections: app.connections.clone(),
        handshake_failures: app.metrics.tls_handshake_failures.clone(),
    };
    let mut listeners = Vec::new();
    for (listener, addr) in ingest_listeners.into_iter().zip(&ingest_addrs) {
        tracing::info!(addr = %addr, tls = app.tls_kind(), "listening for callbacks");
        let app2 = app.clone();
        let svc = move |req, peer| crate::ingest::handle(app2.clone(), req, peer);
        listeners.push(tokio::spawn(server::serve(
            listener,
            opts.clone(),
            svc,
            shutdown_rx.clone(),
        )));
    }
    // Serving from here on: set before the admin API can answer (and before
    // its address is logged), so /readyz and /api/status never see a daemon
    // whose callback listeners are up as not ready.
    app.serving.store(true, Ordering::Relaxed);
    let admin_opts = ListenerOptions {
        tls: None,
        connections: ConnLimit::new(ADMIN_CONNECTIONS),
        ..opts.clone()
    };
    tracing::info!(addr = %admin_addr, "admin API listening");
    let app2 = app.clone();
    let admin_svc = move |req, peer| crate::admin::handle(app2.clone(), req, peer);
    let admin_task = tokio::spawn(server::serve(
        admin_listener,
        admin_opts,
        admin_svc,
        shutdown_rx.clone(),
    ));
    let sweeper = tokio::spawn(crate::retention::run(app.clone(), shutdown_rx.clone()));
    let reconciler = tokio::spawn(crate::reconcile::run(app.clone(), shutdown_rx.clone()));
    let removed = tokio::spawn(crate::delivery::removed::warn_at_start(
        app.store.clone(),
        app.delivery.clone(),
    ));
    let mut background = vec![admin_task, sweeper, reconciler, removed];
    if app.store.needs_health_checks() {
        background.push(tokio::spawn(watch_store(app.clone(), shutdown_rx.clone())));
    } else {
        background.push(tokio::spawn(watch_space(app.clone(), shutdown_rx.clone())));
    }
    if let Some(acme) = acme {
        background.push(tokio::spawn(acme.run()));
    }
    Ok(Handle {
        app,
        ingest_addrs,
        admin_addr,
        shutdown,
        listeners,
        background,
    })
}

/// A networked store can go away and come back: readiness follows it.
async fn watch_store(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        app.log_duplicates_over();
        let (writes, problems) = (app.store_writes(), app.store_problems());
        let problem = app.check_store(std::time::Duration::from_secs(2)).await;
        if problem.is_some() && app.store_writes() != writes {
            // The store took a write while the check failed: it is writable,
            // and marking it lost would only flap until the next write.
            continue;
        }
        if problem.is_none() && app.store_problems() != problems {
            // A write failed while the check passed (NATS went away as its
            // answer came): the failure is the newer news.
            continue;
        }
        // Logs the change, if this is one (so does a failed or successful write).
        app.set_store_state(problem);
    }
}

/// The embedded store refuses new events while its disk is below
/// `store.min_free`: readiness follows the free space, so a relay is not
/// ready while it refuses, and ready again once there is room, without
/// waiting for a callback (which a balancer routing only to ready relays
/// would not send). For the same reason it asks the store again after a
/// write was not confirmed in time, and marks a store that failed a write.
async fn watch_space(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // One probe of the store in flight at most (a stalled disk must not
    // fill the writer's mailbox with them): how long it took, if it
    // succeeded, and the problems recorded when it began.
    let mut probe: Option<tokio::task::JoinHandle<Option<(std::time::Duration, u64)>>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        app.log_duplicates_over();
        app.store.check_files();
        app.look_at_space();
        if app.store.has_failed() {
            // A write that failed (a delivery's result meeting a full disk)
            // makes the relay not ready at once, not at the next callback,
            // and says so whatever it lacked before.
            app.set_store_state(Some(crate::store::FAILED_WRITE.into()));
            continue;
        }
        // A write not confirmed in time (a stalled disk) made the relay not
        // ready: no callback may come to say the store is back, so a probe
        // does, if it is confirmed as fast as a callback must be.
        if let Some(done) = probe.take_if(|p| p.is_finished()) {
            if let Ok(Some((took, since))) = done.await {
                app.store_answered_probe(took, since);
            }
        }
        if probe.is_none() && app.lacks_store() {
            let store = app.store.clone();
            let since = app.store_problems();
            probe = Some(tokio::spawn(async move {
                let sent = std::time::Instant::now();
                store.check_writable().await.ok().map(|()| (sent.elapsed(), since))
            }));
        }
    }
    if let Some(p) = probe {
        p.abort();
    }
}

impl Handle {
    /// Work under way now: delivery attempts in flight in the push lanes
    /// (until their lane has taken in the outcome, so a retry's due time and
    /// the circuit's pause are set) plus store writes not finished
    /// ([`Store::writes_pending`]). A snapshot, for tests on tokio's paused
    /// clock: they let it fall to 0 (in real time) before moving time, so
    /// that what the daemon schedules is not measured from a later instant.
    /// Pull lanes' leases (held for a forwarder) are not counted.
    pub fn busy(&self) -> usize {
        let attempts: usize = self.app.delivery.lanes().iter().map(|l| l.in_flight()).sum();
        attempts + self.app.store.writes_pending()
    }

    /// Re-read the config file and apply it: routes, tokens, allowlists,
    /// subscribers, every server limit (connection cap, timeouts and HTTP/2
    /// streams for new connections, shutdown grace) and the TLS certificate
    /// files. Listen addresses, TLS on/off, files ↔ ACME, the ACME block, the
    /// store settings and the log settings need a restart (logged). An
    /// invalid file changes nothing.
    pub async fn reload(&self) -> Result<(), crate::reload::ReloadError> {
        reload_app(&self.app).await
    }

    /// [`Self::reload`] as a task of its own, with the line a refusal logs
    /// after it ([`crate::reload::unapplied_certificate`]): a file it opens
    /// that blocks (a FIFO, a stalled mount) holds that task's thread, not
    /// the daemon's signal loop, so SIGTERM still stops it (the change
    /// review, stop 63: a certificate file on a stalled mount held it).
    pub fn reload_task(&self) -> tokio::task::JoinHandle<(Result<(), crate::reload::ReloadError>, Option<String>)> {
        let app = self.app.clone();
        tokio::spawn(async move {
            let applied = reload_app(&app).await;
            // It reads the certificate file again: off the runtime, and
            // left out when that does not answer within 2 s.
            let unapplied = match applied.is_err() {
                true => {
                    let app = app.clone();
                    let look = tokio::task::spawn_blocking(move || crate::reload::unapplied_certificate(&app));
                    match tokio::time::timeout(std::time::Duration::from_secs(2), look).await {
                        Ok(Ok(line)) => line,
                        _ => None,
                    }
                }
                false => None,
            };
            (applied, unapplied)
        })
    }

    /// Stop accepting, let requests in flight finish (bounded), stop delivery
    /// (attempts in flight are sent again after a restart), close the store.
    pub async fn shutdown(self) {
        // One grace for the listeners' drain and an operator's replay
        // together: the margin after it (`supervise`) stays for delivery,
        // the archiver and the store.
        let grace = self.app.live().config.server.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        self.app.listener_settings.stop_by(deadline);
        self.app.serving.store(false, Ordering::Relaxed);
        // No delivery attempt starts from now on; those in flight have the
        // grace to end and be recorded (not sent again after the restart).
        self.app.delivery.retire_push();
        // Nothing more is handed out to pull subscribers (long-polls are
        // answered now: they would hold the drain for the whole grace), and
        // the listeners stay open for the forwarders' acknowledgements of
        // what they lease, within the grace (a callback meanwhile is stored).
        self.app.delivery.finish_pulls(deadline).await;
        let _ = self.shutdown.send(true);
        self.app.delivery.stop_pulls().await;
        for l in self.listeners {
            let _ = l.await;
        }
        // An operator's replay whose caller went away still runs, and a
        // create call through the submit proxy: let them end.
        let work = &self.app.operator_work;
        work.close();
        if tokio::time::timeout_at(deadline, work.wait()).await.is_err() {
            tracing::warn!(
                running = work.len(),
                "stopping before an operator's replay or media retry, or a create call sent through the submit \
                 proxy, ended (what each did is kept; asking again does the rest; a task the provider creates \
                 after this is not expected: register it with POST /api/tasks)"
            );
        }
        if tokio::time::timeout_at(deadline, self.app.delivery.push_ended())
            .await
            .is_err()
        {
            tracing::info!("stopping with delivery attempts in flight (each is sent again after the restart)");
        }
        self.app.delivery.stop().await;
        self.app.media.stop().await;
        for b in self.background {
            b.abort();
            let _ = b.await;
        }
        // A failed sled can block for ever in flush: leave it to the restart.
        if !self.app.store.has_failed() {
            self.app.store.close().await;
        }
    }
}
