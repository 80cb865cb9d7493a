//! A terminal record → an event of the route, as if the callback had come:
//! the product's callback shape ([`crate::provider::shape`]), the route's
//! dedupe key over it (so the real callback, before or after, is a
//! duplicate), its media pointers, origin `poll`. The append settles the
//! expected task in the same write (recovered, or called back when the
//! callback was already stored); on a `verify = "fetch"` route a duplicate
//! settles it only in a later write ([`crate::ingest::contested`]: the
//! result stored beside a held forgery, or the duplicate written again), so
//! a relay stopped in between leaves it open, polled again.

use bytes::Bytes;

use crate::config::Route;
use crate::provider::shape::to_callback_bytes;
use crate::provider::Record;
use crate::state::App;
use crate::store::{Accepted, EventMeta, NewEvent, Origin, TaskMark};

/// Append the record's callback to the route's log.
pub async fn append(app: &App, route: &Route, record: &Record) -> anyhow::Result<Accepted> {
    let body = to_callback_bytes(record)?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let (hash, fallback) = route.dedupe_key.hash(Some(&json), &body, None);
    let media = crate::ingest::media_urls(route, Some(&json));
    let meta = EventMeta {
        route: route.name.clone(),
        received_ms: crate::clock::now_ms(),
        source: None,
        content_type: Some("application/json".into()),
        headers: Vec::new(),
        subscribers: route.subscribers.iter().map(|s| s.name.clone()).collect(),
        dedupe_fallback: fallback,
        origin: Origin::Poll,
    };
    let verifier = (route.verify == crate::config::Verify::Fetch).then(|| app.delivery.verifier());
    let event = NewEvent {
        meta,
        dedupe_hash: hash,
        body: Bytes::from(body),
        media,
        media_after_verify: false,
        task: Some(TaskMark {
            task_id: record.task_id().to_string(),
            terminal: true,
            provider_state: Some(record.state().to_string()),
            if_new: false,
        }),
    };
    // A result contests a key a held callback owns after `verify` went off
    // too ([`crate::ingest::contested::append_unchecked`]).
    let accepted = match verifier {
        Some(_) => crate::ingest::append_contested(&app.store, verifier, event).await?,
        None => crate::ingest::contested::append_unchecked(&app.store, app.delivery.verifier(), event).await?,
    };
    if accepted.duplicate {
        tracing::info!(route = %route.name, task_id = record.task_id(), event = %accepted.id,
            "polled result duplicates a callback already stored; nothing new");
    } else {
        tracing::info!(route = %route.name, task_id = record.task_id(), event = %accepted.id,
            state = record.state(), "result recovered by polling");
    }
    Ok(accepted)
}
