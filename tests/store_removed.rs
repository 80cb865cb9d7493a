//! The store directory removed while the relay runs (`rm -rf`, a tmp
//! cleaner): the relay stops taking callbacks it would write to a deleted
//! file (it stayed ready and answered 200, the callbacks gone at the next
//! start, and a second relay could open the path meanwhile; crash review,
//! stop 61). The binary then exits for systemd to restart it, as after a
//! failed write.

use crate::common;

use std::time::Instant;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_removed_while_the_relay_runs_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    let addr = h.ingest_addrs[0];
    accepted(addr, &runway("before")).await;
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    // Looked at every second.
    let deadline = Instant::now() + secs(10);
    loop {
        let (s, v) = admin(h.admin_addr, "GET", "/readyz").await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert!(v.to_string().contains("restart hookrelay"), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready with its store removed: {v}");
        tokio::time::sleep(ms(100)).await;
    }
    let (s, v) = callback(addr, &runway("after")).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "a callback taken into a removed store: {v}"
    );
    h.shutdown().await;
}

/// A start that finds no store at `store.path` (a disk not mounted at boot,
/// the directory moved or removed) creates an empty one and says so: it
/// did so without a word, callbacks then taken hidden once the disk was
/// back (store review, stop 66). A start on the store it made says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_creates_the_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let said = "created a new, empty one";
    let bin = Bin::start(&cfg.write(), &[]);
    log_until(|| bin.log_text(), said, secs(10)).await;
    let line = bin.log_text().lines().find(|l| l.contains(said)).unwrap().to_string();
    assert!(
        line.contains("WARN") && line.contains(&cfg.data().display().to_string()),
        "{line}"
    );
    bin.signal("TERM");
    let _ = bin.exit().await;
    let bin = Bin::start(&cfg.write(), &[]);
    accepted(bin.addr, &runway("second-start")).await;
    assert!(!bin.log_text().contains(said), "{}", bin.log_text());
}
