//! A route whose `verify = "fetch"` a reload turns off (combined-features
//! review, stop 73): what verification had held or kept apart stays so. A
//! replay of all dead letters leaves its verdicts (`unverified:`,
//! `duplicate:`) dead, as no check would hold them again (it sent a forged
//! body); the callbacks contesting one dedupe key, stored as events of their
//! own while the route verified, are still delivered one to a key (two
//! bodies of one task were both delivered).

use crate::common;

use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::route::Signature;
use common::tasks::{config_at, signed_verify_route, task_route, tasks_config, verifying};
use common::*;
use hookrelay::provider::Product;
use serde_json::json;

#[tokio::test]
async fn a_replay_of_all_dead_letters_leaves_an_unverified_callback_once_verify_is_off() {
    unverified_left_by_a_replay_of_all(None).await;
}

/// The same in cluster mode.
#[tokio::test]
async fn a_replay_of_all_dead_letters_leaves_it_in_cluster_mode_too() {
    let nats = NatsCluster::start(1).await;
    unverified_left_by_a_replay_of_all(Some(&nats)).await;
}

async fn unverified_left_by_a_replay_of_all(nats: Option<&NatsCluster>) {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let with_store = |c: TestConfig| match nats {
        Some(n) => c.nats(n.urls(), 1),
        None => c,
    };
    let (cfg, addr) = tasks_config(dir.path(), vec![signed_verify_route(&fake, &sub.url())]);
    let h = start(&with_store(cfg)).await;
    let url = format!("http://{addr}/hooks/runway");
    let id = crate::verify_fetch::forge_after_a_lost_callback(&fake, addr, &url).await;
    let path = format!("/api/events/{id}");
    admin_expect(h.admin_addr, &path, secs(20), "held as unverified", |v| {
        v["subscribers"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unverified: "))
    })
    .await;

    // The operator turns verification off (the provider's status API is down, say).
    let unchecked = task_route("runway", "kie-runway", &fake, &sub.url()).signature(Signature::kie("fake-hmac-key"));
    with_store(config_at(dir.path(), addr, unchecked)).write();
    h.reload().await.expect("reload");

    let (s, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((&v["requeued"], &v["verdicts_left"]), (&json!(0), &json!(1)), "{v}");
    assert!(
        v["warning"]
            .as_str()
            .is_some_and(|w| w.contains("replay an event itself")),
        "{v}"
    );
    tokio::time::sleep(ms(1500)).await;
    assert_eq!(
        sub.count(),
        0,
        "the forged body was sent by a replay of all dead letters"
    );
    let (_, letters) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(
        letters["dead_letters"][0]["event"],
        id.as_str(),
        "still listed: {letters}"
    );

    // The event's own replay is the operator's word: it is sent.
    let (s, _) = admin(h.admin_addr, "POST", &format!("{path}/replay")).await;
    assert_eq!(s, 200);
    let got = sub.wait_for(secs(20), "the released event", |all| all.len() == 1).await;
    assert!(String::from_utf8_lossy(&got[0].body).contains("evil.example"));
    h.shutdown().await;
}

/// A Market route verifying callbacks, its provider's look-ups refused for
/// now (429), a stranger's short form then the genuine final callback of
/// one task: both wait for their check, stored apart. Verification turned
/// off, one of them is delivered, the other is a `duplicate:` dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_kept_apart_for_their_check_are_delivered_one_to_a_key_once_verify_is_off() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = |verify: bool| verifying(task_route("market", "kie-market", &fake, &sub.url()), verify);
    let (cfg, addr) = tasks_config(dir.path(), vec![route(true)]);
    let h = start(&cfg).await;
    let task = fake.create(Product::Market, TaskPlan::success(), None);
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&task))
        .await;
    fake.rate_limit(1_000_000);
    let short = json!({"code": 200, "msg": "done (a stranger's)", "data": {"taskId": task}});
    let owner = callback_ok(addr, "/hooks/market", &short).await;
    let genuine = callback_ok(addr, "/hooks/market", &fake.final_callback(&task)).await;
    assert_eq!(
        (&owner["duplicate"], &genuine["duplicate"]),
        (&json!(false), &json!(false)),
        "stored apart: {owner} {genuine}"
    );
    fake.wait_until("both look-ups to be refused", secs(10), |f| {
        f.status_requests(&task) >= 2
    })
    .await;
    assert_eq!(sub.count(), 0, "delivered before it was checked");

    config_at(dir.path(), addr, route(false)).write();
    h.reload().await.expect("reload");
    let dead = admin_until(h.admin_addr, "/api/dead-letters", secs(30), |v| {
        v.to_string().contains("duplicate: ")
    })
    .await;
    sub.wait_for(secs(30), "one of them", |all| !all.is_empty()).await;
    drained(h.admin_addr, "market-sub").await;
    let got = sub.all();
    h.shutdown().await;
    assert_eq!(got.len(), 1, "one task, one success: {} delivered", got.len());
    assert!(dead.to_string().contains("no longer"), "{dead}");
}

