//! `verify = "fetch"`: a callback is checked against the provider's record
//! before fan-out. A forged body carrying a replayed valid `kie` signature
//! (the signature covers only `taskId.timestamp`) is accepted by ingest but
//! held as unverified, never delivered, until an operator replays it (to the
//! subscribers that replay queues it for, and only if it is accepted); a
//! genuine callback is delivered, and so is the Market's short callback
//! (`{code, msg, data: {taskId}}`), which claims only the outcome (a URL
//! added to it, or anywhere in a Market callback, must be the record's).

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{signed_verify_route, task_route, tasks_config};
use common::*;
use hookrelay::provider::Product;

#[tokio::test]
async fn a_forged_body_with_a_valid_signature_is_held_as_unverified() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = signed_verify_route(&fake, &sub.url());
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");

    // Genuine: the provider's own (signed) callback agrees with its record.
    let genuine = fake.create(Product::Runway, TaskPlan::success(), Some(&url));
    sub.wait_for(secs(10), "the genuine callback", |all| all.len() == 1)
        .await;
    assert!(fake.status_requests(&genuine) >= 1, "it was checked at the provider");

    // Forged: the task's real callback is lost; an attacker replays a valid
    // signature for the task with a body pointing at their own file.
    let id = forge_after_a_lost_callback(&fake, addr, &url).await;
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    let held = &view["subscribers"][0];
    assert_eq!(held["state"], "dead", "{view}");
    let why = held["last_error"].as_str().unwrap();
    assert!(why.starts_with("unverified: ") && why.contains("evil.example"), "{why}");
    tokio::time::sleep(ms(500)).await;
    assert_eq!(sub.count(), 1, "the forged body was not delivered");
    let m = metrics(h.admin_addr).await;
    assert_eq!(sample(&m, "hookrelay_unverified_total{route=\"runway\"}"), 1.0);

    // Replaying all dead letters does not release it: it is held again at
    // once, and not counted as a second unverified callback.
    let (_, before) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    let held_at = before["dead_letters"][0]["at"].clone();
    tokio::time::sleep(ms(5)).await; // a re-hold gets a later time
    let (s, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(s, 200);
    assert_eq!(v["requeued"], 1, "{v}");
    // Held again: the dead letter is back, with the time of the new hold.
    admin_expect(h.admin_addr, "/api/dead-letters", secs(10), "held again", |v| {
        v["dead_letters"][0]["event"] == id.as_str() && v["dead_letters"][0]["at"] != held_at
    })
    .await;
    assert_eq!(sub.count(), 1, "held again, not delivered");
    let m = metrics(h.admin_addr).await;
    assert_eq!(sample(&m, "hookrelay_unverified_total{route=\"runway\"}"), 1.0);

    // An operator who has looked at it can still let it through.
    let (s, _) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, 200);
    let got = sub.wait_for(secs(10), "the released event", |all| all.len() == 2).await;
    assert!(String::from_utf8_lossy(&got[1].body).contains("evil.example"));
    h.shutdown().await;
}

