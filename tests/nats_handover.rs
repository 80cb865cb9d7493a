//! Cluster mode and a reload's handover: an attempt the handover drops
//! before it sends spends no attempt number, and one recording its outcome
//! through a NATS hiccup is not cut off and sent again. From review 16,
//! findings 3 and 4; and (review 17) work dropped unsent after a crashed
//! relay's attempt keeps that attempt's number spent.

use crate::common;

use common::slow_proxy::slow_proxy;
use common::*;

/// Finding 3 (nit). In cluster mode an attempt that a reload's handover
/// drops before it sends (here: its `verify = "fetch"` check outlasts the
/// handover's bound) spends no attempt number, and its message goes back at
/// once. Review 16 found it never sent, yet its number spent: the next lane
/// reads the delivery again only after `takeover` (the message was taken, so
/// the stopped lane's follower does not give it back) and numbers its first
/// real send attempt 2 (NATS's hand-out count; for a retry, the number that
/// `begin_attempt` wrote). The subscriber's first request says
/// `hookrelay-attempt: 2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_dropped_before_it_sends_spends_no_attempt_number_in_cluster_mode() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::{config_at, fetch_verified_route};
    use hookrelay::provider::Product;
    use std::sync::atomic::Ordering;
    let nats = common::nats::NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    // Every check at the provider takes 6 s: longer than the handover's
    // bound for an attempt still preparing (timeout 2 s + 2 s).
    let (proxy, connections) = slow_proxy(fake.addr(), secs(6)).await;
    let sub = Sub::start(std::sync::Arc::new(|_, _: &Received| Behaviour::Status(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("http://{addr}/hooks/runway");
    let urls = nats.urls();
    let config = |with_s: bool| {
        let mut route = fetch_verified_route(&fake, proxy);
        if with_s {
            route = route.subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)));
        }
        config_at(dir.path(), addr, route).nats(urls.clone(), 1)
    };
    let h = start(&config(true)).await;
    let task = fake.create(Product::Runway, TaskPlan::success(), Some(&url));
    let t0 = tokio::time::Instant::now();
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < secs(15), "no verification request");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // s is removed while the check is out, and put back: the check outlasts
    // the handover's bound, so the attempt is dropped unsent.
    config(false).write();
    h.reload().await.expect("reload removing s");
    config(true).write();
    h.reload().await.expect("reload adding s back");
    let got = sub.wait_for(secs(40), "the callback", |r| !r.is_empty()).await;
    let attempt = got[0]
        .headers
        .get("hookrelay-attempt")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        attempt,
        "1",
        "task {task}: the subscriber's first request is numbered {attempt} (an attempt dropped unsent spent a number); \
         it came {:?} after the check began",
        got[0].at.duration_since(t0.into_std())
    );
    h.shutdown().await;
}

/// Finding 4. A handover waits for an answered attempt's record as long as
/// the store keeps trying it (`Store::record_patience`). Review 16 found it
/// waited only until the send's start + `timeout` + 2 s (handover.rs
/// `RECORD_MARGIN`), then aborted it; but in
/// cluster mode recording is tried again for up to 10 s while the results
/// bucket has no leader (result_write.rs `RESULT_PATIENCE`). An attempt
/// answered 200 whose result write is waiting out a short NATS hiccup is cut
/// off by a reload that removes and re-adds its subscriber: unrecorded, its
/// message goes to the next lane after `takeover`, which sends it again.
/// Without the reload the same hiccup costs nothing (the write lands once
/// the bucket is back, within its patience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_does_not_cut_off_an_attempt_recording_through_a_nats_hiccup() {
    let nats = common::nats::NatsCluster::start(1).await;
    // The attempt is answered 200 after 1.5 s (its timeout: 2 s).
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        0 => Behaviour::Slow(ms(1500)),
        _ => Behaviour::Status(200),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path())
        .nats(nats.urls(), 1)
        .subscriber(Subscriber::new("other", DOWN));
    let with_s = base
        .clone()
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)));
    let without_s = base.clone();
    let h = start(&with_s).await;
    let id = accepted(h.ingest_addrs[0], &runway("hiccup")).await;
    sub.wait_for(secs(10), "the attempt", |r| r.len() == 1).await;
    // While the attempt waits for its answer a reload removes s and another
    // puts it back; then the bucket stops taking writes.
    without_s.write();
    h.reload().await.expect("reload removing s");
    with_s.write();
    h.reload().await.expect("reload adding s back");
    // The results bucket takes no writes for a moment, from before the 200 comes ("no responders", as
    // while its leader is being elected).
    let away = common::nats::ResultsAway::start(nats.urls()[0].as_str()).await;

    // The bucket is back 6 s later: well within the write's 10 s patience.
    tokio::time::sleep(secs(6)).await;
    away.back().await;

    tokio::time::sleep(secs(12)).await;
    let seen = seen_ids(&sub);
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(
        seen.get(&id),
        Some(&1),
        "event {id} was answered 200, its result write was cut off by the handover and the lane of s's return \
         sent it again: {seen:?}; {ev}"
    );
    h.shutdown().await;
}

