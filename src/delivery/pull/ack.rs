//! A pull subscriber's acknowledgements: what a puller says about the
//! messages leased to it ([`AckLists`]), what that did ([`AckSummary`],
//! [`AckError`]), the request a lane's task answers ([`AckRequest`]), and one
//! acknowledgement split over the subscriber's lanes and the other relays
//! ([`ack_across`]).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{peer, LocalAnswer, PullLane};
use crate::store::EventId;

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckSummary {
    pub acknowledged: usize,
    /// Handed back: offered again after the retry schedule's delay.
    pub retried: usize,
    /// Handed back with the retry schedule exhausted: dead letters.
    pub dead: usize,
}

impl std::ops::AddAssign for AckSummary {
    fn add_assign(&mut self, o: AckSummary) {
        self.acknowledged += o.acknowledged;
        self.retried += o.retried;
        self.dead += o.dead;
    }
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// These ids are not leased to the caller now (never handed out, another
    /// puller's, expired or already acknowledged): nothing was changed.
    NotLeased(Vec<EventId>),
    /// In cluster mode: these ids are leased to the caller by no relay; the
    /// others were applied where they are leased (`applied` says what they
    /// did).
    NotLeasedRestApplied {
        not_leased: Vec<EventId>,
        applied: AckSummary,
    },
    /// The store could not record them: their leases are kept as they were
    /// (same holder, same deadline), so the acknowledgement sent again
    /// applies (in cluster mode, on the relays that could not record; what
    /// others recorded is refused then as not leased).
    Store(String),
    /// The lane is stopping (shutdown or the subscriber was removed).
    Stopped,
}

/// What a puller says about messages leased to it.
#[derive(Debug, Clone, Default)]
pub struct AckLists {
    /// Delivered.
    pub ack: Vec<EventId>,
    /// Handed back: the retry schedule's next step.
    pub retry: Vec<EventId>,
    /// Not finished (the forwarder stopped): offered again at once, no step used.
    pub release: Vec<EventId>,
    /// What the local service answered, for some of `retry`.
    pub local: HashMap<EventId, LocalAnswer>,
    /// The attempt number the puller was handed each of (some, or none):
    /// one leased now for another attempt is not held for this request.
    pub attempts: HashMap<EventId, u32>,
}

#[allow(clippy::len_without_is_empty)]
impl AckLists {
    /// How many ids are given.
    pub fn len(&self) -> usize {
        self.ack.len() + self.retry.len() + self.release.len()
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &EventId> {
        self.ack.iter().chain(&self.retry).chain(&self.release)
    }

    /// The same lists with only `ids` in them (same order).
    pub(super) fn only(&self, ids: &[EventId]) -> AckLists {
        let keep: std::collections::HashSet<&EventId> = ids.iter().collect();
        let pick = |l: &[EventId]| l.iter().filter(|id| keep.contains(id)).copied().collect();
        AckLists {
            ack: pick(&self.ack),
            retry: pick(&self.retry),
            release: pick(&self.release),
            local: self
                .local
                .iter()
                .filter(|(id, _)| keep.contains(id))
                .map(|(id, a)| (*id, a.clone()))
                .collect(),
            attempts: self
                .attempts
                .iter()
                .filter(|(id, _)| keep.contains(id))
                .map(|(id, n)| (*id, *n))
                .collect(),
        }
    }
}

/// What one relay did with an acknowledgement.
#[derive(Debug, Clone, Default)]
pub(super) struct Applied {
    pub summary: AckSummary,
    /// The ids it does not lease to the caller (left as they are); always
    /// empty for an all-or-nothing acknowledgement that was applied.
    pub not_held: Vec<EventId>,
    /// Of `not_held`, those this relay leases for a later attempt than the
    /// one answered (an acknowledgement sent again after its lease ran out,
    /// or `forward` asking whether an attempt was recorded): no other relay
    /// leases them for that attempt (a message is leased by one relay at a
    /// time, its attempt numbers only grow), so they are refused without
    /// asking the others (it waited for their silence: 5 s).
    pub later_here: Vec<EventId>,
}

/// Answers an acknowledgement once its records are written. Never left
/// unanswered: dropped without an answer (the record task panicked, or was
/// aborted), it answers [`AckError::Store`] (`503`, send it again; the lane
/// puts the leases back as for a record that failed).
pub(super) struct Reply(Option<Answer>);

/// What answers the acknowledgement's request.
type Answer = Box<dyn FnOnce(Result<AckSummary, AckError>) + Send>;

impl Reply {
    pub(super) fn new(f: impl FnOnce(Result<AckSummary, AckError>) + Send + 'static) -> Reply {
        Reply(Some(Box::new(f)))
    }

