//! Key layout of the sled backend (schema 2). One tree, keys prefixed by one
//! byte so that related rows are written in one atomic `sled::Batch`. Routes
//! and subscribers appear as numbers (`N` rows), so keys stay short.
//!
//! | prefix | key | value | written |
//! |---|---|---|---|
//! | `V` | `version` | schema version (u32 BE) | once |
//! | `N` | `r` or `s`, name | number (u32 BE) | once per name |
//! | `L` | route (4), event id (16) | header + body ([`super::codec`]) | ingest |
//! | `D` | route (4), dedupe hash (16) | event id (16) | ingest |
//! | `Q` | route (4) | next log sequence (u64 BE) | once per ingest batch |
//! | `C` | route (4), subscriber (4) | cursor id (16), cursor seq (8), high-water id (16) | once per batch that moves it |
//! | `W` | subscriber (4), due ms (8), event id (16) | — | only for work that waits: retries, `Retry-After`, replays |
//! | `K` | subscriber (4) | number of `W` rows (u64 BE) | with every batch that changes them |
//! | `R` | event id (16), subscriber (4) | result row ([`super::codec`]) | once per finished attempt |
//! | `X` | subscriber (4), event id (16) | died at ms (u64 BE) | on a dead letter |
//!
//! An event fanned out to three subscribers that all answer first time costs
//! five rows (`L`, `D` and three `R`); cursor, sequence and count rows are
//! written once per batch, not per event.

use crate::store::EventId;

pub const N: u8 = b'N';
pub const L: u8 = b'L';
pub const D: u8 = b'D';
pub const Q: u8 = b'Q';
pub const C: u8 = b'C';
pub const W: u8 = b'W';
pub const K: u8 = b'K';
pub const R: u8 = b'R';
pub const X: u8 = b'X';

pub const VERSION_KEY: &[u8] = b"Vversion";

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
/// the cursor (a restart checks results only up to there), and — for a
/// subscriber removed from the config — the log sequence where its events
/// end (0 while it is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorRow {
    pub at: EventId,
    pub seq: u64,
    pub high_water: EventId,
    pub end: u64,
}

impl CursorRow {
    pub fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        v[..16].copy_from_slice(&self.at.bytes());
        v[16..24].copy_from_slice(&self.seq.to_be_bytes());
        v[24..40].copy_from_slice(&self.high_water.bytes());
        v[40..].copy_from_slice(&self.end.to_be_bytes());
        v
    }
    pub fn decode(v: &[u8]) -> Option<CursorRow> {
        Some(CursorRow {
            at: EventId::from_slice(v.get(..16)?)?,
            seq: u64::from_be_bytes(v.get(16..24)?.try_into().ok()?),
            high_water: EventId::from_slice(v.get(24..40)?)?,
            end: v
                .get(40..48)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes),
        })
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
        };
        assert_eq!(CursorRow::decode(&c.encode()), Some(c));
    }
}
