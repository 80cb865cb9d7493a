//! Pull subscribers in cluster mode: a forwarder's acknowledgement may reach
//! any relay (a balancer without sticky sessions, a reconnect), but its
//! leases live in the memory of the relay that handed the messages out, and
//! one forwarder's leases may be split over several relays (it pulled
//! through each). The part of an acknowledgement this relay does not lease
//! is asked of the other relays ([`Store::ask_peers`]); each relay that
//! leases some of it to that forwarder applies those and answers with what
//! it did and which ids it does not hold. The asker merges the answers: the
//! ids no relay holds are refused, the rest is applied.

use std::collections::{BTreeMap, HashSet};
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{AckError, AckLists, AckSummary, Applied, LocalAnswer, PullLane};
use crate::store::{EventId, PeerInbox, Store};

/// How long an acknowledgement waits for the relay holding its leases.
const PEER_WAIT: Duration = Duration::from_secs(5);

pub(super) fn topic(subscriber: &str) -> String {
    format!("ack.{subscriber}")
}

#[derive(Serialize, Deserialize)]
struct Ask {
    holder: String,
    ack: Vec<String>,
    retry: Vec<String>,
    #[serde(default)]
    release: Vec<String>,
    /// What the local service answered hand-backs (relays before it leave it out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    local: BTreeMap<String, LocalAnswer>,
    /// The attempt each was handed out with (relays before it leave it out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    attempts: BTreeMap<String, u32>,
    /// How long ago (ms) the acknowledgement reached the relay asking: a
    /// lease live then is claimable by it (relays before it leave it out).
    #[serde(default)]
    age_ms: u64,
}

/// The most of a peer's `age_ms` believed (bounds how long its leases stay
/// pinned past their deadline for it).
const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    /// Every id asked about was applied.
    Done {
        acknowledged: usize,
        retried: usize,
        dead: usize,
    },
    /// Some were applied (counted here); the others are not leased to the
    /// holder by this relay (another relay may lease them). Relays before
    /// it only answered `Done` or stayed silent.
    Partly {
        acknowledged: usize,
        retried: usize,
        dead: usize,
        not_held: Vec<String>,
        /// Of `not_held`, those this relay leases for a later attempt than
        /// the one named ([`Applied::later_here`]): no relay leases them for
        /// that one, refused without waiting for the others. Relays before
        /// it left it out (the asker then waited, as before).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        later: Vec<String>,
    },
    Store(String),
}