    pub(super) fn send(mut self, r: Result<AckSummary, AckError>) {
        if let Some(f) = self.0.take() {
            f(r);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(AckError::Store(RECORD_ENDED.into())));
        }
    }
}

/// Why an acknowledgement whose record task ended before answering got `503`.
const RECORD_ENDED: &str = "its record ended before it was written";

pub(super) struct AckRequest {
    pub(super) holder: String,
    pub(super) lists: AckLists,
    /// Apply what this relay leases to the holder and name the rest (cluster
    /// mode), instead of all or nothing.
    pub(super) partial: bool,
    /// Presented with an earlier token of the subscriber (of this
    /// generation): only leases handed out under it may be claimed.
    pub(super) under: Option<u64>,
    /// When the request came: a lease live then is claimable by it, however
    /// long it waited for the lane (behind a fill, or parked behind the
    /// record of an earlier acknowledgement of the same message).
    pub(super) arrived: Instant,
    pub(super) reply: oneshot::Sender<Result<Applied, AckError>>,
}

/// Acknowledge (`ack`), hand back (`retry`) or release messages leased to
/// `holder` by any of `lanes`: the subscriber's lanes that take the request,
/// the current one first, then those stopped by a reload that still serve
/// their leases (each with the earlier token generation it was reached
/// under, see [`PullLane::ack`]).
///
/// One lane: [`PullLane::ack`] (all or nothing on one host). Several: the
/// batch is split, since one forwarder may hold leases of several of them
/// (it pulled before and after a reload that switched the subscriber
/// pull→push→pull, or moved it and back): each lane in turn claims what it
/// leases to `holder` (reached under an earlier token, only the leases
/// handed out under that token) and the rest goes to the next; in cluster
/// mode what no lane here holds is asked of the other relays, if the first
/// lane is the subscriber's running lane reached with its current token
/// (their lanes do not know this relay's earlier tokens). Ok when
/// everything was applied; else the ids nobody holds, with what the others
/// did ([`AckError::NotLeasedRestApplied`], or [`AckError::NotLeased`] when
/// nothing was applied) — not all or nothing, as in cluster mode.
pub async fn ack_across(
    lanes: &[(Arc<PullLane>, Option<u64>)],
    holder: String,
    lists: AckLists,
) -> Result<AckSummary, AckError> {
    let arrived = Instant::now();
    let first = match lanes {
        [] => return Err(AckError::NotLeased(lists.all().copied().collect())),
        [(lane, under)] => return lane.ack_arrived(arrived, holder, lists, *under).await,
        [first, ..] => first,
    };
    let mut rest = lists;
    let mut applied = AckSummary::default();
    let mut stopped = false;
    for (lane, under) in lanes {
        if rest.len() == 0 {
            break;
        }
        match lane.ack_here(arrived, holder.clone(), rest.clone(), true, *under).await {
            Ok(here) => {
                applied += here.summary;
                rest = rest.only(&here.not_held);
            }
            // Its last lease ended meanwhile (or the relay stops): it holds nothing.
            Err(AckError::Stopped) => stopped = true,
            Err(e) => return Err(e),
        }
    }
    let (lane, under) = first;
    if rest.len() > 0 && under.is_none() && !lane.is_stopped() && lane.store.is_clustered() {
        let name = lane.subscriber().name.clone();
        let there = peer::ask(&lane.store, &name, holder, &rest, arrived).await?;
        applied += there.summary;
        rest = rest.only(&there.not_held);
    }
    match rest.all().copied().collect::<Vec<_>>() {
        none if none.is_empty() => Ok(applied),
        _ if stopped && applied == AckSummary::default() => Err(AckError::Stopped),
        not_leased if applied == AckSummary::default() => Err(AckError::NotLeased(not_leased)),
        not_leased => Err(AckError::NotLeasedRestApplied { not_leased, applied }),
    }
}
