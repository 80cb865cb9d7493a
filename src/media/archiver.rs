//! The archiver: the task that takes due media URLs from the store, runs up
//! to `media.concurrency` tries at once ([`super::job`]), and hands each
//! recorded try back. It starts after the store is open and never sits on
//! the ingest path: an event's media work is already on disk when the
//! provider gets its `200`, and this task picks it up from there (also after
//! a restart, since nothing here is needed to keep the work).
//!
//! It runs on its own small runtime (one worker, plus the blocking threads
//! that hash and write): copying gigabytes must not queue behind or in front
//! of the request workers that answer providers. Measured (bench/media.sh):
//! with downloads on the request workers the `200`'s p50 rose from 2 ms to
//! 35 ms while large files were archived; on their own runtime it stays at
//! 2 ms. (Lowering these threads' CPU priority as well only cost throughput.)
//!
//! A reload swaps its settings ([`ArchiveSettings`]); tries in flight finish
//! with the settings they started with (a file stored in a store a reload
//! replaced meanwhile is copied into the new one: `super::store_changed`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::settings::ArchiveSettings;
use super::storage::DigestLocks;
use crate::clock;
use crate::metrics::Metrics;
use crate::store::{MediaOutcome, MediaSource, MediaTicket, Store};

/// After the store failed a read, wait this long before reading again.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A media store that failed its check at start or after a reload is
/// checked again after this, then after twice as long each time, up to
/// [`RECHECK_MAX`] (as a URL waiting for the store looks at it at most a
/// minute apart).
const RECHECK_FIRST: Duration = Duration::from_secs(5);
const RECHECK_MAX: Duration = Duration::from_secs(60);

/// How long a stop waits for the aborts of the S3 multipart uploads its
/// tries had begun (short: it is part of `supervise::SHUTDOWN_MARGIN`).
pub const ABORT_WAIT: Duration = Duration::from_secs(1);

/// The archiver, shared between its task and the rest of the daemon.
pub struct Archiver {
    /// What tries run with; a reload replaces it whole.
    settings: RwLock<Arc<ArchiveSettings>>,
    /// Wakes the task when the settings change (concurrency may have grown).
    changed: Arc<Notify>,
    /// Tries running now (for the admin API and metrics).
    in_flight: AtomicUsize,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The archiver's own runtime (shut down without blocking on drop).
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    /// Per-digest locks shared by the tries and media retention.
    files: DigestLocks,
    /// Checks of the store begun ([`Archiver::check_store`]): only the
    /// newest goes on checking.
    checks: std::sync::atomic::AtomicU64,
    /// Whether a route archives (false after a reload that left none): a
    /// store a download finds failing then is not looked at again.
    archiving: std::sync::atomic::AtomicBool,
}

impl Drop for Archiver {
    fn drop(&mut self) {
        // From a thread of its own: this may run in any async context,
        // even on the archiver's runtime.
        if let Some(rt) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::thread::Builder::new()
                .name("hookrelay-media-stop".into())
                .spawn(move || rt.shutdown_background());
        }
    }
}

/// Blocking threads beyond one per download: name lookups, file deletes.
const BLOCKING_SPARE: usize = 64;

