//! One batch of the writer: the rows it will write, readable (with what the
//! tree holds) before they are applied as one atomic `sled::Batch`.

use std::collections::BTreeMap;

use crate::store::StoreError;

/// The rows one batch writes, readable before they are applied.
pub(super) struct Batch<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Batch<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        Batch {
            tree,
            writes: BTreeMap::new(),
        }
    }
    pub fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(k)?.map(|v| v.to_vec())),
        }
    }
    pub fn put(&mut self, k: Vec<u8>, v: impl Into<Vec<u8>>) {
        self.writes.insert(k, Some(v.into()));
    }
    pub fn del(&mut self, k: Vec<u8>) {
        self.writes.insert(k, None);
    }
    /// The rows of keys starting with `tag`: (key, written rather than removed).
    pub fn rows_with_tag(&self, tag: u8) -> impl Iterator<Item = (&[u8], bool)> {
        let end = super::keys::prefix_end(&[tag]);
        self.writes
            .range(vec![tag]..end)
            .map(|(k, v)| (k.as_slice(), v.is_some()))
    }
    pub fn len(&self) -> usize {
        self.writes.len()
    }
    pub(super) fn apply(self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.tree.apply_batch(b)?;
        Ok(())
    }
}
