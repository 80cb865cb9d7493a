//! Never miss a result: tasks submitted through the submit proxy whose
//! callbacks the fake provider loses are recovered by polling and delivered
//! once, marked `hookrelay-source: poll`; a late callback for a recovered
//! task and a poll after a delivered callback are both duplicates.

use crate::common;

use std::collections::HashMap;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{
    a_task_from_before_reconcile_is_polled_once_it_is_added, a_task_registered_after_its_callback_is_called_back,
    register, submit, submit_ok, task, task_list, task_route, task_until, tasks_config,
};
use common::*;
use hookrelay::provider::Product;
use serde_json::Value;

fn task_of(r: &Received) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["data"]["task_id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn twenty_submitted_five_lost_every_result_delivered_once() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    assert_eq!(h.ingest_addrs[0], addr);
    let mut lost = Vec::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let plan = if i % 4 == 1 {
            TaskPlan::success().lose()
        } else {
            TaskPlan::success()
        };
        let lose = plan.knobs.lose;
        fake.plan_next(plan);
        let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
        if lose {
            lost.push(id.clone());
        }
        ids.push(id);
    }
    assert_eq!(lost.len(), 5);
    // The proxy sent the provider key (else the fake answers code 401) and the relay's public route.
    let creates: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(creates.len(), 20);
    for c in &creates {
        assert_eq!(c.code, 200, "{c:?}");
        assert_eq!(
            c.body.as_ref().unwrap()["callBackUrl"],
            format!("http://{addr}/hooks/runway")
        );
        assert_eq!(c.body.as_ref().unwrap()["prompt"], "a cat");
    }
    sub.wait_for(secs(20), "20 results", |all| {
        all.iter().map(task_of).collect::<std::collections::HashSet<_>>().len() == 20
    })
    .await;
    tokio::time::sleep(ms(800)).await;
    let all = sub.all();
    assert_eq!(all.len(), 20, "exactly one delivery per task");
    let by_task: HashMap<String, &Received> = all.iter().map(|r| (task_of(r), r)).collect();
    for id in &ids {
        let r = by_task[id];
        let polled = lost.contains(id);
        assert_eq!(
            r.header("hookrelay-source"),
            if polled { "poll" } else { "" },
            "task {id}"
        );
    }
    assert_eq!(task_list(h.admin_addr, "state=recovered").await.len(), 5);
    assert_eq!(
        task_list(h.admin_addr, "state=called_back&route=runway").await.len(),
        15
    );
    for id in &lost {
        let t = task(h.admin_addr, id).await;
        assert_eq!(t["state"], "recovered");
        let ev = event_view(h.admin_addr, t["event"].as_str().unwrap()).await;
        assert_eq!(ev["origin"], "poll");
        assert_eq!(ev["task"]["state"], "recovered");
    }
    let m = metrics(h.admin_addr).await;
    assert_eq!(sample(&m, "hookrelay_tasks{state=\"recovered\"}"), 5.0);
    assert_eq!(sample(&m, "hookrelay_tasks{state=\"called_back\"}"), 15.0);
    assert_eq!(sample(&m, "hookrelay_tasks_oldest_open_seconds"), 0.0);
    assert!(sample(&m, "hookrelay_task_polls_total{route=\"runway\",result=\"terminal\"}") >= 5.0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_late_callback_after_recovery_is_a_duplicate() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    fake.plan_next(TaskPlan::success().late(secs(3)));
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let t = task_until(h.admin_addr, &id, "recovered", secs(10)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    fake.wait_until("the late callback", secs(10), |f| {
        f.callbacks(&id).iter().any(|c| c.delivered())
    })
    .await;
    tokio::time::sleep(ms(500)).await;
    assert_eq!(sub.count(), 1, "the late callback was not delivered again");
    assert_eq!(sub.all()[0].header("hookrelay-source"), "poll");
    assert_eq!(task(h.admin_addr, &id).await["state"], "recovered");
    let m = metrics(h.admin_addr).await;
    assert_eq!(sample(&m, "hookrelay_dedupe_hits_total{route=\"runway\"}"), 1.0);
    // The CLI shows it too.
    let admin_url = format!("http://{}", h.admin_addr);
    let (ok, out, err) = cli_async(vec![
        "tasks".into(),
        "--admin".into(),
        admin_url.clone(),
        "--state".into(),
        "recovered".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("recovered") && out.starts_with("TASK"),
        "{out}"
    );
    let (ok, out, err) = cli_async(vec![
        "tasks".into(),
        id.clone(),
        "--admin".into(),
        admin_url,
        "--json".into(),
    ])
    .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (shown["task_id"].as_str(), shown["state"].as_str()),
        (Some(id.as_str()), Some("recovered"))
    );
    h.shutdown().await;
}

/// A task registered after its callback was delivered is settled by that
/// callback at once: it is not polled, and nothing more is delivered.
#[tokio::test]
async fn a_task_registered_after_its_delivered_callback_creates_nothing() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    // Created elsewhere; its callback is delivered before anyone registers it.
    let id = fake.create(
        Product::Runway,
        TaskPlan::success(),
        Some(&format!("http://{addr}/hooks/runway")),
    );
    sub.wait_for(secs(10), "the callback", |all| all.len() == 1).await;
    let (s, t) = register(h.admin_addr, "runway", &id).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["state"], "called_back", "settled by the stored callback: {t}");
    let ev = event_view(h.admin_addr, t["event"].as_str().unwrap()).await;
    assert_eq!(ev["origin"], "callback", "the task is settled by the callback's event");
    tokio::time::sleep(ms(800)).await;
    assert_eq!(fake.status_requests(&id), 0, "a settled task is not polled");
    assert_eq!(sub.count(), 1, "nothing more delivered");
    h.shutdown().await;
}