impl Archiver {
    /// Start the task over the store's media work, on its own runtime.
    pub fn start(store: Store, metrics: Arc<Metrics>, settings: ArchiveSettings) -> std::io::Result<Arc<Archiver>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            // A local-store download holds a blocking thread (its file's
            // writer) for its whole life, and name lookups use the pool too:
            // room for `media.concurrency` at its largest, and the lookups.
            // Threads are made only as they are needed.
            .max_blocking_threads(crate::config::MAX_CONCURRENCY + BLOCKING_SPARE)
            .thread_name("hookrelay-media")
            .enable_all()
            .build()?;
        let (stop, stop_rx) = watch::channel(false);
        let me = Arc::new(Archiver {
            settings: RwLock::new(Arc::new(settings)),
            changed: Arc::default(),
            in_flight: AtomicUsize::new(0),
            stop,
            task: std::sync::Mutex::new(None),
            runtime: std::sync::Mutex::new(None),
            files: DigestLocks::default(),
            checks: Default::default(),
            archiving: std::sync::atomic::AtomicBool::new(true),
        });
        let source = store.media_source();
        // The task holds a weak handle: dropping the daemon drops the archiver.
        let task = runtime.spawn(run(Arc::downgrade(&me), store, source, metrics, stop_rx));
        *me.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        *me.runtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime);
        Ok(me)
    }

    pub fn settings(&self) -> Arc<ArchiveSettings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// New settings from a reload.
    pub fn update(&self, settings: ArchiveSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
        self.changed.notify_one();
    }

    /// Tell now whether the store of the current settings takes files, not
    /// at the first callback with media (downloads, and `after_archive`
    /// deliveries, wait for it meanwhile): at start, and after a reload
    /// that opened another store. A missing bucket or wrong keys are logged
    /// as an error and set `gauge` (`hookrelay_media_store_unavailable`); a
    /// store that takes files clears it. A store that fails is checked
    /// again ([`RECHECK_FIRST`], doubling to [`RECHECK_MAX`]) until it takes
    /// files, so the gauge clears when it is mended even if no callback with
    /// media comes meanwhile (it stayed 1 until one did). Each look checks
    /// the store as the settings in force have it (a reload may have
    /// lowered a local directory's floor: the floor the check began with
    /// set the gauge back to 1 over downloads going on), and only while
    /// that store is still in use and this is the newest check: a check of
    /// one a later reload replaced (its probe may take 30 s) would
    /// otherwise set the gauge after the new store's check. On the
    /// archiver's runtime: a local check that hangs (a disk in D state)
    /// holds one of its bounded blocking threads, not the request
    /// runtime's.
    pub fn check_store(self: &Arc<Self>, gauge: prometheus_client::metrics::gauge::Gauge) {
        self.archiving.store(true, Ordering::Relaxed);
        self.spawn_check(gauge, false);
    }

    /// A download found the store failing (and said so): looked at again
    /// as [`Self::check_store`] does, from [`RECHECK_FIRST`] on, so that the
    /// gauge clears when it is mended even if no download is due then
    /// (it stayed 1 until one was). Not while no route archives (nothing
    /// would end the checks of a store no route uses).
    pub fn check_store_found_failing(self: &Arc<Self>, gauge: prometheus_client::metrics::gauge::Gauge) {
        if self.archiving.load(Ordering::Relaxed) {
            self.spawn_check(gauge, true);
        }
    }

    /// The loop of checks; `told`: the failure is logged already, and the
    /// first look waits [`RECHECK_FIRST`].
    fn spawn_check(self: &Arc<Self>, gauge: prometheus_client::metrics::gauge::Gauge, told: bool) {
        let (me, first) = (Arc::downgrade(self), self.settings());
        let this = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        let mut stop = self.stop.subscribe();
        // The store in force, while this check is the newest and the
        // archiver runs; held only for the look, so dropping the daemon
        // drops the archiver.
        let current = move |stop: &watch::Receiver<bool>| {
            let me = me.upgrade()?;
            let settings = me.settings();
            (me.checks.load(Ordering::Relaxed) == this && settings.shares_store(&first) && !*stop.borrow())
                .then_some(settings)
        };
        let check = async move {
            let (mut pause, mut told) = (RECHECK_FIRST, told);
            if told {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
            }
            loop {
                let Some(settings) = current(&stop) else { return };
                let ready = settings.store.check_ready().await;
                if current(&stop).is_none() {
                    return;
                }
                match ready {
                    Err(e) => {
                        gauge.set(1);
                        if told {
                            tracing::debug!(error = %e, "media store: still failing its check");
                        } else {
                            tracing::error!(error = %e, "media store: downloads wait until it takes files");
                            told = true;
                        }
                    }
                    Ok(()) => {
                        if gauge.set(0) == 1 {
                            tracing::info!(store = %settings.store.describe(), "the media store takes files again: downloads go on");
                        }
                        return;
                    }
                }
                drop(settings);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
                pause = (pause * 2).min(RECHECK_MAX);
            }
        };
        match self.runtime.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(rt) => drop(rt.spawn(check)),
            None => drop(tokio::spawn(check)),
        }
    }

    /// A reload that leaves no route archiving: a check of the store still
    /// running stops, and the gauge is cleared (nothing waits for the store;
    /// URLs stored before that are still tried, and set it again if it
    /// still fails).
    pub fn forget_store_checks(&self, gauge: &prometheus_client::metrics::gauge::Gauge) {
        self.archiving.store(false, Ordering::Relaxed);
        self.checks.fetch_add(1, Ordering::Relaxed);
        gauge.set(0);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Stop the task; tries in flight are abandoned (their URLs stay due in
    /// the store and are tried again after a restart). The multipart uploads
    /// to S3 they had begun are aborted, waiting at most [`ABORT_WAIT`].
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        if !super::s3_abort::wait_aborts(ABORT_WAIT).await {
            tracing::warn!("stopped before the multipart uploads of stopped media uploads were aborted (a lifecycle rule on tmp/ clears them)");
        }
        if let Some(rt) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() {
            rt.shutdown_background();
        }
    }

    /// Delete stored files that media retention released; how many went.
    /// Each is checked again under its digest's lock: a try that found the
    /// file stored (the same bytes from another URL) after the sweep looked
    /// has recorded it by then, and the file stays (the check reads the
    /// URL rows: [`Store::media_referenced`]). The digests settled are
    /// forgotten by the store; the others (the media store or the check
    /// failed) stay released, for the next pass.
    pub async fn delete_files(&self, db: &Store, digests: &[String]) -> usize {
        let store = self.settings().store.clone();
        let (deleted, settled) = store
            .delete_released(
                digests,
                &self.files,
                |chunk| async move { db.media_referenced(chunk).await },
            )
            .await;
        if let Err(e) = db.media_released_settled(settled).await {
            // Asked again by the next pass: deleting twice is harmless.
            tracing::warn!(error = %e, "media retention could not note the files it settled; the next pass looks at them again");
        }
        deleted
    }
}

