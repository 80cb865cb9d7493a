//! `verify = "fetch"` and the media archive: a callback's media is downloaded
//! only once the callback agrees with the provider's record. A forged body
//! (a replayed valid `kie` signature, URLs of the attacker's choosing, here a
//! file server on loopback that `allow_private` lets the relay reach) makes
//! the relay download nothing; a genuine callback's media is archived after
//! its check.

use crate::common;

use common::files::FileServer;
use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{signed_verify_route, tasks_config};
use common::*;
use hookrelay::provider::Product;

#[tokio::test]
async fn a_callback_s_media_is_downloaded_only_once_it_is_verified() {
    media_waits_for_verification(None).await;
}

/// The same in cluster mode (media work in NATS).
#[tokio::test]
async fn in_cluster_mode_too() {
    let nats = NatsCluster::start(1).await;
    media_waits_for_verification(Some(&nats)).await;
}

async fn media_waits_for_verification(nats: Option<&NatsCluster>) {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let files = FileServer::start("127.0.0.1".parse().unwrap()).await;
    let evil = files.bytes("/evil.mp4", b"not the result", "video/mp4");
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = signed_verify_route(&fake, &sub.url());
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let mut cfg = cfg.media(Media::new().allow_private());
    if let Some(n) = nats {
        cfg = cfg.nats(n.urls(), 1);
    }
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");

    // Forged: the task's real callback is lost; its signature is replayed
    // with a body naming the attacker's file.
    let target = fake.create(Product::Runway, TaskPlan::success().lose(), Some(&url));
    let genuine = fake.create(Product::Runway, TaskPlan::success().lose(), Some(&url));
    fake.wait_until("the tasks to finish", secs(5), |f| {
        f.is_finished(&target) && f.is_finished(&genuine)
    })
    .await;
    let mut forged = fake.final_callback(&target);
    forged["data"]["video_url"] = evil.clone().into();
    forged["data"]["image_url"] = "".into();
    let id = fake.post_signed(addr, "/hooks/runway", &target, &forged).await;
    held_unverified(h.admin_addr, &id).await;
    tokio::time::sleep(ms(500)).await;
    assert_eq!(files.total_hits(), 0, "the forged callback's URL was downloaded");
    assert!(media_of(h.admin_addr, &id).await.is_empty(), "no media work for it");

    // Genuine: checked, delivered, and then its media is archived.
    let body = fake.final_callback(&genuine);
    let id = fake.post_signed(addr, "/hooks/runway", &genuine, &body).await;
    sub.wait_for(secs(10), "the genuine callback", |all| all.len() == 1)
        .await;
    let media = wait_final(h.admin_addr, &id, secs(10)).await;
    assert!(
        !media.is_empty() && media.iter().all(|m| m["state"] == "stored"),
        "{media:#?}"
    );
    assert_eq!(files.total_hits(), 0);
    h.shutdown().await;
}

/// A callback stored while its route verified, waiting (the provider
/// refuses the look-up for now), then delivered after a reload turned
/// `verify` off: it is sent unchecked, and its media, left to a verdict that
/// no longer comes, is archived before the `after_archive` subscriber gets
/// it (it got `hookrelay-media: []`, the media never downloaded).
#[tokio::test]
async fn media_left_to_a_verification_a_reload_turned_off_is_archived() {
    media_after_verify_turned_off(None).await;
}

/// The same in cluster mode (the event's header marks the deferral).
#[tokio::test]
async fn media_left_to_a_verification_turned_off_in_cluster_mode_too() {
    let nats = NatsCluster::start(1).await;
    media_after_verify_turned_off(Some(&nats)).await;
}

async fn media_after_verify_turned_off(nats: Option<&NatsCluster>) {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = |verify: bool| {
        let r = Route::new("runway", "/hooks/runway")
            .allow_anyone()
            .preset("kie-runway")
            .provider(Provider::new(fake.api_key(), &fake.url()))
            .reconcile(common::tasks::fast_reconcile())
            .signature(Signature::kie("fake-hmac-key"))
            .subscriber(Subscriber::new("archived", sub.url()).after_archive());
        if verify {
            r.verify("fetch")
        } else {
            r
        }
    };
    let (cfg, addr) = tasks_config(dir.path(), vec![route(true)]);
    let with_store = |c: TestConfig| match nats {
        Some(n) => c.nats(n.urls(), 1),
        None => c,
    };
    let cfg = with_store(cfg.media(Media::new().allow_private()));
    let h = start(&cfg).await;

    let task = fake.create(Product::Runway, TaskPlan::success().lose(), None);
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&task))
        .await;
    fake.rate_limit(1_000_000);
    let body = fake.final_callback(&task);
    let id = fake.post_signed(addr, "/hooks/runway", &task, &body).await;
    fake.wait_until("the look-up to be refused", secs(10), |f| f.status_requests(&task) >= 1)
        .await;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(sub.count(), 0, "delivered before it was checked");
    assert!(
        media_of(h.admin_addr, &id).await.is_empty(),
        "media work before the check"
    );

    with_store(common::tasks::config_at(dir.path(), addr, route(false)).media(Media::new().allow_private())).write();
    h.reload().await.expect("reload");
    fake.rate_limit(0);
    let got = sub
        .wait_for(secs(30), "the callback, delivered unchecked", |all| !all.is_empty())
        .await;
    let media: Vec<serde_json::Value> = serde_json::from_str(got[0].header("hookrelay-media")).expect("a JSON array");
    assert!(
        !media.is_empty() && media.iter().all(|m| m["state"] == "stored"),
        "the media left to the verification was not archived: {media:#?}"
    );
    h.shutdown().await;
}

