//! An operator's replay of a callback held as unverified (`verify =
//! "fetch"`) releases it durably: the release is stored with the replayed
//! delivery, so a relay that stops (or dies) before the delivery is sent
//! sends it after its restart rather than holding it again.

use crate::common;

use crate::verify_fetch::forge_after_a_lost_callback;
use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{task_route, tasks_config};
use common::*;

/// The subscriber is down when the operator replays the held callback: its
/// retry is due after the relay's restart, and is sent then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_unverified_callback_is_still_sent_after_a_restart() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (sub, healthy) = Sub::broken(Behaviour::Status(503)).await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url())
        .without_reconcile()
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let cfg = cfg.delivery_retry([secs(3)]);
    let h = start(&cfg).await;
    let id = forge_after_a_lost_callback(&fake, addr, &format!("http://{addr}/hooks/runway")).await;
    let path = format!("/api/events/{id}");
    admin_until(h.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert_eq!(sub.count(), 0, "held, not sent");

    // Replayed: sent once (the subscriber fails), its retry waiting.
    let (s, replay) = admin(h.admin_addr, "POST", &format!("{path}/replay")).await;
    assert_eq!(s, 200, "{replay}");
    sub.wait_for(secs(10), "the replayed delivery", |all| all.len() == 1)
        .await;
    let view = admin_until(h.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["attempts_total"] == 1
    })
    .await;
    assert_eq!(view["subscribers"][0]["state"], "pending", "{view}");
    h.shutdown().await;

    // After the restart its retry is sent, not held again.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let h = start(&cfg).await;
    let sent = tokio::time::timeout(secs(15), async {
        while sub.count() < 2 {
            tokio::time::sleep(ms(50)).await;
        }
    })
    .await
    .is_ok();
    let (_, after) = admin(h.admin_addr, "GET", &path).await;
    assert!(
        sent,
        "the replay's release was lost in the restart: {}",
        after["subscribers"][0]
    );
    assert!(String::from_utf8_lossy(&sub.all()[1].body).contains("evil.example"));
    let view = admin_until(h.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(view["subscribers"][0]["state"], "delivered", "{view}");

    h.shutdown().await;
}
