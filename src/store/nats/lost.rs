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
//! still delivered.

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

/// Sequences a stream gets per millisecond of its start time (below).
const SEQS_PER_MS: u64 = 1000;

/// The first sequence of `route`'s stream when set-up creates it: its
/// creation time in ms times [`SEQS_PER_MS`], and past every sequence a
/// result still names. A stream set up again after it was lost started at 1,
/// and its events took the old events' results (keys
/// `<route>.<seq>.<subscriber>`): a retry of a new event read an old
/// `delivered` and was only acknowledged, never sent. Past the results was
/// not enough: an old event's first attempt, in flight when the stream was
/// lost, has no result yet and writes it later, into a new event's key (its
/// `200` made the new event "delivered", never sent). Starting at the
/// creation time keeps every stream's sequences apart from those of the
/// streams before it (unless one stored over a million events a second, on
/// average, since it was created). One listing of the bucket's keys, only
/// when the stream is created.
pub(super) async fn first_free_seq(results: &async_nats::jetstream::kv::Store, route: &str) -> Result<u64, String> {
    let prefix = format!("{route}.");
    let mut keys = results.keys().await.map_err(|e| format!("results keys: {e}"))?;
    let mut last = 0u64;
    while let Some(k) = keys.try_next().await.map_err(|e| format!("results keys: {e}"))? {
        let seq = k
            .strip_prefix(&prefix)
            .and_then(|r| r.split('.').next())
            .and_then(|s| s.parse().ok());
        last = last.max(seq.unwrap_or(0));
    }
    Ok((last + 1).max(crate::clock::now_ms().saturating_mul(SEQS_PER_MS)))
}
