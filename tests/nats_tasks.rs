//! Expected tasks in cluster mode: two relays on one NATS share the tasks
//! and their poll schedule — tasks submitted through either relay are seen
//! by both, a lost callback is recovered by exactly one relay's poll (the
//! provider sees one status call for it, not one per relay), and every
//! result is delivered once (also the genuine final callback after a
//! forged one on a `verify = "fetch"` route).

use crate::common;

use std::collections::{HashMap, HashSet};

use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{
    a_task_from_before_reconcile_is_polled_once_it_is_added, a_task_registered_after_its_callback_is_called_back,
    register, submit_ok, task, task_list, task_route, task_until, tasks_config,
};
use common::*;
use http::StatusCode;
use serde_json::Value;

fn task_of(r: &Received) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["data"]["task_id"].as_str().unwrap_or_default().to_string()
}

/// A relay on `nats` whose route `runway` reconciles tasks at `fake` and
/// delivers to `sub`.
fn relay(dir: &std::path::Path, nats: &NatsCluster, fake: &FakeProvider, sub: &Sub) -> TestConfig {
    let (cfg, _) = tasks_config(dir, vec![task_route("runway", "kie-runway", fake, &sub.url())]);
    cfg.nats(nats.urls(), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_recover_each_lost_result_once() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let h1 = start(&relay(d1.path(), &nats, &fake, &sub)).await;
    let h2 = start(&relay(d2.path(), &nats, &fake, &sub)).await;
    let (mut ids, mut lost) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let plan = if i % 3 == 1 {
            TaskPlan::success().lose()
        } else {
            TaskPlan::success()
        };
        let lose = plan.knobs.lose;
        fake.plan_next(plan);
        let through = if i % 2 == 0 { &h1 } else { &h2 };
        let id = submit_ok(through.admin_addr, "runway", "/api/v1/runway/generate").await;
        if lose {
            lost.push(id.clone());
        }
        ids.push(id);
    }
    assert_eq!(lost.len(), 4);
    sub.wait_for(secs(30), "12 results", |all| {
        all.iter().map(task_of).collect::<HashSet<_>>().len() == 12
    })
    .await;
    tokio::time::sleep(ms(1000)).await;
    let all = sub.all();
    assert_eq!(all.len(), 12, "exactly one delivery per task");
    let by_task: HashMap<String, &Received> = all.iter().map(|r| (task_of(r), r)).collect();
    for id in &ids {
        let polled = lost.contains(id);
        assert_eq!(
            by_task[id].header("hookrelay-source"),
            if polled { "poll" } else { "" },
            "task {id}"
        );
    }
    // One status call per lost task: one relay polled it, the other did not.
    let calls = fake.requests();
    for id in &lost {
        let polls = calls
            .iter()
            .filter(|r| r.method == "GET" && r.task_id.as_deref() == Some(id.as_str()))
            .count();
        assert_eq!(polls, 1, "task {id} was polled {polls} times");
    }
    // Both relays see every task, whichever relay it went through.
    for h in [&h1, &h2] {
        assert_eq!(task_list(h.admin_addr, "state=recovered").await.len(), 4);
        assert_eq!(task_list(h.admin_addr, "state=called_back&route=runway").await.len(), 8);
        for id in &lost {
            let t = task(h.admin_addr, id).await;
            assert_eq!(t["state"], "recovered", "{t}");
            assert_eq!(t["provider_state"], "success", "the record's final state: {t}");
            let ev = event_view(h.admin_addr, t["event"].as_str().unwrap()).await;
            assert_eq!(ev["origin"], "poll", "{ev}");
        }
        let m = metrics(h.admin_addr).await;
        assert_eq!(sample(&m, "hookrelay_tasks{state=\"recovered\"}"), 4.0);
        assert_eq!(sample(&m, "hookrelay_tasks_oldest_open_seconds"), 0.0);
    }
    h1.shutdown().await;
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_registered_at_a_relay_that_dies_is_polled_by_the_other() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut bin = Bin::start(&relay(d1.path(), &nats, &fake, &sub).write(), &[]);
    // The task runs for a while (each stage 2 s) and its callback is lost.
    fake.plan_next(TaskPlan::success().lose().step(secs(2)));
    let id = submit_ok(bin.admin, "runway", "/api/v1/runway/generate").await;
    fake.wait_until("a first poll", secs(10), |f| f.status_requests(&id) > 0)
        .await;
    // Relay 1 dies (kill -9) while the task is still running; relay 2, which
    // never saw the task, takes the schedule over and recovers the result.
    bin.kill9();
    let h2 = start(&relay(d2.path(), &nats, &fake, &sub)).await;
    let got = sub.wait_for(secs(40), "the recovered result", |r| !r.is_empty()).await;
    assert_eq!(task_of(&got[0]), id);
    assert_eq!(got[0].header("hookrelay-source"), "poll");
    // In cluster mode the event is appended first and the task row settled by
    // a KV write after it (the other order could mark a task recovered whose
    // event was never stored), so the delivery can arrive a moment before.
    let t = task_until(h2.admin_addr, &id, "recovered", secs(5)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    tokio::time::sleep(ms(500)).await;
    assert_eq!(sub.count(), 1, "delivered once");
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_registered_before_reconcile_was_added_is_polled_after_a_reload() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    a_task_from_before_reconcile_is_polled_once_it_is_added(relay(dir.path(), &nats, &fake, &sub), &fake, &sub).await;
}

/// A relay that schedules a task (its route started reconciling) publishes
/// the work message first and names it in the task's row after: should it die
/// in between, or its row update fail, the message reaches a reconciler
/// before any row names it. The reconciler takes it over and polls the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_message_no_row_names_yet_is_taken_over() {
    use sha2::Digest;
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Relay 1 reconciles from its start on; relay 2, without `reconcile`,
    // registers a task no one schedules, then leaves.
    let h1 = start(&relay(d1.path(), &nats, &fake, &sub)).await;
    let h2 = start(&relay(d2.path(), &nats, &fake, &sub).edit_route("runway", Route::without_reconcile)).await;
    fake.plan_next(TaskPlan::success().lose());
    let id = submit_ok(h2.admin_addr, "runway", "/api/v1/runway/generate").await;
    h2.shutdown().await;
    let t = task(h1.admin_addr, &id).await;
    assert_eq!(
        (&t["state"], &t["next_poll_at"]),
        (&Value::from("waiting"), &Value::Null),
        "{t}"
    );
    // The message a scheduling relay would have published (the task's
    // subject: the first 16 bytes of SHA-256(route, 0, task id), in hex).
    let mut h = sha2::Sha256::new();
    h.update(b"runway\0");
    h.update(id.as_bytes());
    let hash = hex::encode(&h.finalize()[..16]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let work = serde_json::json!({"route": "runway", "task_id": id, "registered_ms": now, "first_poll_ms": now});
    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.publish(format!("hr.tk.{hash}"), work.to_string().into())
        .await
        .unwrap()
        .await
        .expect("the task work stream took the message");
    // A generous wait: one CI run saw this test stall for ~20 s under load.
    let t = task_until(h1.admin_addr, &id, "recovered", secs(30)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    let got = sub.wait_for(secs(10), "the recovered result", |r| !r.is_empty()).await;
    assert_eq!(got[0].header("hookrelay-source"), "poll");
    h1.shutdown().await;
}

/// The task's name in the tasks bucket (`t.<hash>`): the first 16 bytes of
/// SHA-256(route, 0, task id), in hex.
fn task_hash(route: &str, id: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(route.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Make the task's row in the tasks bucket unreadable (written torn, say).
async fn tear_the_task_row(nats: &NatsCluster, route: &str, id: &str) {
    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let kv = js.get_key_value("hr_tasks").await.unwrap();
    kv.put(
        format!("t.{}", task_hash(route, id)),
        bytes::Bytes::from_static(b"\xff\xff"),
    )
    .await
    .unwrap();
}

/// A task row that does not decode (written torn, say) failed its
/// registration and every poll's update in cluster mode (the embedded store
/// replaces it, `reconcile_durable`): its work message came back after every
/// `takeover`, polled each time and never recorded. Now the poll's outcome
/// goes on a fresh row, and a registration over a torn row registers the
/// task again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_task_row_is_still_polled_and_registered_again_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(&relay(dir.path(), &nats, &fake, &sub)).await;
    // Still running at the provider, and no callback comes.
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    fake.wait_until("a first poll", secs(10), |f| f.status_requests(&id) > 0)
        .await;
    tear_the_task_row(&nats, "runway", &id).await;
    let polled = fake.status_requests(&id);
    // Unreadable: not shown (404) until a poll replaces the row.
    let end = tokio::time::Instant::now() + secs(15);
    let t = loop {
        let (s, t) = admin(h.admin_addr, "GET", &format!("/api/tasks/{id}")).await;
        let replaced = s == StatusCode::OK && t["state"] == "polling" && fake.status_requests(&id) > polled;
        if replaced || tokio::time::Instant::now() > end {
            break t;
        }
        tokio::time::sleep(ms(100)).await;
    };
    assert!(fake.status_requests(&id) > polled, "never polled again: {t}");
    assert_eq!(t["state"], "polling", "the poll is recorded on a readable row: {t}");
    // The poll after goes on as usual (the fresh row names the work message).
    let now = fake.status_requests(&id);
    fake.wait_until("a poll after", secs(10), |f| f.status_requests(&id) > now)
        .await;

    // A registration over a torn row registers the task again.
    let (s, v) = register(h.admin_addr, "runway", "T2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tear_the_task_row(&nats, "runway", "T2").await;
    let (s, v) = register(h.admin_addr, "runway", "T2").await;
    assert_eq!(s, StatusCode::OK, "registered over a torn row: {v}");
    task(h.admin_addr, "T2").await;
    h.shutdown().await;
}

/// While NATS is away the task figures cannot be read: their series are left
/// out of `/metrics` (as `hookrelay_oldest_pending_seconds` is), not kept at
/// their last value, which would hide an open task's growing age from an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_gauges_are_absent_not_stale_while_nats_is_away() {
    const OLDEST: &str = "hookrelay_tasks_oldest_open_seconds";
    let mut nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(&relay(dir.path(), &nats, &fake, &sub)).await;
    // A task whose stages move only by hand: it stays open (waiting, or
    // polling once its route polls it) while the test runs.
    fake.plan_next(TaskPlan::success().manual());
    submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let open = |m: &[(String, f64)]| {
        let of = |state: &str| {
            m.iter()
                .find(|(k, _)| *k == format!("hookrelay_tasks{{state=\"{state}\"}}"))
                .map_or(0.0, |(_, v)| *v)
        };
        m.iter().any(|(k, v)| k == OLDEST && *v >= 1.0) && of("waiting") + of("polling") == 1.0
    };
    metrics_until(h.admin_addr, secs(10), "the open task's age", open).await;
    nats.kill9(0);
    let down = |m: &[(String, f64)]| sample(m, "hookrelay_ready") == 0.0;
    let m = metrics_until(h.admin_addr, secs(10), "not ready without NATS", down).await;
    assert!(
        m.iter().all(|(k, _)| k != OLDEST && !k.starts_with("hookrelay_tasks{")),
        "no task figures while NATS cannot say them: {m:?}"
    );
    nats.restart(0).await;
    metrics_until(h.admin_addr, secs(20), "the task figures back with NATS", open).await;
    h.shutdown().await;
}

/// In cluster mode too, a task registered after its final callback was
/// stored is `called_back` at once, never polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_registered_after_its_callback_is_called_back_not_waiting() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    a_task_registered_after_its_callback_is_called_back(relay(dir.path(), &nats, &fake, &sub), &fake, &sub).await;
}

/// …also on a route whose own `dedupe_key` is the task id alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_registered_after_its_callback_is_called_back_with_the_routes_own_dedupe_key() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).dedupe_key(["/data/task_id"]);
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    a_task_registered_after_its_callback_is_called_back(cfg.nats(nats.urls(), 1), &fake, &sub).await;
}

/// Cluster mode: on a `verify = "fetch"` route a forged final callback sent
/// first does not make the genuine one a duplicate (the dedupe key is
/// JetStream's there; see `duplicates` for the single-node store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_verify_route_a_forged_callback_sent_first_does_not_make_the_genuine_one_a_duplicate_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    crate::duplicates::forged_final_callback_first(Some(&nats), false).await;
}

