//! Cluster mode: work that a reload's handover drops unsent is given back
//! (NAKed, for any relay at once) only while this relay still holds its
//! message, and not once a shutdown has begun (review 17;
//! src/store/nats/source.rs `give_back`, src/delivery/handover.rs `finish`).

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::slow_proxy::{scripted_proxy, Conn};
use common::tasks::config_at;
use common::*;
use futures_util::StreamExt;
use hookrelay::provider::Product;

/// Route `runway` (`kie-runway`, `verify = "fetch"` at `provider`, no
/// reconcile) with a subscriber `other` that takes nothing (its filter
/// never matches: no call to the provider), so that `s` can be removed.
fn route(fake: &FakeProvider, provider: &str) -> Route {
    common::tasks::verified_runway(fake, provider)
        .subscriber(Subscriber::new("other", DOWN).filter("/never", serde_json::json!(true)))
}

async fn until(what: &str, limit: std::time::Duration, cond: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < end, "{what}: not within {limit:?}");
        tokio::time::sleep(ms(20)).await;
    }
}

/// Finding (a). Relay 1 (a process) holds a retry whose attempt is
/// preparing (its `verify = "fetch"` check is never answered) and is paused
/// (SIGSTOP) past `takeover`: relay 2 takes the message over and sends
/// attempt 1, which the subscriber does not answer. Relay 1 runs again and a
/// reload (s removed, and put back) drops its attempt unsent. Relay 1 no
/// longer holds the message, so it must not give it back: a NAK would let
/// NATS hand it out at once beside relay 2's attempt (here to relay 1's new
/// lane, which sends attempt 2 while attempt 1 is still out). Two more
/// events sent through relay 1's new lane afterwards show it running (one at
/// a time: NATS hands out a message given back before new ones). Without the
/// hold check in `give_back` the event was sent twice: attempts 1 and 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_another_relay_took_over_is_not_given_back_by_the_stalled_relay() {
    let nats = common::nats::NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    // Relay 1's calls to the provider: the first check is refused (429:
    // asked again in 2 s, so the delivery has a result and comes again as a
    // retry), the second is never answered, later ones go through.
    let (proxy, connections) = scripted_proxy(fake.addr(), |n| match n {
        0 => Conn::TooMany,
        1 => Conn::Hold,
        _ => Conn::Pass,
    })
    .await;
    // Relay 2's attempt is never answered; anything else gets 200.
    let sub = Sub::start(Arc::new(|n, _: &Received| match n {
        0 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let urls = nats.urls();
    let addr1 = free_addr();
    let via_proxy = format!("http://{proxy}");
    let config1 = |with_s: bool| {
        let mut r = route(&fake, &via_proxy);
        if with_s {
            r = r.subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)).concurrency(1));
        }
        config_at(d1.path(), addr1, r).nats(urls.clone(), 1)
    };
    let relay1 = Bin::start(&config1(true).write(), &[]);
    let hooks = format!("http://{addr1}/hooks/runway");
    let task = fake.create(Product::Runway, TaskPlan::success(), Some(&hooks));
    until("relay 1's second check at the provider", secs(20), || {
        connections.load(Ordering::SeqCst) >= 2
    })
    .await;
    // Paused past `takeover` (5 s): relay 2 gets the message.
    relay1.signal("STOP");
    let s2 = Subscriber::new("s", sub.url()).timeout(secs(60)).concurrency(1);
    let relay2 =
        start(&config_at(d2.path(), free_addr(), route(&fake, &fake.url()).subscriber(s2)).nats(urls.clone(), 1)).await;
    let got = sub.wait_for(secs(30), "relay 2's attempt", |r| r.len() == 1).await;
    let id = got[0].header("webhook-id").to_string();
    assert_eq!(got[0].header("hookrelay-attempt"), "1");
    relay1.signal("CONT");

    // s removed and put back: relay 1's attempt, still preparing, is
    // dropped unsent (timeout 2 s + 2 s); its new lane starts after that.
    let reloads = |n: usize| {
        let relay1 = &relay1;
        async move {
            until(&format!("reload {n}"), secs(20), || {
                relay1.log_text().matches("configuration reloaded").count() >= n
            })
            .await
        }
    };
    config1(false).write();
    relay1.signal("HUP");
    reloads(1).await;
    config1(true).write();
    relay1.signal("HUP");
    reloads(2).await;
    // Two events through relay 1's new lane, one after the other (one at a
    // time: a message handed out again would come before them).
    for n in 0..2 {
        let next = fake.create(Product::Runway, TaskPlan::success(), Some(&hooks));
        sub.wait_for(secs(40), &format!("event {n} through relay 1's new lane"), |r| {
            r.iter().any(|r| String::from_utf8_lossy(&r.body).contains(&next))
        })
        .await;
    }
    let sent: Vec<(String, String)> = sub
        .all()
        .iter()
        .map(|r| {
            (
                r.header("webhook-id").to_string(),
                r.header("hookrelay-attempt").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen_ids(&sub).get(&id),
        Some(&1),
        "task {task}: relay 2 took the delivery over and its attempt 1 is still out, yet the delivery was sent \
         again (relay 1 gave back a message it no longer held): {sent:?}; relay 1's log:\n{}",
        relay1.log_text()
    );
    relay2.shutdown().await;
}

/// Finding (b). A shutdown that begins while a handover gives back the work
/// it dropped unsent stops the give-backs (it does not wait for the store;
/// the messages come again after `takeover`). Two attempts of s are
/// preparing (their checks at the provider are never answered) when a
/// reload removes s; the handover drops both. The results bucket takes no
/// writes, so the first give-back's empty result waits there (its writes
/// come to this test instead, until JetStream's 2 s timeout); the shutdown
/// begins then. The second give-back must not be tried: no write for its
/// delivery. Without the shutdown check in `finish` it was written (and the
/// shutdown waited for it too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_handovers_give_backs_stops_them() {
    let nats = common::nats::NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (proxy, connections) = scripted_proxy(fake.addr(), |_| Conn::Hold).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let urls = nats.urls();
    let via_proxy = format!("http://{proxy}");
    let config = |with_s: bool| {
        let mut r = route(&fake, &via_proxy);
        if with_s {
            r = r.subscriber(Subscriber::new("s", sub.url()).timeout(secs(2)).concurrency(2));
        }
        config_at(dir.path(), addr, r).nats(urls.clone(), 1)
    };
    let h = start(&config(true)).await;
    let hooks = format!("http://{addr}/hooks/runway");
    let tasks = [
        fake.create(Product::Runway, TaskPlan::success(), Some(&hooks)),
        fake.create(Product::Runway, TaskPlan::success(), Some(&hooks)),
    ];
    until("both checks at the provider", secs(20), || {
        connections.load(Ordering::SeqCst) >= 2
    })
    .await;

    // s removed: both attempts are dropped unsent 4 s later (timeout 2 s +
    // 2 s). Then (the reload sets the buckets up again, so after it) the
    // results bucket stops taking writes; what is written to it comes here.
    config(false).write();
    h.reload().await.expect("reload removing s");
    let client = async_nats::connect(urls[0].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut writes = client.subscribe("$KV.hr_results.>").await.unwrap();
    client.flush().await.unwrap();
    let stream = js.get_stream("KV_hr_results").await.unwrap();
    let original = stream.cached_info().config.clone();
    let mut away = original.clone();
    away.subjects = vec!["hr.elsewhere.>".into()];
    js.update_stream(&away).await.unwrap();
    // Nothing was given back before that (s's keys end `.s`).
    client.flush().await.unwrap();
    while let Some(Some(m)) = futures_util::FutureExt::now_or_never(writes.next()) {
        assert!(
            !m.subject.as_str().ends_with(".s"),
            "a give-back came before the bucket was stopped: {}",
            m.subject
        );
    }
    // The first give-back writes its empty result (s's keys end `.s`).
    let first = tokio::time::timeout(secs(20), async {
        loop {
            let m = writes.next().await.expect("subscribed");
            if m.subject.as_str().ends_with(".s") {
                return m.subject.to_string();
            }
        }
    })
    .await
    .expect("no give-back wrote an empty result");
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::from([first])));
    let collect = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = writes.next().await {
                if m.subject.as_str().ends_with(".s") {
                    seen.lock().unwrap().insert(m.subject.to_string());
                }
            }
        })
    };
    h.shutdown().await;
    client.flush().await.unwrap();
    collect.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "tasks {tasks:?}: a shutdown began during the first give-back, yet the handover went on to give back \
         the other dropped attempt (its empty result written): {seen:?}"
    );
    js.update_stream(&original).await.unwrap();
}
