//! A subscriber's lanes one after another. A lane stopped by a reload (its
//! subscriber removed, switched between push and pull, or moved to another
//! route) lets its attempts in flight finish and be recorded ([`finish`]):
//! one already sending is bounded only by its own send's deadline (the
//! `timeout` it was sent with, counted from its send), one that has its
//! answer by the store's patience for recording it
//! ([`Store::record_patience`]: cut off, it would be sent again), one not
//! yet sending is dropped before it sends if it takes too long ([`Phase`]). The next
//! lane of the same subscriber opens its work source only once that lane has
//! finished ([`Turns`]), so work whose attempt is still out is never read
//! again and sent twice. The reload and the other subscribers' lanes do not
//! wait for it; meanwhile the new lane's queue depth is not known
//! ([`UNKNOWN_DEPTH`]).
//!
//! A stopped pull lane is different: its leases may last an hour, so its
//! next lane does not wait for them. It lets go of its turn at once but
//! keeps serving its forwarders' acknowledgements (and its leases' expiry)
//! until its last lease and lapse are over; meanwhile what it leases is
//! [`Held`]: every later lane of the subscriber treats it as handed out
//! ([`WorkSource::adopt`]) and lets it go once that lane recorded it
//! ([`WorkSource::settled_elsewhere`]), so fresh work flows and the leased
//! messages are not sent beside their forwarder's delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OwnedMutexGuard};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::attempt::{Health, READ_ERROR_PAUSE};
pub(super) use super::held::Held;
use crate::store::{Store, Ticket, WorkSource};

/// Time for an attempt's send to end (its answer read) after its `timeout`
/// and begin recording.
const RECORD_MARGIN: Duration = Duration::from_secs(2);

/// A lane's depth while it waits for its turn: its work source is not open.
pub(super) const UNKNOWN_DEPTH: u64 = u64::MAX;

/// A lane's queue depth as last counted; `None` while it waits for its turn.
pub(super) fn depth(d: &AtomicU64) -> Option<u64> {
    Some(d.load(Ordering::Relaxed)).filter(|d| *d != UNKNOWN_DEPTH)
}

/// Where one attempt is, shared by the attempt and its lane: a handover may
/// drop it only before it sends, and waits for one sending or recording
/// until its own deadline.
#[derive(Debug, Default)]
pub(super) struct Phase(Mutex<Stage>);

#[derive(Debug, Default, Clone, Copy)]
enum Stage {
    /// Filtering, verifying, waiting for media, numbering: nothing sent.
    #[default]
    Preparing,
    /// Being sent; its answer is in (or its send failed) by this instant.
    Sending(Instant),
    /// Answered (or failed): its outcome is recorded by this instant, the
    /// store's patience from the answer (not sooner than its send's).
    Recording(Instant),
    /// Dropped by a handover before it sent: it must not send.
    Dropped,
}

impl Phase {
    fn stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the attempt right before it sends with `timeout`: false if
    /// a handover dropped it (then it does not send).
    pub(super) fn send(&self, timeout: Duration) -> bool {
        let mut stage = self.stage();
        match *stage {
            Stage::Dropped => false,
            _ => {
                *stage = Stage::Sending(Instant::now() + timeout + RECORD_MARGIN);
                true
            }
        }
    }

    /// Called by the attempt once it starts its send, after `send` (and
    /// the numbering in between): its deadline counts from now.
    pub(super) fn sending(&self, timeout: Duration) {
        let mut stage = self.stage();
        if let Stage::Sending(_) = *stage {
            *stage = Stage::Sending(Instant::now() + timeout + RECORD_MARGIN);
        }
    }

    /// Whether a handover dropped the attempt before it sent.
    fn dropped(&self) -> bool {
        matches!(*self.stage(), Stage::Dropped)
    }

