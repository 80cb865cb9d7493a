//! Expired media URLs: a `403` from the file server is refreshed once
//! through the provider's download-url endpoint (the fake provider on
//! loopback) when the route has a provider key, and the fresh URL is
//! archived; without a key the URL fails with the status.

use crate::common;

use std::time::Duration;

use common::files::sha256_hex;
use common::provider::{FakeOptions, FakeProvider};
use common::*;

const WAIT: Duration = Duration::from_secs(30);
const REFRESH: &str = "/api/v1/common/download-url";

fn runway(task: &str, video: &str) -> String {
    runway_media(task, video, "").to_string()
}

#[tokio::test]
async fn an_expired_url_is_refreshed_through_the_provider_once() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let expired = fake.expire_file("runway/ee603959.mp4");
    let also_expired = fake.expire_file("runway/other.mp4");
    let dir = tempfile::tempdir().unwrap();
    let keyed = preset_route("runway", "kie-runway")
        .provider(Provider::new(fake.api_key(), &fake.url()))
        .subscriber(Subscriber::new("s", DOWN));
    let keyless = preset_route("keyless", "kie-runway").subscriber(Subscriber::new("k", DOWN));
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(keyed)
        .route(keyless);
    let h = start(&cfg).await;
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("ee603959", &expired)).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &expired);
    assert_eq!(m["state"], "stored", "{m}");
    assert_eq!(m["sha256"], sha256_hex(b"fake file runway/ee603959.mp4"));
    let refreshes: Vec<_> = fake.requests().into_iter().filter(|r| r.path == REFRESH).collect();
    assert_eq!(refreshes.len(), 1, "one refresh");
    assert_eq!(refreshes[0].body.as_ref().unwrap()["url"], expired);

    // Without a provider key the status is the answer.
    let id = accepted_at(h.ingest_addrs[0], "/hooks/keyless", &runway("other", &also_expired)).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &also_expired);
    assert_eq!(m["state"], "failed");
    assert!(m["error"].as_str().unwrap().contains("HTTP 403"), "{m}");
    assert_eq!(
        fake.requests().iter().filter(|r| r.path == REFRESH).count(),
        1,
        "no refresh without a key"
    );
    h.shutdown().await;
}
