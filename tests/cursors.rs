//! Promises 1 and 3 on the log-and-cursors store: a `kill -9` in the middle of
//! a drain skips no acknowledged event and re-sends no more than the lane had
//! in flight; a subscriber added later starts at the tail; a 0.1 store is
//! upgraded in place and its pending deliveries are made, also when the
//! migration was killed before it dropped 0.1's tree (and 0.1 ran on it
//! then); a store a newer
//! hookrelay wrote is refused.

use crate::common;
use crate::common::v1_store;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_drain_skips_nothing_and_resends_at_most_the_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 20_000;
    const CONCURRENCY: usize = 8;
    // Slow enough that the drain is under way when it is killed.
    let sub = Sub::always(Behaviour::Slow(Duration::from_millis(1))).await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).concurrency(CONCURRENCY));
    prefill(&cfg.data(), N, &["s"]).await;
    let path = cfg.write();
    let mut bin = Bin::start(&path, &[]);
    sub.wait_for(Duration::from_secs(60), "a third of the drain", |r| r.len() >= N / 3)
        .await;
    bin.kill9();
    let before = sub.count();
    assert!(before < N, "the drain finished before the kill");
    let bin = Bin::start(&path, &[]);
    sub.wait_for(Duration::from_secs(120), "the whole backlog", |r| {
        r.iter().map(|x| x.header("webhook-id")).collect::<HashSet<_>>().len() >= N
    })
    .await;
    // Counted once nothing is left to send (a repeat may come last).
    drained(bin.admin, "s").await;
    let all = sub.all();
    let seen = seen_ids(&sub);
    assert_eq!(seen.len(), N, "every acknowledged event delivered");
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        repeats <= CONCURRENCY,
        "{repeats} deliveries sent again after the crash; at most the {CONCURRENCY} in flight may be"
    );
    assert!(all.len() <= N + CONCURRENCY);
}

#[tokio::test]
async fn a_subscriber_added_later_starts_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Sub::ok().await, Sub::ok().await);
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("a", a.url()));
    let h = start(&cfg).await;
    for i in 0..3 {
        accepted(h.ingest_addrs[0], &runway(&format!("before-{i}"))).await;
    }
    cfg.clone().subscriber(Subscriber::new("b", b.url())).write();
    h.reload().await.expect("reload");
    let mut after = Vec::new();
    for i in 0..2 {
        after.push(accepted(h.ingest_addrs[0], &runway(&format!("after-{i}"))).await);
    }
    a.wait_for(Duration::from_secs(10), "5 deliveries to a", |r| r.len() == 5)
        .await;
    let got = b
        .wait_for(Duration::from_secs(10), "2 deliveries to b", |r| r.len() == 2)
        .await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, after.iter().map(String::as_str).collect::<Vec<_>>());
    // b never sees what came before it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.count(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn a_0_1_store_is_upgraded_and_its_pending_deliveries_made() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::slow_at(5, ms(300)).await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).retry([secs(1)]));
    let old = v1_store::write(&cfg.data(), 5);
    let h = start(&cfg).await;
    // The five fresh jobs and the retrying one are delivered under their old ids.
    let pending: HashSet<&str> = old[..6].iter().map(|e| e.id.as_str()).collect();
    let got = sub
        .wait_for(Duration::from_secs(15), "the 6 pending deliveries", |r| r.len() >= 6)
        .await;
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, pending);
    let retried = got.iter().find(|r| r.header("webhook-id") == old[5].id).unwrap();
    assert_eq!(
        retried.header("hookrelay-attempt"),
        "3",
        "attempts go on from 0.1's count"
    );
    assert_eq!(&retried.body[..], old[5].body.as_bytes());
    // History, dead letters and dedupe keys came along.
    let ev = event_view(h.admin_addr, &old[6].id).await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    assert_eq!(ev["source"], "203.0.113.7");
    let (_, dl) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(dl["dead_letters"][0]["event"], old[7].id.as_str());
    let (s, v) = callback(h.ingest_addrs[0], &old[0].body).await;
    assert_eq!(
        (s, v["duplicate"].as_bool(), v["id"].as_str()),
        (StatusCode::OK, Some(true), Some(old[0].id.as_str()))
    );
    // The 0.1 tree is gone: the next start does not migrate again (stopped
    // once the six are recorded: a stop abandons attempts in flight).
    for id in &pending {
        until_delivered(h.admin_addr, id, "s").await;
    }
    h.shutdown().await;
    let h = start(&cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 6, "nothing sent twice after a restart");
    h.shutdown().await;
}

