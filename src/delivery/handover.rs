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
use crate::store::{Store, Ticket, WorkSource};

/// Time for recording an attempt that ended at the subscriber's `timeout`.
const RECORD_MARGIN: Duration = Duration::from_secs(2);

/// One turn per subscriber name: held by a lane's task for its whole life.
/// Closed by a shutdown: a lane still waiting for its turn then never opens
/// its work source (a lane stopped first would otherwise hand it the turn
/// in the middle of the shutdown).
pub(super) struct Turns {
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    closed: watch::Sender<bool>,
}

impl Default for Turns {
    fn default() -> Self {
        Turns {
            turns: Mutex::default(),
            closed: watch::channel(false).0,
        }
    }
}

/// A lane's turn: the subscriber's next lane waits until it is dropped.
pub(super) struct Turn {
    _held: OwnedMutexGuard<()>,
}

/// How a new lane gets its work source.
pub(super) struct Opening {
    how: How,
    /// Turns true at a shutdown.
    closed: watch::Receiver<bool>,
}

// One per lane start, moved once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum How {
    /// No earlier lane of the subscriber runs: opened now.
    Now(WorkSource, Turn),
    /// The turn is the lane's but its work source could not be opened
    /// (logged): opened by the lane's task, trying again.
    Held(OwnedMutexGuard<()>),
    /// An earlier lane is finishing its attempts: open once it has.
    After(Arc<tokio::sync::Mutex<()>>),
}

impl Turns {
    /// Open subscriber `name`'s work source now if no earlier lane of it
    /// runs, else later. Never fails, so that a reload commits whole once
    /// the store knows its subscribers: a source that cannot be opened now
    /// is opened by the lane's task, trying again.
    pub(super) fn open(&self, store: &Store, name: &str) -> Opening {
        let turn = self
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let how = match turn.clone().try_lock_owned() {
            Ok(held) => match store.work_source(name) {
                Ok(source) => How::Now(source, Turn { _held: held }),
                Err(e) => {
                    tracing::error!(subscriber = %name, error = %e, "cannot open the subscriber's work source; trying again");
                    How::Held(held)
                }
            },
            Err(_) => {
                tracing::info!(subscriber = %name, "the subscriber's stopped lane is finishing its attempts in flight; its new lane starts after it");
                How::After(turn)
            }
        };
        Opening {
            how,
            closed: self.closed.subscribe(),
        }
    }

    /// A shutdown: no lane waiting for its turn gets it any more.
    pub(super) fn close(&self) {
        let _ = self.closed.send(true);
    }
}

impl Opening {
    /// Pending deliveries as far as known before the source is open.
    pub(super) fn depth(&self) -> u64 {
        match &self.how {
            How::Now(source, _) => source.depth(),
            How::Held(_) | How::After(_) => 0,
        }
    }

    /// The work source and the lane's turn, once the earlier lane finished;
    /// `None` if the new lane was stopped meanwhile, or a shutdown began.
    pub(super) async fn source(
        self,
        store: &Store,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(WorkSource, Turn)> {
        let Opening { how, mut closed } = self;
        let held = match how {
            How::Now(source, turn) => return Some((source, turn)),
            How::Held(held) => held,
            How::After(turn) => tokio::select! {
                // A stop or a shutdown seen together with the turn wins.
                biased;
                _ = stop.wait_for(|s| *s) => return None,
                _ = closed.wait_for(|c| *c) => return None,
                held = turn.lock_owned() => held,
            },
        };
        loop {
            if *closed.borrow() {
                return None;
            }
            match store.work_source(name) {
                Ok(source) => return Some((source, Turn { _held: held })),
                Err(e) => {
                    tracing::error!(subscriber = %name, error = %e, "cannot open the subscriber's work source; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                        _ = stop.wait_for(|s| *s) => return None,
                        _ = closed.wait_for(|c| *c) => return None,
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
