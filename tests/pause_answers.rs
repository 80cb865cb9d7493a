//! An answer that reaches the relay while its process is paused (stopped,
//! its VM frozen) past the attempt's timeout waits unread in the socket;
//! when the relay runs again the deadline has passed too, and a timeout was
//! recorded when the timer won the race: the subscriber, which answered
//! `200` in time, got the callback again (a cluster pause soak, stop 79:
//! such a timeout ended as a dead letter that a replay sent again). Such an
//! answer gets a moment to be read now (`delivery::attempt`,
//! `clock::pauses`).

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_came_while_the_relay_was_paused_are_read_not_timed_out() {
    // Each answer comes 2 s after its request; the timeout is 3 s.
    let sub = Sub::always(Behaviour::Slow(secs(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Subscriber::new("s", sub.url())
        .timeout(secs(3))
        .concurrency(8)
        .retry([secs(1), secs(1)]);
    let relay = Bin::start(&TestConfig::new(dir.path()).subscriber(s).write(), &[]);
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(accepted(relay.addr, &runway(&format!("paused-answer-{n}"))).await);
    }
    sub.wait_for(secs(10), "every first attempt", |r| r.len() == 8).await;
    // Paused until every answer has come and every deadline has passed.
    relay.signal("STOP");
    tokio::time::sleep(secs(4)).await;
    relay.signal("CONT");
    let mut timed_out = Vec::new();
    for id in &ids {
        let ev = admin_until(relay.admin, &format!("/api/events/{id}"), secs(20), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        let history = &ev["subscribers"][0]["attempts"];
        if history[0]["status"] != 200 {
            timed_out.push(history[0].clone());
        }
    }
    assert!(
        timed_out.is_empty(),
        "answered 200 within the timeout, recorded otherwise: {timed_out:?}; requests {}",
        sub.count()
    );
    assert_eq!(sub.count(), 8, "sent again");
}