    /// Called by the attempt once its send ended, before it records the
    /// outcome: the store may take up to `patience` for that (waited for
    /// at least until the send's own deadline).
    pub(super) fn recording(&self, patience: Duration) {
        let mut stage = self.stage();
        // Never sooner than its send's deadline: an early answer keeps it.
        if let Stage::Sending(deadline) = *stage {
            *stage = Stage::Recording(deadline.max(Instant::now() + patience));
        }
    }

    /// Until when a handover waits for the attempt, or `None` if not any
    /// more: one still preparing at `prepare_until` is dropped then, one
    /// sending or recording is waited for until its own deadline.
    fn wait_until(&self, now: Instant, prepare_until: Instant) -> Option<Instant> {
        let mut stage = self.stage();
        match *stage {
            Stage::Preparing if now >= prepare_until => {
                *stage = Stage::Dropped;
                None
            }
            Stage::Preparing => Some(prepare_until),
            Stage::Sending(deadline) | Stage::Recording(deadline) => Some(deadline).filter(|d| *d > now),
            Stage::Dropped => None,
        }
    }
}

/// One turn per subscriber name: held by a lane's task for its whole life.
/// Closed by a shutdown: a lane still waiting for its turn then never opens
/// its work source (a lane stopped first would otherwise hand it the turn
/// in the middle of the shutdown).
pub(super) struct Turns {
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// What stopped pull lanes of each subscriber still lease.
    held: Mutex<HashMap<String, Arc<Held>>>,
    closed: watch::Sender<bool>,
    /// The end of a shutdown's grace: pull lanes forget what they still
    /// lease (see [`Turns::forget_leases`]).
    forget: watch::Sender<bool>,
}

impl Default for Turns {
    fn default() -> Self {
        Turns {
            turns: Mutex::default(),
            held: Mutex::default(),
            closed: watch::channel(false).0,
            forget: watch::channel(false).0,
        }
    }
}

/// A lane's turn: the subscriber's next lane waits until it is dropped.
pub(super) struct Turn {
    _held: OwnedMutexGuard<()>,
    held: Arc<Held>,
}

impl Turn {
    /// What stopped pull lanes of the subscriber still lease.
    pub(super) fn held(&self) -> Arc<Held> {
        self.held.clone()
    }
}

/// How a new lane gets its work source.
pub(super) struct Opening {
    how: How,
    held: Arc<Held>,
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
        let held_work = self.held(name);
        let how = match turn.clone().try_lock_owned() {
            Ok(held) => match store.work_source(name) {
                Ok(mut source) => {
                    held_work.adopt_into(&mut source);
                    How::Now(
                        source,
                        Turn {
                            _held: held,
                            held: held_work.clone(),
                        },
                    )
                }
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
            held: held_work,
            closed: self.closed.subscribe(),
        }
    }

    /// What stopped pull lanes of subscriber `name` still lease.
    pub(super) fn held(&self, name: &str) -> Arc<Held> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Turns true at a shutdown.
    pub(super) fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// A shutdown: no lane waiting for its turn gets it any more.
    pub(super) fn close(&self) {
        let _ = self.closed.send(true);
    }

    /// Turns true when a shutdown's grace for pull leases is over.
    pub(super) fn forgetting(&self) -> watch::Receiver<bool> {
        self.forget.subscribe()
    }

    /// A shutdown's grace is over: pull lanes still serving acknowledgements
    /// of their leases forget them (offered again after the restart).
    pub(super) fn forget_leases(&self) {
        let _ = self.forget.send(true);
    }
}