async fn run(
    me: std::sync::Weak<Archiver>,
    store: Store,
    mut source: MediaSource,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let signal = source.signal();
    let mut tasks: JoinSet<bool> = JoinSet::new();
    // Each try's ticket, and its step in the retry schedule.
    let mut tickets: HashMap<tokio::task::Id, (MediaTicket, u32)> = HashMap::new();
    loop {
        // Held only between waits, so dropping the daemon drops the archiver.
        let Some(strong) = me.upgrade() else { break };
        if *stop.borrow() {
            break;
        }
        let settings = strong.settings();
        let changed = strong.changed.clone();
        let capacity = settings.concurrency.saturating_sub(tickets.len());
        let now = Instant::now();
        let mut took = 0;
        if capacity > 0 {
            match source.take(capacity, clock::now_ms()).await {
                Ok(work) => {
                    took = work.len();
                    for w in work {
                        let ticket = (w.ticket.clone(), w.step);
                        let job = super::job::run(
                            settings.clone(),
                            store.clone(),
                            metrics.clone(),
                            strong.files.clone(),
                            w,
                            me.clone(),
                        );
                        let handle = tasks.spawn(job);
                        tickets.insert(handle.id(), ticket);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read media work from the store");
                    tokio::select! {
                        _ = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        strong.in_flight.store(tickets.len(), Ordering::Relaxed);
        drop(strong);
        metrics.media_in_flight.set(tickets.len() as i64);
        // Wait for what can change what is due: a finished try, new work,
        // the next due time, new settings.
        let wake_at = clock::next_wake(capacity, took, source.next_due(), now);
        if wake_at.is_some_and(|t| t <= now) {
            tokio::task::yield_now().await;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(done) = tasks.join_next_with_id() => {
                let (id, recorded, panicked) = match done {
                    Ok((id, recorded)) => (id, recorded, None),
                    Err(e) => (e.id(), false, Some(e.to_string())),
                };
                let Some((ticket, step)) = tickets.remove(&id) else { continue };
                // A try that panicked recorded nothing: record it as a failed
                // try (retried on the schedule), so that its URL and the
                // after_archive deliveries waiting for it do not wait for a
                // restart.
                let recorded = match panicked {
                    None => recorded,
                    Some(why) => record_panicked(&me, &store, &metrics, &ticket, step, &why).await,
                };
                // Unrecorded work stays handed out: never two tries at once.
                if recorded {
                    source.done(&ticket).await;
                }
            }
            _ = signal.notified() => {}
            _ = changed.notified() => {}
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
        }
    }
    tasks.abort_all();
    // Until each try is dropped: an S3 upload try starts the abort of its
    // multipart upload then, which `Archiver::stop` waits for.
    while tasks.join_next().await.is_some() {}
    if let Some(me) = me.upgrade() {
        me.in_flight.store(0, Ordering::Relaxed);
    }
}

/// Record the try of `ticket` that panicked (`why`) as a failed try: a
/// retry after the schedule's next delay, or failed for good past its end.
/// Whether the record was written (if not, the work stays handed out until
/// a restart, as any unrecorded try).
async fn record_panicked(
    me: &std::sync::Weak<Archiver>,
    store: &Store,
    metrics: &Metrics,
    ticket: &MediaTicket,
    step: u32,
    why: &str,
) -> bool {
    let Some(archiver) = me.upgrade() else { return false };
    let delay = archiver.settings().retry.next_delay(step, None);
    drop(archiver);
    let error = "the archive try stopped unexpectedly (an internal error, logged)".to_string();
    let outcome = match delay {
        Some(d) => {
            metrics.media_file("retry");
            tracing::error!(error = %why, retry_in_ms = d.as_millis() as u64,
                "media try failed unexpectedly; it is tried again on the retry schedule");
            MediaOutcome::Retry {
                due_ms: clock::now_ms() + d.as_millis() as u64,
                error,
            }
        }
        None => {
            metrics.media_file("failed");
            tracing::error!(error = %why, "media try failed unexpectedly at the end of its retry schedule; failed");
            MediaOutcome::Failed { error }
        }
    };
    match store.record_media(ticket, outcome).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "cannot record a media try that failed unexpectedly; it is tried again after a restart");
            false
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
