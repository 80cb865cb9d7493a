//! Upgrade in place from the 0.1 layout (tree `hookrelay`: JSON metadata, a
//! job row per delivery). Every event keeps its id, dedupe key, results and
//! attempts; pending jobs become due-index rows (so cursors start at the tail)
//! and dead letters stay dead letters. The new tree is written in batches and
//! marked with its schema version only at the end, so an interrupted migration
//! starts over; the old tree is dropped after that (a restart finishes the
//! drop when a crash came first: [`fingerprint`], or migrates again when 0.1
//! ran in between). A migration is refused before it starts when the disk
//! lacks room for it, and a migrated store version 2 served from that 0.1
//! wrote to again is refused (or its 0.1 rows discarded on request).
//!
//! A migration runs at the first start, before the daemon is ready: under
//! systemd (`Type=notify`) it asks for more time as it goes
//! ([`super::migrate_notify`]), so that a big store is not killed at the
//! start timeout and begun over at every restart.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::body_rows;
use super::codec::{self, Header, HeaderMeta, ResultRow};
use super::keys::{self, CursorRow};
pub(super) use super::migrate_notify::keep_systemd_waiting;
use super::registry::Registry;
use crate::store::{Attempt, DeliveryState, EventId, Options, Origin, StoreError};

/// The 0.1 tree.
pub(super) const V1_TREE: &str = "hookrelay";
const CHUNK: usize = 2000;

#[derive(Deserialize)]
struct V1Meta {
    route: String,
    #[serde(default)]
    source: String,
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    subscribers: Vec<String>,
    #[serde(default)]
    dedupe: String,
    #[serde(default)]
    dedupe_fallback: bool,
}

#[derive(Deserialize)]
struct V1State {
    state: String,
    at_ms: u64,
    attempts: u32,
    last_error: Option<String>,
}

#[derive(Deserialize)]
struct V1Attempt {
    attempt: u32,
    at_ms: u64,
    duration_ms: u64,
    status: Option<u16>,
    error: Option<String>,
}

/// Rows to write, flushed to the new tree every `CHUNK`.
struct Out<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    n: usize,
    /// Rows written so far (in `CHUNK`s), for the status.
    written: u64,
}

impl Out<'_> {
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) -> Result<(), StoreError> {
        self.batch.insert(k, v);
        self.n += 1;
        if self.n >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.tree.apply_batch(std::mem::take(&mut self.batch))?;
        self.n = 0;
        self.written += CHUNK as u64;
        keep_systemd_waiting(
            &format!("migrating the hookrelay 0.1 store: about {} rows written", self.written),
            false,
        );
        Ok(())
    }
}

/// `name\0rest` keys of 0.1: the name and what follows the separator.
fn split_name(k: &[u8]) -> Option<(&str, &[u8])> {
    let end = k.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&k[..end]).ok()?, &k[end + 1..]))
}

/// The attempts of one delivery in 0.1 (`A` rows), oldest first.
fn attempts(old: &sled::Tree, id: EventId, sub: &str) -> Result<Vec<Attempt>, StoreError> {
    let mut prefix = vec![b'A'];
    prefix.extend_from_slice(&id.bytes());
    prefix.extend_from_slice(sub.as_bytes());
    prefix.push(0);
    let mut out = Vec::new();
    for item in old.scan_prefix(prefix) {
        let (_, v) = item?;
        if let Ok(a) = serde_json::from_slice::<V1Attempt>(&v) {
            out.push(Attempt {
                attempt: a.attempt,
                at_ms: a.at_ms,
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error,
            });
        }
    }
    Ok(out)
}

