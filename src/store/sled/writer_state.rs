//! The writer's authoritative state at start-up, read back from the tree:
//! every cursor, each route's next log sequence (the stored one, or past the
//! last log row if a crash came before it was written), the last event id
//! handed out ([`id_floor`]), the due-index counts (per route: [`super::due_route`]), and the media bookkeeping.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ulid::Ulid;

use super::codec;
use super::group_commit::Writer;
use super::keys::{self, CursorRow};
use super::media::MediaBook;
use super::Inner;
use crate::store::StoreError;

impl Writer {
    pub(super) fn load(inner: Arc<Inner>) -> Result<Writer, StoreError> {
        let tree = &inner.tree;
        let mut cursors = HashMap::new();
        for item in tree.scan_prefix([keys::C]) {
            let (k, v) = item?;
            let (Some(r), Some(s)) = (k.get(1..5), k.get(5..9)) else {
                continue;
            };
            let key = (
                u32::from_be_bytes(r.try_into().unwrap_or_default()),
                u32::from_be_bytes(s.try_into().unwrap_or_default()),
            );
            if let Some(c) = CursorRow::decode(&v) {
                cursors.insert(key, c);
            }
        }
        let mut tails = HashMap::new();
        // As the `seq` rows have them: a tail found past its row (events
        // written since the row was) is written again at the first full commit.
        let mut tails_written = HashMap::new();
        let mut last_id = id_floor(tree, &cursors)?;
        for route in super::read_lock(&inner.registry).route_numbers() {
            let stored = tree.get(keys::seq(route))?.map(|v| keys::u64_value(&v));
            if let Some(stored) = stored {
                tails_written.insert(route, stored);
            }
            let mut next = stored.unwrap_or(1);
            // The last row that reads: lanes read the log only below the
            // tail, so an unreadable last row must not leave it behind.
            for (n, item) in tree
                .range(keys::log_prefix(route)..keys::log_end(route))
                .rev()
                .enumerate()
            {
                let (k, v) = item?;
                if n == 0 {
                    if let Some(id) = keys::id_at_5(&k) {
                        last_id = last_id.max(id.0);
                    }
                }
                if let Some((h, _)) = codec::decode_header(&v) {
                    next = next.max(h.seq + 1);
                    break;
                }
                tracing::error!(
                    route,
                    "unreadable event row at the end of the log; looking at the one before"
                );
            }
            tails.insert(route, next);
            inner.tail(route).store(next, Ordering::Release);
        }
        let mut waiting = HashMap::new();
        for item in tree.scan_prefix([keys::K]) {
            let (k, v) = item?;
            if let Some(s) = k.get(1..5).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) {
                let n = keys::u64_value(&v);
                waiting.insert(s, n);
                inner.waiting(s).store(n, Ordering::Relaxed);
            }
        }
        let waiting_at = super::due_route::load(tree, &super::read_lock(&inner.registry))?;
        for (key, n) in &waiting_at {
            inner.waiting_at(key.0, key.1).store(*n, Ordering::Relaxed);
        }
        let media = MediaBook::load(&inner, tree)?;
        *super::write_lock(&inner.cursors) = cursors.clone();
        Ok(Writer {
            inner,
            last_id,
            cursors,
            dirty_cursors: HashSet::new(),
            due_cursors: HashSet::new(),
            moved: HashSet::new(),
            tails_written,
            tails,
            dirty_tails: HashSet::new(),
            waiting,
            dirty_waiting: HashSet::new(),
            waiting_at,
            dirty_waiting_at: HashSet::new(),
            space_ok: true,
            media,
            dead: super::dead_count::DeadCount::new(),
        })
    }
}

/// The floor for new event ids: above every id this store has handed out,
/// whatever the wall clock says now (it may be behind the last event: a
/// corrected clock, a restored VM). The stored last id (written lazily, and
/// missing in stores from before it was kept), and every id a row still
/// names: cursor positions (retention may have emptied the logs, but its
/// commits write the cursors past what they remove), the newest result
/// row; the last log row of each route is added by the caller. Only ids at
/// or past a cursor matter for delivery, and those are all covered.
fn id_floor(tree: &sled::Tree, cursors: &HashMap<(u32, u32), CursorRow>) -> Result<Ulid, StoreError> {
    let mut floor = Ulid::nil();
    let mut raise = |id: Option<crate::store::EventId>| {
        if let Some(id) = id {
            floor = floor.max(id.0);
        }
    };
    raise(
        tree.get(keys::LAST_ID_KEY)?
            .and_then(|v| crate::store::EventId::from_slice(&v)),
    );
    for c in cursors.values() {
        // `at` is the first event not finished: ids below it are never read.
        raise(Some(c.at));
        raise(Some(c.high_water));
    }
    let newest_result = tree.scan_prefix([keys::R]).next_back().transpose()?;
    raise(newest_result.and_then(|(k, _)| crate::store::EventId::from_slice(k.get(1..17)?)));
    Ok(floor)
}
