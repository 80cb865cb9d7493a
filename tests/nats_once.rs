//! Each delivery at one relay at a time, without any crash: relays sharing a
//! subscriber's consumer never both send one delivery when the subscriber is
//! slow or the lane waits for its rate limit, longer than `takeover` (5 s
//! here) in all; each relay takes from NATS only what it can start now and
//! keeps all of it renewed; and a relay that NATS hands a message it still
//! works on (after a pause longer than `takeover`) does not send it twice.

use crate::common;

use std::collections::HashSet;

use common::nats::NatsCluster;
use common::*;

/// Two relays on a three-node cluster (replicas 3) with subscriber `s`.
async fn two_relays(
    nats: &NatsCluster,
    sub: Subscriber,
) -> (Vec<tempfile::TempDir>, hookrelay::Handle, hookrelay::Handle) {
    let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(sub.clone()).nats(nats.urls(), 3);
    let r1 = start(&cfg(dirs[0].path())).await;
    let r2 = start(&cfg(dirs[1].path())).await;
    (dirs, r1, r2)
}

/// Send `n` distinct callbacks to `addr`, eight at a time: their ids.
async fn ingest(addr: std::net::SocketAddr, tag: &str, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let sent: Vec<_> = chunk
            .iter()
            .map(|i| {
                let body = runway(&format!("{tag}-{i}"));
                tokio::spawn(async move { accepted_retrying(addr, &body).await })
            })
            .collect();
        for s in sent {
            ids.insert(s.await.unwrap());
        }
    }
    ids
}