impl Opening {
    /// Pending deliveries as far as known before the source is open
    /// ([`UNKNOWN_DEPTH`] while an earlier lane finishes).
    pub(super) fn depth(&self) -> u64 {
        match &self.how {
            How::Now(source, _) => source.depth(),
            How::Held(_) | How::After(_) => UNKNOWN_DEPTH,
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
        let Opening {
            how,
            held: held_work,
            mut closed,
        } = self;
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
                Ok(mut source) => {
                    held_work.adopt_into(&mut source);
                    return Some((
                        source,
                        Turn {
                            _held: held,
                            held: held_work,
                        },
                    ));
                }
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

/// What [`finish`] does with attempts not sending yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unsent {
    /// A reload: wait for them until the lane's `timeout` and the margin,
    /// then drop them and give their work back to the next lane.
    WaitThenGiveBack,
    /// A shutdown: drop them at once; their work stays in the store.
    Leave,
}

/// A stopped push lane's attempts in flight, each with its ticket, when it
/// was spawned and its [`Phase`]. Each is waited for as it is let go in the
/// lane: one sending until its own deadline (its send's start, the
/// `timeout` it was sent with, a margin); one answered until the store's
/// patience for recording it, from the answer; one not yet sending
/// until `timeout` (the lane's, from now) and the margin, then dropped
/// before it sends (its work is given back at once, its attempt number
/// unspent, and read again by the next lane: nothing was sent). What is
/// not recorded by then is abandoned (sent again after a restart; in
/// cluster mode after `takeover`). `mode` says what to do with attempts
/// not sending yet, `None` to abandon everything; it is read at the start
/// and at each change of `abandon` (the caller marks its value seen before
/// it decides to finish): a shutdown begun while a reload's lane finishes
/// drops what is not sending yet at once (it would otherwise send during
/// the grace and be cut off at its end: sent twice), and a shutdown's end
/// ends the wait.
pub(super) async fn finish(
    tasks: &mut JoinSet<(Health, bool)>,
    tickets: &mut HashMap<tokio::task::Id, (Ticket, Instant, Arc<Phase>)>,
    source: &mut WorkSource,
    timeout: Duration,
    mode: impl Fn() -> Option<Unsent>,
    abandon: &mut watch::Receiver<bool>,
    in_flight: &std::sync::atomic::AtomicUsize,
) {
    let Some(unsent) = mode() else {
        return;
    };
    let mut prepare_until = match unsent {
        Unsent::WaitThenGiveBack => Instant::now() + timeout + RECORD_MARGIN,
        Unsent::Leave => Instant::now(),
    };
    let mut give_back = unsent == Unsent::WaitThenGiveBack;
    let mut abandoned = false;
    loop {
        let now = Instant::now();
        let Some(until) = tickets
            .values()
            .filter_map(|(_, _, phase)| phase.wait_until(now, prepare_until))
            .min()
        else {
            break;
        };
        let done = tokio::select! {
            done = tasks.join_next_with_id() => done,
            _ = tokio::time::sleep_until(until) => continue,
            _ = abandon.changed() => match mode() {
                Some(Unsent::Leave) => {
                    prepare_until = Instant::now();
                    give_back = false;
                    continue;
                }
                Some(Unsent::WaitThenGiveBack) => continue,
                None => {
                    abandoned = true;
                    None
                }
            }
        };
        let Some(done) = done else {
            break;
        };
        let (id, recorded) = match done {
            Ok((id, (_, recorded))) => (id, recorded),
            Err(e) => (e.id(), false),
        };
        if let Some((ticket, _, phase)) = tickets.remove(&id) {
            in_flight.store(tickets.len(), std::sync::atomic::Ordering::Relaxed);
            if recorded {
                source.done(&ticket).await;
            } else if phase.dropped() && give_back {
                source.give_back(&ticket).await;
            }
        }
    }
    // Dropped attempts still preparing end here; their work is given back
    // once they cannot write anything more (not in a shutdown, which does
    // not wait for the store: it comes again after `takeover`).
    tasks.abort_all();
    if abandoned || !give_back {
        return;
    }
    while tasks.join_next().await.is_some() {}
    for (_, (ticket, _, phase)) in tickets.drain() {
        // A shutdown begun meanwhile does not wait for the store either.
        if phase.dropped() && !abandon.has_changed().unwrap_or(true) {
            source.give_back(&ticket).await;
        }
    }
}

#[cfg(test)]
#[path = "handover_tests.rs"]
mod tests;
