//! Hostile review 22: the embedded (sled) store's durability and
//! exactly-once-ish promises. Each test fails on the code it was written
//! against because of the defect it names (see /work/notes/review22.md).

use crate::common;
use crate::common::v1_store;

use std::time::Duration;

use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{register, task_route, tasks_config};
use common::*;
use http::StatusCode;

/// The rows of one tree of the sled database at `path` (the store closed).
fn tree_rows(path: &std::path::Path, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = v1_store::open(path);
    let t = db.open_tree(tree).unwrap();
    let rows = t.iter().map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    drop(t);
    drop(db);
    rows
}

/// `SledStore::open` migrates a 0.1 store in this order (src/store/sled/mod.rs
/// 209-221): the new tree, its version row, `db.flush()`, and only then
/// `drop_tree("hookrelay")` and a second flush. A `kill -9` (or power cut)
/// between the two flushes leaves the version row on disk *and* 0.1's tree
/// as it was. The next start takes that for "0.1 was started again on the
/// migrated store and wrote to it" (`written_by_v1_since`) and refuses to
/// start, telling the operator to run 0.1 on the store until nothing is
/// pending — which would send every migrated pending delivery a second time
/// (0.1 and version 2 each hold them).
///
/// The state is made as the crash leaves it: 0.1's rows copied before the
/// migration and put back after it.
#[tokio::test]
async fn a_migration_killed_before_the_old_tree_is_dropped_still_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    v1_store::write(&cfg.data(), 2);
    let old = tree_rows(&cfg.data(), "hookrelay");
    assert!(!old.is_empty());
    let path = cfg.write().display().to_string();
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(ok, "{err}");
    assert!(out.contains("migrated from 0.1"), "{out}");
    // The crash: the version row is flushed, the drop of 0.1's tree is not.
    {
        let db = v1_store::open(&cfg.data());
        let t = db.open_tree("hookrelay").unwrap();
        for (k, v) in &old {
            t.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        db.flush().unwrap();
    }
    let r = hookrelay::start(hookrelay::Config::load(&cfg.path()).unwrap()).await;
    match r {
        Ok(h) => h.shutdown().await,
        Err(e) => panic!(
            "a store whose migration was killed after its version row was flushed and before 0.1's \
             tree was dropped is refused, and the operator is told to run 0.1 on it: {e}"
        ),
    }
}

/// The newer-store check reads the version row of tree `hookrelay-v2` only
/// (src/store/sled/mod.rs 189-207). This version itself moved to a new tree
/// when its schema changed (0.1's `hookrelay` → `hookrelay-v2`, the old tree
/// dropped). A newer hookrelay that does the same (`hookrelay-v3`) leaves no
/// `hookrelay-v2` tree: this version then opens an empty one, takes the
/// store for new, writes schema 2 into it and starts with none of the
/// events, dedupe keys, retries or dead letters — pending deliveries are
/// silently not made, and provider retries of acknowledged callbacks are
/// accepted as new events later, when the newer version is started again.
#[tokio::test]
async fn a_store_a_newer_version_moved_to_its_own_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let h = start(&cfg).await;
    for i in 0..3 {
        accepted(h.ingest_addrs[0], &runway(&format!("pending-{i}"))).await;
    }
    h.shutdown().await;
    // A schema 3 hookrelay migrates the way this one did: a new tree, then
    // the old one dropped.
    let rows = tree_rows(&cfg.data(), "hookrelay-v2");
    {
        let db = v1_store::open(&cfg.data());
        let t = db.open_tree("hookrelay-v3").unwrap();
        for (k, v) in &rows {
            t.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        t.insert(b"Vversion", &3u32.to_be_bytes()).unwrap();
        db.drop_tree("hookrelay-v2").unwrap();
        db.flush().unwrap();
    }
    match hookrelay::start(hookrelay::Config::load(&cfg.path()).unwrap()).await {
        Err(e) => assert!(e.to_string().contains("newer"), "{e}"),
        Ok(h) => {
            let (_, v) = admin(h.admin_addr, "GET", "/api/events?limit=100").await;
            h.shutdown().await;
            panic!(
                "a store upgraded by a newer hookrelay (schema 3, tree hookrelay-v3) was taken for a \
                 new one; its 3 pending events are invisible: /api/events = {v}"
            );
        }
    }
}