#[tokio::test]
async fn a_task_registered_before_reconcile_was_added_is_polled_after_a_reload() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    a_task_from_before_reconcile_is_polled_once_it_is_added(cfg, &fake, &sub).await;
}

/// The submit proxy reads the route before it calls the provider, which can
/// take seconds; a reload that adds `reconcile` meanwhile (the reconciler
/// schedules the route's tasks at once, before this one exists) must still
/// see the task polled.
#[tokio::test]
async fn a_task_submitted_while_a_reload_adds_reconcile_is_polled() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (reconciling, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&reconciling.clone().edit_route("runway", Route::without_reconcile)).await;
    fake.hold_creates();
    fake.plan_next(TaskPlan::success().lose());
    let admin_addr = h.admin_addr;
    let submitting = tokio::spawn(async move { submit_ok(admin_addr, "runway", "/api/v1/runway/generate").await });
    fake.wait_until("the create request", secs(5), |f| f.create_requests() == 1)
        .await;
    reconciling.write();
    h.reload().await.unwrap();
    // No sign tells when the reconciler has looked at the route (it does
    // within a second of the reload): give it that second and a half.
    tokio::time::sleep(ms(1500)).await;
    fake.release_creates();
    let id = submitting.await.unwrap();
    let t = task_until(h.admin_addr, &id, "recovered", secs(10)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    h.shutdown().await;
}

#[tokio::test]
async fn an_unfinished_task_is_given_up() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(ms(200), ms(200), ms(1500)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let t = task_until(h.admin_addr, &id, "polling", secs(5)).await;
    assert_eq!(t["state"], "polling", "{t}");
    assert_eq!(t["provider_state"], "wait");
    let t = task_until(h.admin_addr, &id, "gave_up", secs(5)).await;
    assert_eq!(t["state"], "gave_up", "{t}");
    assert!(t["last_error"].as_str().unwrap().contains("give_up"), "{t}");
    let polls = fake.status_requests(&id);
    assert!(polls >= 3, "{polls}");
    tokio::time::sleep(ms(600)).await;
    assert_eq!(fake.status_requests(&id), polls, "no polls after giving up");
    assert_eq!(sub.count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_rate_limit_storm_slows_polling_instead_of_failing_the_task() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(ms(100), ms(100), secs(60)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    fake.plan_next(TaskPlan::success().lose());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    fake.rate_limit(2);
    let t0 = tokio::time::Instant::now();
    let t = task_until(h.admin_addr, &id, "recovered", secs(20)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    // 429, pause 2 s; 429, pause 4 s; then the record. Polling every 100 ms
    // without the pause would have sent ~60 requests in that time.
    assert!(t0.elapsed() >= ms(5500), "{:?}", t0.elapsed());
    assert!(fake.status_requests(&id) <= 4, "{}", fake.status_requests(&id));
    sub.wait_for(secs(5), "the recovered result", |all| all.len() == 1)
        .await;
    let m = metrics(h.admin_addr).await;
    assert!(
        sample(
            &m,
            "hookrelay_task_polls_total{route=\"runway\",result=\"rate_limited\"}"
        ) >= 2.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn the_submit_proxy_refuses_what_it_must_not_forward() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    let body = serde_json::json!({"prompt": "x"});
    let (s, _, b) = submit(h.admin_addr, "runway", "/api/v1/chat/credit", &body).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("/api/v1/runway/generate"));
    let (s, _, _) = submit(h.admin_addr, "nope", "/api/v1/runway/generate", &body).await;
    assert_eq!(s, 404);
    // The provider refuses a create: its answer comes back unchanged, no task is expected.
    let (s, _, b) = request(
        h.admin_addr,
        None,
        "POST",
        "/api/routes/runway/submit?endpoint=/api/v1/runway/generate",
        &[("content-type", "application/json")],
        bytes::Bytes::from_static(b"[1]"),
    )
    .await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    assert!(fake.requests().is_empty(), "nothing was forwarded");
    assert!(task_list(h.admin_addr, "").await.is_empty());
    h.shutdown().await;
}

/// A task registered after its final callback was stored (a fast failure
/// callback beats the submit proxy's registration, or a late
/// `POST /api/tasks`) is `called_back` at once, not polled for a result the
/// relay already has; the same without `reconcile`.
#[tokio::test]
async fn a_task_registered_after_its_callback_is_called_back_not_waiting() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    for reconcile in [true, false] {
        let sub = Sub::ok().await;
        let dir = tempfile::tempdir().unwrap();
        let mut route = task_route("runway", "kie-runway", &fake, &sub.url());
        if !reconcile {
            route = route.without_reconcile();
        }
        let (cfg, _) = tasks_config(dir.path(), vec![route]);
        a_task_registered_after_its_callback_is_called_back(cfg, &fake, &sub).await;
    }
}

/// The same on a route whose own `dedupe_key` replaces the preset's with the
/// task id alone: registration finds the stored final callback by that key.
#[tokio::test]
async fn a_task_registered_after_its_callback_is_called_back_with_the_routes_own_dedupe_key() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).dedupe_key(["/data/task_id"]);
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    a_task_registered_after_its_callback_is_called_back(cfg, &fake, &sub).await;
}

