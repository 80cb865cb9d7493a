//! Key layout of the sled backend (schema 2). One tree, keys prefixed by one
//! byte so that related rows are written in one atomic `sled::Batch`. Routes
//! and subscribers appear as numbers (`N` rows), so keys stay short.
//!
//! | prefix | key | value | written |
//! |---|---|---|---|
//! | `V` | `version` | schema version (u32 BE) | once |
//! | `V` | `last_event_id` | the last event id handed out (16): new ids go above it whatever the clock says | with the sequence rows (control batches, shutdown) |
//! | `V` | `migrated_from_v1` | rows (u64 BE) and SHA-256 (32) of 0.1's tree as migrated ([`super::migrate`]) | with the version row of a migration; removed once 0.1's tree is dropped |
//! | `N` | `r` or `s`, name | number (u32 BE) | once per name |
//! | `L` | route (4), event id (16) | header + body ([`super::codec`]), or header + body length for a body over 8 KiB | ingest |
//! | `B` | route (4), event id (16), part (4) | 4 KiB of a body over 8 KiB ([`super::body_rows`]) | ingest, with its `L` row |
//! | `D` | route (4), dedupe hash (16) | event id (16) | ingest |
//! | `Q` | route (4) | next log sequence (u64 BE) | once per ingest batch |
//! | `C` | route (4), subscriber (4) | cursor id (16), cursor seq (8), high-water id (16) | once per batch that moves it |
//! | `W` | subscriber (4), due ms (8), event id (16) | route (4) ([`super::due_route`]) | only for work that waits: retries, `Retry-After`, replays |
//! | `K` | subscriber (4) | number of `W` rows (u64 BE), all routes | with every batch that changes them |
//! | `R` | event id (16), subscriber (4) | result row ([`super::codec`]) | once per finished attempt |
//! | `X` | subscriber (4), event id (16) | died at ms (u64 BE) | on a dead letter |
//! | `E` | event id (16) | route (4), then the URL hash (16) of each media URL | ingest, with the event (only when the route's pointers found URLs) |
//! | `U` | URL hash (16) | media row ([`super::media_codec`]): URL, route, state, tries, result or error, events waiting | ingest (a URL seen first), each archive try |
//! | `A` | due ms (8), URL hash (16) | — | media work due: a new URL (due now), a retry |
//! | `J` | — | number of `A` rows (u64 BE) | with every batch that changes them |
//! | `T` | final at ms (8), URL hash (16) | — | when a URL is stored or failed for good (media retention walks it) |
//! | `H` | SHA-256 (32), URL hash (16) | — | a URL whose file has this digest (a file goes when its last URL expires) |
//! | `Y` | SHA-256 (32) | — | a file media retention released (its last URL expired) and has not yet deleted: each pass deletes those, and removes the row once the file is gone (or named again) |
//! | `G` | route (4), provider task id | expected-task row ([`super::task_codec`]) | registration, each poll, the event that settles it |
//! | `P` | next poll ms (8), route (4), task id | — | while a task waits for its next poll (the reconciler's schedule) |
//!
//! An event fanned out to three subscribers that all answer first time costs
//! five rows (`L`, `D` and three `R`), and one more per 4 KiB of a body
//! over 8 KiB; cursor, sequence and count rows are
//! written once per batch, not per event. An event naming two new media URLs
//! adds five (`E`, two `U`, two `A`); each URL stored adds `T` and `H` and
//! rewrites its `U`. Event retention removes `E` with the event; `U`, `T`
//! and `H` belong to media retention, which deletes the files.

use crate::store::EventId;

pub const N: u8 = b'N';
pub const L: u8 = b'L';
pub const B: u8 = b'B';
pub const D: u8 = b'D';
pub const Q: u8 = b'Q';
pub const C: u8 = b'C';
pub const W: u8 = b'W';
pub const K: u8 = b'K';
pub const R: u8 = b'R';
pub const X: u8 = b'X';
pub const E: u8 = b'E';
pub const U: u8 = b'U';
pub const A: u8 = b'A';
pub const J: u8 = b'J';
pub const T: u8 = b'T';
pub const H: u8 = b'H';
pub const Y: u8 = b'Y';

pub const VERSION_KEY: &[u8] = b"Vversion";
/// The last event id handed out (written lazily, with the sequence rows).
pub const LAST_ID_KEY: &[u8] = b"Vlast_event_id";
/// What a migration from 0.1 read, written with the version row.
pub const MIGRATED_KEY: &[u8] = b"Vmigrated_from_v1";

