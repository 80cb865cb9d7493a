//! Cluster mode under faults between the two or three writes (review 15)
//! that settle a delivery or queue a replay. JetStream refusing one write
//! for a moment (a stream whose leader is being elected answers "no
//! responders"; a stream at a limit refuses) is made by hand, on the one
//! stream concerned, while the others (the results bucket) keep working —
//! as when one node dies and only the streams it led elect a new leader.
//! Also a read failing for a moment (no replica answers direct gets).

use crate::common;

use async_nats::jetstream::{self, stream};
use common::nats::NatsCluster;
use common::*;

async fn js_of(nats: &NatsCluster) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap())
}

async fn config_of(js: &jetstream::Context, name: &str) -> stream::Config {
    js.get_stream(name).await.unwrap().info().await.unwrap().config.clone()
}

/// A delivery that gives up writes its result (`dead`), then its dead
/// letter to `HR_DL`. When that publish fails (HR_DL has no leader for a
/// moment) the message is let go; the relay that gets it again after
/// `takeover` reads the `dead` result and terminates it — without ever
/// publishing the dead letter. The delivery is dead, but
/// `/api/dead-letters` does not list it and `POST /api/dead-letters/replay`
/// never re-queues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_publish_failed_once_is_still_listed() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // 410: gone, a dead letter at once.
    let sub = Sub::always(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let js = js_of(&nats).await;

    // HR_DL stops taking dead letters for a moment (no leader: "no responders").
    let original = config_of(&js, "HR_DL").await;
    let mut away = original.clone();
    away.subjects = vec!["hr.elsewhere.>".into()];
    js.update_stream(&away).await.unwrap();

    let id = accepted(h.ingest_addrs[0], &runway("dies-once")).await;
    sub.wait_for(secs(10), "the one attempt", |r| r.len() == 1).await;
    tokio::time::sleep(secs(1)).await;
    // HR_DL is back long before `takeover` (5 s) hands the message out again.
    js.update_stream(&original).await.unwrap();

    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    // Wait until the message is settled (taken again after takeover and terminated).
    let mut s = js.get_stream("HR_EV_t").await.unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let mut c: async_nats::jetstream::consumer::PullConsumer = s.get_consumer("sub_s").await.unwrap();
        let info = c.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 && info.delivered.stream_sequence >= 1 {
            break;
        }
        assert!(t0.elapsed() < secs(20), "never settled: {info:?}");
        tokio::time::sleep(ms(200)).await;
    }
    let _ = s.info().await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(sub.count(), 1, "sent once");
    let (_, dl) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(
        dl["total"],
        serde_json::json!(1),
        "the delivery is dead ({ev}) but its dead letter is not listed: {dl}"
    );
    h.shutdown().await;
}

/// One NATS node, a relay with subscriber `s`, and one event (`name`)
/// delivered to it, once.
async fn one_delivered(name: &str) -> (NatsCluster, tempfile::TempDir, Sub, hookrelay::Handle, String) {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway(name)).await;
    until_delivered(h.admin_addr, &id, "s").await;
    assert_eq!(sub.count(), 1);
    (nats, dir, sub, h, id)
}

/// Queuing a replay is two writes: the result marked due again (over the
/// revision read), then the replay message on the route's stream. When the
/// second fails (the stream's leader is being elected, or the relay dies
/// in between) the result stays "retrying" with no message to carry it:
/// every later replay answers `already_pending` (the row is not final) and
/// nothing ever sends it — also the dead-letter replay of a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_message_was_not_stored_can_be_replayed_again() {
    let (nats, _dir, sub, h, id) = one_delivered("replayed").await;

    // The route's stream refuses new messages for a moment.
    let js = js_of(&nats).await;
    let original = config_of(&js, "HR_EV_t").await;
    let mut full = original.clone();
    full.max_messages = 1;
    full.discard = stream::DiscardPolicy::New;
    js.update_stream(&full).await.unwrap();
    let path = format!("/api/events/{id}/replay");
    let (status, v) = admin(h.admin_addr, "POST", &path).await;
    assert!(!status.is_success(), "the replay could not be queued: {status} {v}");
    js.update_stream(&original).await.unwrap();

    // The operator asks again, as the error says.
    let (status, v) = admin(h.admin_addr, "POST", &path).await;
    let got = tokio::time::timeout(secs(10), sub.wait_for(secs(10), "the replay", |r| r.len() == 2)).await;
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert!(
        got.is_ok(),
        "the replay asked again after the failed one was never sent: {status} {v}; event {ev}"
    );
    h.shutdown().await;
}

