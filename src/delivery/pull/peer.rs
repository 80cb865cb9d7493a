//! Pull subscribers in cluster mode: a forwarder's acknowledgement may reach
//! any relay (a balancer without sticky sessions, a reconnect), but its
//! leases live in the memory of the relay that handed the messages out. An
//! acknowledgement for messages this relay does not lease is asked of the
//! other relays ([`Store::ask_peers`]); the holder applies it and answers,
//! exactly as if it had come to it directly (all or nothing, same summary).

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{AckError, AckLists, AckSummary, LocalAnswer, PullLane};
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
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done {
        acknowledged: usize,
        retried: usize,
        dead: usize,
    },
    Store(String),
}

fn ids(list: &[EventId]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

fn parse(list: &[String]) -> Option<Vec<EventId>> {
    list.iter().map(|s| s.parse().ok()).collect()
}

/// Ask the relay that holds these leases to apply the acknowledgement; None
/// when no relay holds them all.
pub(super) async fn ask(
    store: &Store,
    subscriber: &str,
    holder: String,
    lists: &AckLists,
) -> Option<Result<AckSummary, AckError>> {
    let body = serde_json::to_vec(&Ask {
        holder,
        ack: ids(&lists.ack),
        retry: ids(&lists.retry),
        release: ids(&lists.release),
        local: lists.local.iter().map(|(id, a)| (id.to_string(), a.clone())).collect(),
    })
    .ok()?;
    let answer = match store.ask_peers(&topic(subscriber), Bytes::from(body), PEER_WAIT).await {
        Ok(a) => a?,
        Err(e) => return Some(Err(AckError::Store(e.to_string()))),
    };
    Some(match serde_json::from_slice(&answer).ok()? {
        Reply::Done {
            acknowledged,
            retried,
            dead,
        } => Ok(AckSummary {
            acknowledged,
            retried,
            dead,
        }),
        Reply::Store(why) => Err(AckError::Store(why)),
    })
}

/// Answer the other relays' acknowledgements for leases this lane holds;
/// stays silent about the others.
pub(super) fn serve(lane: Weak<PullLane>, mut inbox: PeerInbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(req) = inbox.rx.recv().await {
            let Some(lane) = lane.upgrade() else { return };
            tokio::spawn(async move {
                let Ok(ask) = serde_json::from_slice::<Ask>(&req.body) else {
                    return;
                };
                let (Some(ack), Some(retry), Some(release)) = (parse(&ask.ack), parse(&ask.retry), parse(&ask.release))
                else {
                    return;
                };
                let local = ask
                    .local
                    .into_iter()
                    .filter_map(|(id, a)| Some((id.parse().ok()?, a)))
                    .collect();
                let lists = AckLists {
                    ack,
                    retry,
                    release,
                    local,
                };
                let reply = match lane.ack_here(ask.holder, lists, None).await {
                    Ok(s) => Reply::Done {
                        acknowledged: s.acknowledged,
                        retried: s.retried,
                        dead: s.dead,
                    },
                    Err(AckError::Store(why)) => Reply::Store(why),
                    Err(AckError::NotLeased(_) | AckError::Stopped) => return,
                };
                let _ = req.answer.send(serde_json::to_vec(&reply).ok().map(Bytes::from));
            });
        }
    })
}