fn cat<const M: usize>(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(M);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn name(kind: u8, name: &str) -> Vec<u8> {
    cat::<70>(&[&[N, kind], name.as_bytes()])
}

pub fn log_prefix(route: u32) -> Vec<u8> {
    cat::<5>(&[&[L], &route.to_be_bytes()])
}
pub fn log(route: u32, id: EventId) -> Vec<u8> {
    cat::<21>(&[&[L], &route.to_be_bytes(), &id.bytes()])
}
pub fn log_end(route: u32) -> Vec<u8> {
    match route.checked_add(1) {
        Some(next) => cat::<5>(&[&[L], &next.to_be_bytes()]),
        None => vec![L + 1],
    }
}

pub fn body_part(route: u32, id: EventId, part: u32) -> Vec<u8> {
    cat::<25>(&[&[B], &route.to_be_bytes(), &id.bytes(), &part.to_be_bytes()])
}

pub fn dedupe(route: u32, hash: &[u8; 16]) -> Vec<u8> {
    cat::<21>(&[&[D], &route.to_be_bytes(), hash])
}

pub fn seq(route: u32) -> Vec<u8> {
    cat::<5>(&[&[Q], &route.to_be_bytes()])
}

pub fn cursor(route: u32, sub: u32) -> Vec<u8> {
    cat::<9>(&[&[C], &route.to_be_bytes(), &sub.to_be_bytes()])
}

pub fn due_prefix(sub: u32) -> Vec<u8> {
    cat::<5>(&[&[W], &sub.to_be_bytes()])
}
pub fn due(sub: u32, due_ms: u64, id: EventId) -> Vec<u8> {
    cat::<29>(&[&[W], &sub.to_be_bytes(), &due_ms.to_be_bytes(), &id.bytes()])
}
/// The value of a `W` row: the route whose log holds the event.
pub fn due_value(route: u32) -> [u8; 4] {
    route.to_be_bytes()
}
/// The route of a `W` row's value (None: a row written before it named one).
pub fn due_route(v: &[u8]) -> Option<u32> {
    v.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
}
/// (due ms, event id) of a `W` key.
pub fn parse_due(k: &[u8]) -> Option<(u64, EventId)> {
    let due = u64::from_be_bytes(k.get(5..13)?.try_into().ok()?);
    Some((due, EventId::from_slice(k.get(13..29)?)?))
}

pub fn count(sub: u32) -> Vec<u8> {
    cat::<5>(&[&[K], &sub.to_be_bytes()])
}

pub fn result(id: EventId, sub: u32) -> Vec<u8> {
    cat::<21>(&[&[R], &id.bytes(), &sub.to_be_bytes()])
}

pub fn dead_prefix(sub: u32) -> Vec<u8> {
    cat::<5>(&[&[X], &sub.to_be_bytes()])
}
pub fn dead(sub: u32, id: EventId) -> Vec<u8> {
    cat::<21>(&[&[X], &sub.to_be_bytes(), &id.bytes()])
}

/// A media URL's key: the first 16 bytes of its SHA-256.
pub fn url_hash(url: &str) -> [u8; 16] {
    use sha2::Digest;
    let full = sha2::Sha256::digest(url.as_bytes());
    let mut h = [0u8; 16];
    h.copy_from_slice(&full[..16]);
    h
}

pub fn event_media(id: EventId) -> Vec<u8> {
    cat::<17>(&[&[E], &id.bytes()])
}

pub fn media(hash: &[u8; 16]) -> Vec<u8> {
    cat::<17>(&[&[U], hash])
}

pub fn media_due(due_ms: u64, hash: &[u8; 16]) -> Vec<u8> {
    cat::<25>(&[&[A], &due_ms.to_be_bytes(), hash])
}

pub const MEDIA_COUNT: &[u8] = &[J];

pub fn media_final(at_ms: u64, hash: &[u8; 16]) -> Vec<u8> {
    cat::<25>(&[&[T], &at_ms.to_be_bytes(), hash])
}

pub fn media_file_prefix(sha256: &[u8; 32]) -> Vec<u8> {
    cat::<33>(&[&[H], sha256])
}
pub fn media_file(sha256: &[u8; 32], hash: &[u8; 16]) -> Vec<u8> {
    cat::<49>(&[&[H], sha256, hash])
}

/// A released file, not deleted yet.
pub fn media_released(sha256: &[u8; 32]) -> Vec<u8> {
    cat::<33>(&[&[Y], sha256])
}

/// (ms, URL hash) of an `A` or `T` key.
pub fn parse_timed(k: &[u8]) -> Option<(u64, [u8; 16])> {
    let ms = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    Some((ms, k.get(9..25)?.try_into().ok()?))
}

/// The event id at the end of an `L`, `X` or `R`-less key (`L`/`X`: bytes 5..21).
pub fn id_at_5(k: &[u8]) -> Option<EventId> {
    EventId::from_slice(k.get(5..21)?)
}

/// The exclusive upper bound of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// A cursor row: the first event not yet finished or parked in the due index,
/// its log sequence, the highest event with a result row written ahead of
/// the cursor, — for a subscriber removed from the config — the log sequence
/// where its events end (0 while it is configured), and the log sequence up
/// to which a restart must check results before sending (`recover_seq`).
///
/// The writer keeps the row in memory and writes it lazily: `at` and
/// `high_water` may be behind on disk (a restart then re-reads a little of
/// the log and finds those results), but a result row for log work past the
/// stored `recover_seq` is never written without the row that moves it on,
/// in the same batch. Rows of 48 bytes (before `recover_seq`) were written
/// eagerly: their `high_water` is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorRow {
    pub at: EventId,
    pub seq: u64,
    pub high_water: EventId,
    pub end: u64,
    pub recover_seq: u64,
}