/// The short form of a task still running waits for the provider's record
/// (asked again after `LAGGING`, 10 s); the genuine final callback, stored
/// apart, agrees and is delivered. A reload turns verification off before
/// the short form's second look: it is a duplicate, not a second delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_waiting_for_its_check_is_a_duplicate_once_verify_is_off() {
    owner_waiting_for_its_check(false).await;
}

/// The same with a restart after the reload: the callback's mark says it
/// was stored while the route verified (the relay's memory of the reload
/// is gone; the review of stop 74's mend: it was delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_waiting_for_its_check_is_a_duplicate_after_a_restart_too() {
    owner_waiting_for_its_check(true).await;
}

async fn owner_waiting_for_its_check(restart: bool) {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = |verify: bool| verifying(task_route("market", "kie-market", &fake, &sub.url()), verify);
    let (cfg, addr) = tasks_config(dir.path(), vec![route(true)]);
    let mut h = start(&cfg).await;
    let task = fake.create(Product::Market, TaskPlan::success().step(secs(2)), None);
    let short = json!({"code": 200, "msg": "done (a stranger's)", "data": {"taskId": task}});
    callback_ok(addr, "/hooks/market", &short).await;
    fake.wait_until("the short form's look-up", secs(10), |f| f.status_requests(&task) >= 1)
        .await;
    fake.wait_until("the task to finish", secs(10), |f| f.is_finished(&task))
        .await;
    let genuine = callback_ok(addr, "/hooks/market", &fake.final_callback(&task)).await;
    assert_eq!(genuine["duplicate"], false, "stored apart: {genuine}");
    sub.wait_for(secs(10), "the genuine callback", |all| all.len() == 1)
        .await;

    let off = config_at(dir.path(), addr, route(false));
    off.write();
    h.reload().await.expect("reload");
    if restart {
        h.shutdown().await;
        h = start(&off).await;
    }
    let dead = admin_until(h.admin_addr, "/api/dead-letters", secs(30), |v| {
        v.to_string().contains("duplicate: ")
    })
    .await;
    drained(h.admin_addr, "market-sub").await;
    let got = sub.all();
    h.shutdown().await;
    assert_eq!(got.len(), 1, "one task, one success: {} delivered", got.len());
    assert!(dead.to_string().contains("duplicate: "), "{dead}");
}

/// A forged callback held as unverified for one subscriber, whose other
/// subscriber's lane had not reached it when a reload turned verification
/// off, is held for that one too: the verdict is the event's (review of
/// stop 74's mend: the second subscriber received the forged body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_held_for_one_subscriber_is_held_for_the_others_once_verify_is_off() {
    // Busy with the first callback while the forged one is checked for `a`.
    let HeldForA {
        fake,
        dir,
        addr,
        h,
        a,
        b,
        path,
    } = HeldForA::start(secs(6), None).await;
    config_at(dir.path(), addr, ab_route(&fake, &a, &b, false)).write();
    h.reload().await.expect("reload");
    let view = admin_until(h.admin_addr, &path, secs(20), |v| {
        v["subscribers"]
            .as_array()
            .is_some_and(|s| s.iter().all(|d| d["state"] != "pending" && d["state"] != "retrying"))
            && v.to_string().matches("unverified: ").count() >= 2
    })
    .await;
    drained(h.admin_addr, "b").await;
    let got = b.all();
    h.shutdown().await;
    let forged: Vec<_> = got
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("evil.example"))
        .collect();
    assert!(forged.is_empty(), "the forged body was sent to b: {view}");
    assert_eq!(
        view.to_string().matches("unverified: ").count(),
        2,
        "held for both: {view}"
    );
}

/// Forged callbacks held as unverified own their task's dedupe key and a
/// place beside it. Once a reload turns verification off, the genuine
/// callback coming then is not their duplicate: it is stored beside them,
/// delivered, and settles the task (reviews of stop 74's mend: answered as
/// a duplicate of the forgery, it was dropped, and the task read
/// `called_back`; then the second forgery's place settled the task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_genuine_callback_after_a_held_forgery_is_delivered_once_verify_is_off() {
    genuine_after_held_forgeries(None).await;
}

