//! Large bodies in rows of their own. sled counts a page in its cache by
//! the size it takes in the log, but a value of more than a few KiB stays
//! in memory whatever `store.cache` says: 1,500 bodies of 1 MiB written
//! took a probe of sled 0.34 to 1.5 GiB of RSS, growing with every body
//! (16 MiB cache; 8 KiB values stayed at ~90 MiB however many). So a body
//! over [`INLINE_MAX`] is written as parts of [`PART`] bytes (`B` rows,
//! in the event's batch: atomic with its log row), its log row holding its
//! length; the same 1,500 MiB then peaked at ~95 MiB, written and read
//! back part by part. Typical callbacks (a few KB) stay in the log row.

use bytes::{Bytes, BytesMut};

use super::codec::{self, BodyAt, Header};
use super::keys;
use crate::store::{EventId, StoreError};

/// The largest body kept in its log row.
pub(super) const INLINE_MAX: usize = 8 * 1024;
/// The size of a body's parts.
pub(super) const PART: usize = 4 * 1024;

/// The rows of an event: its log row, then its body's parts if it has any.
pub(super) fn event_rows(route: u32, id: EventId, h: &Header, body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    if body.len() <= INLINE_MAX {
        return vec![(keys::log(route, id), codec::encode_event(h, body))];
    }
    let mut rows = Vec::with_capacity(1 + body.len().div_ceil(PART));
    rows.push((keys::log(route, id), codec::encode_event_without_body(h, body.len())));
    for (n, part) in body.chunks(PART).enumerate() {
        rows.push((keys::body_part(route, id, n as u32), part.to_vec()));
    }
    rows
}

/// The keys of an event's body parts (none for a body in its log row).
pub(super) fn part_keys(route: u32, id: EventId, at: BodyAt) -> impl Iterator<Item = Vec<u8>> {
    let parts = match at {
        BodyAt::Inline(_) => 0,
        BodyAt::Rows(len) => len.div_ceil(PART as u64),
    };
    (0..parts).map(move |n| keys::body_part(route, id, n as u32))
}

/// An event's body: copied out of its log row, or read part by part (one
/// `get` each: a range scan over them held every page it passed in memory).
/// None when a part is missing because the event was removed (retention)
/// between the reads of its log row and its parts; [`StoreError::Corrupt`]
/// when its rows are damaged (a part missing with the log row there, or
/// parts that do not add up to the length): the caller treats that as an
/// unreadable log row, not as an error to read again (it would fail every
/// time) nor as an event removed.
pub(super) fn read(
    tree: &sled::Tree,
    route: u32,
    id: EventId,
    row: &[u8],
    at: BodyAt,
) -> Result<Option<Bytes>, StoreError> {
    let len = match at {
        BodyAt::Inline(from) => return Ok(Some(Bytes::copy_from_slice(&row[from..]))),
        BodyAt::Rows(len) => {
            usize::try_from(len).map_err(|_| StoreError::Corrupt(format!("event {id}: body length {len}")))?
        }
    };
    let mut body = BytesMut::with_capacity(len);
    for (n, key) in part_keys(route, id, at).enumerate() {
        let Some(part) = tree.get(&key)? else {
            if tree.contains_key(keys::log(route, id))? {
                return Err(StoreError::Corrupt(format!("event {id}: body part {n} is missing")));
            }
            return Ok(None);
        };
        body.extend_from_slice(&part);
    }
    if body.len() != len {
        return Err(StoreError::Corrupt(format!(
            "event {id}: body parts hold {} bytes, its row says {len}",
            body.len()
        )));
    }
    Ok(Some(body.freeze()))
}
