//! Objects the cluster lost while this relay serves: a route's stream (its
//! consumers go with it) or a bucket deleted by hand, or gone with a NATS
//! node restarted without its JetStream storage. Publishes to a missing
//! stream find "no responders" and were tried again until their budget,
//! answering `503` for ever while `/readyz` said ready: nothing set the
//! objects up again short of a restart.
//!
//! The store watcher's check ([`NatsStore::check_writable`], every second)
//! lists the streams (one request) and, when one this relay set up is
//! missing, takes readiness back (ingest answers `503`) and sets the
//! topology up again in the background, as at start. A route stream created
//! again gets consumers that start at its first message (not at its tail),
//! so an event another relay stored in it before the consumers existed is
//! still delivered. It numbers its events after the lost stream's
//! ([`first_sequence`]): the results and dead letters the cluster keeps for
//! the lost events, named by route and sequence, are not the new events'.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::TryStreamExt;

use super::{layout, read, unavailable, Shared};
use crate::store::StoreError;

/// The streams a completed set-up left (the buckets' are `KV_<bucket>`).
fn expected(s: &Shared) -> Vec<String> {
    let mut names: Vec<String> = [layout::DEAD, layout::MEDIA_WORK, layout::TASK_WORK]
        .iter()
        .map(|n| n.to_string())
        .collect();
    names.extend(
        [layout::RESULTS, layout::MEDIA, layout::TASKS]
            .iter()
            .map(|b| format!("KV_{b}")),
    );
    if let Some(t) = read(&s.set_up_for) {
        names.extend(t.routes.iter().map(|(r, _)| layout::stream(r)));
    }
    names
}

/// Of the streams a set-up left, those NATS no longer has; an error when
/// NATS cannot be asked (the store check fails, as for any NATS error, but
/// that is not a loss: nothing is set up again).
pub(super) async fn missing(s: &Shared) -> Result<Vec<String>, StoreError> {
    let present: HashSet<String> = s.js.stream_names().try_collect().await.map_err(unavailable)?;
    Ok(expected(s).into_iter().filter(|n| !present.contains(n)).collect())
}

/// Take readiness back and set everything up again in the background.
pub(super) fn set_up_again(s: &Arc<Shared>, lost: &[String]) -> StoreError {
    let why = format!(
        "NATS lost stream(s) {} (deleted, or a node restarted without its JetStream storage); setting them up again",
        lost.join(", ")
    );
    if s.ready.swap(false, Ordering::AcqRel) {
        tracing::error!(error = %why, "answering 503 until the set-up is done");
    }
    *s.set_up_for.write().unwrap_or_else(|e| e.into_inner()) = None;
    {
        // Their consumers went with the route streams: recorded again as set-up creates them.
        let mut consumers = s.consumers.write().unwrap_or_else(|e| e.into_inner());
        consumers.retain(|route, _| !lost.contains(&layout::stream(route)));
    }
    if !s.retrying.swap(true, Ordering::AcqRel) {
        tokio::spawn(super::topology::retry_set_up(s.clone()));
    }
    unavailable(why)
}

/// Where a route stream this relay creates starts numbering its messages:
/// its creation time in microseconds. The results bucket
/// (`<route>.<seq>.<subscriber>`) and the dead letters (`….<seq>`) outlive
/// a lost stream; one created again from 1 gave its new events the numbers
/// of the lost ones, and with them their results (a new event whose first
/// attempt failed was taken for a lost one delivered under its number: its
/// retry dropped, never delivered). Numbered from its creation time, a
/// stream starts after every number an earlier one used (unless that one
/// took over a million events a second); below 2^53, exact in JavaScript,
/// until the year 2255.
pub(super) fn first_sequence() -> u64 {
    crate::clock::now_ms().saturating_mul(1000).max(1)
}