/// A forged body may carry the genuine URLs where the comparison reads them
/// and its own in another documented place the archive reads: Veo's list
/// under `info` beside one under `response`, 4o Image's `resultUrls` beside
/// `result_urls`. Or replay a genuine Veo callback as a 4K upgrade (a success
/// of its own, not a duplicate) naming the generation's own video. Or name
/// it in a field only the route's own `media` pointers read. Each is
/// held as unverified and nothing it names is downloaded (hostile review,
/// stop 65: both forged URLs were archived as results).
#[tokio::test]
async fn a_url_hidden_in_a_second_place_is_held_and_not_downloaded() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let files = FileServer::start("127.0.0.1".parse().unwrap()).await;
    let evil = files.bytes("/evil.mp4", b"not the result", "video/mp4");
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let verified = |name: &str, preset: &str| {
        common::tasks::task_route(name, preset, &fake, &sub.url())
            .signature(Signature::kie("fake-hmac-key"))
            .verify("fetch")
    };
    let (cfg, addr) = tasks_config(
        dir.path(),
        vec![
            verified("veo", "kie-veo"),
            verified("image", "kie-4o-image"),
            // The route's own pointers: the preset's, and one more field.
            verified("runway", "kie-runway").media(["/data/video_url", "/data/extra/*"]),
        ],
    );
    let h = start(&cfg.media(Media::new().allow_private())).await;

    let veo = fake.create(Product::Veo, TaskPlan::success().lose(), None);
    let veo_4k = fake.create(Product::Veo, TaskPlan::success().lose(), None);
    let image = fake.create(Product::FourOImage, TaskPlan::success().lose(), None);
    let runway = fake.create(Product::Runway, TaskPlan::success().lose(), None);
    fake.wait_until("the tasks to finish", secs(5), |f| {
        [&veo, &veo_4k, &image, &runway].iter().all(|t| f.is_finished(t))
    })
    .await;
    let mut forged = Vec::new();
    // Veo: the record's video under `response`, the attacker's under `info`.
    let mut body = fake.final_callback(&veo);
    let video = body["data"]["info"]["resultUrls"][0].clone();
    body["data"]["info"]["imageUrls"] = serde_json::json!([evil]);
    body["data"]["response"] = serde_json::json!({ "imageUrls": [video] });
    forged.push(fake.post_signed(addr, "/hooks/veo", &veo, &body).await);
    // Veo: a genuine callback posted again as a 4K result of its own video.
    let mut body = fake.final_callback(&veo_4k);
    let video = body["data"]["info"]["resultUrls"][0].clone();
    body["data"]["info"]["imageUrls"] = serde_json::json!([video]);
    forged.push(fake.post_signed(addr, "/hooks/veo", &veo_4k, &body).await);
    // 4o Image: the record's image as `result_urls`, the attacker's as `resultUrls`.
    let mut body = fake.final_callback(&image);
    body["data"]["info"]["resultUrls"] = serde_json::json!([evil]);
    forged.push(fake.post_signed(addr, "/hooks/image", &image, &body).await);
    // A field the product's callback does not document, which the route archives.
    let mut body = fake.final_callback(&runway);
    body["data"]["extra"] = serde_json::json!([evil]);
    forged.push(fake.post_signed(addr, "/hooks/runway", &runway, &body).await);

    for id in &forged {
        held_unverified(h.admin_addr, id).await;
    }
    tokio::time::sleep(ms(500)).await;
    assert_eq!(files.total_hits(), 0, "a forged callback's URL was downloaded");
    assert_eq!(sub.count(), 0, "a forged callback was delivered");
    h.shutdown().await;
}

/// Wait for event `id`'s (first) delivery to be a dead letter held as
/// `unverified:`.
async fn held_unverified(admin_addr: std::net::SocketAddr, id: &str) {
    let view = admin_until(admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    let why = view["subscribers"][0]["last_error"].as_str().unwrap_or_default();
    assert!(why.starts_with("unverified: "), "{view}");
}
