//! Review 27: failing tests for the fixes merged in 07f43f9..63ac60f
//! (notes/review27.md).

use crate::common;
use crate::common::v1_store;

/// Finding 2: a migration killed after its version row and before it
/// dropped 0.1's tree, then hookrelay 0.1 started on the store (a
/// rollback). 0.1's tree still holds every migrated row — and the
/// migrated pending deliveries, which version 2 holds too and never sent
/// (its every start with the same rows drops the tree before serving). The
/// refusal tells the operator to run 0.1 until nothing is pending and then
/// discard 0.1's rows: version 2 then sends every migrated pending delivery
/// a second time. The marker-less variant of the same refusal warns about
/// exactly this ("do not run 0.1 ... send the migrated deliveries again");
/// with the marker present the warning is left out.
#[tokio::test]
async fn a_migration_killed_before_the_drop_then_0_1_started_is_not_told_to_drain_with_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    v1_store::write(&data, 3);
    // 0.1's rows as the migration reads them.
    let rows: Vec<(sled::IVec, sled::IVec)> = {
        let db = v1_store::open(&data);
        let t = db.open_tree("hookrelay").unwrap();
        t.iter().map(|r| r.unwrap()).collect()
    };
    let store = common::load::open_store(&data);
    store.close().await;
    drop(store);
    {
        let db = v1_store::open(&data);
        let t = db.open_tree("hookrelay").unwrap();
        // Killed after the version row, before the drop: the same rows.
        for (k, v) in &rows {
            t.insert(k, v.clone()).unwrap();
        }
        // 0.1 then ran on it: it sent one of the migrated pending jobs and
        // dropped its job row.
        let job = t.scan_prefix(b"J").keys().next().unwrap().unwrap();
        t.remove(job).unwrap();
        db.flush().unwrap();
    }
    let err = match hookrelay::store::Store::open_sled(&hookrelay::store::Options {
        path: data.clone(),
        cache_bytes: 1 << 20,
        min_free: 0,
        compression: false,
        discard_v1_rows: false,
    }) {
        Ok(_) => panic!("a store 0.1 wrote to after its migration was opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        !err.contains("start 0.1 on this store until") || err.contains("do not run 0.1"),
        "0.1's tree still holds the migrated pending deliveries (version 2 never served), yet the \
         refusal says to drain them with 0.1 and then discard 0.1's rows, after which version 2 \
         sends them all again: {err}"
    );
}