#[tokio::test]
async fn migrate_upgrades_offline_and_a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let path = cfg.write().display().to_string();
    // No store where store.path points (a typo): refused, nothing created.
    let (ok, _, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(!ok);
    assert!(err.contains("no store at") && err.contains("store.path"), "{err}");
    assert!(!cfg.data().join("conf").exists(), "an empty store was created");
    v1_store::write(&cfg.data(), 3);
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(ok, "{err}");
    // v1_store::write: 6 events, the retrying job and three fresh ones pending, one dead letter.
    assert!(
        out.contains("migrated from 0.1: 6 events, 4 deliveries pending, 1 dead letters"),
        "{out}"
    );
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("nothing to migrate"), "{out}");
    let store = open_store(&cfg.data());
    assert_eq!(
        backlog(&store, "s").await,
        3 + 1,
        "three fresh jobs and the retrying one"
    );
    store.close().await;
    drop(store);
    // A store written by a newer schema is refused, naming the store.
    {
        let db = v1_store::open(&cfg.data());
        db.open_tree("hookrelay-v2")
            .unwrap()
            .insert(b"Vversion", &9u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let (ok, _, err) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(!ok);
    assert!(
        err.contains("newer hookrelay (schema 9)") && err.contains(&cfg.data().display().to_string()),
        "{err}"
    );
    let cfg2 = hookrelay::Config::load(&cfg.path()).unwrap();
    let e = hookrelay::start(cfg2).await.err().expect("refused").to_string();
    assert!(e.contains("newer hookrelay"), "{e}");
}

#[tokio::test]
async fn migrate_names_an_empty_0_1_store_and_an_empty_database_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let path = cfg.write().display().to_string();
    let migrate = || cli_async(vec!["migrate".into(), "--config".into(), path.clone()]);
    // 0.1 started on it and never sent a callback: its tree, empty.
    {
        let db = v1_store::open(&cfg.data());
        db.open_tree("hookrelay").unwrap();
        db.flush().unwrap();
    }
    let (ok, out, err) = migrate().await;
    assert!(ok, "{err}");
    assert!(
        out.contains("migrated from 0.1: 0 events, 0 deliveries pending, 0 dead letters"),
        "{out}"
    );
    let (ok, out, err) = migrate().await;
    assert!(ok, "{err}");
    assert!(out.contains("already in this version's layout"), "{out}");
    // A database no hookrelay wrote to: not called a store in this layout.
    let other = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(other.path()).subscriber(Subscriber::new("s", DOWN));
    let path = cfg.write().display().to_string();
    v1_store::open(&cfg.data()).flush().unwrap();
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("held no events"), "{out}");
    assert!(!out.contains("already"), "{out}");
    let (ok, out, _) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(ok && out.contains("already in this version's layout"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_durable_before_the_cursor_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    prefill(&cfg.data(), 50, &["s"]).await;
    let path = cfg.write();
    let mut bin = Bin::start(&path, &[]);
    sub.wait_for(Duration::from_secs(20), "all 50", |r| r.len() >= 50).await;
    // The subscriber counts a request when it arrives; the daemon records the
    // result once the answer is back. Until then a delivery is in flight, and
    // those are sent again after a crash. Wait until none is (the lane drops an
    // attempt from in_flight after its result is written and flushed).
    let v = admin_until(bin.admin, "/api/subscribers", Duration::from_secs(20), |v| {
        let s = row(&v["subscribers"], "name", "s");
        s["queue_depth"] == 0 && s["in_flight"] == 0
    })
    .await;
    let s = row(&v["subscribers"], "name", "s");
    assert_eq!(
        (s["queue_depth"].as_u64(), s["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    // Killed right after the last result, before the store's periodic (1 s) flush.
    bin.kill9();
    let _bin = Bin::start(&path, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sub.count(), 50, "delivered events were sent again after a restart");
}

/// A migration that would fill the disk is refused before it starts, saying
/// how much room it needs, and the 0.1 store is left as it was: with room
/// made, it migrates (it failed halfway with the file system's error).
#[tokio::test]
async fn a_migration_without_room_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(tmpfs) = tmpfs::Tmpfs::mount(&mnt, "64m") else {
        return;
    };
    let cfg = TestConfig::new(dir.path())
        .store_path(&mnt.join("data"))
        .min_free(1 << 20)
        .subscriber(Subscriber::new("s", DOWN));
    v1_store::write(&cfg.data(), 20_000);
    let store_kib = tmpfs_used_kib(&tmpfs);
    // Leave less than half the store free.
    let filler = mnt.join("filler");
    let fill = tmpfs.free_kib().saturating_sub(store_kib / 4) as usize * 1024;
    std::fs::write(&filler, vec![0u8; fill]).unwrap();
    let path = cfg.write().display().to_string();
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("needs about") && err.contains("MiB free") && err.contains("nothing was changed"),
        "{err}"
    );
    std::fs::remove_file(&filler).unwrap();
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("migrated from 0.1: 20003 events, 20001 deliveries pending"),
        "{out}"
    );
}

fn tmpfs_used_kib(t: &tmpfs::Tmpfs) -> u64 {
    64 * 1024 - t.free_kib()
}

/// hookrelay 0.1 started again on a migrated store writes in its own layout,
/// which version 2 does not read: version 2 refuses the store, naming what 0.1
/// wrote, instead of leaving those callbacks behind silently; `migrate
/// --discard-0.1-rows` drops them (once 0.1 has delivered them).
#[tokio::test]
async fn a_store_0_1_wrote_to_after_the_migration_is_refused_until_told() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    v1_store::write(&cfg.data(), 2);
    let path = cfg.write().display().to_string();
    let (ok, _, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(ok, "{err}");
    // 0.1 runs on it again and accepts callbacks (its tree comes back).
    v1_store::write(&cfg.data(), 3);
    let e = hookrelay::start(hookrelay::Config::load(&cfg.path()).unwrap())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("hookrelay 0.1 was started on the store")
            && e.contains("6 events and 4 deliveries still pending")
            && e.contains("--discard-0.1-rows"),
        "{e}"
    );
    let (ok, _, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
    assert!(!ok && err.contains("--discard-0.1-rows"), "{err}");
    let args = vec!["migrate".into(), "--discard-0.1-rows".into(), "--config".into(), path];
    let (ok, out, err) = cli_async(args).await;
    assert!(ok, "{err}");
    assert!(out.contains("nothing to migrate"), "{out}");
    let h = start(&cfg).await;
    h.shutdown().await;
}

/// Review 12: a reload that moves a subscriber to another route (names are
/// unique across routes, so renaming a route does this to all of its
/// subscribers) keeps the running lane with its work source over the *old*
/// route (`Delivery::configure` only updates a lane it has): the events of
/// the new route meant for it are not delivered until a restart.
#[tokio::test]
async fn a_subscriber_moved_to_another_route_by_a_reload_gets_that_routes_events() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (Sub::ok().await, Sub::ok().await, Sub::ok().await);
    let other = |subs: Vec<Subscriber>| {
        let mut r = Route::new("u", "/hooks/u")
            .tokens(["tok"])
            .dedupe_key(["/data/task_id", "/code"]);
        for s in subs {
            r = r.subscriber(s);
        }
        r
    };
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("a", a.url()));
    let h = start(&cfg.clone().route(other(vec![Subscriber::new("b", b.url())]))).await;
    accepted(h.ingest_addrs[0], &runway("before")).await;
    a.wait_for(Duration::from_secs(10), "1 delivery to a", |r| r.len() == 1)
        .await;
    // `a` moves from route t to route u.
    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("c", c.url()))
        .route(other(vec![
            Subscriber::new("b", b.url()),
            Subscriber::new("a", a.url()),
        ]))
        .write();
    h.reload().await.expect("reload");
    let id = accepted_at(h.ingest_addrs[0], "/hooks/u?token=tok", &runway("after")).await;
    b.wait_for(Duration::from_secs(10), "the new event at b", |r| r.len() == 1)
        .await;
    let got = a
        .wait_for(Duration::from_secs(5), "the new route's event at a", |r| r.len() == 2)
        .await;
    assert_eq!(got[1].header("webhook-id"), id);
    h.shutdown().await;
}

