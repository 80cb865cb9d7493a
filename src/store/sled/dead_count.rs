//! Dead letters per subscriber, counted once and then kept by the writer.
//!
//! Counting a subscriber's `X` keys on every admin read took seconds at a
//! million dead letters (sled reads every node in), and the console asks every
//! 2.5 s. After start the writer counts the existing keys in steps of
//! [`STEP`], between batches; a batch's change to a key the steps have
//! already passed is added to the counts as the batch commits, and a key
//! beyond them is counted when a step reaches it. So the counts are exact at
//! every commit once the steps are done; until then readers count the keys
//! themselves, as before.

use std::collections::HashMap;

use super::batch::Batch;
use super::keys;
use crate::store::StoreError;

/// Keys counted per step (a few milliseconds of the writer's time).
const STEP: usize = 1024;

pub(super) struct DeadCount {
    /// The first key not counted yet; `None` once every key is.
    next: Option<Vec<u8>>,
    counts: HashMap<u32, u64>,
    /// A step could not read the tree: counting stopped, and readers keep
    /// counting keys themselves (a store that cannot be read fails anyway).
    failed: bool,
}

/// A change of one subscriber's count by one batch.
pub(super) type Change = (u32, i64);

fn sub_of(k: &[u8]) -> Option<u32> {
    k.get(1..5).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
}

impl DeadCount {
    pub fn new() -> DeadCount {
        DeadCount {
            next: Some(vec![keys::X]),
            counts: HashMap::new(),
            failed: false,
        }
    }

    /// Keys are left to count (and counting has not failed).
    pub fn pending(&self) -> bool {
        self.next.is_some() && !self.failed
    }

    fn counted(&self, k: &[u8]) -> bool {
        self.next.as_ref().is_none_or(|n| k < n.as_slice())
    }

