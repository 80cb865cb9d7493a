//! Retention: every minute (the first time ten seconds after start), remove
//! the events older than `store.retention` whose deliveries are all over, a
//! dead letter only `retention` after it died, and the expected tasks that
//! settled before the same cutoff (an open task only when nothing polls it:
//! `store::Task::expired`); then the media URLs that were
//! archived (or failed) longer than `media.retention` ago, deleting the files
//! no remaining URL refers to, and a local media directory's stale partial
//! files (a crashed download's, see `LocalStore::remove_stale_parts`). The store does the work in bounded steps
//! between its other writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::state::App;

/// How long after start the first sweep runs, and how often after that.
pub const FIRST_SWEEP: Duration = Duration::from_secs(10);
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The sweeper task (ends when `stop` turns true).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut wait = FIRST_SWEEP;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = SWEEP_EVERY;
        let retention = app.live().config.store.retention;
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let sweep = app.store.sweep(cutoff);
        tokio::select! {
            _ = stop.changed() => return,
            r = sweep => match r {
                Ok(0) => tracing::debug!("retention: sweep found no expired event"),
                Ok(removed) => tracing::info!(removed, "retention: removed expired events"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
        match app.store.sweep_tasks(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "retention: removed expired tasks"),
            Err(e) => tracing::warn!(error = %e, "task retention sweep failed"),
        }
        let media_retention = app.media.settings().retention;
        let cutoff = now_ms().saturating_sub(media_retention.as_millis() as u64);
        tokio::select! {
            _ = stop.changed() => return,
            _ = sweep_media(&app, cutoff) => {}
        }
        remove_stale_parts(&app).await;
    }
}

/// The time retention counts back from: the scheduling time, or the time of
/// day when the wall clock was stepped back since the start. A relay that
/// booted with its clock ahead (no RTC, NTP not synced yet) keeps that clock
/// for its schedules until it restarts; counted from it, retention would
/// remove what an earlier run stored (dead letters, dedupe keys) up to the
/// step too early. The earlier of the two never removes anything early.
fn now_ms() -> u64 {
    let day = crate::clock::time_of_day()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    crate::clock::now_ms().min(day)
}

/// Remove a local media store's partial files a crashed download left (also
/// one of another relay sharing the directory), once they are stale; a
/// download in flight, this relay's or a peer's, keeps its file.
pub async fn remove_stale_parts(app: &App) {
    let settings = app.media.settings();
    let crate::media::MediaStore::Local(local) = &settings.store else {
        return;
    };
    let (local, age) = (local.clone(), settings.stale_parts);
    if let Ok(removed @ 1..) = tokio::task::spawn_blocking(move || local.remove_stale_parts(age)).await {
        tracing::info!(removed, "media: removed partial files of crashed downloads");
    }
}

/// One media retention pass: forget the URLs that became final before
/// `cutoff_ms`, then delete the files none of the remaining URLs refers to
/// (also those an earlier pass released and could not delete, or did not
/// get to: the store keeps them released until they are settled).
/// Returns (URLs forgotten, files deleted).
pub async fn sweep_media(app: &App, cutoff_ms: u64) -> (usize, usize) {
    match app.store.sweep_media(cutoff_ms).await {
        Ok((0, files)) if files.is_empty() => (0, 0),
        Ok((removed, files)) => {
            let deleted = app.media.delete_files(&app.store, &files).await;
            tracing::info!(removed, files = deleted, "media retention: removed expired media");
            (removed, deleted)
        }
        Err(e) => {
            tracing::warn!(error = %e, "media retention sweep failed");
            (0, 0)
        }
    }
}