/// The rows of one tree of the sled database at `path` (the store closed).
fn tree_rows(path: &std::path::Path, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = v1_store::open(path);
    let t = db.open_tree(tree).unwrap();
    let rows = t
        .iter()
        .map(|r| r.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    drop(t);
    drop(db);
    rows
}

/// The state a migration killed after its version row and before it
/// dropped 0.1's tree leaves (`hookrelay migrate` ran to the end first):
/// 0.1's rows `old` back, and the marker written with the version row (the
/// rows and the SHA-256 of 0.1's tree, removed once that tree is dropped).
fn killed_before_the_drop(db: &sled::Db, old: &[(Vec<u8>, Vec<u8>)]) {
    use sha2::Digest;
    let t = db.open_tree("hookrelay").unwrap();
    let mut h = sha2::Sha256::new();
    for (k, v) in old {
        t.insert(k.as_slice(), v.as_slice()).unwrap();
        for part in [k, v] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    let mut marker = (old.len() as u64).to_be_bytes().to_vec();
    marker.extend_from_slice(&h.finalize());
    db.open_tree("hookrelay-v2")
        .unwrap()
        .insert(b"Vmigrated_from_v1", marker)
        .unwrap();
}

/// `SledStore::open` migrates a 0.1 store in this order: the new tree, its
/// version row, `db.flush()`, and only then `drop_tree("hookrelay")` and a
/// second flush (review 22 #2). A `kill -9` (or power cut)
/// between the two flushes leaves the version row on disk *and* 0.1's tree
/// as it was. That start was taken for "0.1 was started again on the
/// migrated store and wrote to it" and refused, telling the operator to run
/// 0.1 on the store until nothing is pending — which would send every
/// migrated pending delivery a second time (0.1 and version 2 each hold
/// them). The version row's batch now records what was migrated, and a
/// start that finds 0.1's tree just so finishes the drop.
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
        killed_before_the_drop(&db, &old);
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

/// A migration killed after its version row and before it dropped 0.1's
/// tree, then hookrelay 0.1 started on the store (a rollback) and sent one
/// of the pending deliveries (review 27 #2). Version 2 has not served from
/// the store (every start with the marker drops the tree or migrates
/// again first), so it migrates again from 0.1's rows as 0.1 left them:
/// the deliveries still pending are made once, the one 0.1 sent is not
/// sent again (draining with 0.1 and discarding 0.1's rows, as it used to
/// advise, made version 2 send every migrated pending delivery again).
#[tokio::test]
async fn a_migration_killed_before_the_drop_then_0_1_started_is_migrated_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::slow_at(2, ms(300)).await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).retry([secs(1)]));
    // Three fresh jobs and the retrying one pending.
    let old = v1_store::write(&cfg.data(), 3);
    let rows = tree_rows(&cfg.data(), "hookrelay");
    let path = cfg.write().display().to_string();
    let (ok, _, err) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(ok, "{err}");
    {
        let db = v1_store::open(&cfg.data());
        killed_before_the_drop(&db, &rows);
        let t = db.open_tree("hookrelay").unwrap();
        // 0.1 then ran on it: it sent the first pending job (old[0]),
        // dropped its job row and wrote its final state.
        let job = t.scan_prefix(b"J").keys().next().unwrap().unwrap();
        t.remove(job).unwrap();
        let id = ulid::Ulid::from_string(old[0].id.trim_start_matches("evt_"))
            .unwrap()
            .to_bytes();
        let st = serde_json::json!({"state": "delivered", "at_ms": 1, "attempts": 1, "last_error": null});
        t.insert([&b"S"[..], &id, b"s"].concat(), serde_json::to_vec(&st).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let h = match hookrelay::start(hookrelay::Config::load(&cfg.path()).unwrap()).await {
        Ok(h) => h,
        Err(e) => panic!("a store whose migration was killed before the drop and 0.1 then ran is refused: {e}"),
    };
    let pending: HashSet<&str> = old[1..4].iter().map(|e| e.id.as_str()).collect();
    let got = sub
        .wait_for(Duration::from_secs(15), "the 3 pending deliveries", |r| r.len() >= 3)
        .await;
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, pending, "what 0.1 left pending, once; not what it sent");
    let ev = event_view(h.admin_addr, &old[0].id).await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    for id in &pending {
        until_delivered(h.admin_addr, id, "s").await;
    }
    h.shutdown().await;
    let h = start(&cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 3, "nothing sent twice, also after a restart");
    h.shutdown().await;
}