    /// What `b` changes among the counted keys: a new key adds one, a removed
    /// one takes one off (read before `b` is applied).
    pub fn changes(&self, tree: &sled::Tree, b: &Batch<'_>) -> Result<Vec<Change>, StoreError> {
        let mut out = Vec::new();
        if self.failed {
            return Ok(out);
        }
        for (k, put) in b.rows_with_tag(keys::X) {
            let Some(sub) = sub_of(k).filter(|_| self.counted(k)) else {
                continue;
            };
            match (put, tree.contains_key(k)?) {
                (true, false) => out.push((sub, 1)),
                (false, true) => out.push((sub, -1)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Add a committed batch's changes.
    pub fn commit(&mut self, changes: Vec<Change>) {
        for (sub, d) in changes {
            let n = self.counts.entry(sub).or_default();
            *n = n.saturating_add_signed(d);
        }
    }

    /// Count the next [`STEP`] keys. An error stops the counting for good
    /// (nothing of the failed step is counted; readers count keys).
    pub fn step(&mut self, tree: &sled::Tree) -> Result<(), StoreError> {
        let Some(from) = self.next.clone().filter(|_| !self.failed) else {
            return Ok(());
        };
        let mut found: HashMap<u32, u64> = HashMap::new();
        let mut seen = 0;
        let mut last = None;
        for k in tree.range(from..keys::prefix_end(&[keys::X])).keys().take(STEP) {
            let k = match k {
                Ok(k) => k,
                Err(e) => {
                    self.failed = true;
                    return Err(e.into());
                }
            };
            if let Some(sub) = sub_of(&k) {
                *found.entry(sub).or_default() += 1;
            }
            seen += 1;
            last = Some(k);
        }
        for (sub, n) in found {
            *self.counts.entry(sub).or_default() += n;
        }
        self.next = match last {
            Some(k) if seen == STEP => {
                // The smallest key after `k`.
                let mut n = k.to_vec();
                n.push(0);
                Some(n)
            }
            _ => None,
        };
        Ok(())
    }

    /// The counts, once every key that existed at start is counted.
    pub fn complete(&self) -> Option<&HashMap<u32, u64>> {
        (self.next.is_none() && !self.failed).then_some(&self.counts)
    }
}

/// The writer's side: counting between batches, and each batch's changes.
impl super::group_commit::Writer {
    pub(super) fn count_dead(&mut self) {
        if let Err(e) = self.dead.step(&self.inner.tree) {
            tracing::warn!(error = %e, "counting dead letters failed; the admin views count them on each read instead");
        }
        self.publish_dead();
    }

    /// A batch's changes to the dead-letter counts, as its rows are applied.
    pub(super) fn count_changed(&mut self, dead: Vec<super::dead_count::Change>) {
        if !dead.is_empty() {
            self.dead.commit(dead);
            self.publish_dead();
        }
    }

    /// Dead letters per subscriber for the admin views, once complete.
    fn publish_dead(&self) {
        if let Some(counts) = self.dead.complete() {
            *super::write_lock(&self.inner.dead_counts) = Some(counts.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_range_ends_before_the_next_key() {
        let mut c = DeadCount::new();
        assert!(c.counted(&[keys::W, 0, 0, 0, 1]));
        assert!(!c.counted(&[keys::X, 0, 0, 0, 1]));
        c.next = Some(vec![keys::X, 0, 0, 0, 2]);
        assert!(c.counted(&[keys::X, 0, 0, 0, 1, 9]));
        assert!(!c.counted(&[keys::X, 0, 0, 0, 2]));
        c.next = None;
        assert!(c.counted(&[keys::X, 0, 0, 0, 2]));
        assert_eq!(sub_of(&[keys::X, 0, 0, 1, 2, 7]), Some(258));
    }

    fn key(sub: u32, n: u64) -> Vec<u8> {
        let mut k = vec![keys::X];
        k.extend_from_slice(&sub.to_be_bytes());
        k.extend_from_slice(&n.to_be_bytes());
        k
    }

    fn scanned(tree: &sled::Tree, sub: u32) -> u64 {
        tree.scan_prefix(keys::dead_prefix(sub)).keys().count() as u64
    }

    /// Letters added and removed on both sides of where the counting steps
    /// are, while they are under way, are counted exactly once.
    #[test]
    fn changes_during_the_count_are_counted_once() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for n in 0..2_500u64 {
            tree.insert(key(1, 2 * n), vec![0]).unwrap();
        }
        for n in 0..10u64 {
            tree.insert(key(2, 2 * n), vec![0]).unwrap();
        }
        tree.insert([keys::W, 0, 0, 0, 1], vec![0]).unwrap();
        let mut c = DeadCount::new();
        c.step(&tree).unwrap();
        assert!(c.pending() && c.complete().is_none());
        let mut b = Batch::new(&tree);
        b.put(key(1, 11), vec![0]); // new, already passed
        b.put(key(1, 15), vec![0]);
        b.put(key(1, 4_001), vec![0]); // new, not reached yet
        b.put(key(1, 4_003), vec![0]);
        b.del(key(1, 6)); // removed, passed
        b.del(key(1, 4_800)); // removed, not reached
        b.put(key(1, 8), vec![1]); // rewritten: no change
        b.del(key(1, 13)); // never there
        b.put(key(2, 1), vec![0]);
        b.put(vec![keys::W, 0, 0, 0, 2], vec![0]);
        let changes = c.changes(&tree, &b).unwrap();
        b.apply().unwrap();
        c.commit(changes);
        while c.pending() {
            c.step(&tree).unwrap();
        }
        let counts = c.complete().unwrap();
        assert_eq!(counts[&1], 2_502, "{counts:?}");
        assert_eq!(counts[&1], scanned(&tree, 1));
        assert_eq!(counts[&2], 11);
        assert_eq!(counts[&2], scanned(&tree, 2));
        // Once complete, every change counts.
        let mut b = Batch::new(&tree);
        b.del(key(1, 0));
        b.put(key(3, 1), vec![0]);
        let changes = c.changes(&tree, &b).unwrap();
        b.apply().unwrap();
        c.commit(changes);
        let counts = c.complete().unwrap();
        assert_eq!((counts[&1], counts[&3]), (2_501, 1));
    }
}