/// A relay paused (SIGSTOP: a GC-like stall, a VM migration, a partition
/// from NATS) during an attempt loses its hold after `takeover`; another
/// relay sends the delivery again (only unfinished work is sent twice: as
/// documented), gets 200 and records `delivered`. When the first relay runs
/// again, its attempt has timed out and it records a retry with an
/// unconditional `put` (record.rs `put_result_patiently`, not an update over
/// the revision it read, unlike `begin_attempt`): the delivered result is
/// overwritten by a stale "retrying" one whose message is gone (acked), so
/// the event shows pending for ever, its 200 attempt is erased from the
/// history, and a replay answers `already_pending` and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_relays_late_result_does_not_overwrite_a_newer_final_one() {
    let nats = NatsCluster::start(1).await;
    // The first attempt is never answered, every later one gets 200.
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| {
        if n == 0 {
            Behaviour::Hang
        } else {
            Behaviour::Status(200)
        }
    }))
    .await;
    let s = Subscriber::new("s", sub.url());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("stale")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    first.signal("STOP");

    let second = start(&cfg(d2.path())).await;
    let path = format!("/api/events/{id}");
    sub.wait_for(secs(20), "taken over", |r| r.len() == 2).await;
    until_delivered(second.admin_addr, &id, "s").await;

    // The paused relay runs again: its attempt timed out long ago.
    first.signal("CONT");
    tokio::time::sleep(secs(4)).await;
    let (_, ev) = admin(second.admin_addr, "GET", &path).await;
    let (_, replay) = admin(second.admin_addr, "POST", &format!("{path}/replay")).await;
    assert_eq!(
        ev["subscribers"][0]["state"], "delivered",
        "a delivered result was overwritten by the paused relay's stale one: {ev}; a replay now answers {replay}; sent {} times",
        sub.count()
    );
    second.shutdown().await;
}

/// Replaying a dead letter is three writes: the result marked due again,
/// the replay message, then the purge of the letter from `HR_DL`. When the
/// purge fails (HR_DL's leader is being elected; the relay dies just
/// before it) the replay is still sent and delivered, but the letter stays
/// listed for ever, its result now `delivered` — and since `replay_one`
/// queues any delivery whose result is final, every later
/// `POST /api/dead-letters/replay` sends the delivered event again (and
/// never purges the letter: `was_dead` is false from then on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_is_not_sent_again_by_the_next_dead_letter_replay() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // Gone the first time (a dead letter at once), 200 after.
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| {
        Behaviour::Status(if n == 0 { 410 } else { 200 })
    }))
    .await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let a = h.admin_addr;
    let id = accepted(h.ingest_addrs[0], &runway("purge-fails")).await;
    admin_expect(a, "/api/dead-letters", secs(20), "one dead letter", |v| v["total"] == 1).await;

    // HR_DL refuses the purge.
    let js = js_of(&nats).await;
    let mut no_purge = config_of(&js, "HR_DL").await;
    no_purge.deny_purge = true;
    js.update_stream(&no_purge).await.expect("deny_purge can be set");
    let (status, v) = admin(a, "POST", "/api/dead-letters/replay").await;
    // (NATS cannot lift deny_purge again; the later replays below do not
    // purge anything anyway: the letter's result is no longer `dead`.)
    until_delivered(a, &id, "s").await;
    assert_eq!(sub.count(), 2, "the replay was sent once");

    // The operator replays the dead letters again (the first call failed, or
    // later ones come): the delivered event must not be sent again.
    let (status2, v2) = admin(a, "POST", "/api/dead-letters/replay").await;
    tokio::time::sleep(secs(3)).await;
    let (_, dl) = admin(a, "GET", "/api/dead-letters").await;
    assert_eq!(
        sub.count(),
        2,
        "a delivered replay was sent again by the next dead-letter replay: first replay {status} {v}, second {status2} {v2}; dead letters now {dl}"
    );
    h.shutdown().await;
}