/// An operator's replay releases an unverified callback only when it is
/// accepted, and only to the subscribers it was queued for: a replay refused
/// with `404` (a misspelt subscriber) releases nothing, and a replay to one
/// subscriber does not release the event for the others. Otherwise a later
/// "replay all dead letters" (after an outage, say) delivers the forged body,
/// which the docs say is held again.
#[tokio::test]
async fn a_refused_replay_does_not_release_an_unverified_callback() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (sub, other) = (Sub::ok().await, Sub::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url())
        .subscriber(Subscriber::new("other", other.url()))
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    let id = forge_after_a_lost_callback(&fake, addr, &url).await;
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|s| s["state"] == "dead"))
    })
    .await;
    for held in view["subscribers"].as_array().unwrap() {
        assert!(
            held["last_error"].as_str().unwrap_or("").starts_with("unverified: "),
            "{view}"
        );
    }
    // When each subscriber's dead letter of the event was (last) held.
    let held_at = |v: &serde_json::Value, subscriber: &str| {
        v["dead_letters"]
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|d| d["event"] == id.as_str() && d["subscriber"] == subscriber)
            })
            .map(|d| d["at"].clone())
    };
    // Re-queue every dead letter, and wait until `subscribers` are held again.
    let replay_all_and_wait = |subscribers: &'static [&'static str]| {
        let (admin_addr, held_at) = (h.admin_addr, &held_at);
        async move {
            let (_, before) = admin(admin_addr, "GET", "/api/dead-letters").await;
            tokio::time::sleep(ms(5)).await; // a re-hold gets a later time
            let (s, v) = admin(admin_addr, "POST", "/api/dead-letters/replay").await;
            assert_eq!(s, 200, "{v}");
            admin_until(admin_addr, "/api/dead-letters", secs(5), |v| {
                subscribers
                    .iter()
                    .all(|s| held_at(v, s).is_some_and(|at| Some(at) != held_at(&before, s)))
            })
            .await;
            tokio::time::sleep(ms(500)).await;
        }
    };

    // A typo: refused, nothing replayed, nothing released.
    let (s, v) = admin(
        h.admin_addr,
        "POST",
        &format!("/api/events/{id}/replay?subscriber=typo"),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    // Later the operator re-queues the dead letters (say, after an outage).
    replay_all_and_wait(&["runway-sub", "other"]).await;
    assert_eq!(
        (sub.count(), other.count()),
        (0, 0),
        "the forged (unverified) callback was delivered after a refused replay"
    );

    // A replay to one subscriber delivers it there, and only there.
    let (s, v) = admin(
        h.admin_addr,
        "POST",
        &format!("/api/events/{id}/replay?subscriber=runway-sub"),
    )
    .await;
    assert_eq!(
        (s.as_u16(), &v["queued"]),
        (200, &serde_json::json!(["runway-sub"])),
        "{v}"
    );
    sub.wait_for(secs(10), "the released delivery", |all| all.len() == 1)
        .await;
    replay_all_and_wait(&["other"]).await;
    let (n, m) = (sub.count(), other.count());
    h.shutdown().await;
    assert_eq!(
        (n, m),
        (1, 0),
        "a replay to one subscriber released the forged callback for the other"
    );
}

/// A Runway task that finished at the provider but whose callback was lost,
/// and a callback for it forged by an attacker with a valid signature and a
/// body pointing at their own file, posted to `/hooks/runway`: the event's id.
pub(crate) async fn forge_after_a_lost_callback(fake: &FakeProvider, addr: std::net::SocketAddr, url: &str) -> String {
    let target = fake.create(Product::Runway, TaskPlan::success().lose(), Some(url));
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&target))
        .await;
    let mut forged = fake.final_callback(&target);
    forged["data"]["video_url"] = "https://evil.example/x.mp4".into();
    fake.post_signed(addr, "/hooks/runway", &target, &forged).await
}

