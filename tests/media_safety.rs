//! What the daemon's archiver refuses and how it recovers: URLs that resolve
//! to loopback, private or link-local addresses are failed without a
//! connection unless allowed; a redirect from an allowed host to a private
//! one is refused; a file over `max_size` is cut off; an expired URL (403) is
//! refreshed once through the provider's download-url endpoint when the route
//! has a provider key, and failed with its status when it has none.

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/fake_provider.rs"]
mod fake_provider;
#[path = "common/files.rs"]
mod files;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use archive::{item, post, route, wait_final};
use fake_provider::{FakeOptions, FakeProvider};
use files::{sha256_hex, FileServer, Route};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// A file far over the 1 MiB cap of the size test.
const BIG: u64 = 64 << 20;
const SUB: &str = "[[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n";

fn runway(video: &str, image: &str) -> serde_json::Value {
    json!({"code": 200, "msg": "ok", "data": {"task_id": format!("t-{video}"), "video_url": video, "image_url": image}})
}

#[tokio::test]
async fn private_addresses_are_refused_without_allow_private() {
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let loopback = s.bytes("/x.mp4", b"private bytes", "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let routes = route(
        "runway",
        "media = [\"/data/video_url\", \"/data/image_url\", \"/data/more/*\"]",
        SUB,
    );
    let h = common::start(dir.path(), &archive::config(&dir.path().join("data"), "", &routes)).await;
    let mut body = runway(&loopback, "http://10.1.2.3/cover.png");
    body["data"]["more"] = json!(["http://169.254.169.254/latest/meta-data/iam", "http://[::1]:9/x"]);
    let id = post(h.ingest_addrs[0], "/hooks/runway", &body).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    assert_eq!(media.len(), 4);
    for (url, reason) in [
        (loopback.as_str(), "loopback"),
        ("http://10.1.2.3/cover.png", "private (10.0.0.0/8)"),
        ("http://169.254.169.254/latest/meta-data/iam", "link-local"),
        ("http://[::1]:9/x", "loopback"),
    ] {
        let m = item(&media, url);
        assert_eq!(m["state"], "failed", "{m}");
        let error = m["error"].as_str().unwrap();
        assert!(error.contains(reason) && error.contains("allow_private"), "{error}");
        assert_eq!(m["attempts"], 1, "refused for good, not retried: {m}");
    }
    assert_eq!(s.total_hits(), 0, "no connection was made");
    h.shutdown().await;
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused_and_big_files_are_cut_off() {
    // 127.0.0.1 stands in for a public host (allow_networks); 127.0.0.2 is
    // as private as any other loopback address.
    let public = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let private = FileServer::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).await;
    let inner = private.bytes("/secret.mp4", b"internal", "video/mp4");
    public.route(
        "/k/x.mp4",
        Route::Redirect {
            status: 302,
            location: inner.clone(),
        },
    );
    public.route(
        "/m/meta.png",
        Route::Redirect {
            status: 307,
            location: "http://169.254.169.254/latest/meta-data/".into(),
        },
    );
    public.route(
        "/big.mp4",
        Route::Generated {
            len: BIG,
            content_length: false,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let routes = route(
        "runway",
        "media = [\"/data/video_url\", \"/data/image_url\", \"/data/big\"]",
        SUB,
    );
    let media_cfg = "allow_networks = [\"127.0.0.1/32\"]\nmax_size = \"1MiB\"";
    let h = common::start(
        dir.path(),
        &archive::config(&dir.path().join("data"), media_cfg, &routes),
    )
    .await;
    let mut body = runway(&public.url("/k/x.mp4"), &public.url("/m/meta.png"));
    body["data"]["big"] = json!(public.url("/big.mp4"));
    let id = post(h.ingest_addrs[0], "/hooks/runway", &body).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let e = |url: &str| item(&media, url)["error"].as_str().unwrap().to_string();
    assert!(
        e(&public.url("/k/x.mp4")).contains("127.0.0.2 is loopback"),
        "{media:#?}"
    );
    assert!(e(&public.url("/m/meta.png")).contains("link-local"), "{media:#?}");
    assert!(e(&public.url("/big.mp4")).contains("file too large"), "{media:#?}");
    assert!(media.iter().all(|m| m["state"] == "failed"));
    assert_eq!(public.hits("/k/x.mp4"), 1, "the allowed host was asked");
    assert_eq!(private.total_hits(), 0, "the private one never");
    // Socket buffers take a few MiB more than the cap; the rest is never sent.
    assert!(public.generated_sent() < BIG / 2, "the big download was cut off");
    let leftovers = std::fs::read_dir(dir.path().join("data/media/tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "no partial file left");
    h.shutdown().await;
}

#[tokio::test]
async fn an_expired_url_is_refreshed_through_the_provider_once() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let expired = fake.expire_file("runway/ee603959.mp4");
    let also_expired = fake.expire_file("runway/other.mp4");
    let dir = tempfile::tempdir().unwrap();
    let keyed = format!(
        "preset = \"kie-runway\"\nprovider = {{ api_key = \"{}\", base_url = \"{}\" }}",
        fake.api_key(),
        fake.url()
    );
    let routes = route("runway", &keyed, SUB)
        + &route(
            "keyless",
            "preset = \"kie-runway\"",
            "[[routes.subscribers]]\nname = \"k\"\nurl = \"http://127.0.0.1:9/\"\n",
        );
    let h = common::start(
        dir.path(),
        &archive::config(&dir.path().join("data"), "allow_private = true", &routes),
    )
    .await;
    let id = post(h.ingest_addrs[0], "/hooks/runway", &runway(&expired, "")).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &expired);
    assert_eq!(m["state"], "stored", "{m}");
    assert_eq!(m["sha256"], sha256_hex(b"fake file runway/ee603959.mp4"));
    let refreshes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/common/download-url")
        .collect();
    assert_eq!(refreshes.len(), 1, "one refresh");
    assert_eq!(refreshes[0].body.as_ref().unwrap()["url"], expired);

    // Without a provider key the status is the answer.
    let id = post(h.ingest_addrs[0], "/hooks/keyless", &runway(&also_expired, "")).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &also_expired);
    assert_eq!(m["state"], "failed");
    assert!(m["error"].as_str().unwrap().contains("HTTP 403"), "{m}");
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.path == "/api/v1/common/download-url")
            .count(),
        1,
        "no refresh without a key"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_the_media_settings() {
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = route("runway", "preset = \"kie-runway\"", SUB);
    let h = common::start(dir.path(), &archive::config(&dir.path().join("data"), "", &routes)).await;
    let first = s.bytes("/k/1.mp4", b"one", "video/mp4");
    let id = post(h.ingest_addrs[0], "/hooks/runway", &runway(&first, "")).await;
    assert_eq!(wait_final(h.admin_addr, &id, WAIT).await[0]["state"], "failed");
    // SIGHUP's path: the file changes, the daemon reloads it.
    let cfg = archive::config(&dir.path().join("data"), "allow_private = true", &routes);
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    h.reload().await.expect("reload");
    let second = s.bytes("/k/2.mp4", b"two", "video/mp4");
    let id = post(h.ingest_addrs[0], "/hooks/runway", &runway(&second, "")).await;
    let m = &wait_final(h.admin_addr, &id, WAIT).await[0];
    assert_eq!(
        (m["state"].as_str(), m["sha256"].as_str()),
        (Some("stored"), Some(sha256_hex(b"two").as_str()))
    );
    h.shutdown().await;
}
