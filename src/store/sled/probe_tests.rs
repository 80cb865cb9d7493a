//! A store whose files are damaged where a lane reads first is refused at
//! open, naming the damage (crash review, stop 61: it opened, the relay said
//! it was ready and took callbacks, and its lanes' first read failed); so is
//! one whose `db` file is cut short (sled panicked: exit 101, a backtrace)
//! or missing (it started empty without a word).

use super::tests::{event, open, opts};
use crate::store::*;

/// A store in `dir` with 1,000 events of 2 kB for subscriber `a`, none
/// delivered, the body of event `damaged` damaged wherever sled keeps it.
async fn damaged_store(dir: &std::path::Path, damaged: usize) {
    {
        let store = open(dir, &["a"]).await;
        // 2 MB: the early rows' pages end up in segments of the file that a
        // later open does not scan again.
        for i in 0..1000 {
            let task = format!("probe-marker-{i:04}");
            let mut e = event(&task, &["a"], 1_000_000 + i);
            e.body = bytes::Bytes::from(format!(
                r#"{{"data":{{"task_id":"{task}"}},"pad":"{}"}}"#,
                "x".repeat(2000)
            ));
            store.append(e).await.unwrap();
        }
        store.close().await;
    }
    // Opened again: sled's recovery writes a snapshot past these rows, and
    // a later open reads them only when asked (damage in the log after the
    // snapshot is taken for a torn write's end: sled drops what follows).
    open(dir, &["a"]).await.close().await;
    let db = dir.join("data").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let marker = format!("probe-marker-{damaged:04}");
    let marker = marker.as_bytes();
    let found: Vec<usize> = (0..bytes.len().saturating_sub(marker.len()))
        .filter(|&at| &bytes[at..at + marker.len()] == marker)
        .collect();
    // (An event past the thousand: nothing to damage.)
    assert!(!found.is_empty() || damaged >= 1000, "the body is not in the db file");
    for at in found {
        bytes[at..at + marker.len()].fill(0xA5);
    }
    std::fs::write(&db, bytes).unwrap();
}

#[tokio::test]
async fn a_store_damaged_where_a_lane_reads_first_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing delivered: the lane reads these rows first.
    damaged_store(dir.path(), 10).await;
    {
        let store = Store::open_sled(&opts(dir.path())).unwrap();
        store.register(&super::tests::topology(&["a"])).await.unwrap();
        let e = store
            .check_first_reads()
            .await
            .expect_err("a store whose pending rows cannot be read passed");
        let e = e.to_string();
        assert!(e.contains("damaged") && e.contains(r#"subscriber "a""#), "{e}");
        store.close().await;
    }
    // Subscriber `a` taken out of the config (its pending deliveries given
    // up): the store starts, for the route's other subscribers.
    let store = Store::open_sled(&opts(dir.path())).unwrap();
    store.register(&super::tests::topology(&["b"])).await.unwrap();
    store.check_first_reads().await.expect("the damage is only a's to read");
}

/// Damage past what the open reads (in tests its first 100 rows from each
/// cursor) fails the store at the lane's read: new events are refused, as
/// after a failed write (the relay is not ready and the daemon restarts).
#[tokio::test]
async fn a_lane_reading_damaged_rows_fails_the_store() {
    // Where sled puts the damaged pages follows its flushes' timing: on a
    // loaded machine they may land where its own recovery reads them at
    // open (refused there, as `a_store_damaged_where_a_lane_reads_first…`
    // wants). Made again until the damage is past what the open reads.
    let mut tries = 0;
    let (_dir, store) = loop {
        let dir = tempfile::tempdir().unwrap();
        damaged_store(dir.path(), 500).await;
        match Store::open_sled(&opts(dir.path())) {
            Ok(store) => break (dir, store),
            Err(StoreError::Damaged(why)) if tries < 5 => {
                tries += 1;
                eprintln!("damage read at open ({why}): made again");
            }
            Err(e) => panic!("the damage is past what the open reads: {e:?}"),
        }
    };
    store.register(&super::tests::topology(&["a"])).await.unwrap();
    assert!(!store.has_failed());
    let mut source = store.work_source("a").unwrap();
    let now = 2_000_000;
    let e = loop {
        match source.take(64, now).await {
            Ok(got) if got.is_empty() => panic!("every row read: the damage was not met"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(e.to_string().contains("damaged"), "{e}");
    assert!(store.has_failed(), "a damaged read left the store taking events");
    let refused = store.append(event("after", &["a"], now)).await;
    assert!(refused.is_err(), "an event taken by a failed store");
}

/// A store with a few events, closed, opened again (a snapshot written).
async fn small_store(dir: &std::path::Path) {
    {
        let store = open(dir, &["a"]).await;
        for i in 0..20 {
            store
                .append(event(&format!("small-{i}"), &["a"], 1_000_000 + i))
                .await
                .unwrap();
        }
        // Rows written over and over (as cursors and results are): sled
        // reuses its file's segments, its log running past the file's size.
        let tree = &super::tests::sled(&store).inner.tree;
        for i in 0..400u32 {
            tree.insert(b"Zchurn", vec![(i % 251) as u8; 64 << 10]).unwrap();
        }
        tree.flush().unwrap();
        store.close().await;
    }
    open(dir, &["a"]).await.close().await;
}

fn refused(dir: &std::path::Path) -> String {
    match Store::open_sled(&opts(dir)) {
        Ok(_) => panic!("a store with its db file cut short or missing opened"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_store_whose_db_file_is_cut_short_is_refused_not_a_panic() {
    for len in [0, 1 << 10, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        small_store(dir.path()).await;
        let db = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("data").join("db"))
            .unwrap();
        db.set_len(len).unwrap();
        drop(db);
        let e = refused(dir.path());
        assert!(e.contains("damaged"), "{len} bytes: {e}");
    }
}

#[tokio::test]
async fn a_store_whose_db_file_is_missing_is_refused_not_started_empty() {
    let dir = tempfile::tempdir().unwrap();
    small_store(dir.path()).await;
    let data = dir.path().join("data");
    for f in std::fs::read_dir(&data).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().to_string();
        if name == "db" || name.starts_with("snap.") {
            std::fs::remove_file(data.join(name)).unwrap();
        }
    }
    let e = refused(dir.path());
    assert!(e.contains("db is missing") && e.contains("damaged"), "{e}");
}