/// Review 17 (the give-back's count). Work a handover drops unsent keeps the attempts
/// made before its hand-out. A first delivery has no result: its number is
/// NATS's count of hand-outs. Relay 1 (a process) sends attempt 1, which the
/// subscriber never answers, and is killed (SIGKILL) before it writes
/// anything. Relay 2 takes the message over (hand-out 2: attempt 2 is
/// preparing, its `verify = "fetch"` check held at the provider) and a
/// reload's handover drops it unsent: the empty result written as it is
/// given back must say 1 attempt, so the next real send is numbered 2
/// (the dropped one spent no number). Before the fix it said 0: the
/// subscriber got `hookrelay-attempt: 1` a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_dropped_unsent_after_a_crashed_relays_attempt_does_not_reuse_its_number() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::task_route;
    use hookrelay::provider::Product;
    use std::sync::atomic::Ordering;
    let nats = common::nats::NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    // Relay 2's checks at the provider take 6 s: longer than the handover's
    // bound for an attempt still preparing (timeout 2 s + 2 s).
    let (proxy, connections) = slow_proxy(fake.addr(), secs(6)).await;
    // Relay 1's attempt is never answered (its relay dies); then 200.
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        0 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    // The route's other subscriber never answers either: no attempt is
    // recorded before relay 1 dies, so relay 2 asks the provider again (a
    // delivery with an attempt in the event's history is not verified again).
    let other = Sub::start(std::sync::Arc::new(|_, _: &Received| Behaviour::Hang)).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let urls = nats.urls();
    // `provider`: the fake itself (relay 1) or the slow proxy (relay 2).
    let free_addr = || -> std::net::SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let config = |dir: &std::path::Path, addr: std::net::SocketAddr, provider: String, with_s: bool| {
        let mut route = task_route("runway", "kie-runway", &fake, &other.url())
            .provider(Provider::new(fake.api_key(), &provider))
            .verify("fetch");
        if with_s {
            route = route.subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)));
        }
        TestConfig::new(dir)
            .listen(addr)
            .edit_route("t", |_| route)
            .nats(urls.clone(), 1)
            .public_url(format!("http://{addr}"))
    };
    let addr1 = free_addr();
    let mut first = Bin::start(&config(d1.path(), addr1, fake.url(), true).write(), &[]);
    let task = fake.create(
        Product::Runway,
        TaskPlan::success(),
        Some(&format!("http://{addr1}/hooks/runway")),
    );
    sub.wait_for(secs(20), "relay 1's attempt", |r| r.len() == 1).await;
    other
        .wait_for(secs(10), "relay 1's send to the other subscriber", |r| r.len() == 1)
        .await;
    first.kill9();

    // Relay 2 takes the message over after `takeover` (5 s).
    let via_proxy = format!("http://{proxy}");
    let addr2 = free_addr();
    let with_s = config(d2.path(), addr2, via_proxy.clone(), true);
    let h = start(&with_s).await;
    let t0 = tokio::time::Instant::now();
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < secs(20), "relay 2 made no verification request");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // s is removed while the check is out, and put back: the check outlasts
    // the handover's bound, so attempt 2 is dropped unsent.
    config(d2.path(), addr2, via_proxy, false).write();
    h.reload().await.expect("reload removing s");
    with_s.write();
    h.reload().await.expect("reload adding s back");
    let got = sub.wait_for(secs(40), "relay 2's send", |r| r.len() >= 2).await;
    let numbers: Vec<&str> = got.iter().map(|r| r.header("hookrelay-attempt")).collect();
    assert_eq!(
        numbers,
        ["1", "2"],
        "task {task}: relay 1's attempt 1 was sent (its relay died unanswered) and relay 2's attempt 2 \
         dropped unsent; the next send must be numbered 2, not 1 again"
    );
    h.shutdown().await;
}