/// The same in cluster mode (its contest places: `contested::append_unchecked`
/// on the NATS store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_genuine_callback_after_a_held_forgery_is_delivered_in_cluster_mode_too() {
    let nats = NatsCluster::start(1).await;
    genuine_after_held_forgeries(Some(&nats)).await;
}

async fn genuine_after_held_forgeries(nats: Option<&NatsCluster>) {
    use common::tasks::task_until;
    let lost = common::tasks::LostTask::start_with(nats).await;
    // Two forgeries: the key's owner, and one stored beside it (its first
    // contest place), both held.
    let mut ids = Vec::new();
    for evil in ["https://evil.example/x.mp4", "https://evil.example/y.mp4"] {
        ids.push(lost.held_forgery(evil).await);
    }
    let common::tasks::LostTask {
        fake,
        sub,
        dir,
        addr,
        h,
        task,
    } = lost;
    let route = |verify: bool| common::tasks::signed_runway(&fake, &sub.url(), verify);
    assert_ne!(ids[0], ids[1], "the second forgery stored apart");

    common::tasks::on_store(config_at(dir.path(), addr, route(false)), nats).write();
    h.reload().await.expect("reload");
    let genuine = fake
        .post_signed(addr, "/hooks/runway", &task, &fake.final_callback(&task))
        .await;
    assert!(
        !ids.contains(&genuine),
        "the genuine callback answered as a forgery's duplicate"
    );
    let got = sub
        .wait_for(secs(20), "the genuine callback", |all| !all.is_empty())
        .await;
    assert!(!String::from_utf8_lossy(&got[0].body).contains("evil.example"));
    let t = task_until(h.admin_addr, &task, "called_back", secs(10)).await;
    drained(h.admin_addr, "runway-sub").await;
    let n = sub.count();
    h.shutdown().await;
    assert_eq!(n, 1, "the genuine callback, once");
    // Settled by the genuine callback, not by the second forgery's place
    // (its duplicate write settled the task: review of stop 74's mend).
    assert_eq!(
        (&t["state"], &t["event"]),
        (&json!("called_back"), &json!(genuine)),
        "{t}"
    );
}

/// A forged callback held as unverified for one subscriber and released to
/// that one alone by an operator's event replay (`?subscriber=`) once a
/// reload turned verification off, is still held for the others after a
/// restart: the hold is kept in the released delivery's result (stop 74's
/// Left: it was known only from the relay's memory of its verdict and from
/// the `unverified:` dead letter the replay took away, so the other
/// subscriber was sent the forged body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_released_to_one_subscriber_still_holds_it_for_the_others_after_a_restart() {
    hold_released_to_one(None).await;
}

/// The same in cluster mode: the relay that takes over knows the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_released_to_one_subscriber_still_holds_it_on_another_cluster_relay() {
    let nats = NatsCluster::start(1).await;
    hold_released_to_one(Some(&nats)).await;
}