/// Copy a 0.1 store into `tree` (schema 2). Does nothing when there is none;
/// an empty one (0.1 started, never sent a callback) migrates as nothing.
pub(super) fn from_v1(db: &sled::Db, tree: &sled::Tree) -> Result<Option<Migrated>, StoreError> {
    if !db.tree_names().iter().any(|n| n.as_ref() == V1_TREE.as_bytes()) {
        return Ok(None);
    }
    let old = db.open_tree(V1_TREE)?;
    if old.is_empty() {
        return Ok(Some(Migrated::default()));
    }
    tracing::info!("migrating a hookrelay 0.1 store to the version 2 layout");
    keep_systemd_waiting("migrating the hookrelay 0.1 store", true);
    let mut out = Out {
        tree,
        batch: sled::Batch::default(),
        n: 0,
        written: 0,
    };
    let mut reg = Registry::default();
    let mut names = Vec::new();
    let mut tails: HashMap<u32, u64> = HashMap::new();
    let mut last_id: HashMap<u32, EventId> = HashMap::new();
    let mut events = 0u64;
    // Events: the log and dedupe rows.
    for item in old.scan_prefix([b'E']) {
        let (k, v) = item?;
        let Some(id) = EventId::from_slice(&k[1..]) else {
            continue;
        };
        let len = v.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes) as usize;
        let Some(meta) = v.get(4..4 + len).and_then(|m| serde_json::from_slice::<V1Meta>(m).ok()) else {
            tracing::warn!(event = %id, "unreadable 0.1 event; not migrated");
            continue;
        };
        let route = reg.route_or_new(&meta.route, &mut names);
        let subs: Vec<u32> = meta
            .subscribers
            .iter()
            .map(|s| reg.sub_or_new(s, route, &mut names).0)
            .collect();
        let tail = tails.entry(route).or_insert(1);
        let seq = *tail;
        *tail += 1;
        let mut dedupe = [0u8; 16];
        if let Ok(h) = hex::decode(&meta.dedupe) {
            if h.len() >= 16 {
                dedupe.copy_from_slice(&h[..16]);
                out.put(keys::dedupe(route, &dedupe), id.bytes().to_vec())?;
            }
        }
        let header = Header {
            seq,
            meta: HeaderMeta {
                source: meta.source.parse::<IpAddr>().ok(),
                content_type: meta.content_type,
                headers: meta.headers,
                dedupe_fallback: meta.dedupe_fallback,
                origin: Origin::Callback,
            },
            subscribers: subs,
            dedupe,
        };
        for (k, v) in body_rows::event_rows(route, id, &header, &v[4 + len..]) {
            out.put(k, v)?;
        }
        last_id.insert(route, id);
        events += 1;
    }
    // Final states and their attempts.
    for item in old.scan_prefix([b'S']) {
        let (k, v) = item?;
        let (Some(id), Ok(sub)) = (EventId::from_slice(&k[1..]), std::str::from_utf8(&k[17..])) else {
            continue;
        };
        let (Some(no), Ok(st)) = (reg.sub(sub), serde_json::from_slice::<V1State>(&v)) else {
            continue;
        };
        let state = match st.state.as_str() {
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            _ => DeliveryState::Skipped,
        };
        let row = ResultRow {
            state,
            attempts: st.attempts,
            step: 0,
            at_ms: st.at_ms,
            history: attempts(&old, id, sub)?,
            last_error: st.last_error,
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        };
        out.put(keys::result(id, no), codec::encode_result(&row))?;
    }
    // Pending jobs: due-index rows, with their retry state.
    let mut waiting: HashMap<u32, u64> = HashMap::new();
    for item in old.scan_prefix([b'J']) {
        let (k, v) = item?;
        let Some((sub, rest)) = split_name(&k[1..]) else {
            continue;
        };
        let (Some(due), Some(id)) = (
            rest.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes),
            EventId::from_slice(rest.get(8..).unwrap_or(&[])),
        ) else {
            continue;
        };
        let Some(no) = reg.sub(sub) else { continue };
        let step = v.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
        let tried = v
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_be_bytes);
        out.put(keys::due(no, due, id), Vec::new())?;
        *waiting.entry(no).or_default() += 1;
        let history = attempts(&old, id, sub)?;
        let row = ResultRow {
            state: DeliveryState::Retrying { due_ms: due },
            attempts: tried,
            step,
            at_ms: history.last().map_or(id.timestamp_ms(), |a| a.at_ms),
            last_error: history
                .last()
                .and_then(|a| a.error.clone().or(a.status.map(|s| format!("HTTP {s}")))),
            history,
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        };
        out.put(keys::result(id, no), codec::encode_result(&row))?;
    }
    // Dead letters.
    let mut dead = 0u64;
    for item in old.scan_prefix([b'X']) {
        let (k, v) = item?;
        let Some((sub, rest)) = split_name(&k[1..]) else {
            continue;
        };
        let (Some(no), Some(id)) = (reg.sub(sub), EventId::from_slice(rest)) else {
            continue;
        };
        let at = serde_json::from_slice::<serde_json::Value>(&v)
            .ok()
            .and_then(|d| d["at_ms"].as_u64())
            .unwrap_or(id.timestamp_ms());
        out.put(keys::dead(no, id), at.to_be_bytes().to_vec())?;
        dead += 1;
    }
    // Names, sequences, counts; every cursor at the tail (pending work is in the due index).
    for (k, v) in names {
        out.put(k, v)?;
    }
    for (route, next) in &tails {
        out.put(keys::seq(*route), next.to_be_bytes().to_vec())?;
    }
    for (sub, n) in &waiting {
        out.put(keys::count(*sub), n.to_be_bytes().to_vec())?;
    }
    for sub in reg.sub_numbers() {
        let Some(route) = reg.sub_route(sub) else { continue };
        let cursor = CursorRow {
            at: last_id.get(&route).map_or(EventId::ZERO, EventId::next),
            seq: tails.get(&route).copied().unwrap_or(1),
            high_water: EventId::ZERO,
            end: 0,
            recover_seq: 0,
        };
        out.put(keys::cursor(route, sub), cursor.encode().to_vec())?;
    }
    out.flush()?;
    let done = Migrated {
        events,
        pending: waiting.values().sum(),
        dead_letters: dead,
    };
    tracing::info!(done.events, done.pending, done.dead_letters, "0.1 store migrated");
    Ok(Some(done))
}