/// Cluster mode: a duplicate replayed with all dead letters after a restart
/// stays a duplicate (which event of a key went is read from JetStream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_replayed_with_all_dead_letters_after_a_restart_stays_a_duplicate_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    crate::duplicates::duplicate_replayed_after_a_restart(Some(&nats)).await;
}

/// Cluster mode: a task whose only callback was forged (held unverified on
/// a `verify = "fetch"` route) ends `recovered` by its poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_callback_does_not_settle_the_task_it_names_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    crate::reconcile_outcomes::unverified_callback_first(Some(&nats)).await;
}

/// The submit proxy: a task the provider created (and bills) but the store
/// cannot record as expected (NATS gone between the create call and its
/// answer) is answered with the provider's answer and `hookrelay-task-state:
/// unregistered` after the registration's tries, so the caller knows to
/// register it; it was the same `200` with no sign at all (a lost callback
/// then never recovered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_task_the_store_cannot_record_is_answered_as_unregistered() {
    let mut nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(&relay(dir.path(), &nats, &fake, &sub)).await;
    fake.hold_creates();
    let call = common::tasks::submit_in_background(h.admin_addr);
    fake.wait_until("the create call", secs(10), |f| f.create_requests() == 1)
        .await;
    nats.kill9(0);
    fake.release_creates();
    let (s, headers, body) = call.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["data"]["taskId"].is_string(), "the provider's answer: {v}");
    assert_eq!(
        headers.get("hookrelay-task-state").map(|v| v.to_str().unwrap()),
        Some("unregistered")
    );
    h.shutdown().await;
}
