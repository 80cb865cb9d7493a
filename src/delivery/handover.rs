//! A subscriber's lanes one after another. A lane stopped by a reload (its
//! subscriber removed, switched between push and pull, or moved to another
//! route) lets its attempts in flight finish and be recorded, bounded by the
//! subscriber's `timeout` ([`finish`]); the next lane of the same subscriber
//! opens its work source only once that lane has finished ([`Turns`]), so
//! work whose attempt is still out is never read again and sent twice. The
//! reload and the other subscribers' lanes do not wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OwnedMutexGuard};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::attempt::{Health, READ_ERROR_PAUSE};
use crate::store::{Store, StoreError, Ticket, WorkSource};

/// Time for recording an attempt that ended at the subscriber's `timeout`.
const RECORD_MARGIN: Duration = Duration::from_secs(2);

/// One turn per subscriber name: held by a lane's task for its whole life.
#[derive(Default)]
pub(super) struct Turns(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// A lane's turn: the subscriber's next lane waits until it is dropped.
pub(super) struct Turn {
    _held: OwnedMutexGuard<()>,
}

/// How a new lane gets its work source.
// One per lane start, moved once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Opening {
    /// No earlier lane of the subscriber runs: open now.
    Now(WorkSource, Turn),
    /// An earlier lane is finishing its attempts: open once it has.
    After(Arc<tokio::sync::Mutex<()>>),
}

impl Turns {
    /// Open subscriber `name`'s work source now if no earlier lane of it
    /// runs (an error then refuses the reload), else later.
    pub(super) fn open(&self, store: &Store, name: &str) -> Result<Opening, StoreError> {
        let turn = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        match turn.clone().try_lock_owned() {
            Ok(held) => Ok(Opening::Now(store.work_source(name)?, Turn { _held: held })),
            Err(_) => {
                tracing::info!(subscriber = %name, "the subscriber's stopped lane is finishing its attempts in flight; its new lane starts after it");
                Ok(Opening::After(turn))
            }
        }
    }
}

impl Opening {
    /// Pending deliveries as far as known before the source is open.
    pub(super) fn depth(&self) -> u64 {
        match self {
            Opening::Now(source, _) => source.depth(),
            Opening::After(_) => 0,
        }
    }

    /// The work source and the lane's turn, once the earlier lane finished;
    /// `None` if the new lane was stopped meanwhile.
    pub(super) async fn source(
        self,
        store: &Store,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(WorkSource, Turn)> {
        let turn = match self {
            Opening::Now(source, turn) => return Some((source, turn)),
            Opening::After(turn) => turn,
        };
        let held = tokio::select! {
            held = turn.lock_owned() => held,
            _ = stop.wait_for(|s| *s) => return None,
        };
        loop {
            match store.work_source(name) {
                Ok(source) => return Some((source, Turn { _held: held })),
                Err(e) => {
                    tracing::error!(subscriber = %name, error = %e, "cannot open the subscriber's work source; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                        _ = stop.wait_for(|s| *s) => return None,
                    }
                }
            }
        }
    }
}

/// A stopped push lane's attempts in flight: each that ends within the
/// subscriber's `timeout` (and a margin to record it) is let go as the lane
/// does; the others are abandoned (sent again after a restart). A change
/// of `abandon` (a shutdown) ends the wait early: the caller marks its
/// value seen before it decides to finish.
pub(super) async fn finish(
    tasks: &mut JoinSet<(Health, bool)>,
    tickets: &mut HashMap<tokio::task::Id, (Ticket, Instant)>,
    source: &mut WorkSource,
    timeout: Duration,
    abandon: &mut watch::Receiver<bool>,
) {
    let deadline = Instant::now() + timeout + RECORD_MARGIN;
    loop {
        let done = tokio::select! {
            done = tasks.join_next_with_id() => done,
            _ = tokio::time::sleep_until(deadline) => None,
            _ = abandon.changed() => None,
        };
        let Some(done) = done else {
            break;
        };
        if let Ok((id, (_, true))) = done {
            if let Some((ticket, _)) = tickets.remove(&id) {
                source.done(&ticket).await;
            }
        }
    }
    tasks.abort_all();
}