/// What opening the store found ([`super::SledStore::opened`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// In this version's layout already.
    Current,
    /// Nothing in it (a new store, or a database no hookrelay wrote to):
    /// now in this version's layout.
    Created,
    /// A 0.1 store (its tree there, perhaps empty), migrated.
    FromV1(Migrated),
}

/// What a migration from 0.1 carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Migrated {
    pub events: u64,
    /// Deliveries still to make.
    pub pending: u64,
    pub dead_letters: u64,
}

/// 0.1's tree as it is now: its rows (u64 BE), then the SHA-256 of every
/// key and value in order. Written with the version row of a migration
/// ([`keys::MIGRATED_KEY`]), so that a restart can tell a migration killed
/// before it dropped that tree (the same rows) from 0.1 started again.
pub(super) fn fingerprint(db: &sled::Db) -> Result<Vec<u8>, StoreError> {
    use sha2::Digest;
    let old = db.open_tree(V1_TREE)?;
    let mut h = sha2::Sha256::new();
    let mut rows = 0u64;
    for item in old.iter() {
        let (k, v) = item?;
        for part in [&k[..], &v[..]] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        rows += 1;
        if rows.is_multiple_of(CHUNK as u64) {
            keep_systemd_waiting("migrating the hookrelay 0.1 store: checking its rows", false);
        }
    }
    let mut out = rows.to_be_bytes().to_vec();
    out.extend_from_slice(&h.finalize());
    Ok(out)
}

/// Drop 0.1's tree, then the migration marker: the marker is there only
/// while 0.1's tree is (so version 2 has not served from the store yet).
pub(super) fn drop_v1(db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
    if super::schema::has_tree(db, V1_TREE) {
        keep_systemd_waiting("migrating the hookrelay 0.1 store: dropping its old rows", true);
        db.drop_tree(V1_TREE)?;
        db.flush()?;
    }
    if tree.remove(keys::MIGRATED_KEY)?.is_some() {
        db.flush()?;
    }
    Ok(())
}

