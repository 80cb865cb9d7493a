//! What the private service answers through `hookrelay forward` counts as a
//! push subscriber's answer does: a `Retry-After` on `429` (`502`, `503`,
//! `504`) makes the retry wait at least that, capped by the subscriber's
//! `max_retry_after`, and `410` ends the delivery (a dead letter at once).
//! Both were ignored (the schedule's next delay, and retries of a `410`
//! until the schedule was exhausted), and `max_retry_after`, which the
//! config takes for a pull subscriber, did nothing.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

const TOKEN: &str = "local-answers-pull-token";

/// A relay with pull subscriber `laptop` (retries 200 ms apart), a local
/// service answering as `plan`, and the forwarder between them.
async fn rig(plan: Plan) -> (tempfile::TempDir, Bin, Local, Forwarder) {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new(dir.path())
        .subscriber(
            Subscriber::pull("laptop", TOKEN)
                .lease(secs(30))
                .retry([ms(200); 5])
                .max_retry_after(secs(60)),
        )
        .write();
    let relay = Bin::start(&path, &[]);
    let local = Local::start(plan).await;
    let fwd = Forwarder::start(dir.path(), &pull_url(relay.addr, "laptop"), &local.url(), TOKEN, &[]);
    (dir, relay, local, fwd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_from_the_private_service_is_waited() {
    let (_dir, relay, local, _fwd) = rig(Arc::new(|_, seen| (if seen == 0 { 429 } else { 200 }, Duration::ZERO))).await;
    let ids = send_spaced(relay.addr, "retry-after", 1, Duration::ZERO).await;
    let got = local
        .wait_for(secs(15), "the second try", |g| {
            g.iter().filter(|x| x.id == ids[0]).count() >= 2
        })
        .await;
    let gap = got[1].started - got[0].ended;
    // `Retry-After: 2`, spread up to 20 % longer; the schedule says 200 ms.
    assert!(gap >= Duration::from_millis(1900), "offered again after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_from_the_private_service_ends_the_delivery() {
    let (_dir, relay, local, _fwd) = rig(Arc::new(|_, _| (410, Duration::ZERO))).await;
    let ids = send_spaced(relay.addr, "gone", 1, Duration::ZERO).await;
    let ev = admin_until(relay.admin, &format!("/api/events/{}", ids[0]), secs(10), |ev| {
        ev["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["state"], "dead", "{ev}");
    assert_eq!(ev["subscribers"][0]["attempts"].as_array().unwrap().len(), 1, "{ev}");
    // Not offered again (the schedule would have, 200 ms later).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(local.all().len(), 1, "a 410 was retried");
}
