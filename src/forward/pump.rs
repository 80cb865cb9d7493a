//! The forwarder's loop: long-poll the relay for as many messages as there
//! are free slots (`--concurrency`), POST each to the local service in its
//! own task, and pass the outcome to the [`acker`](super::acker). When the
//! relay is away, back off with jitter and try again. On stop: no new pulls,
//! messages being delivered get a grace period to finish, the rest are
//! handed back, the last acknowledgements are sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::acker::{self, End, Finished};
pub(super) use super::active::Active;
use super::backoff::Backoff;
use super::client::{Local, Relay, RelayError};
use super::local_post::deliver;
use super::pause::Pause;
use super::probe::{self, Said};
pub(super) use super::release::hand_over;
use super::release::{release_now, release_unstarted};
use super::status::Status;
use super::unacked::Unacked;
use crate::pull::wire::{self, MAX_PER_PULL};

/// How long a stop waits for messages being delivered locally.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a stop waits for the last acknowledgements to reach the relay,
/// besides what the deliveries left of [`STOP_GRACE`] (the shipped unit's
/// `TimeoutStopSec=20s` leaves room for both).
const ACK_GRACE: Duration = Duration::from_secs(5);

/// Why the forwarder cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("the relay refused the token for this URL (no pull subscriber by that name, or a wrong token)")]
    Refused,
    #[error("the relay refused the request: {0}")]
    Refusal(String),
    #[error(
        "the pull URL answered 200 with something that is not the relay's pull answer ({0}): a captive portal, or a \
         proxy between here and the relay replacing answers. Stopping: that request may have leased messages, and \
         pulling again would lease them again and again, each lease running out into a failed attempt (dead \
         letters in the end); fix the path to the relay and start hookrelay forward again"
    )]
    NotPullAnswer(String),
    #[error(
        "the relay's acknowledgement URL refused this forwarder's acknowledgements ({0}): a proxy on the way that \
         passes pulls but not POST …/ack, or a token the relay no longer takes. Stopping: every message delivered \
         here would be offered again when its lease ran out, and end a dead letter; fix the path to the relay"
    )]
    AcksRefused(String),
}

/// The exit code of a forwarder stopped by something other than a refusal:
/// the shipped unit does not restart it (`RestartPreventExitStatus=`), as
/// every start would lease messages into the same wrong answer.
pub const EXIT_NOT_PULL_ANSWER: u8 = 3;

impl Fatal {
    /// The process's exit code: `2` for a refusal (a token or request the
    /// relay refused: restarted slowly by the unit), [`EXIT_NOT_PULL_ANSWER`]
    /// for an answer that was not the relay's.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Refused | Fatal::Refusal(_) | Fatal::AcksRefused(_) => 2,
            Fatal::NotPullAnswer(_) => EXIT_NOT_PULL_ANSWER,
        }
    }
}

pub struct Pump {
    pub relay: Arc<Relay>,
    pub local: Arc<Local>,
    pub status: Arc<Status>,
    pub concurrency: usize,
    /// Delivered here, acknowledgement not confirmed: not posted again.
    pub unacked: Arc<Unacked>,
}

