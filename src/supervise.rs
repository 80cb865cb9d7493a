//! Running the daemon as a service: the runtime, signals (SIGTERM/SIGINT stop,
//! SIGHUP reloads), systemd notification (ready, reloading, stopping, the
//! watchdog) and exiting for a restart when the store can no longer write.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::config::Config;
use crate::state::App;

/// Exit code asking the supervisor for a restart (EX_TEMPFAIL).
const EXIT_RESTART: u8 = 75;

/// How long a stop may take beyond `server.shutdown_grace`: stopping
/// delivery and the media archiver, and closing the store (its last flush;
/// in cluster mode at most 2 s). A stop takes at most the grace plus this.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// `TimeoutStopSec=` of the shipped unit (systemd/hookrelay.service): systemd
/// kills the process when a stop takes longer, so `shutdown_grace` plus
/// [`SHUTDOWN_MARGIN`] should fit in it (check-config warns otherwise).
pub const UNIT_TIMEOUT_STOP: Duration = Duration::from_secs(15);

/// `hookrelay run`: load the config, start, serve until told to stop.
pub fn run(path: &Path) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookrelay")
        .build()
        .expect("runtime");
    // SIGHUP is ours before the config is read: one arriving while it is
    // (a secret read from a FIFO or a stalled mount) ended the daemon
    // without a word (exit 129; reload review, stop 61). It reads the file
    // again once started. SIGTERM keeps ending a start that hangs here.
    let hup = {
        let _in = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    let hup = match hup {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot handle SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(&config.log);
    let served = rt.block_on(serve(config, hup));
    // A task still blocked in a system call (an abandoned reload's open of
    // a FIFO or of a file on a stalled mount) would hold the runtime's drop
    // for ever: the process ends without it.
    rt.shutdown_timeout(Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The log is on stderr: the message once (said plainly when
            // `log.level` keeps errors out of it).
            match tracing::enabled!(tracing::Level::ERROR) {
                true => tracing::error!("{e}"),
                false => eprintln!("error: {e}"),
            }
            match refused_for_good(e.as_ref()) {
                true => ExitCode::from(2),
                false => ExitCode::FAILURE,
            }
        }
    }
}

/// A start refused for what no restart mends: a store whose files are
/// damaged (the operator restores or moves it), a store this build cannot
/// use with these settings (a `store.compression` switch, a newer version's
/// or another program's data, 0.1's rows after the migration, cluster
/// settings that differ from the cluster's: hostile review, stop 65, they
/// exited 1), an ACME state directory the relay cannot use (another
/// program's, or not writable: `check-config` says so too). It exits 2, as a
/// config error does, which the shipped unit does not restart (a restart
/// loop hid the message behind systemd's start limit). Anything else (a port
/// in use, NATS away, the store's lock still held) exits 1 and is tried
/// again.
fn refused_for_good(e: &(dyn std::error::Error + 'static)) -> bool {
    use crate::app::StartError;
    let start = e
        .downcast_ref::<StartError>()
        .or_else(|| e.downcast_ref::<InFile>().map(|f| &f.error));
    matches!(
        start,
        Some(
            StartError::Store {
                source: crate::store::StoreError::Damaged(_)
                    | crate::store::StoreError::Incompatible(_)
                    | crate::store::StoreError::Unwritable(_),
                ..
            } | StartError::Acme(crate::acme::AcmeError::StateDir { .. })
        )
    )
}

/// A start refused for settings the store cannot take (compression, the
/// cluster's settings) names the config file they are in (the message names
/// the keys); the error itself is kept for the exit status.
#[derive(Debug)]
struct InFile {
    file: std::path::PathBuf,
    error: crate::app::StartError,
}

impl std::fmt::Display for InFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.error)
    }
}

impl std::error::Error for InFile {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn in_file(file: &Path, e: crate::app::StartError) -> Box<dyn std::error::Error> {
    match &e {
        crate::app::StartError::Store {
            source: crate::store::StoreError::Incompatible(_),
            ..
        } => Box::new(InFile {
            file: file.to_path_buf(),
            error: e,
        }),
        _ => e.into(),
    }
}

/// The watchdog interval systemd asks for, as libsystemd's sd_watchdog_enabled
/// reads it: `WATCHDOG_USEC`, unless `WATCHDOG_PID` names another process.
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}

/// Ping the watchdog only while the store writes and flushes: a daemon that
/// cannot persist should be restarted, not kept. A networked store (NATS)
/// being away is not cured by a restart: the relay keeps running, answers 503
/// and is not ready until it is back (see `app::watch_store`), and the
/// watchdog only checks that the daemon's runtime still turns.
async fn watchdog(app: std::sync::Arc<App>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        if app.store.needs_health_checks() {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            continue;
        }
        let (sent, since) = (std::time::Instant::now(), app.store_problems());
        let problem = app.check_store(period).await;
        // A disk below `store.min_free` still takes writes (results,
        // retention): pinged, as a restart would not help, but not ready.
        let healthy = problem.is_none();
        match problem {
            Some(why) => {
                app.set_store_state(Some(why));
            }
            None => {
                app.store_answered_probe(sent.elapsed(), since);
                app.look_at_space();
            }
        }
        if healthy {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        } else {
            tracing::error!("store check failed; withholding the watchdog ping");
        }
    }
}

