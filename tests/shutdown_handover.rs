//! A shutdown starts no lane: a subscriber's new lane still waiting for its
//! turn (behind the lane a reload stopped) stays waiting, and its work is
//! sent after the restart, once (from review 14, finding 5); a lane a
//! reload stopped sends nothing it had not started sending (stop 66).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::slow_proxy::slow_proxy;
use common::tasks::task_route;
use common::*;
use hookrelay::provider::Product;

/// `s` is switched from pull to push while its pull lane asks the provider
/// about an event (`verify = "fetch"`, held 4 s), so its push lane waits for
/// the pull lane; a shutdown begins meanwhile, held open by a request in
/// flight. Before, the shutdown stopped the pull lanes and waited for them
/// before it told the push lanes: the waiting push lane got its turn in the
/// middle of the shutdown and sent the event, the shutdown abandoned that
/// attempt, and the restart sent the event again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_starts_no_lane_waiting_for_its_turn() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (proxy, connections) = slow_proxy(fake.addr(), secs(4)).await;
    // Answers its first request after 30 s (still out at the shutdown), the others at once.
    let sub = first_answered_after(secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = |pull: bool| {
        let s = match pull {
            true => Subscriber::pull("s", "pull-token"),
            false => Subscriber::new("s", sub.url()).timeout(secs(60)),
        };
        checked_via(dir.path(), addr, &fake, proxy, s).shutdown_grace(secs(15))
    };
    let h = start(&config(true)).await;
    // A forwarder waits; the callback comes, and s's pull lane asks the provider about it.
    let pulling = tokio::spawn(pull_call(
        addr,
        "GET",
        "/pull/s?wait=20s&max=5",
        Some("pull-token"),
        Some("f1"),
        "",
    ));
    let task = fake.create(
        Product::Runway,
        TaskPlan::success(),
        Some(&format!("http://{addr}/hooks/runway")),
    );
    until_checked(&connections).await;
    // s switched to push: its push lane waits for the pull lane's check.
    config(false).write();
    h.reload().await.expect("reload switching s to push");
    // A request in flight holds the shutdown's drain open (up to the grace).
    let held = holding_the_drain(addr).await;
    h.shutdown().await;
    let _ = pulling.await;
    let during = sub.count();
    drop(held);
    // After the restart the event is sent, once.
    let h = start(&config(false)).await;
    sub.wait_for(secs(20), "the callback, after the restart", |r| !r.is_empty())
        .await;
    tokio::time::sleep(secs(1)).await;
    let seen = seen_ids(&sub);
    assert!(
        during == 0 && seen.values().all(|n| *n == 1),
        "task {task}: s's push lane, waiting for its turn behind the pull lane, was sent {during} request(s) during \
         the shutdown, abandoned by it; after the restart s has seen: {seen:?}"
    );
    h.shutdown().await;
}

/// A reload removes `s` while its lane asks the provider about an event
/// (`verify = "fetch"`, held 3 s), and a shutdown begins at once, held open
/// by a request in flight for its whole grace. Before, the shutdown told
/// only the configured lanes: the lane the reload retired went on waiting
/// for its attempt (with the reload's patience, the subscriber's `timeout`
/// and a margin), which sent once the provider answered, was cut off at the
/// grace's end, and was sent again after the restart. Now it is dropped at
/// the shutdown, before it sends, and sent once after the restart (hostile
/// review, stop 66).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloads_lane_finishing_at_a_shutdown_sends_nothing_twice() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (proxy, connections) = slow_proxy(fake.addr(), secs(3)).await;
    // Answers its first request after 30 s (still out at the grace's end), the others at once.
    let sub = first_answered_after(secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = |name: &str| {
        let s = Subscriber::new(name, sub.url()).timeout(secs(60));
        checked_via(dir.path(), addr, &fake, proxy, s).shutdown_grace(secs(6))
    };
    let h = start(&config("s")).await;
    let task = fake.create(
        Product::Runway,
        TaskPlan::success(),
        Some(&format!("http://{addr}/hooks/runway")),
    );
    until_checked(&connections).await;
    // s is removed (its work stays in the store); its lane is retired, its check still out.
    config("s-later").write();
    h.reload().await.expect("reload removing s");
    // A request in flight holds the shutdown's drain open for the whole grace.
    let held = holding_the_drain(addr).await;
    h.shutdown().await;
    let during = sub.count();
    drop(held);
    // s back: after the restart the event is sent, once.
    let h = start(&config("s")).await;
    sub.wait_for(secs(20), "the callback, after the restart", |r| r.len() > during)
        .await;
    tokio::time::sleep(secs(1)).await;
    let seen = seen_ids(&sub);
    assert!(
        during == 0 && seen.values().all(|n| *n == 1),
        "task {task}: the lane the reload retired sent {during} request(s) during the shutdown; after the restart s \
         has seen: {seen:?}"
    );
    h.shutdown().await;
}