fn ids(list: &[EventId]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

fn parse(list: &[String]) -> Option<Vec<EventId>> {
    list.iter().map(|s| s.parse().ok()).collect()
}

/// Ask the other relays to apply the acknowledgement of the leases they
/// hold: what they applied, and the ids none of them leases to `holder`
/// (in the order given). Each relay that holds some answers (the others
/// stay silent); waits until every id is applied, or up to [`PEER_WAIT`].
pub(super) async fn ask(
    store: &Store,
    subscriber: &str,
    holder: String,
    lists: &AckLists,
    arrived: tokio::time::Instant,
) -> Result<Applied, AckError> {
    let age_ms = u64::try_from(arrived.elapsed().as_millis()).unwrap_or(u64::MAX);
    let body = serde_json::to_vec(&Ask {
        age_ms,
        holder,
        ack: ids(&lists.ack),
        retry: ids(&lists.retry),
        release: ids(&lists.release),
        local: lists.local.iter().map(|(id, a)| (id.to_string(), a.clone())).collect(),
        attempts: lists.attempts.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
    })
    .map_err(|e| AckError::Store(e.to_string()))?;
    let mut open: HashSet<EventId> = lists.all().copied().collect();
    // Refused by the relay that leases them for a later attempt.
    let mut later_there: HashSet<EventId> = HashSet::new();
    let mut summary = AckSummary::default();
    let mut failed = None;
    let mut heard = |answer: Bytes| {
        let (done, not_held, later) = match serde_json::from_slice(&answer) {
            Ok(Reply::Done {
                acknowledged,
                retried,
                dead,
            }) => (
                AckSummary {
                    acknowledged,
                    retried,
                    dead,
                },
                HashSet::<EventId>::new(),
                Vec::new(),
            ),
            Ok(Reply::Partly {
                acknowledged,
                retried,
                dead,
                not_held,
                later,
            }) => (
                AckSummary {
                    acknowledged,
                    retried,
                    dead,
                },
                not_held.iter().filter_map(|s| s.parse().ok()).collect(),
                later.iter().filter_map(|s| s.parse().ok()).collect::<Vec<EventId>>(),
            ),
            Ok(Reply::Store(why)) => {
                failed = Some(why);
                return true;
            }
            Err(_) => return false,
        };
        summary += done;
        // An id is leased by one relay at most: what that relay applied is
        // everything it was asked but does not name.
        open.retain(|id| not_held.contains(id));
        for id in later {
            if open.remove(&id) {
                later_there.insert(id);
            }
        }
        open.is_empty()
    };
    store
        .ask_peers(&topic(subscriber), Bytes::from(body), PEER_WAIT, &mut heard)
        .await
        .map_err(|e| AckError::Store(e.to_string()))?;
    if let Some(why) = failed {
        return Err(AckError::Store(why));
    }
    let not_held = lists
        .all()
        .filter(|id| open.contains(id) || later_there.contains(id))
        .copied()
        .collect();
    Ok(Applied {
        summary,
        not_held,
        later_here: Vec::new(),
    })
}

/// Answer the other relays' acknowledgements for leases this lane holds:
/// what it applied and which of the ids it does not hold. A relay that
/// holds none of them stays silent (the asker waits for the relays that
/// do), but one leasing some for a later attempt says so.
pub(super) fn serve(lane: Weak<PullLane>, mut inbox: PeerInbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(req) = inbox.rx.recv().await {
            let Some(lane) = lane.upgrade() else { return };
            let now = tokio::time::Instant::now();
            tokio::spawn(async move {
                let Ok(ask) = serde_json::from_slice::<Ask>(&req.body) else {
                    return;
                };
                // When it reached the relay that asks (its clock does not
                // matter: an age, not a time).
                let age = Duration::from_millis(ask.age_ms).min(MAX_AGE);
                let arrived = now.checked_sub(age).unwrap_or(now);
                let (Some(ack), Some(retry), Some(release)) = (parse(&ask.ack), parse(&ask.retry), parse(&ask.release))
                else {
                    return;
                };
                let local = ask
                    .local
                    .into_iter()
                    .filter_map(|(id, a)| Some((id.parse().ok()?, a)))
                    .collect();
                let attempts = ask
                    .attempts
                    .into_iter()
                    .filter_map(|(id, n)| Some((id.parse().ok()?, n)))
                    .collect();
                let lists = AckLists {
                    ack,
                    retry,
                    release,
                    local,
                    attempts,
                };
                let total = lists.len();
                let reply = match lane.ack_here(arrived, ask.holder, lists, true, None).await {
                    Ok(a) if a.not_held.len() == total && a.later_here.is_empty() => return,
                    Ok(Applied { summary, not_held, .. }) if not_held.is_empty() => Reply::Done {
                        acknowledged: summary.acknowledged,
                        retried: summary.retried,
                        dead: summary.dead,
                    },
                    Ok(Applied {
                        summary,
                        not_held,
                        later_here,
                    }) => Reply::Partly {
                        acknowledged: summary.acknowledged,
                        retried: summary.retried,
                        dead: summary.dead,
                        not_held: ids(&not_held),
                        later: ids(&later_here),
                    },
                    Err(AckError::Store(why)) => Reply::Store(why),
                    Err(AckError::NotLeased(_) | AckError::NotLeasedRestApplied { .. } | AckError::Stopped) => return,
                };
                let _ = req.answer.send(serde_json::to_vec(&reply).ok().map(Bytes::from));
            });
        }
    })
}
