//! The writer's Bloom filter over the dedupe rows: a fresh callback's key is
//! almost never in the tree, and the filter says so without a tree lookup.
//!
//! It only ever answers "certainly not there" or "maybe": every dedupe row
//! the tree holds is in the filter once it is ready, so a duplicate is never
//! missed; a row removed by retention stays in the filter (a false "maybe"
//! costs the lookup, nothing else). Built by a thread of its own from a scan
//! of the dedupe rows — at start, and again when the rows written since pass
//! what it was sized for — while the writer goes on: until it is ready every
//! key is looked up, and the keys the writer adds during a scan are kept and
//! added to the new filter before it is used, so none falls between the scan
//! and the swap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use fastbloom::BloomFilter;

use super::keys;

/// False positives the filter is sized for (each one costs one tree lookup).
const FALSE_POSITIVES: f64 = 0.01;
/// Rows a filter is sized for at least (~1.2 MB at 1 %).
const MIN_CAPACITY: usize = 1 << 20;

struct Ready {
    bloom: BloomFilter,
    capacity: usize,
    /// Rows in it: those the scan found plus those added since.
    rows: usize,
}

struct Building {
    /// Keys added while the scan runs.
    pending: Vec<Vec<u8>>,
    done: mpsc::Receiver<Result<Ready, String>>,
    thread: std::thread::JoinHandle<()>,
}

pub(super) struct DedupeFilter {
    tree: sled::Tree,
    min_capacity: usize,
    ready: Option<Ready>,
    building: Option<Building>,
    /// Tells a scan to give up: the store is closing.
    stop: Arc<AtomicBool>,
}

impl Drop for DedupeFilter {
    /// A scan holds the tree: it ends before the writer does, so the store
    /// can be opened again as soon as it is closed.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.building.take() {
            let _ = b.thread.join();
        }
    }
}

impl DedupeFilter {
    /// A filter over `tree`'s dedupe rows; its first scan starts now.
    pub fn start(tree: sled::Tree) -> Self {
        Self::with_min_capacity(tree, MIN_CAPACITY)
    }

    fn with_min_capacity(tree: sled::Tree, min_capacity: usize) -> Self {
        let mut f = DedupeFilter {
            tree,
            min_capacity,
            ready: None,
            building: None,
            stop: Arc::new(AtomicBool::new(false)),
        };
        f.rebuild();
        f
    }

    /// Whether `key` may be in the tree (always, until the filter is ready).
    pub fn may_contain(&mut self, key: &[u8]) -> bool {
        self.take_built();
        self.ready.as_ref().is_none_or(|r| r.bloom.contains(key))
    }

    /// A dedupe row the writer adds (before its batch is applied: a batch
    /// that then fails leaves only a false "maybe").
    pub fn insert(&mut self, key: &[u8]) {
        if let Some(b) = &mut self.building {
            b.pending.push(key.to_vec());
        }
        let Some(r) = &mut self.ready else {
            return;
        };
        r.bloom.insert(key);
        r.rows += 1;
    }

    /// The writer's batch is applied: a filter past its size is scanned
    /// again now, when every key it was given is in the tree (a scan started
    /// between [`Self::insert`] and the apply would miss the batch's keys).
    pub fn applied(&mut self) {
        if self.building.is_none() && self.ready.as_ref().is_some_and(|r| r.rows > r.capacity) {
            self.rebuild();
        }
    }

    /// Swap in a filter whose scan has finished, with the keys added meanwhile.
    fn take_built(&mut self) {
        let Some(b) = &mut self.building else {
            return;
        };
        let built = match b.done.try_recv() {
            Ok(built) => built,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err("the scan thread stopped".into()),
        };
        let Some(b) = self.building.take() else {
            return;
        };
        let _ = b.thread.join();
        match built {
            Ok(mut r) => {
                for k in &b.pending {
                    r.bloom.insert(k.as_slice());
                }
                r.rows += b.pending.len();
                tracing::debug!(rows = r.rows, capacity = r.capacity, "dedupe filter ready");
                self.ready = Some(r);
            }
            // Correct without it, only slower: every key is looked up.
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the dedupe filter; dedupe reads every key from the store");
                self.ready = None;
            }
        }
    }

    fn rebuild(&mut self) {
        let (tx, rx) = mpsc::channel();
        let tree = self.tree.clone();
        let min = self.min_capacity;
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("hookrelay-dedupe-filter".into())
            .spawn(move || {
                let _ = tx.send(scan(&tree, min, &stop));
            });
        match spawned {
            Ok(thread) => {
                self.building = Some(Building {
                    pending: Vec::new(),
                    done: rx,
                    thread,
                })
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the dedupe filter's scan"),
        }
    }

    /// Ready, and no scan under way.
    #[cfg(test)]
    fn is_settled(&mut self) -> bool {
        self.take_built();
        self.ready.is_some() && self.building.is_none()
    }
}

