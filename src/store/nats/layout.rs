//! Where everything lives in JetStream, and how an event id names a message.
//!
//! | what | NATS object |
//! |---|---|
//! | a route's event log | stream `HR_EV_<route>`, one subject per dedupe key: `hr.ev.<route>.<hash>` |
//! | dedupe (retention long) | the event's own subject, written with "expected last subject sequence 0" |
//! | a replay for one subscriber | `hr.rp.<route>.<subscriber>` in the same stream, payload = the event's sequence |
//! | a subscriber's cursor | durable pull consumer `sub_<subscriber>` on its route's stream |
//! | retries, `Retry-After` | NAK with the delay (the message stays with the consumer) |
//! | results and attempts | KV bucket `hr_results`, key `<route>.<seq>.<subscriber>` |
//! | dead letters | stream `HR_DL`, subject `hr.dl.<route>.<subscriber>.<seq>`, one message per subject |
//! | retention | `max_age` of every stream and bucket |
//! | a media URL's state | KV bucket `hr_media`, key `u.<hash of the URL>` |
//! | an archived file (while a URL refers to it) | `hr_media`, key `f.<sha256>` |
//! | an event's media URLs | header `Hr-Media` of its message |
//! | the archiver's work | work-queue stream `HR_MEDIA`, subject `hr.md.<hash>`, durable consumer `archiver` |
//! | an expected task | KV bucket `hr_tasks`, key `t.<hash of route and task id>` |
//! | the store check's write (every second) | `hr_tasks`, key `probe` |
//! | the reconciler's work | work-queue stream `HR_TASKS`, subject `hr.tk.<hash>`, durable consumer `reconciler` |
//!
//! An event id is a ULID whose time is the message's time (ms) and whose
//! random part is the route's 16-bit tag and the stream sequence: any relay
//! finds the message from the id alone, with one direct get. A route stream
//! starts at its creation time's sequence (`lost::first_free_seq`), so one
//! created again after it was lost never reuses the lost one's sequences in
//! result keys, dead-letter subjects or ids.

use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::store::EventId;

pub const RESULTS: &str = "hr_results";
pub const DEAD: &str = "HR_DL";
pub const MEDIA: &str = "hr_media";
pub const MEDIA_WORK: &str = "HR_MEDIA";
pub const ARCHIVER: &str = "archiver";
pub const TASKS: &str = "hr_tasks";
pub const TASK_WORK: &str = "HR_TASKS";
pub const RECONCILER: &str = "reconciler";
/// The key the store check writes (not a task's: those start with `t.`).
pub const PROBE_KEY: &str = "probe";

pub const STREAM_PREFIX: &str = "HR_EV_";
pub const CONSUMER_PREFIX: &str = "sub_";

/// Whether a route or subscriber name can be part of the stream, subject and
/// consumer names (letters, digits, '-' and '_'; `check-config` holds
/// cluster-mode names to it).
pub fn name_fits(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}
pub fn stream(route: &str) -> String {
    format!("{STREAM_PREFIX}{route}")
}
pub fn event_subject(route: &str, hash: &[u8; 32]) -> String {
    format!("hr.ev.{route}.{}", hex::encode(&hash[..16]))
}
pub fn event_filter(route: &str) -> String {
    format!("hr.ev.{route}.*")
}
pub fn replay_subject(route: &str, sub: &str) -> String {
    format!("hr.rp.{route}.{sub}")
}
/// Whether a message of a route's stream is a replay's (else an event's).
pub fn is_replay(subject: &str) -> bool {
    subject.starts_with("hr.rp.")
}
pub fn replay_filter(route: &str) -> String {
    format!("hr.rp.{route}.*")
}
pub fn consumer(sub: &str) -> String {
    format!("{CONSUMER_PREFIX}{sub}")
}
pub fn result_key(route: &str, seq: u64, sub: &str) -> String {
    format!("{route}.{seq}.{sub}")
}
pub fn dead_subject(route: &str, sub: &str, seq: u64) -> String {
    format!("hr.dl.{route}.{sub}.{seq}")
}
pub fn dead_filter(sub: Option<&str>) -> String {
    match sub {
        Some(s) => format!("hr.dl.*.{s}.*"),
        None => "hr.dl.>".into(),
    }
}
/// (route, subscriber, sequence) of a dead-letter subject.
pub fn parse_dead(subject: &str) -> Option<(String, String, u64)> {
    let mut p = subject.strip_prefix("hr.dl.")?.split('.');
    let (route, sub, seq) = (p.next()?, p.next()?, p.next()?);
    Some((route.to_string(), sub.to_string(), seq.parse().ok()?))
}

/// A media URL's name in the media bucket and work subjects.
pub fn media_hash(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..16])
}
pub fn media_key(hash: &str) -> String {
    format!("u.{hash}")
}
pub fn media_subject(hash: &str) -> String {
    format!("hr.md.{hash}")
}
pub fn file_key(sha256: &str) -> String {
    format!("f.{sha256}")
}
/// A file media retention released and has not deleted yet.
pub fn released_key(sha256: &str) -> String {
    format!("r.{sha256}")
}

/// An expected task's name in the tasks bucket and work subjects.
pub fn task_hash(route: &str, task_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(task_id.as_bytes());
    hex::encode(&h.finalize()[..16])
}
pub fn task_key(hash: &str) -> String {
    format!("t.{hash}")
}
pub fn task_subject(hash: &str) -> String {
    format!("hr.tk.{hash}")
}

/// A route's 16-bit tag in event ids.
pub fn route_tag(route: &str) -> u16 {
    let h = Sha256::digest(route.as_bytes());
    u16::from_be_bytes([h[0], h[1]])
}

pub fn event_id(route: &str, seq: u64, time_ms: u64) -> EventId {
    EventId(Ulid::from_parts(
        time_ms,
        (u128::from(route_tag(route)) << 64) | u128::from(seq),
    ))
}

/// (route tag, sequence, time ms) of an event id.
pub fn parse_id(id: EventId) -> (u16, u64, u64) {
    let random = id.0.random();
    ((random >> 64) as u16, random as u64, id.timestamp_ms())
}

/// Milliseconds of a message time.
pub fn millis(t: async_nats::datetime::DateTime) -> u64 {
    (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_route_and_sequence() {
        let id = event_id("runway", 12_345, 1_700_000_000_123);
        assert_eq!(parse_id(id), (route_tag("runway"), 12_345, 1_700_000_000_123));
        assert!(event_id("runway", 2, 1_700_000_000_123) < event_id("runway", 3, 1_700_000_000_123));
        assert_eq!(
            parse_dead("hr.dl.runway.render.42"),
            Some(("runway".into(), "render".into(), 42))
        );
        assert_eq!(event_subject("r", &[0xab; 32]), format!("hr.ev.r.{}", "ab".repeat(16)));
    }
}