impl CursorRow {
    pub fn encode(&self) -> [u8; 56] {
        let mut v = [0u8; 56];
        v[..16].copy_from_slice(&self.at.bytes());
        v[16..24].copy_from_slice(&self.seq.to_be_bytes());
        v[24..40].copy_from_slice(&self.high_water.bytes());
        v[40..48].copy_from_slice(&self.end.to_be_bytes());
        v[48..].copy_from_slice(&self.recover_seq.to_be_bytes());
        v
    }
    pub fn decode(v: &[u8]) -> Option<CursorRow> {
        let u64_at = |from: usize| {
            v.get(from..from + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        Some(CursorRow {
            at: EventId::from_slice(v.get(..16)?)?,
            seq: u64::from_be_bytes(v.get(16..24)?.try_into().ok()?),
            high_water: EventId::from_slice(v.get(24..40)?)?,
            end: u64_at(40),
            recover_seq: u64_at(48),
        })
    }

    /// Whether a restart must look for a result before sending the log
    /// event `id` at sequence `seq` (a result may have been written for it).
    pub fn may_have_result(&self, id: EventId, seq: u64) -> bool {
        id <= self.high_water || seq <= self.recover_seq
    }

    /// Whether any event at or after the cursor may have a result.
    pub fn recovering(&self) -> bool {
        self.high_water >= self.at || self.recover_seq >= self.seq
    }

    /// The sequence after the last event of the log meant for this subscriber.
    pub fn tail(&self, route_tail: u64) -> u64 {
        if self.end > 0 {
            route_tail.min(self.end)
        } else {
            route_tail
        }
    }
}

pub fn u64_value(v: &[u8]) -> u64 {
    v.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_the_layout_needs() {
        let a = EventId::from_parts(1000, 1);
        let b = EventId::from_parts(1000, 2);
        assert!(log(1, a) < log(1, b));
        assert!(log(1, b) < log_end(1));
        assert!(log(0, b) < log_prefix(1));
        assert!(due(3, 5, b) < due(3, 6, a), "due index sorts by time first");
        assert_eq!(parse_due(&due(3, 6, a)), Some((6, a)));
        assert_eq!(prefix_end(&[W, 0, 0, 0, 255]), vec![W, 0, 0, 1]);
        let c = CursorRow {
            at: a,
            seq: 9,
            high_water: b,
            end: 12,
            recover_seq: 1033,
        };
        assert_eq!(CursorRow::decode(&c.encode()), Some(c));
        let before = CursorRow::decode(&c.encode()[..48]).expect("a 48-byte row of before");
        assert_eq!(before.recover_seq, 0, "rows of before have no recover_seq");
        assert!(c.may_have_result(b, 2000) && c.may_have_result(EventId::from_parts(9999, 0), 1033));
        assert!(!c.may_have_result(EventId::from_parts(9999, 0), 1034));
        let h = url_hash("https://file.com/k/x.mp4");
        assert!(
            media_due(5, &h) < media_due(6, &[0; 16]),
            "media due index sorts by time first"
        );
        assert_eq!(parse_timed(&media_due(7, &h)), Some((7, h)));
        assert_eq!(parse_timed(&media_final(9, &h)), Some((9, h)));
        assert!(media_file(&[1; 32], &h).starts_with(&media_file_prefix(&[1; 32])));
    }
}