/// Count the dedupe rows, size a filter for twice as many, fill it. Rows
/// written between the two passes are in the writer's pending keys.
fn scan(tree: &sled::Tree, min_capacity: usize, stop: &AtomicBool) -> Result<Ready, String> {
    let stopped = || match stop.load(Ordering::Relaxed) {
        true => Err("the store is closing".to_string()),
        false => Ok(()),
    };
    let mut rows = 0usize;
    for k in tree.scan_prefix([keys::D]).keys() {
        k.map_err(|e| e.to_string())?;
        stopped()?;
        rows += 1;
    }
    let capacity = (rows * 2).max(min_capacity);
    let mut bloom = BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity);
    let mut rows = 0usize;
    for k in tree.scan_prefix([keys::D]).keys() {
        let k = k.map_err(|e| e.to_string())?;
        stopped()?;
        bloom.insert(k.as_ref());
        rows += 1;
    }
    Ok(Ready { bloom, capacity, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&i.to_be_bytes());
        keys::dedupe(1, &h)
    }

    fn wait_ready(f: &mut DedupeFilter) {
        let t0 = std::time::Instant::now();
        while !f.is_settled() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(30), "filter never ready");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn rows_in_the_tree_and_rows_added_during_the_scan_are_all_maybe() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        for i in 0..5_000 {
            tree.insert(key(i), vec![1]).unwrap();
        }
        // Keys the writer adds before the scan is done.
        let mut f = DedupeFilter::with_min_capacity(tree.clone(), 64);
        for i in 5_000..6_000 {
            tree.insert(key(i), vec![1]).unwrap();
            f.insert(&key(i));
        }
        wait_ready(&mut f);
        for i in 0..6_000 {
            assert!(f.may_contain(&key(i)), "row {i} missed");
        }
        let absent = (100_000..110_000).filter(|i| f.may_contain(&key(*i))).count();
        assert!(absent < 500, "{absent} of 10,000 absent keys said maybe");
    }

    #[test]
    fn a_full_filter_is_rebuilt_bigger_and_misses_nothing_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut f = DedupeFilter::with_min_capacity(tree.clone(), 100);
        wait_ready(&mut f);
        for i in 0..1_000 {
            tree.insert(key(i), vec![1]).unwrap();
            f.insert(&key(i));
            f.applied();
            assert!(f.may_contain(&key(i)));
        }
        wait_ready(&mut f);
        assert!(f.ready.as_ref().unwrap().capacity >= 200, "not rebuilt");
        for i in 0..1_000 {
            assert!(f.may_contain(&key(i)), "row {i} missed after the rebuild");
        }
    }

    #[test]
    fn until_the_scan_is_done_every_key_is_maybe() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut f = DedupeFilter {
            tree,
            min_capacity: 64,
            ready: None,
            building: None,
            stop: Arc::new(AtomicBool::new(false)),
        };
        assert!(f.may_contain(&key(7)));
    }

    /// Through the store: after a restart every key stored before it is a
    /// duplicate, before, while and after the filter's first scan.
    #[tokio::test]
    async fn every_stored_key_is_a_duplicate_after_a_restart() {
        use crate::store::sled::tests::{event, open};
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &["a"]).await;
        let ids: Vec<_> = append_all(&store, 0..3_000).await;
        assert!(ids.iter().all(|a| !a.duplicate));
        store.close().await;
        drop(store);
        let store = open(dir.path(), &["a"]).await;
        for round in 0..3 {
            for (i, first) in (0..3_000).zip(&ids) {
                let again = store.append(event(&format!("t{i}"), &["a"], 2)).await.unwrap();
                assert!(
                    again.duplicate && again.id == first.id,
                    "round {round}: t{i} taken again"
                );
            }
        }
        let fresh = store.append(event("new", &["a"], 3)).await.unwrap();
        assert!(!fresh.duplicate);
        store.close().await;

        async fn append_all(store: &crate::store::Store, r: std::ops::Range<u32>) -> Vec<crate::store::Accepted> {
            let mut out = Vec::new();
            for i in r {
                out.push(store.append(event(&format!("t{i}"), &["a"], 1)).await.unwrap());
            }
            out
        }
    }
}
