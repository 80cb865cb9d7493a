//! A pull answered with more messages than it asked for (a proxy between
//! the forwarder and the relay dropped the query string, `?max=`, and the
//! relay used its default of 10): the forwarder delivers what its free slots
//! take and releases the rest at once, offered again with no retry step
//! used. It dropped them: neither delivered nor released, each came back
//! only when its lease ran out, a failed attempt.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_beyond_the_free_slots_are_released_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let token = "more-than-asked-token";
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", token).lease(secs(60)).retry([secs(1); 5]))
        .write();
    let relay = Bin::start(&path, &[]);
    let ids = send_spaced(relay.addr, "more", 6, Duration::ZERO).await;
    let proxy = query_dropping_proxy(relay.addr).await;
    let local = Local::ok().await;
    let fwd = Forwarder::start(
        dir.path(),
        &pull_url(proxy, "laptop"),
        &local.url(),
        token,
        &["--concurrency", "2"],
    );
    // Well before any 60 s lease runs out.
    let got = local.wait_all(Duration::from_secs(20), &ids).await;
    for id in &ids {
        let attempts: Vec<u32> = got.iter().filter(|g| &g.id == id).map(|g| g.attempt).collect();
        assert_eq!(attempts, [1], "{id}: released, not failed");
    }
    assert!(
        fwd.log_text().contains("more messages than the pull asked for"),
        "{}",
        fwd.log_text()
    );
}