/// A migrated store that still has 0.1's tree; `true`: migrate again.
///
/// With the migration marker ([`fingerprint`]), the migration was killed
/// after its version row and before it dropped that tree, so version 2 has
/// not served from this store (every start drops the tree, or migrates
/// again, before serving). If 0.1's rows are the ones migrated, the drop
/// is finished. Otherwise hookrelay 0.1 was started on the store in
/// between: the migration is done again from 0.1's rows as they are now
/// (what 0.1 sent since is not sent again; what it accepted comes along).
///
/// Without the marker, hookrelay 0.1 was started on a store version 2
/// served from: what 0.1 accepted since is invisible here. Refuse, saying
/// what to do, rather than leave those callbacks behind silently;
/// `hookrelay migrate --discard-0.1-rows` drops them once 0.1 has
/// delivered them.
pub(super) fn written_by_v1_since(db: &sled::Db, tree: &sled::Tree, opts: &Options) -> Result<bool, StoreError> {
    let migrated = tree.get(keys::MIGRATED_KEY)?;
    if !super::schema::has_tree(db, V1_TREE) {
        if migrated.is_some() {
            // Killed after the drop, before the marker went.
            drop_v1(db, tree)?;
        }
        return Ok(false);
    }
    let old = db.open_tree(V1_TREE)?;
    let events = old.scan_prefix([b'E']).count();
    let pending = old.scan_prefix([b'J']).count();
    if let Some(m) = migrated {
        drop(old);
        if fingerprint(db)? == m.as_ref() {
            drop_v1(db, tree)?;
            tracing::info!(
                events,
                "0.1's tree, left by a migration that was stopped before it dropped it, is dropped \
                 (its rows are the ones migrated)"
            );
            return Ok(false);
        }
        tracing::warn!(
            events,
            pending,
            "hookrelay 0.1 was started on this store after a migration that was stopped before it \
             dropped 0.1's rows (version 2 has not served from it): migrating 0.1's rows as they are \
             now again"
        );
        return Ok(true);
    }
    if old.is_empty() {
        return Ok(false);
    }
    if opts.discard_v1_rows {
        drop(old);
        drop_v1(db, tree)?;
        tracing::warn!(
            events,
            pending,
            "rows written by hookrelay 0.1 after the migration discarded"
        );
        return Ok(false);
    }
    Err(StoreError::Incompatible(format!(
        "hookrelay 0.1 was started on the store at {} after it was migrated to version 2, and wrote to it: \
         {events} events and {pending} deliveries still pending in 0.1's layout, which version 2 does not read. \
         To keep them, start 0.1 on this store until `hookrelay status` shows nothing pending; then run \
         `hookrelay migrate --discard-0.1-rows` (0.1's events and their dedupe keys go) and start version 2. \
         If 0.1 was not started on it (a migration by an earlier 2.x build was stopped before it dropped \
         0.1's rows), do not run 0.1: it would send the migrated deliveries again; run \
         `hookrelay migrate --discard-0.1-rows` only",
        opts.path.display(),
    )))
}

/// A 0.1 store is rewritten beside itself before the old rows go (measured:
/// half its size again, more after interrupted attempts): refuse to start a
/// migration that would fill the disk, with how much room it needs, instead
/// of failing halfway with the file system's error.
pub(super) fn room_to_migrate(db: &sled::Db, opts: &Options) -> Result<(), StoreError> {
    let v1 = db.tree_names().iter().any(|n| n.as_ref() == V1_TREE.as_bytes());
    if !v1 {
        return Ok(());
    }
    let needed = db.size_on_disk().unwrap_or(0) + opts.min_free;
    match fs4::available_space(&opts.path) {
        Ok(free) if free < needed => Err(StoreError::Unavailable(format!(
            "migrating the 0.1 store at {} needs about {} MiB free (the store's size again, plus store.min_free); \
             {} MiB are: make room and start again (nothing was changed)",
            opts.path.display(),
            needed >> 20,
            free >> 20
        ))),
        _ => Ok(()),
    }
}
