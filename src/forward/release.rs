//! What the forwarder gives back to the relay without delivering it
//! (released: offered again at once, no retry step used): the messages a
//! pull brought beyond its free slots, those a pull brought as it stops,
//! and at the stop those still being delivered ([`hand_over`], which also
//! passes on the outcomes the acker did not get yet).

use tokio::sync::mpsc;

use super::acker::{self, End, Finished};
use super::active::{Active, Entry};
use super::status::Status;
use super::unacked::Unacked;
use crate::pull::wire;

/// Messages a pull brought beyond its free slots, released at once
/// (offered again, no retry step used), but one being delivered here (its
/// running delivery's answer settles it) and one delivered here whose
/// acknowledgement is not confirmed (acknowledged again). One whose
/// acknowledgement is on its way is released too: no slot waits here for
/// that answer (a confirmation makes the offer a replay, to post), and its
/// next offer comes after it (acknowledged unsent, a replay was lost:
/// review of stop 75's mend). So is one offered for a later attempt than
/// the one delivered here, not confirmed: whether it is a replay is asked of
/// the relay when it is offered again with a slot free (`probe`).
pub(super) async fn release_now(
    messages: Vec<wire::Message>,
    keep_until: tokio::time::Instant,
    active: &Active,
    unacked: &Unacked,
    done: &mpsc::Sender<Finished>,
    status: &Status,
) {
    for m in messages {
        if !active.offer(&m.id, keep_until, m.attempt) {
            continue;
        }
        active.take(&m.id);
        let f = match held(unacked, &m) {
            true => {
                status.acknowledged_again(&m.id, m.attempt);
                Finished::delivered_before(m.id, keep_until, m.attempt)
            }
            false => {
                status.cut(false);
                Finished {
                    id: m.id,
                    end: End::Release,
                    local: None,
                    keep_until,
                    attempt: m.attempt,
                }
            }
        };
        let _ = done.send(f).await;
    }
}

/// A pull's messages that came as the forwarder stops, not started: each
/// is taken into `active` with no outcome, so that [`hand_over`] releases it
/// (one being delivered here already is settled by that delivery's answer),
/// except one delivered here whose acknowledgement is not confirmed (and
/// not on its way, see [`release_now`]): that is acknowledged again, also
/// when offered for a later attempt (below).
pub(super) async fn release_unstarted(
    answer: wire::Messages,
    head_at: tokio::time::Instant,
    active: &Active,
    unacked: &Unacked,
    done: &mpsc::Sender<Finished>,
    status: &Status,
) {
    let keep_until = acker::keep_until(head_at, answer.lease_ms);
    for m in answer.messages {
        // At a stop there is no asking the relay whether an offer of a later
        // attempt is a replay: acknowledged unsent as the lapse it mostly is
        // (released, the forwarder restarted with nothing remembered would
        // post it a second time: review of stop 76's change).
        let round = m.round.as_deref();
        let held = match unacked.by_round(&m.id, round) {
            Some(same) => same,
            None => unacked.holds(&m.id, m.attempt, round) && !unacked.is_acking(&m.id),
        };
        if !active.offer(&m.id, keep_until, m.attempt) || !held {
            continue;
        }
        active.take(&m.id);
        status.acknowledged_again(&m.id, m.attempt);
        let _ = done.send(Finished::delivered_before(m.id, keep_until, m.attempt)).await;
    }
}

/// Whether `m` is settled here for sure, to acknowledge again unsent
/// without asking the relay: in a round delivered here; with no round to
/// decide, held, no acknowledgement of it on its way, and not offered for a
/// later attempt than the one delivered here unconfirmed.
fn held(unacked: &Unacked, m: &wire::Message) -> bool {
    let round = m.round.as_deref();
    unacked.by_round(&m.id, round).unwrap_or_else(|| {
        unacked.holds(&m.id, m.attempt, round)
            && !unacked.is_acking(&m.id)
            && unacked.unsure(&m.id, m.attempt, round).is_none()
    })
}

/// At a stop, once the delivery tasks are done or aborted: the outcomes the
/// acker did not get yet go to it, and the messages still being delivered
/// are released.
pub(super) async fn hand_over(active: &Active, done: &mpsc::Sender<Finished>, status: &Status) {
    let left: Vec<(String, Entry)> = active.map().drain().collect();
    let cut: Vec<&str> = left
        .iter()
        .filter(|(_, e)| e.outcome.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    if !cut.is_empty() {
        tracing::warn!(ids = ?cut, "stopping: releasing messages still being delivered or brought by the last pull (offered again at once, no retry step used; one whose lease already ran out counts as that failed attempt)");
    }
    for (id, e) in left {
        let f = match e.outcome {
            Some(f) => f,
            None => {
                status.cut(e.posting);
                Finished {
                    id,
                    end: End::Release,
                    local: None,
                    keep_until: e.until,
                    attempt: e.attempt,
                }
            }
        };
        let _ = done.send(f).await;
    }
}