/// A reload under way ([`crate::Handle::reload`]).
/// A reload under way, on a task of its own ([`crate::Handle::reload_task`]).
type Reloading = tokio::task::JoinHandle<(Result<(), crate::reload::ReloadError>, Option<String>)>;

/// Tell systemd a reload begins and start it.
fn begin_reload(handle: &crate::Handle) -> Reloading {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(m) = NotifyState::monotonic_usec_now() {
        states.push(m);
    }
    let _ = sd_notify::notify(false, &states);
    handle.reload_task()
}

/// Log how a reload ended.
fn reload_ended(
    handle: &crate::Handle,
    ended: Result<(Result<(), crate::reload::ReloadError>, Option<String>), tokio::task::JoinError>,
) {
    let (applied, unapplied) = match ended {
        Ok(ended) => ended,
        Err(e) => {
            tracing::error!("the reload ended without an answer ({e}): the running configuration is kept");
            return;
        }
    };
    if let Err(e) = applied {
        match unapplied {
            Some(cert) => tracing::error!("reload refused, keeping the running configuration: {e}; {cert}"),
            None => tracing::error!("reload refused, keeping the running configuration: {e}"),
        }
    }
    if let Some(problem) = handle.app.certificate_problem() {
        tracing::error!("{problem} (hookrelay_tls_cert_valid is 0 until a valid one is served)");
    }
}

async fn serve(config: Config, mut hup: tokio::signal::unix::Signal) -> Result<(), Box<dyn std::error::Error>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // A start waiting for NATS (connecting, setting streams up, checking a
    // write: up to about 15 s) is abandoned by a stop: nothing was accepted
    // yet. A migration of a 0.1 store is not: it runs to its end (asking
    // systemd for the time), then the start is abandoned.
    let file = config.file.clone();
    let started = tokio::select! {
        started = crate::start(config) => Some(started.map_err(|e| in_file(&file, e))?),
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    let Some(handle) = started else {
        // Nothing to close: the store and the tasks opened so far end with
        // the runtime.
        tracing::info!("stopped during start-up");
        return Ok(());
    };
    // The disk looked at now, not at the space watcher's first tick: "ready"
    // was logged just before the lack of room was.
    handle.app.look_at_space();
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status("serving")]);
    match handle.app.not_ready_because() {
        None => tracing::info!(version = env!("CARGO_PKG_VERSION"), "hookrelay ready"),
        Some(why) => tracing::warn!(
            version = env!("CARGO_PKG_VERSION"),
            "hookrelay started, not ready yet: {why} (/readyz answers 503 until it is)"
        ),
    }
    if let Some(problem) = handle.app.certificate_problem() {
        tracing::error!("{problem} (hookrelay_tls_cert_valid is 0 until a valid one is served)");
    }
    if let Some(usec) = watchdog_usec() {
        tokio::spawn(watchdog(handle.app.clone(), Duration::from_micros(usec / 2)));
    }
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let mut certificate = crate::tls::ExpiryWatch::default();
    // The reload under way, polled alongside the signals and the store
    // check: a stop does not wait for it (in cluster mode it may wait up to
    // 10 s for NATS), and a SIGHUP meanwhile reads the file again after it.
    let mut reloading: Option<Reloading> = None;
    let mut again = false;
    loop {
        tokio::select! {
            _ = health.tick() => {
                let served = handle.app.served_certificate().flatten();
                certificate.look(served.as_ref(), handle.app.acme.is_some(), crate::clock::time_of_day());
                if handle.app.store.has_failed() {
                    // sled cannot recover from a write error in-process; what was
                    // acknowledged is on disk. Exit so the supervisor restarts us.
                    let _ = sd_notify::notify(false, &[NotifyState::Status("store failed; restarting")]);
                    tracing::error!(
                        "the store failed (a write, or a read of damaged files); exiting so that hookrelay is restarted"
                    );
                    std::process::exit(EXIT_RESTART.into());
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if reloading.is_some() {
                    if !again {
                        tracing::info!("SIGHUP during a reload: the config file is read again once this reload ends");
                    }
                    again = true;
                } else {
                    reloading = Some(begin_reload(&handle));
                }
            }
            applied = async { reloading.as_mut().expect("a reload under way").await }, if reloading.is_some() => {
                reloading = None;
                reload_ended(&handle, applied);
                if std::mem::take(&mut again) {
                    reloading = Some(begin_reload(&handle));
                } else {
                    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
                }
            }
        }
    }
    if let Some(r) = reloading.take() {
        r.abort();
        tracing::warn!(
            "stopping during a reload: the reload is abandoned and the running configuration kept \
             (the config file applies at the next start)"
        );
    }
    drop(reloading);
    tracing::info!("shutting down");
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    // The grace as reloaded last, plus the margin for stopping delivery and
    // media and closing the store.
    let grace = handle.app.live().config.server.shutdown_grace;
    let bound = grace.saturating_add(SHUTDOWN_MARGIN);
    if tokio::time::timeout(bound, handle.shutdown()).await.is_err() {
        tracing::warn!(
            "shutdown took longer than shutdown_grace ({}) plus {} s; exiting",
            humantime::format_duration(grace),
            SHUTDOWN_MARGIN.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}