#[tokio::test]
async fn the_markets_short_callback_is_delivered_a_result_it_does_not_have_is_held() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("market", "kie-market", &fake, &sub.url())
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    // The provider's own callbacks are lost; each test body stands in for one.
    let ok = fake.create(Product::Market, TaskPlan::success().lose(), None);
    let failed = fake.create(Product::Market, TaskPlan::failure(422, "nsfw").lose(), None);
    let forged = fake.create(Product::Market, TaskPlan::success().lose(), None);
    let forged_short = fake.create(Product::Market, TaskPlan::success().lose(), None);
    fake.wait_until("the tasks to finish", secs(5), |f| {
        [&ok, &failed, &forged, &forged_short].iter().all(|t| f.is_finished(t))
    })
    .await;

    // The documented short form (`code` 200, only the task id): the record
    // has the result URLs, the callback claims no more than the success.
    let short = serde_json::json!({"code": 200, "msg": "success", "data": {"taskId": ok}});
    fake.post_signed(addr, "/hooks/market", &ok, &short).await;
    let got = sub
        .wait_for(secs(10), "the short success callback", |all| all.len() == 1)
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got[0].body).unwrap(),
        short
    );
    assert!(fake.status_requests(&ok) >= 1, "it was checked at the provider");

    // Its failure form (`code` 501, no failCode) agrees with a failed record.
    let short_fail = serde_json::json!({"code": 501, "msg": "failed", "data": {"taskId": failed}});
    fake.post_signed(addr, "/hooks/market", &failed, &short_fail).await;
    sub.wait_for(secs(10), "the short failure callback", |all| all.len() == 2)
        .await;

    // A result that names a URL the record does not have is still held.
    let mut body = fake.final_callback(&forged);
    body["data"]["resultJson"] = serde_json::json!({"resultUrls": ["https://evil.example/x.mp4"]})
        .to_string()
        .into();
    let id = fake.post_signed(addr, "/hooks/market", &forged, &body).await;
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    let why = view["subscribers"][0]["last_error"].as_str().unwrap();
    assert!(why.starts_with("unverified: ") && why.contains("evil.example"), "{why}");

    // The short form with a result of its own beside the task id is held too.
    let body = serde_json::json!({"code": 200, "msg": "success",
        "data": {"taskId": forged_short, "resultUrls": ["https://evil.example/short.mp4"]}});
    let id = fake.post_signed(addr, "/hooks/market", &forged_short, &body).await;
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    let why = view["subscribers"][0]["last_error"].as_str().unwrap();
    assert!(
        why.starts_with("unverified: ") && why.contains("evil.example/short"),
        "{why}"
    );
    tokio::time::sleep(ms(300)).await;
    assert_eq!(sub.count(), 2, "the forged results were not delivered");
    let m = metrics(h.admin_addr).await;
    assert_eq!(sample(&m, "hookrelay_unverified_total{route=\"market\"}"), 2.0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_provider_that_cannot_answer_delays_the_delivery_never_drops_it() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    // The verifier's first status call gets a 429: the whole key pauses 2 s.
    fake.rate_limit(1);
    let t0 = tokio::time::Instant::now();
    let id = fake.create(
        Product::Runway,
        TaskPlan::success(),
        Some(&format!("http://{addr}/hooks/runway")),
    );
    let got = sub
        .wait_for(secs(15), "the verified callback", |all| all.len() == 1)
        .await;
    assert!(t0.elapsed() >= ms(1900), "{:?}", t0.elapsed());
    assert_eq!(fake.status_requests(&id), 2, "asked again after the pause");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, fake.final_callback(&id));
    tokio::time::sleep(ms(300)).await;
    assert_eq!(sub.count(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn verify_and_reconcile_need_a_preset_and_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg =
        TestConfig::new(dir.path()).edit_route("t", |r| r.subscriber(Subscriber::new("s", sub.url())).verify("fetch"));
    let err = hookrelay::Config::load(&cfg.write()).unwrap_err().to_string();
    assert!(err.contains("routes[0].verify") && err.contains("preset"), "{err}");
    let cfg = TestConfig::new(dir.path()).edit_route("t", |r| {
        r.subscriber(Subscriber::new("s", sub.url()))
            .preset("kie-runway")
            .reconcile(Reconcile::new(secs(60), secs(30), secs(3600)))
    });
    let err = hookrelay::Config::load(&cfg.write()).unwrap_err().to_string();
    assert!(err.contains("routes[0].reconcile") && err.contains("provider"), "{err}");
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let cfg = TestConfig::new(dir.path()).edit_route("t", |r| {
        r.subscriber(Subscriber::new("s", sub.url()))
            .preset("kie-runway")
            .provider(common::route::Provider::new(fake.api_key(), &fake.url()))
            .reconcile(Reconcile::new(secs(60), secs(30), secs(30)))
    });
    let err = hookrelay::Config::load(&cfg.write()).unwrap_err().to_string();
    assert!(err.contains("routes[0].reconcile.give_up"), "{err}");
    let cfg = TestConfig::new(dir.path()).edit_route("t", |r| {
        r.subscriber(Subscriber::new("s", sub.url()))
            .preset("kie-runway")
            .provider(common::route::Provider::new(fake.api_key(), &fake.url()))
            .reconcile(Reconcile::new(secs(60), secs(30), secs(3600)))
    });
    let err = hookrelay::Config::load(&cfg.write()).unwrap_err().to_string();
    assert!(err.contains("server.public_url"), "{err}");
}

/// A replay releases every delivery it queues, also one that was waiting
/// for a later retry (the provider's record had not caught up at its check)
/// while the verdict was settled through another subscriber: it answers
/// `queued: [that subscriber]` and delivers there, rather than holding it
/// again as unverified at once. From review 26, finding 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_queues_a_delivery_waiting_on_the_provider_releases_it() {
    const TOKEN: &str = "review26-pull-token";
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let a = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = verified_pull(
        task_route("runway", "kie-runway", &fake, &a.url()).without_reconcile(),
        TOKEN,
    );
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    // A task still running at the provider; its callback forged ahead of it.
    let target = fake.create(Product::Runway, TaskPlan::success().manual().lose(), Some(&url));
    let mut forged = fake.final_callback(&target);
    forged["data"]["video_url"] = "https://evil.example/x.mp4".into();
    let id = fake.post_signed(addr, "/hooks/runway", &target, &forged).await;
    // The push subscriber's check finds the record behind: it waits (10 s).
    let t0 = std::time::Instant::now();
    while fake.status_requests(&target) < 1 {
        assert!(t0.elapsed() < secs(10), "the push delivery was never checked");
        tokio::time::sleep(ms(20)).await;
    }
    tokio::time::sleep(ms(200)).await;
    // The task ends; the pull subscriber's check settles the verdict: held.
    fake.set_stage(&target, fake.stage_count(&target));
    let (s, _, got) = pull_call(addr, "GET", "/pull/b?wait=1s", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(s, 200, "{got}");
    let state = |v: &serde_json::Value, name: &str| {
        v["subscribers"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name || s["subscriber"] == name).cloned())
            .unwrap_or_default()
    };
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        state(v, "b")["state"] == "dead"
    })
    .await;
    assert_eq!(state(&view, "b")["state"], "dead", "{view}");
    assert_ne!(
        state(&view, "runway-sub")["state"],
        "dead",
        "still waiting on the provider: {view}"
    );
    // The operator has looked at it and replays the event to everyone.
    let (s, replay) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, 200, "{replay}");
    let queued: Vec<&str> = replay["queued"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(queued.contains(&"runway-sub"), "{replay}");
    let delivered = tokio::time::timeout(secs(5), async {
        while a.count() == 0 {
            tokio::time::sleep(ms(50)).await;
        }
    })
    .await
    .is_ok();
    let (_, after) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    h.shutdown().await;
    assert!(
        delivered,
        "the replay answered {replay} (queued to runway-sub) but did not release it: held again: {}",
        state(&after, "runway-sub")
    );
}