impl Pump {
    /// Forward until `stop` turns true (clean stop) or the relay refuses us.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), Fatal> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let (done_tx, done_rx) = mpsc::channel::<Finished>(4 * MAX_PER_PULL.max(self.concurrency));
        let (refused_tx, mut refused) = watch::channel(None);
        let acker = tokio::spawn(acker::run(
            self.relay.clone(),
            done_rx,
            self.unacked.clone(),
            refused_tx,
        ));
        let active: Arc<Active> = Arc::default();
        let mut deliveries = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut result = Ok(());
        // The lease last checked against `--timeout`: checked again when a
        // reload on the relay changes it.
        let mut lease_checked = None;
        let mut more_than_asked = false;
        let mut slow = SlowAnswers::default();
        // When the stop was seen while a pull's answer was arriving: the
        // stop's grace counts from then (one grace for the answer and the
        // deliveries, inside the unit's `TimeoutStopSec`).
        let mut stop_seen = None;
        let mut pause = Pause::default();
        loop {
            if let Some(why) = refused.borrow_and_update().clone() {
                result = Err(Fatal::AcksRefused(why));
                break;
            }
            while deliveries.try_join_next().is_some() {}
            // The local service failing every delivery: one message at a
            // time, once those in flight are answered, after a pause.
            let one = match pause.before_pull(self.status.failing()) {
                Some(wait) => {
                    // The probe just pulled may deliver while it is waited
                    // for: then no pause, full speed at once (it slept one
                    // more pause, up to 30 s, first: pull review, stop 65).
                    let (status, still) = (&self.status, |f: u32| pause.would_pause(f));
                    let paused = async {
                        while deliveries.join_next().await.is_some() {}
                        if !still(status.failing()) {
                            return false;
                        }
                        tokio::time::sleep(wait).await;
                        true
                    };
                    tokio::select! {
                        _ = stop.changed() => break,
                        still_failing = paused => match still_failing {
                            true => true,
                            false => continue,
                        },
                    }
                }
                None => false,
            };
            let first = tokio::select! {
                _ = stop.changed() => break,
                // (An acker gone, its sender dropped, disables this.)
                Ok(()) = refused.changed() => continue,
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            // Deliveries that failed while this waited for a slot may have
            // reached the pause: not a full batch for them.
            if !one && pause.would_pause(self.status.failing()) {
                drop(first);
                continue;
            }
            let mut permits = vec![first];
            while permits.len() < MAX_PER_PULL && !one {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let head = tokio::select! {
                _ = stop.changed() => break,
                Ok(()) = refused.changed() => continue,
                // Until the relay answered (at start, after it was away) the
                // pull does not wait, so the status says "connected" at once.
                r = self.relay.pull_head(permits.len(), self.status.is_connected()) => r,
            };
            // Its head came: the relay leased what the body carries. A stop
            // meanwhile reads it for a while yet, and releases it (offered
            // again at once, no retry step used) instead of leaving its
            // leases to run out (a failed attempt each).
            // The leases run from about now (the relay answered), not from
            // when the body is in.
            let head_at = tokio::time::Instant::now();
            let pulled = match head {
                Ok(head) => {
                    let body = head.messages();
                    tokio::pin!(body);
                    tokio::select! {
                        r = &mut body => r,
                        _ = stop.changed() => {
                            let seen = *stop_seen.get_or_insert_with(tokio::time::Instant::now);
                            tokio::time::timeout_at(seen + STOP_GRACE, &mut body)
                                .await
                                .unwrap_or_else(|_| Err(RelayError::Away("stopped while the answer was arriving".into())))
                        }
                    }
                }
                Err(e) => Err(e),
            };
            if *stop.borrow() {
                match pulled {
                    Ok(answer) => {
                        release_unstarted(answer, head_at, &active, &self.unacked, &done_tx, &self.status).await
                    }
                    // Stopping anyway, but not as if all were well: a refusal
                    // or a wrong answer is said, with its exit code.
                    Err(e) => result = fatal(&e).map_or(Ok(()), Err),
                }
                break;
            }
            match pulled {
                Ok(answer) => {
                    let keep_until = acker::keep_until(head_at, answer.lease_ms);
                    slow.check(head_at.elapsed(), answer.lease_ms);
                    backoff.reset();
                    self.status.connected();
                    if let Some(ms) = answer.lease_ms.filter(|ms| lease_checked != Some(*ms)) {
                        lease_checked = Some(ms);
                        let lease = Duration::from_millis(ms);
                        if self.local.timeout() >= lease {
                            tracing::warn!(
                                timeout_ms = self.local.timeout().as_millis() as u64,
                                lease_ms = ms,
                                "--timeout is not below the subscriber's lease: a slow local delivery outlives its \
                                 lease, which counts as a failed attempt, and the relay offers the message again \
                                 after the retry delay (to another forwarder too); lower --timeout or raise the \
                                 subscriber's lease"
                            );
                        }
                    }
                    let mut messages = answer.messages;
                    let extra = messages.split_off(messages.len().min(permits.len()));
                    if !extra.is_empty() {
                        if !more_than_asked {
                            more_than_asked = true;
                            tracing::warn!(
                                asked = permits.len(),
                                got = permits.len() + extra.len(),
                                "the relay sent more messages than the pull asked for (does a proxy between drop \
                                 the query string, `?max=`?): the rest are released, offered again at once"
                            );
                        }
                        release_now(extra, keep_until, &active, &self.unacked, &done_tx, &self.status).await;
                    }
                    for (m, permit) in messages.into_iter().zip(permits.drain(..)) {
                        if !active.offer(&m.id, keep_until, m.attempt) {
                            // Its lease ran out while our service still has it, and
                            // the relay leased it to us again: one delivery at a
                            // time; the running one's answer settles the new lease
                            // (kept until that lease is over: `offer` raised it).
                            self.status.offered_while_delivering(&m.id, m.attempt);
                            continue;
                        }
                        let already = self.unacked.holds(&m.id, m.attempt, m.round.as_deref());
                        let task = Delivery {
                            relay: self.relay.clone(),
                            local: self.local.clone(),
                            status: self.status.clone(),
                            active: active.clone(),
                            unacked: self.unacked.clone(),
                            done: done_tx.clone(),
                            stopped: stop.clone(),
                        };
                        deliveries.spawn(async move {
                            task.run(m, keep_until, already).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    if let Some(f) = fatal(&e) {
                        result = Err(f);
                        break;
                    }
                    drop(permits);
                    let wait = backoff.next_delay();
                    if let RelayError::TooLarge(_) = e {
                        // The relay is there: say what is wrong, not "unreachable".
                        tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64,
                            "cannot read the relay's answer; pulling again after a pause");
                    } else {
                        self.status.away(&e.to_string(), wait);
                    }
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        // Stop: let deliveries in progress finish for a while, hand back the rest.
        let stopped_at = stop_seen.unwrap_or_else(tokio::time::Instant::now);
        let _ = tokio::time::timeout_at(stopped_at + STOP_GRACE, async {
            while deliveries.join_next().await.is_some() {}
        })
        .await;
        deliveries.abort_all();
        while deliveries.join_next().await.is_some() {}
        hand_over(&active, &done_tx, &self.status).await;
        drop(done_tx);
        // The acknowledgements get what the deliveries left of the grace too:
        // a relay away for a moment (restarting) at the stop still gets them.
        let acks_until = (stopped_at + STOP_GRACE + ACK_GRACE).max(tokio::time::Instant::now() + ACK_GRACE);
        if tokio::time::timeout_at(acks_until, acker).await.is_err() {
            tracing::warn!(
                "stopping before every acknowledgement reached the relay; it will offer those messages again"
            );
        }
        result
    }
}

/// What a pull's error ends the forwarder with; `None` for one a pull
/// waits out (the relay away, an answer too large to read). A `200` that is
/// not the pull API's answer ends it (an ack answered so is only sent
/// again: `is_transient`).
fn fatal(e: &RelayError) -> Option<Fatal> {
    match e {
        RelayError::Refused => Some(Fatal::Refused),
        RelayError::Status(http::StatusCode::OK, why) => Some(Fatal::NotPullAnswer(why.clone())),
        RelayError::TooLarge(_) => None,
        e if e.is_transient() => None,
        e => Some(Fatal::Refusal(e.to_string())),
    }
}

/// Answers whose body took a good part of the lease to arrive (a slow link,
/// large callbacks): what is left of the lease may not cover the local
/// delivery, and one whose lease ran out on the way is offered again (a
/// failed attempt). Warned about at most every [`SLOW_EVERY`].
#[derive(Default)]
pub(super) struct SlowAnswers {
    last: Option<tokio::time::Instant>,
}

const SLOW_EVERY: Duration = Duration::from_secs(600);

impl SlowAnswers {
    /// An answer that took `took` from its head to its end: whether that
    /// was warned about.
    pub(super) fn check(&mut self, took: Duration, lease_ms: Option<u64>) -> bool {
        let Some(lease) = lease_ms.map(Duration::from_millis) else {
            return false;
        };
        if took < lease / 2 || self.last.is_some_and(|t| t.elapsed() < SLOW_EVERY) {
            return false;
        }
        self.last = Some(tokio::time::Instant::now());
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            lease_ms = lease.as_millis() as u64,
            "the relay's answer took half the subscriber's lease or more to arrive (a slow link, large \
             callbacks): raise the subscriber's lease (a message whose lease runs out on the way is offered again, \
             a failed attempt), or lower --concurrency for smaller answers"
        );
        true
    }
}

/// One message's task: POST it locally (or, `already` delivered here with
/// its acknowledgement not confirmed, only acknowledge it again), pass the
/// outcome to the acker, then read the rest of the local answer.
pub(super) struct Delivery {
    /// Asked whether it recorded a delivery made here ([`super::probe`]).
    pub(super) relay: Arc<Relay>,
    pub(super) local: Arc<Local>,
    pub(super) status: Arc<Status>,
    pub(super) active: Arc<Active>,
    pub(super) unacked: Arc<Unacked>,
    pub(super) done: mpsc::Sender<Finished>,
    pub(super) stopped: watch::Receiver<bool>,
}

impl Delivery {
    pub(super) async fn run(mut self, m: wire::Message, keep_until: tokio::time::Instant, already: bool) {
        let round = m.round.clone();
        let round = round.as_deref();
        let mut already = already
            && self
                .unacked
                .unconfirmed_after_ack(&m.id, m.attempt, round, keep_until)
                .await;
        let mut unknown = false;
        if let Some(delivered) = self.unacked.unsure(&m.id, m.attempt, round).filter(|_| already) {
            let said = probe::ask(&self.relay, &self.unacked, &m.id, delivered, m.attempt, keep_until).await;
            already = said == Said::Same;
            unknown = said == Said::Unknown;
            if said == Said::Replay && *self.stopped.borrow() {
                // A replay, and the forwarder stops meanwhile: not posted
                // now (the stop would cut it off); released by the stop
                // (`hand_over`), offered again.
                return;
            }
        }
        let (finished, rest) = if unknown {
            self.status.cut(false);
            let released = Finished {
                id: m.id,
                end: End::Release,
                local: None,
                keep_until,
                attempt: m.attempt,
            };
            (released, None)
        } else if already {
            self.status.acknowledged_again(&m.id, m.attempt);
            (Finished::delivered_before(m.id, keep_until, m.attempt), None)
        } else {
            self.active.posting(&m.id);
            deliver(&self.local, &self.status, m, keep_until).await
        };
        // The outcome stays in `active` until the acker has room for it: a
        // stop that aborts this task while the acker's queue is full sends it
        // then, and a lease taken again meanwhile raises its deadline there
        // (an offer of it meanwhile is left to this answer: `Active::offer`).
        let finished = self.active.answered(finished);
        if let Ok(room) = self.done.reserve().await {
            let finished = self.active.take(&finished.id).unwrap_or(finished);
            // Remembered as delivered here once it leaves `active`, for the
            // attempt its answer goes for: offered again for a later attempt
            // while it was delivered here, that one (an offer after it is
            // asked about as of that attempt, not of a lapsed one: review of
            // stop 76's change).
            if finished.end == End::Delivered {
                match already {
                    true => self.unacked.acknowledged_again(&finished.id, finished.attempt, round),
                    false => self.unacked.delivered(&finished.id, finished.attempt, round),
                }
            }
            room.send(finished);
        }
        // Only now the rest of the answer (so the connection can be reused):
        // a 2xx whose body is slow to come was delivered, and a stop
        // meanwhile must not hand it back. A stop ends the reading.
        if let Some(rest) = rest {
            tokio::select! {
                _ = rest.drain() => {}
                _ = self.stopped.wait_for(|s| *s) => {}
            }
        }
    }
}
