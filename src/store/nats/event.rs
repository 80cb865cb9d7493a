//! An event as a JetStream message: the body is the payload byte for byte;
//! what ingest knew about it travels in headers.

use std::net::IpAddr;

use async_nats::HeaderMap;
use bytes::Bytes;

use super::layout;
use crate::store::{Event, EventMeta, Origin};

const SUBS: &str = "Hr-Subs";
const SOURCE: &str = "Hr-Src";
const CONTENT_TYPE: &str = "Hr-Ct";
const FLAGS: &str = "Hr-Flags";
const KEPT: &str = "Hr-Headers";
/// The media URLs the route's pointers found (a JSON array), if any.
const MEDIA: &str = "Hr-Media";
/// Present on a callback whose media work was left to its verification
/// (`NewEvent::media_after_verify`): a route that no longer verifies writes
/// it when it delivers the event.
const MEDIA_AFTER_VERIFY: &str = "Hr-Media-After-Verify";
/// When ingest received it (ms): part of the event id.
const TIME: &str = "Hr-Time";
/// The writer's nonce: a retried publish recognises its own earlier write.
pub const NONCE: &str = "Nats-Msg-Id";

pub fn headers(meta: &EventMeta, media: &[String], after_verify: bool, nonce: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !media.is_empty() {
        h.insert(MEDIA, serde_json::to_string(media).unwrap_or_default().as_str());
        if after_verify {
            h.insert(MEDIA_AFTER_VERIFY, "1");
        }
    }
    h.insert(NONCE, nonce);
    h.insert(TIME, meta.received_ms.to_string().as_str());
    h.insert(SUBS, meta.subscribers.join(",").as_str());
    h.insert(
        SOURCE,
        meta.source
            .map_or_else(|| "-".to_string(), |ip| ip.to_string())
            .as_str(),
    );
    if let Some(ct) = &meta.content_type {
        h.insert(CONTENT_TYPE, ct.as_str());
    }
    let mut flags = String::new();
    if meta.dedupe_fallback {
        flags.push('f');
    }
    if meta.origin == Origin::Poll {
        flags.push('p');
    }
    if !flags.is_empty() {
        h.insert(FLAGS, flags.as_str());
    }
    if !meta.headers.is_empty() {
        h.insert(KEPT, serde_json::to_string(&meta.headers).unwrap_or_default().as_str());
    }
    h
}

/// The bytes `h` takes on the wire (they count against `max_payload`).
pub fn size(h: &HeaderMap) -> usize {
    "NATS/1.0\r\n\r\n".len()
        + h.iter()
            .map(|(k, vs)| {
                vs.iter()
                    .map(|v| k.to_string().len() + v.as_str().len() + 4)
                    .sum::<usize>()
            })
            .sum::<usize>()
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.as_ref())
}

/// The subscribers an event was fanned out to.
pub fn subscribers(h: &HeaderMap) -> Vec<String> {
    get(h, SUBS)
        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The event's media URLs; None when it named none.
pub fn media(h: &HeaderMap) -> Option<Vec<String>> {
    serde_json::from_str(get(h, MEDIA)?).ok()
}

/// Whether the event's media work was left to its verification.
pub fn media_after_verify(h: &HeaderMap) -> bool {
    get(h, MEDIA_AFTER_VERIFY).is_some()
}

/// When ingest received the event.
pub fn time_ms(h: &HeaderMap) -> Option<u64> {
    get(h, TIME)?.parse().ok()
}

pub fn nonce(h: &HeaderMap) -> String {
    get(h, NONCE).unwrap_or_default().to_string()
}

/// The event stored as message `seq` of `route`'s stream (`stored_ms`: the
/// message's own time, used when the header is missing).
pub fn decode(route: &str, seq: u64, stored_ms: u64, h: &HeaderMap, body: Bytes) -> Event {
    let flags = get(h, FLAGS).unwrap_or_default();
    let time_ms = time_ms(h).unwrap_or(stored_ms);
    Event {
        id: layout::event_id(route, seq, time_ms),
        meta: EventMeta {
            route: route.to_string(),
            received_ms: time_ms,
            source: get(h, SOURCE).and_then(|s| s.parse::<IpAddr>().ok()),
            content_type: get(h, CONTENT_TYPE).map(str::to_string),
            headers: get(h, KEPT)
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
            subscribers: subscribers(h),
            dedupe_fallback: flags.contains('f'),
            origin: if flags.contains('p') {
                Origin::Poll
            } else {
                Origin::Callback
            },
        },
        body,
    }
}
