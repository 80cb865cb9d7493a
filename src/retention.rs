//! Retention: every minute (the first time ten seconds after start), remove
//! the events older than `store.retention` whose deliveries are all over, a
//! dead letter only `retention` after it died. The store does the work in
//! bounded steps between its other writes.

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
        let cutoff = crate::clock::now_ms().saturating_sub(retention.as_millis() as u64);
        let sweep = app.store.sweep(cutoff);
        tokio::select! {
            _ = stop.changed() => return,
            r = sweep => match r {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "retention: removed expired events"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
    }
}