/// The newer-store check read the version row of tree `hookrelay-v2` only
/// (review 22 #3). This version itself moved to a new tree
/// when its schema changed (0.1's `hookrelay` → `hookrelay-v2`, the old tree
/// dropped). A newer hookrelay that does the same (`hookrelay-v3`) leaves no
/// `hookrelay-v2` tree: this version then opened an empty one, takes the
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

/// `hookrelay migrate` killed with `kill -9` at points spread over its run
/// (writing the new tree, the version row, the drop of 0.1's tree): the next
/// run finishes it, with every pending delivery once and the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_any_point_is_finished_by_the_next_run() {
    const PENDING: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let path = cfg.write().display().to_string();
    let template = dir.path().join("v1");
    v1_store::write(&template, PENDING);
    drop(v1_store::open(&template));
    let mut finished_alone = false;
    for delay_ms in [20u64, 150, 400, 900, 1300, 3000] {
        let _ = std::fs::remove_dir_all(cfg.data());
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(cfg.data())
            .status()
            .unwrap();
        assert!(cp.success());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["migrate", "--config", &path])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if child.try_wait().unwrap().is_some() {
            finished_alone = true;
        } else {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path.clone()]).await;
        assert!(ok, "after a kill at {delay_ms} ms: {err}");
        assert!(
            out.contains("nothing to migrate")
                || out.contains(&format!(
                    "migrated from 0.1: {} events, {} deliveries pending, 1 dead letters",
                    PENDING + 3,
                    PENDING + 1
                )),
            "after a kill at {delay_ms} ms: {out}"
        );
        let store = open_store(&cfg.data());
        assert_eq!(
            backlog(&store, "s").await,
            PENDING as u64 + 1,
            "pending deliveries after a kill at {delay_ms} ms"
        );
        let dead = store.dead_letters(None, 10).await.unwrap();
        assert_eq!(dead.letters.len(), 1, "dead letters after a kill at {delay_ms} ms");
        store.close().await;
        drop(store);
        drop(v1_store::open(&cfg.data()));
        if finished_alone {
            break;
        }
    }
}