async fn hold_released_to_one(nats: Option<&NatsCluster>) {
    // Busy with the first callback until the relay has stopped.
    let HeldForA {
        fake,
        dir,
        addr,
        h,
        a,
        b,
        path,
    } = HeldForA::start(secs(8), nats).await;
    let off = common::tasks::on_store(config_at(dir.path(), addr, ab_route(&fake, &a, &b, false)), nats);
    off.write();
    h.reload().await.expect("reload");
    let (s, v) = admin(h.admin_addr, "POST", &format!("{path}/replay?subscriber=runway-sub")).await;
    assert!(s.is_success(), "{s} {v}");
    a.wait_for(secs(10), "the forged callback, released to a", |all| {
        all.iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("evil.example"))
    })
    .await;
    let before = b.all().len();
    h.shutdown().await;
    assert_eq!(before, 1, "b's lane reached the forged callback before the restart");

    let h = start(&off).await;
    let view = admin_until(h.admin_addr, &path, secs(30), |v| {
        v["subscribers"]
            .as_array()
            .is_some_and(|s| s.iter().all(|d| d["state"] != "pending" && d["state"] != "retrying"))
    })
    .await;
    drained(h.admin_addr, "b").await;
    let got = b.all();
    h.shutdown().await;
    assert!(
        !got.iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("evil.example")),
        "the forged body was sent to b: {view}"
    );
    let b_view = view["subscribers"]
        .as_array()
        .and_then(|s| s.iter().find(|d| d["name"] == "b"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(b_view["state"], "dead", "{view}");
    assert!(b_view.to_string().contains("unverified: "), "{view}");
    let a_view = &view["subscribers"][0];
    assert_eq!(
        (&a_view["name"], &a_view["state"]),
        (&json!("runway-sub"), &json!("delivered")),
        "{view}"
    );
    assert!(a_view["held_unverified"].is_string(), "the hold shown: {view}");
}

/// A Runway route verifying callbacks (`verify = "fetch"`) with two
/// subscribers: `a`, and `b` busy for `b_busy` with the first callback (a
/// genuine one) while a forged callback, posted next, is held as
/// `unverified` for `a` (`path`: its event view); [`ab_route`] builds the
/// route again, for a reload.
struct HeldForA {
    fake: FakeProvider,
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    h: hookrelay::Handle,
    a: Sub,
    b: Sub,
    path: String,
}

impl HeldForA {
    async fn start(b_busy: std::time::Duration, nats: Option<&NatsCluster>) -> HeldForA {
        let fake = FakeProvider::start(FakeOptions::default()).await;
        let a = Sub::ok().await;
        let b = Sub::slow_at(0, b_busy).await;
        let dir = tempfile::tempdir().unwrap();
        let (cfg, addr) = tasks_config(dir.path(), vec![ab_route(&fake, &a, &b, true)]);
        let h = start(&common::tasks::on_store(cfg, nats)).await;
        let url = format!("http://{addr}/hooks/runway");
        fake.create(Product::Runway, TaskPlan::success(), Some(&url));
        b.wait_for(secs(10), "the genuine callback, being sent", |all| all.len() == 1)
            .await;
        let id = crate::verify_fetch::forge_after_a_lost_callback(&fake, addr, &url).await;
        let path = format!("/api/events/{id}");
        admin_expect(h.admin_addr, &path, secs(10), "held as unverified for a", |v| {
            v.to_string().contains("unverified: ")
        })
        .await;
        HeldForA {
            fake,
            dir,
            addr,
            h,
            a,
            b,
            path,
        }
    }
}

/// The route of [`HeldForA`], verifying or not.
fn ab_route(fake: &FakeProvider, a: &Sub, b: &Sub, verify: bool) -> common::route::Route {
    let r = task_route("runway", "kie-runway", fake, &a.url())
        .signature(Signature::kie("fake-hmac-key"))
        .subscriber(common::route::Subscriber::new("b", b.url()).concurrency(1));
    verifying(r, verify)
}

/// Once `verify` is off, a genuine callback whose request began before a
/// reload that renames its route (same path and checks), while a forgery
/// held as unverified owns its task's key, is not answered as that
/// forgery's duplicate (dropped: the provider stops retrying) but refused
/// for a retry, which the renamed route stores and delivers (stop 74's
/// Left: the rename path's own look-up of the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_callback_across_a_rename_is_not_a_held_forgerys_duplicate() {
    use tokio::io::AsyncWriteExt;
    let lost = common::tasks::LostTask::start().await;
    let forged_id = lost.held_forgery("https://evil.example/x.mp4").await;
    let common::tasks::LostTask {
        fake,
        sub,
        dir,
        addr,
        h,
        task,
    } = lost;
    let off = config_at(dir.path(), addr, common::tasks::signed_runway(&fake, &sub.url(), false));
    off.write();
    h.reload().await.expect("reload");

    // The genuine callback, signed, half sent; the route renamed meanwhile.
    let genuine = fake.final_callback(&task).to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = fake.sign(&task, ts).unwrap();
    let (head, tail) = genuine.split_at(genuine.len() / 2);
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!(
            "POST /hooks/runway HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\n\
             x-webhook-timestamp: {ts}\r\nx-webhook-signature: {sig}\r\ncontent-length: {}\r\n\r\n{head}",
            genuine.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    common::client::read_by_server(&c).await;
    crate::moved_route::route_renamed(&off, "runway2").write();
    h.reload().await.expect("reload");
    let answer = common::client::finish_half_sent(c, tail).await.to_lowercase();
    assert!(
        answer.starts_with("http/1.1 503") && !answer.contains(&forged_id.to_lowercase()),
        "answered as the held forgery's duplicate: {answer}"
    );
    // The provider's retry: stored on the renamed route, delivered.
    let id = fake
        .post_signed(addr, "/hooks/runway", &task, &fake.final_callback(&task))
        .await;
    assert_ne!(id, forged_id);
    let got = sub
        .wait_for(secs(20), "the genuine callback", |all| !all.is_empty())
        .await;
    h.shutdown().await;
    assert!(!String::from_utf8_lossy(&got[0].body).contains("evil.example"));
}