/// A reload removes `s` while its attempt is out (answered after 2 s), and
/// a shutdown begins at once. Before, the stop waited only for the
/// configured lanes: it abandoned the retired lane's attempt within
/// milliseconds, and the restart sent it again. Now the attempt has the
/// grace to be answered and recorded, as any other (hostile review, stop 66).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloads_lane_sending_at_a_shutdown_is_given_the_grace() {
    let sub = first_answered_after(secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).shutdown_grace(secs(6));
    let with_s = base
        .clone()
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(10)));
    let h = start(&with_s).await;
    let first = accepted(h.ingest_addrs[0], &runway("out-at-the-stop")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    // s removed (a subscriber of its own keeps the route valid), then the stop.
    base.clone().subscriber(Subscriber::new("other", DOWN)).write();
    h.reload().await.expect("reload removing s");
    h.shutdown().await;
    // s back: the restart sends only what came after.
    let h = start(&with_s).await;
    let second = accepted(h.ingest_addrs[0], &runway("after-the-restart")).await;
    sub.wait_for(secs(20), "the callback after the restart", |r| {
        r.iter().any(|x| x.header("webhook-id") == second)
    })
    .await;
    tokio::time::sleep(secs(1)).await;
    let seen = seen_ids(&sub);
    assert_eq!(
        seen.get(&first),
        Some(&1),
        "the attempt out when the reload retired its lane was sent again after the restart: {seen:?}"
    );
    h.shutdown().await;
}

/// A subscriber that answers its first request after `first`, the others at once.
async fn first_answered_after(first: Duration) -> Sub {
    Sub::start(Arc::new(move |n, _| {
        if n == 0 {
            Behaviour::Slow(first)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await
}

/// A relay on `addr` with route `runway` (`kie-runway`, `verify = "fetch"`
/// through `proxy` to `fake`, no reconcile) and subscriber `s`; reads wait
/// 30 s, so a request held open holds a shutdown's drain for its grace.
fn checked_via(dir: &Path, addr: SocketAddr, fake: &FakeProvider, proxy: SocketAddr, s: Subscriber) -> TestConfig {
    let route = task_route("runway", "kie-runway", fake, DOWN)
        .provider(Provider::new(fake.api_key(), &format!("http://{proxy}")))
        .without_reconcile()
        .verify("fetch")
        .subscriber(s);
    TestConfig::new(dir)
        .listen(addr)
        .read_timeout(secs(30))
        .edit_route("t", |_| route)
        .public_url(format!("http://{addr}"))
}

/// Once the provider is asked about the callback (the slow proxy counts a connection).
async fn until_checked(connections: &AtomicUsize) {
    let t0 = Instant::now();
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < secs(10), "no verification request");
        tokio::time::sleep(ms(20)).await;
    }
}

/// A request whose body never ends, read by the relay: a shutdown's drain
/// waits for it until the grace (drop it after the stop).
async fn holding_the_drain(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    held.write_all(b"POST /hooks/runway HTTP/1.1\r\nhost: relay\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(ms(200)).await;
    held
}
