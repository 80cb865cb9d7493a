//! Tests elsewhere: damage a closed store as a torn write leaves it,
//! through sled itself (only the sled backend touches sled).

use crate::store::EventId;

/// Tests elsewhere (`pull::unknown_tests`): every result row of event `id`
/// in the closed store at `path` (the store's directory) overwritten with
/// bytes that do not decode, as a torn write leaves it; how many.
pub(crate) fn tear_result_rows(path: &std::path::Path, id: EventId) -> usize {
    let db = super::tests::open_raw(path);
    let tree = db.open_tree(super::TREE).unwrap();
    let prefix = [&[super::keys::R][..], &id.bytes()[..]].concat();
    let keys: Vec<_> = tree.scan_prefix(&prefix).keys().map(Result::unwrap).collect();
    for k in &keys {
        tree.insert(k, b"\xff\xff".to_vec()).unwrap();
    }
    db.flush().unwrap();
    keys.len()
}