/// A pull subscriber's lane checks the messages of one fill against the
/// provider's record at once, not one after another: a provider slow to
/// answer holds the lane (its long-polls, its acknowledgements) for one
/// answer's time, not one per message. Held here until four lookups wait
/// together; one after another, only one ever waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_lane_checks_its_messages_against_the_provider_at_once() {
    const TOKEN: &str = "verify-at-once-pull-token";
    const TASKS: usize = 4;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let route = common::route::Route::new("runway", "/hooks/runway")
        .allow_anyone()
        .preset("kie-runway")
        .provider(common::route::Provider::new(fake.api_key(), &fake.url()));
    let route = verified_pull(route, TOKEN);
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    fake.hold_status();
    for _ in 0..TASKS {
        let task = fake.create(Product::Runway, TaskPlan::success().manual().lose(), Some(&url));
        fake.set_stage(&task, fake.stage_count(&task));
        let body = fake.final_callback(&task);
        fake.post_signed(addr, "/hooks/runway", &task, &body).await;
    }
    let pull =
        tokio::spawn(
            async move { pull_call(addr, "GET", "/pull/b?wait=20s&max=10", Some(TOKEN), Some("f1"), "").await },
        );
    let t0 = std::time::Instant::now();
    while fake.status_held() < TASKS {
        assert!(
            t0.elapsed() < secs(10),
            "{} lookup(s) waiting at once, not {TASKS}",
            fake.status_held()
        );
        tokio::time::sleep(ms(20)).await;
    }
    fake.release_status();
    let (s, _, got) = pull.await.unwrap();
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(TASKS), "{got}");
    h.shutdown().await;
}

