//! Switching a relay from the embedded store to cluster mode: the embedded
//! store left at `store.path` is never read in cluster mode, so callbacks it
//! still had to deliver would be dropped without a word. `check-config` and
//! the start-up log say so, naming the directory and what to do.

use crate::common;

use common::nats::NatsCluster;
use common::*;

#[tokio::test]
async fn an_embedded_store_left_behind_is_named_when_the_relay_switches_to_nats() {
    let dir = tempfile::tempdir().unwrap();
    // One host first: a callback whose subscriber never answers stays pending.
    let single = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", "http://127.0.0.1:1/"));
    let h = start(&single).await;
    accepted(h.ingest_addrs[0], &runway("pending-at-switch")).await;
    h.shutdown().await;
    let store = dir.path().join("data");
    let store_shown = store.display().to_string();
    assert!(store.join("db").is_file(), "the test's store is not at {store_shown}");

    let nats = NatsCluster::start(1).await;
    let cluster = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", "http://127.0.0.1:1/"))
        .nats(nats.urls(), 1);
    let path = cluster.write();
    let (ok, _, err) = cli(&["check-config", "-c", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("warning: {store_shown} holds an embedded store"))
            && err.contains("store.backend = \"sled\""),
        "check-config did not name the store left behind: {err}"
    );
    let relay = Bin::start(&path, &[]);
    log_until(
        || relay.log_text(),
        &format!("{store_shown} holds an embedded store"),
        secs(10),
    )
    .await;
    drop(relay);

    // A cluster relay with nothing at store.path says nothing of it.
    let fresh = tempfile::tempdir().unwrap();
    let path = TestConfig::new(fresh.path())
        .subscriber(Subscriber::new("s", "http://127.0.0.1:1/"))
        .nats(nats.urls(), 1)
        .write();
    let (ok, _, err) = cli(&["check-config", "-c", path.to_str().unwrap()]);
    assert!(ok && !err.contains("embedded store"), "{err}");
}