/// The disk filled by something else while `hookrelay migrate` runs (the
/// room check passed): the command ends, saying why, and once room is made
/// the next run migrates everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_the_migration_ends_it_and_the_next_run_finishes() {
    const PENDING: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(_tmpfs) = tmpfs::Tmpfs::mount(&mnt, "96m") else {
        return;
    };
    let cfg = TestConfig::new(dir.path())
        .store_path(&mnt.join("data"))
        .min_free(0)
        .subscriber(Subscriber::new("s", DOWN));
    v1_store::write(&cfg.data(), PENDING);
    drop(v1_store::open(&cfg.data()));
    let path = cfg.write().display().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["migrate", "--config", &path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Another program fills the disk.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if status.is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        status.is_some(),
        "hookrelay migrate still running 60 s after the disk filled: {stdout} {stderr}"
    );
    std::fs::remove_file(&filler).unwrap();
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(ok, "after the disk filled ({stdout} {stderr}): {err}");
    assert!(
        out.contains("nothing to migrate")
            || out.contains(&format!(
                "migrated from 0.1: {} events, {} deliveries pending",
                PENDING + 3,
                PENDING + 1
            )),
        "{out}"
    );
    let store = open_store(&cfg.data());
    assert_eq!(backlog(&store, "s").await, PENDING as u64 + 1);
    store.close().await;
}

/// The migration of a 0.1 store runs at the first start, before the daemon
/// tells systemd it is ready (`Type=notify`): a big store took longer than
/// the unit's start timeout (systemd's default, 90 s), systemd killed the
/// daemon and restarted it, and each start began the migration over — the
/// service never came up. While it migrates, the daemon asks systemd for
/// more time (`EXTEND_TIMEOUT_USEC`) and says what it does (`STATUS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_at_start_asks_systemd_for_more_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    v1_store::write(&cfg.data(), 2_000);
    let path = cfg.write();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _bin = Bin::start(&path, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut before_ready = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).expect("READY=1 from the daemon");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.lines().any(|l| l == "READY=1") {
            break;
        }
        before_ready.push(msg);
    }
    let extended = before_ready
        .iter()
        .flat_map(|m| m.lines())
        .filter_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .map(|v| v.parse::<u64>().unwrap())
        .collect::<Vec<_>>();
    assert!(
        extended.iter().any(|us| *us >= 60_000_000),
        "no start timeout extension of a minute or more while migrating: {before_ready:?}"
    );
    assert!(
        before_ready
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with("STATUS=") && l.contains("0.1"))),
        "{before_ready:?}"
    );
}

/// `hookrelay migrate` with a config in cluster mode (`store.backend =
/// "nats"`) rewrote the 0.1 store at `store.path` into the embedded layout
/// and said its pending deliveries were carried over, though a daemon with
/// that config keeps its events in NATS and never reads `store.path`: the
/// deliveries were not made, and 0.1 could no longer read its store. It is
/// refused, naming the key, with the 0.1 store left as it was.
#[tokio::test]
async fn migrate_with_a_cluster_mode_config_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .nats(vec!["nats://127.0.0.1:1".into()], 1);
    v1_store::write(&cfg.data(), 2);
    let before = tree_rows(&cfg.data(), "hookrelay");
    let path = cfg.write().display().to_string();
    let (ok, out, err) = cli_async(vec!["migrate".into(), "--config".into(), path]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("store.backend") && err.contains("nats"), "{err}");
    assert_eq!(tree_rows(&cfg.data(), "hookrelay"), before, "the 0.1 store was changed");
}