/// A callback held as unverified is not a delivery outcome, for a pull
/// subscriber as for a push one: no `hookrelay_deliveries_total{outcome="dead"}`
/// and no "delivery gave up" (the pull lane counted the verifier's holds as
/// dead deliveries and its waits as retries, so an alert on dead deliveries
/// fired for pull subscribers only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_callback_counts_as_no_delivery_for_pull_and_push_alike() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url());
    const TOKEN: &str = "held-count-pull-token";
    let (cfg, addr) = tasks_config(dir.path(), vec![verified_pull(route, TOKEN)]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    let id = forge_after_a_lost_callback(&fake, addr, &url).await;
    // The pull lane checks its messages when a forwarder asks: nothing to hand out.
    let (s, _, got) = pull_call(addr, "GET", "/pull/b?wait=1s&max=10", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(
        (s.as_u16(), got["messages"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{got}"
    );
    admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|s| s["state"] == "dead"))
    })
    .await;
    let m = metrics(h.admin_addr).await;
    let counted: Vec<_> = m
        .iter()
        .filter(|(k, _)| k.starts_with("hookrelay_deliveries_total{") && k.contains("outcome=\"dead\""))
        .collect();
    assert!(counted.is_empty(), "held, yet counted as deliveries: {counted:?}");
    assert_eq!(sample(&m, "hookrelay_unverified_total{route=\"runway\"}"), 1.0);
    h.shutdown().await;
}

/// `route` with a pull subscriber `b` (`token`), checking the kie signature
/// and verifying each callback against the provider's record.
fn verified_pull(route: common::route::Route, token: &str) -> common::route::Route {
    route
        .subscriber(Subscriber::pull("b", token))
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch")
}

/// A verifying route (provider key `key`) with four subscribers, the
/// provider holding its status look-ups; one callback of a finished task
/// posted, and time given for every lane to get to it once a look-up waits.
struct FourChecks {
    fake: FakeProvider,
    subs: [Sub; 4],
    h: hookrelay::Handle,
    task: String,
    _dir: tempfile::TempDir,
}

async fn four_checks_of_one_event(key: Option<&str>) -> FourChecks {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let subs = [Sub::ok().await, Sub::ok().await, Sub::ok().await, Sub::ok().await];
    let dir = tempfile::tempdir().unwrap();
    let key = key.unwrap_or(fake.api_key()).to_string();
    let mut route = common::route::Route::new("runway", "/hooks/runway")
        .allow_anyone()
        .preset("kie-runway")
        .provider(common::route::Provider::new(key.as_str(), &fake.url()))
        .verify("fetch");
    for (i, s) in subs.iter().enumerate() {
        route = route.subscriber(Subscriber::new(&format!("s{i}"), s.url()));
    }
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    fake.hold_status();
    let task = fake.create(Product::Runway, TaskPlan::success().manual().lose(), Some(&url));
    fake.set_stage(&task, fake.stage_count(&task));
    fake.post_signed(addr, "/hooks/runway", &task, &fake.final_callback(&task))
        .await;
    let t0 = std::time::Instant::now();
    while fake.status_held() == 0 {
        assert!(t0.elapsed() < secs(10), "no look-up asked");
        tokio::time::sleep(ms(20)).await;
    }
    // Every lane has had time to get to the event (each asked before).
    tokio::time::sleep(ms(1500)).await;
    FourChecks {
        fake,
        subs,
        h,
        task,
        _dir: dir,
    }
}

/// The subscribers of one event on a verifying route cost one look-up: the
/// lanes checking it together wait for the one asked, not ask each (161
/// look-ups for 60 events with four subscribers, the route drained at the
/// provider's pace for status calls: combined-features review, stop 73).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscribers_of_one_event_cost_one_look_up() {
    let t = four_checks_of_one_event(None).await;
    assert_eq!(t.fake.status_held(), 1, "look-ups asked at once for one event");
    t.fake.release_status();
    for s in &t.subs {
        s.wait_for(secs(10), "the verified callback", |r| r.len() == 1).await;
    }
    assert_eq!(t.fake.status_requests(&t.task), 1);
    t.h.shutdown().await;
}

/// The same when the look-up fails (here the provider refuses the key):
/// the checks waiting for it take its error, not ask in turn one after
/// another (a provider timing out held four subscribers for four timeouts;
/// review of the change, stop 73).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_look_up_answers_the_checks_that_waited_for_it() {
    let t = four_checks_of_one_event(Some("not-the-fakes-key")).await;
    t.fake.release_status();
    // Refused, each check waits 10 s before asking again: what is asked
    // now is what the first round asked.
    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        t.fake.status_requests(&t.task),
        1,
        "look-ups for one event whose look-up failed"
    );
    assert!(t.subs.iter().all(|s| s.count() == 0));
    t.h.shutdown().await;
}