/// A polled result the store refuses because a reload changed the route's
/// topology since the poll read the config (the gap between registering
/// the new topology and swapping the config: up to 10 s of NATS set-up in
/// cluster mode; held open here by hand) is stored once more on the route
/// in force after the swap, also when the poll came at or after `give_up`:
/// the task is not given up with its result fetched and not stored (review
/// 41, finding 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_polled_while_a_reload_registers_is_stored_after_the_swap_not_given_up() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (a, b) = (Sub::ok().await, Sub::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let route = |sub: &str, url: &str| {
        use common::route::{Provider, Reconcile, Route};
        Route::new("runway", "/hooks/runway")
            .allow_anyone()
            .preset("kie-runway")
            .provider(Provider::new(fake.api_key(), &fake.url()))
            .reconcile(Reconcile::new(ms(200), ms(200), ms(1500)))
            .subscriber(Subscriber::new(sub, url))
    };
    let (cfg, addr) = tasks_config(dir.path(), vec![route("a", &a.url())]);
    let h = start(&cfg).await;
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    task_until(h.admin_addr, &id, "polling", secs(5)).await;

    // A reload replacing `a` by `b` has told the store, not yet swapped the config.
    common::tasks::config_at(dir.path(), addr, route("b", &b.url())).write();
    let new = hookrelay::config::Config::load(&h.app.live().config.file).unwrap();
    let pending = h.app.reload_begins();
    h.app
        .store
        .register(&hookrelay::store::Topology::of(&new))
        .await
        .unwrap();
    // The task ends; its polls, the last ones before and after give_up, are refused.
    fake.set_stage(&id, fake.stage_count(&id));
    tokio::time::sleep(ms(2000)).await;
    h.reload().await.expect("reload");
    drop(pending);

    let t = task_until(h.admin_addr, &id, "recovered", secs(10)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    b.wait_for(secs(10), "the recovered result", |r| r.len() == 1).await;
    assert_eq!(a.count(), 0);
    h.shutdown().await;
}

/// A create call whose caller goes away before the provider answers (a
/// client's short timeout, a service restarting) still has its task
/// recorded as expected: the provider created, and bills, it. Before, the
/// call was dropped with the caller's connection, and the task was never
/// recorded nor its id logged (tasks review, stop 71).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_after_its_caller_went_away_is_expected() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    fake.hold_creates();
    let caller = common::tasks::submit_in_background(h.admin_addr);
    fake.wait_until("the create call", secs(10), |f| f.create_requests() == 1)
        .await;
    // The caller gives up: its connection closes.
    caller.abort();
    let _ = caller.await;
    tokio::time::sleep(ms(300)).await;
    fake.release_creates();
    let deadline = tokio::time::Instant::now() + secs(10);
    let tasks = loop {
        let tasks = task_list(h.admin_addr, "").await;
        if !tasks.is_empty() || tokio::time::Instant::now() > deadline {
            break tasks;
        }
        tokio::time::sleep(ms(50)).await;
    };
    assert_eq!(tasks.len(), 1, "the created task is expected: {tasks:?}");
    h.shutdown().await;
}