/// One unreadable expected-task row (`G`, written torn, say) and every
/// terminal callback for that task is answered 503 for ever, though its
/// event is stored and delivered: `add_event` puts the log and dedupe rows
/// in the batch, then `mark_task` fails decoding the task row
/// (src/store/sled/append.rs 40-44, tasks.rs 35-42); the batch is still
/// applied and flushed with the event in it (group_commit.rs 209-262), and
/// the request gets the error. The provider's retry is a duplicate, which
/// goes through `mark_task` again and fails the same way. Each refusal also
/// marks the store unreachable (`set_store_state`, /readyz). Unreadable
/// result and event rows are handled (recorded on a fresh row, dead-lettered);
/// task rows are not.
#[tokio::test]
async fn an_unreadable_task_row_does_not_refuse_its_callback_for_ever() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("plain", "kie-runway", &fake, &sub.url()).without_reconcile();
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let (s, v) = register(h.admin_addr, "plain", "T1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.shutdown().await;
    {
        let db = v1_store::open(&cfg.data());
        let t = db.open_tree("hookrelay-v2").unwrap();
        let keys: Vec<_> = t.scan_prefix(b"G").keys().map(|k| k.unwrap()).collect();
        assert_eq!(keys.len(), 1, "one task row");
        for k in keys {
            t.insert(k, &b"\xff\xff"[..]).unwrap();
        }
        db.flush().unwrap();
    }
    let h = start(&cfg).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (s, v) = callback_at(addr, "/hooks/plain", &runway("T1")).await;
        answers.push((s, v));
    }
    // Whatever the provider was told, the event was stored and is delivered.
    sub.wait_for(Duration::from_secs(10), "the callback's event", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = sub.count();
    h.shutdown().await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "the callback was stored and delivered ({delivered} time(s)) but the provider was answered {:?}",
        answers.iter().map(|(s, v)| format!("{s} {v}")).collect::<Vec<_>>()
    );
}

/// Let real I/O (sockets, the store's writer) finish without moving time.
async fn settle() {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(25)))
        .await
        .unwrap();
}

/// Move tokio's (paused) clock, hence the daemon's wall clock, by `d` in `step`s.
async fn advance_by(d: Duration, step: Duration) {
    let t0 = tokio::time::Instant::now();
    while t0.elapsed() < d {
        tokio::time::advance(step.min(d - t0.elapsed())).await;
        settle().await;
    }
}

/// Event ids are made "never going back" from `last_id`, which the writer
/// restores at start from the last log row of each route only
/// (src/store/sled/writer_state.rs 37-49). Cursors are positions in id
/// order (`at`). Once retention has emptied the logs (a quiet relay), a
/// restart with the wall clock behind the last event (a clock that ran
/// fast and was corrected, a VM restored, an RTC wrong at boot: the unit
/// is not ordered after time-sync) hands out ids below every cursor: the
/// callback is answered 200, stored, and never read by any lane (the scan
/// starts at `at`); retention later deletes it as "finished" (sweep.rs
/// 75-79: no result row and `id < at`).
///
/// Here the first run's clock is an hour ahead (tokio's paused clock moved
/// an hour), the second run's is the real one.
#[test]
fn a_restart_with_the_clock_behind_an_emptied_log_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let first = paused.block_on(async {
        let sub = Sub::ok().await;
        let cfg = TestConfig::new(dir.path())
            .retention(Duration::from_secs(60))
            .subscriber(Subscriber::new("s", sub.url()));
        let h = start(&cfg).await;
        // The clock runs an hour ahead.
        advance_by(Duration::from_secs(3600), Duration::from_secs(60)).await;
        let id = accepted(h.ingest_addrs[0], &runway("ahead")).await;
        // (The paused clock does not move by itself while the writer runs.)
        for _ in 0..400 {
            if sub.count() >= 1 {
                break;
            }
            tokio::time::advance(Duration::from_millis(10)).await;
            settle().await;
        }
        assert_eq!(sub.count(), 1, "the first event delivered");
        // Delivered, then removed by retention (60 s; sweeps every minute).
        advance_by(Duration::from_secs(150), Duration::from_secs(1)).await;
        let (s, _) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "retention removed the delivered event");
        h.shutdown().await;
        id
    });
    drop(paused);
    let real = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    real.block_on(async {
        let sub = Sub::ok().await;
        let cfg = TestConfig::new(dir.path())
            .retention(Duration::from_secs(60))
            .subscriber(Subscriber::new("s", sub.url()));
        let h = start(&cfg).await;
        let id = accepted(h.ingest_addrs[0], &runway("after-restart")).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = sub.count();
        h.shutdown().await;
        assert_eq!(
            got, 1,
            "event {id} was answered 200 after a restart with the clock behind the last (swept) event \
             {first}, and was never delivered"
        );
    });
}