/// Every id in `want` reached `sub`; then, once nothing has come for a
/// second, each came exactly once.
async fn each_once(sub: &Sub, want: &HashSet<String>) {
    sub.wait_for(secs(90), "every event delivered", |_| {
        let seen = seen_ids(sub);
        want.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let mut last = sub.count();
    loop {
        tokio::time::sleep(secs(1)).await;
        let now = sub.count();
        if now == last {
            break;
        }
        last = now;
    }
    let seen = seen_ids(sub);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} of {} sent more than once: {twice:?}",
        twice.len(),
        want.len()
    );
    assert_eq!(seen.len(), want.len(), "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_a_slow_subscriber_is_sent_once() {
    let nats = NatsCluster::start(3).await;
    // 500 ms an answer, two at a time: 160 events keep each relay busy for
    // four times `takeover`.
    let sub = Sub::always(Behaviour::Slow(ms(500))).await;
    let (_dirs, r1, _r2) = two_relays(&nats, Subscriber::new("s", sub.url()).concurrency(2)).await;
    let want = ingest(r1.ingest_addrs[0], "slow", 160).await;
    each_once(&sub, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_for_the_rate_limit_are_sent_once() {
    let nats = NatsCluster::start(3).await;
    // 4 a second with 8 at once: a lane takes 8 and sends them over 2 s;
    // 160 events keep each relay busy for four times `takeover`.
    let sub = Sub::ok().await;
    let s = Subscriber::new("s", sub.url()).concurrency(8).rate_per_second(4);
    let (_dirs, r1, _r2) = two_relays(&nats, s).await;
    let want = ingest(r1.ingest_addrs[0], "rate", 160).await;
    each_once(&sub, &want).await;
}

/// A relay that stops (SIGTERM, a rolling restart) does not hand the
/// delivery it has in flight to another relay at once — the subscriber may
/// still be answering it — but after `takeover`, as after a crash. (An
/// answer within `shutdown_grace` is waited for and recorded: this one
/// takes longer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_leaves_its_delivery_in_flight_until_takeover() {
    let nats = NatsCluster::start(3).await;
    let sub = Sub::always(Behaviour::Slow(secs(4))).await;
    let s = Subscriber::new("s", sub.url());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| {
        TestConfig::new(dir)
            .shutdown_grace(ms(500))
            .subscriber(s.clone())
            .nats(nats.urls(), 3)
    };
    let r1 = start(&cfg(d1.path())).await;
    let id = accepted_retrying(r1.ingest_addrs[0], &runway("in-flight")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    let r2 = start(&cfg(d2.path())).await;
    // Counted from before the stop: the hold is renewed every second until
    // the lane stops, so the takeover comes at least ~4 s after this, however
    // long the rest of the shutdown takes on a loaded machine.
    let stopped = std::time::Instant::now();
    r1.shutdown().await;
    // Looked at once the stop is over (a message released at the stop is
    // sent again by now) and before the takeover can come (~4 s).
    let shut = stopped.elapsed();
    assert!(
        shut < ms(3500),
        "the stop took {shut:?}: too long to tell a takeover from a release at the stop"
    );
    tokio::time::sleep_until((stopped + secs(3).max(shut + ms(300))).into()).await;
    assert_eq!(
        sub.count(),
        1,
        "sent again while the first attempt may still be answered"
    );
    // The stopped relay recorded nothing: at-least-once, after takeover (5 s).
    let got = sub.wait_for(secs(20), "taken over", |r| r.len() == 2).await;
    assert_eq!(got[1].header("webhook-id"), id);
    assert!(stopped.elapsed() >= ms(3500), "after {:?}", stopped.elapsed());
    r2.shutdown().await;
}

/// A relay that was paused (SIGSTOP) for longer than `takeover` while it
/// had an attempt in flight is handed the same message again by NATS (no
/// other relay asked for it): the copy it holds is the one it works on, so
/// the delivery is not queued and sent a second time while the subscriber
/// is still answering the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_handed_again_to_its_paused_relay_is_not_sent_twice() {
    let nats = NatsCluster::start(1).await;
    // 10 s an answer; two at a time, so the lane keeps asking NATS for more.
    let sub = Sub::always(Behaviour::Slow(secs(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Subscriber::new("s", sub.url()).concurrency(2).timeout(secs(30));
    let cfg = TestConfig::new(dir.path()).subscriber(s).nats(nats.urls(), 1);
    let relay = Bin::start(&cfg.write(), &[]);
    let id = accepted(relay.addr, &runway("paused")).await;
    let first = sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    // Paused past `takeover` (5 s): its renewals stop, NATS hands the
    // message out again, and the relay gets it when it runs again.
    relay.signal("STOP");
    tokio::time::sleep(secs(7)).await;
    relay.signal("CONT");
    // The first attempt is answered 10 s after it was sent.
    let ev = admin_until(relay.admin, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert!(first[0].at.elapsed() >= secs(10));
    tokio::time::sleep(secs(1)).await;
    let seen = seen_ids(&sub);
    assert_eq!(
        (sub.count(), seen.get(&id).copied()),
        (1, Some(1)),
        "sent again while the first attempt was in flight: {:?}",
        sub.all()
            .iter()
            .map(|r| (
                r.header("webhook-id").to_string(),
                r.header("hookrelay-attempt").to_string()
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(ev["subscribers"][0]["attempts_total"], 1, "{ev}");
}

/// Messages NATS hands to a relay while it is paused (SIGSTOP) wait in its
/// socket; after `takeover` NATS hands them to the other relay, which sends
/// them. The paused relay, running again, read them as if they had just
/// come and sent them too (a cluster pause soak, stop 79: 26 deliveries
/// twice in 17 pauses). They count as held since the pause began now
/// (`clock::pauses`): lost, not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_handed_to_a_paused_relay_are_not_sent_by_it_after_another_relay_took_them() {
    let nats = NatsCluster::start(1).await;
    let sub = Sub::ok().await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(10));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let paused = Bin::start(&cfg(d1.path()).write(), &[]);
    let other = start(&cfg(d2.path())).await;
    // Both idle, each with a pull request waiting at NATS.
    let warm = accepted(other.ingest_addrs[0], &runway("warm")).await;
    sub.wait_for(secs(10), "the first event", |r| r.len() == 1).await;
    tokio::time::sleep(secs(1)).await;
    paused.signal("STOP");
    let mut want = ingest(other.ingest_addrs[0], "during-pause", 16).await;
    want.insert(warm);
    // The other relay sends them all: at once, or after `takeover` (5 s)
    // those NATS handed to the paused relay.
    sub.wait_for(secs(30), "every event through the other relay", |_| {
        let seen = seen_ids(&sub);
        want.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let taken_over = sub
        .all()
        .iter()
        .filter(|r| r.header("hookrelay-attempt") == "2")
        .count();
    paused.signal("CONT");
    tokio::time::sleep(secs(3)).await;
    assert!(
        taken_over > 0,
        "NATS handed nothing to the paused relay: the test shows nothing"
    );
    each_once(&sub, &want).await;
    other.shutdown().await;
}

/// Callbacks that came to a relay while its process was paused wait in its
/// listener's socket and are stored once it runs again: their messages,
/// stored after the pause, are fresh, and go out at once as attempt 1. The
/// first version of the pause check counted every message read in the
/// second after a pause as held since it began: such callbacks waited for
/// `takeover` and went out as attempt 2 (a re-soak, stop 79: 600 of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_taken_after_a_pause_are_sent_at_once_as_attempt_1() {
    let nats = NatsCluster::start(1).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Subscriber::new("s", sub.url()).timeout(secs(10));
    let relay = Bin::start(
        &TestConfig::new(dir.path()).subscriber(s).nats(nats.urls(), 1).write(),
        &[],
    );
    accepted(relay.addr, &runway("before")).await;
    sub.wait_for(secs(10), "the first event", |r| r.len() == 1).await;
    relay.signal("STOP");
    let addr = relay.addr;
    let posts: Vec<_> = (0..4)
        .map(|n| tokio::spawn(async move { accepted(addr, &runway(&format!("in-pause-{n}"))).await }))
        .collect();
    // Longer than half of `takeover` (5 s).
    tokio::time::sleep(secs(4)).await;
    relay.signal("CONT");
    let resumed = std::time::Instant::now();
    let mut ids = Vec::new();
    for p in posts {
        ids.push(p.await.unwrap());
    }
    let got = sub
        .wait_for(secs(20), "the callbacks taken after the pause", |r| {
            ids.iter().all(|id| r.iter().any(|x| x.header("webhook-id") == id))
        })
        .await;
    let late: Vec<(String, String, std::time::Duration)> = got
        .iter()
        .filter(|r| ids.iter().any(|id| r.header("webhook-id") == id))
        .filter(|r| r.header("hookrelay-attempt") != "1" || r.at.duration_since(resumed) > secs(3))
        .map(|r| {
            (
                r.header("webhook-id").to_string(),
                r.header("hookrelay-attempt").to_string(),
                r.at.duration_since(resumed),
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "held back until `takeover`, or numbered as a second attempt: {late:?}"
    );
}