/// Two dead-letter replays that overlap (two operators, the console and a
/// script, two relays): `replay_one` re-queues any delivery whose result is
/// final, not only one still `dead`. A letter the faster call replayed and
/// the subscriber already got (now `delivered`) is re-queued and sent again
/// by the slower call, which listed it when it started — although of "two
/// replays at once one queues the delivery, the other finds it pending".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_dead_letter_replays_send_a_letter_once() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // s1 refuses everything (its letters die again when replayed); s2
    // refuses only the first attempt of the last event.
    let s1 = Sub::always(Behaviour::Status(410)).await;
    let s2 = Sub::start(std::sync::Arc::new(|_, r: &Received| {
        let last = String::from_utf8_lossy(&r.body).contains("\"last\"");
        Behaviour::Status(if last && r.header("hookrelay-attempt") == "1" {
            410
        } else {
            200
        })
    }))
    .await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .subscriber(Subscriber::new("s2", s2.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let a = h.admin_addr;
    const FILL: usize = 100;
    for i in 0..FILL {
        accepted(h.ingest_addrs[0], &runway(&format!("fill-{i}"))).await;
    }
    let last = accepted(h.ingest_addrs[0], &runway("last")).await;
    admin_expect(
        a,
        "/api/dead-letters?limit=1000",
        secs(30),
        "every letter listed",
        |v| v["total"] == FILL + 2,
    )
    .await;

    // The slower call replays every letter (s1's first, in arrival order);
    // the other one, started just after, only s2's.
    let all = tokio::spawn(async move { admin(a, "POST", "/api/dead-letters/replay").await });
    tokio::time::sleep(ms(20)).await;
    let (st, only_s2) = admin(a, "POST", "/api/dead-letters/replay?subscriber=s2").await;
    let (st_all, v_all) = all.await.unwrap();
    s2.wait_for(secs(20), "s2's letter replayed", |r| {
        r.iter().filter(|x| x.header("webhook-id") == last).count() >= 2
    })
    .await;
    tokio::time::sleep(secs(3)).await;
    let sent: Vec<String> = s2
        .all()
        .iter()
        .filter(|r| r.header("webhook-id") == last)
        .map(|r| r.header("hookrelay-attempt").to_string())
        .collect();
    assert_eq!(
        sent.len(),
        2,
        "s2's letter was sent {} times (attempts {sent:?}): the s2 call answered {st} {only_s2}, the full one {st_all} {v_all}",
        sent.len()
    );
    h.shutdown().await;
}

/// A replay whose relay died between its two writes (the result marked due
/// again, the replay message not published yet) — or whose publish and
/// undo both failed — leaves the result "retrying" with no message to carry
/// it. A replay asked again once the marking replay has had its time finds
/// no message for the delivery and publishes one: it is sent, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_left_marked_without_its_message_is_queued_by_the_next_replay() {
    let (nats, _dir, sub, h, id) = one_delivered("marked").await;

    // What a replay's first write leaves, a minute ago, its message never published.
    let js = js_of(&nats).await;
    let kv = js.get_key_value("hr_results").await.unwrap();
    // The event's sequence: the stream's last one.
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
    let key = &format!("t.{}.s", stream.info().await.unwrap().state.last_sequence);
    let mut row: serde_json::Value = serde_json::from_slice(&kv.get(key).await.unwrap().expect("a result")).unwrap();
    let then = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    row["state"] = serde_json::json!({ "retrying": { "due_ms": then } });
    row["at_ms"] = serde_json::json!(then);
    row["step"] = serde_json::json!(0);
    kv.put(key, serde_json::to_vec(&row).unwrap().into()).await.unwrap();

    let (status, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    let got = tokio::time::timeout(secs(10), sub.wait_for(secs(10), "the replay", |r| r.len() == 2)).await;
    assert!(
        got.is_ok(),
        "a delivery marked with no message was never sent: {status} {v}"
    );
    assert_eq!(v["queued"], serde_json::json!(["s"]), "{v}");
    tokio::time::sleep(secs(2)).await;
    assert_eq!(sub.count(), 2, "sent once more");
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["attempts_total"], 2, "{ev}");
    h.shutdown().await;
}

/// A replay message whose event cannot be read for a moment (`direct_get`
/// fails: the stream's replicas do not answer direct gets for a moment;
/// here `allow_direct` is switched off for 3 s) is handed back, not
/// terminated as if its event had expired: the replay was queued (the call
/// answered `queued`) and is sent once the event can be read. The replay's
/// writes are made by hand: the admin API's replay reads the event itself
/// first (so it must be queued just before the hiccup, by this relay or
/// another). From review 29, finding 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_event_read_failed_once_is_still_sent() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, a, path, js, mut stream) = common::nats_replay::one_delivered(&nats, dir.path(), "replayed").await;

    let original = stream.info().await.unwrap().config.clone();
    let seq = stream.info().await.unwrap().state.last_sequence;
    let mut no_direct = original.clone();
    no_direct.allow_direct = false;
    js.update_stream(&no_direct).await.unwrap();
    // The replay's two writes (as `replay_one` makes them, at any relay,
    // just before the hiccup): the API's own replay reads the event first,
    // so it is made by hand here.
    common::nats_replay::replay_by_hand(&js, seq, 0).await;
    tokio::time::sleep(secs(3)).await;
    js.update_stream(&original).await.unwrap();

    let ev = admin_until(h.admin_addr, &path, secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered" && v["subscribers"][0]["attempts_total"] == 2
    })
    .await;
    // The replay's message is settled (terminated), not waiting anywhere.
    let info = stream.consumer_info("sub_a").await.unwrap();
    let gone = info.num_pending == 0 && info.num_ack_pending == 0;
    assert_eq!(
        a.count(),
        2,
        "the queued replay was never sent (its message settled unsent: {gone}); the delivery now: {ev}"
    );
    h.shutdown().await;
}
