//! Expired media URLs: a `403` from the file server is refreshed once
//! through the provider's download-url endpoint (the fake provider on
//! loopback) when the route has a provider key, and the fresh URL is
//! archived; without a key the URL fails with the status after three tries
//! on the retry schedule, so a file a CDN serves only a moment after the
//! callback is archived.

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
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(200), ms(200)]))
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

    // Without a provider key the status is the answer, once it was given
    // on three tries.
    let id = accepted_at(h.ingest_addrs[0], "/hooks/keyless", &runway("other", &also_expired)).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &also_expired);
    assert_eq!(m["state"], "failed");
    assert!(m["error"].as_str().unwrap().contains("HTTP 403"), "{m}");
    assert_eq!(m["attempts"], 3, "{m}");
    assert_eq!(
        fake.requests().iter().filter(|r| r.path == REFRESH).count(),
        1,
        "no refresh without a key"
    );
    h.shutdown().await;
}

/// On a route with a provider key, a `404` of a file the CDN does not have
/// yet, which the provider will not refresh (it did not make that URL, or
/// it has not expired), is tried again as without a key, and archived once
/// it is there (it failed for good on the first answer, with one try); one
/// that never comes fails after three tries. The provider's message quotes
/// the URL: its signed query is kept out of the record. From review 48,
/// findings 1 and 4.
#[tokio::test]
async fn a_404_with_a_provider_key_gets_its_tries_and_its_query_stays_hidden() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let s = common::files::FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let late = format!("{}?sig=TOPSECRETSIG", s.url("/r48/late.mp4"));
    // Long, as signed URLs are: the provider's message is cut short inside it.
    let never = format!("{}?sig=TOPSECRETSIG{}", s.url("/r48/never.mp4"), "S".repeat(400));
    let dir = tempfile::tempdir().unwrap();
    let keyed = preset_route("runway", "kie-runway")
        .provider(Provider::new(fake.api_key(), &fake.url()))
        .subscriber(Subscriber::new("s", DOWN));
    // A key the provider refuses: three tries too (it may be fixed
    // meanwhile), then failed with that reason.
    let wrong_key = preset_route("wrongkey", "kie-runway")
        .provider(Provider::new("not-the-key", &fake.url()))
        .subscriber(Subscriber::new("w", DOWN));
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(500); 3]))
        .route(keyed)
        .route(wrong_key);
    let h = start(&cfg).await;
    let refused = fake.expire_file("runway/refused.mp4");
    let refused_id = accepted_at(h.ingest_addrs[0], "/hooks/wrongkey", &runway("refused", &refused)).await;
    let late_id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("late", &late)).await;
    let never_id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("never", &never)).await;
    let end = tokio::time::Instant::now() + WAIT;
    while s.hits("/r48/late.mp4") == 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(20)).await;
    }
    s.bytes("/r48/late.mp4", b"late bytes", "video/mp4");
    let media = wait_final(h.admin_addr, &late_id, WAIT).await;
    let m = &media[0];
    assert_eq!(
        m["state"], "stored",
        "a 404 failed the file for good on the first try: {m}"
    );
    assert_eq!(m["sha256"], sha256_hex(b"late bytes"));
    assert_eq!(m["attempts"], 2, "{m}");
    let media = wait_final(h.admin_addr, &never_id, WAIT).await;
    let m = &media[0];
    let error = m["error"].as_str().unwrap();
    assert_eq!((&m["state"], &m["attempts"]), (&"failed".into(), &3.into()), "{m}");
    assert!(
        error.contains("HTTP 404") && error.contains("not a file generated by this platform"),
        "{m}"
    );
    assert!(!m.to_string().contains("TOPSECRETSIG"), "the signed query shown: {m}");
    // What happens next is the archiver's to say, not the provider client's.
    assert!(
        error.ends_with("(3 times in a row)") && !error.contains("giving up"),
        "{m}"
    );
    assert!(
        fake.requests().iter().filter(|r| r.path == REFRESH).count() >= 4,
        "asked each time"
    );
    let media = wait_final(h.admin_addr, &refused_id, WAIT).await;
    let m = &media[0];
    assert_eq!((&m["state"], &m["attempts"]), (&"failed".into(), &3.into()), "{m}");
    assert!(m["error"].as_str().unwrap().contains("401"), "{m}");
    h.shutdown().await;
}

/// On a route without a provider key, a `404` from the file server (a CDN
/// that has not yet received the object the callback names) is tried again
/// on the retry schedule, and the file is archived once it is there (it
/// failed for good on the first answer). From review 36, finding 5.
#[tokio::test]
async fn a_404_without_a_provider_key_is_tried_again_before_it_fails() {
    let s = common::files::FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let url = s.url("/r36/late.mp4"); // not there yet: 404
    let dir = tempfile::tempdir().unwrap();
    let keyless = preset_route("keyless", "kie-runway").subscriber(Subscriber::new("k", DOWN));
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(700), ms(700)])).route(keyless);
    let h = start(&cfg).await;
    let id = accepted_at(h.ingest_addrs[0], "/hooks/keyless", &runway("late", &url)).await;
    let end = tokio::time::Instant::now() + WAIT;
    while s.hits("/r36/late.mp4") == 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(20)).await;
    }
    s.bytes("/r36/late.mp4", b"late bytes", "video/mp4");
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &url);
    assert_eq!(
        m["state"], "stored",
        "a 404 failed the file for good on the first try: {m}"
    );
    assert_eq!(m["sha256"], sha256_hex(b"late bytes"));
    assert_eq!(m["attempts"], 2, "{m}");
    h.shutdown().await;
}

/// The three tries of a `404` without a provider key count that answer only:
/// a URL that first failed twice with a `503` is not failed for good by its
/// first `404`, and is archived once the file is there.
#[tokio::test]
async fn a_404_after_transient_failures_still_gets_its_tries() {
    let s = common::files::FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let path = "/m35/late.mp4";
    let url = s.status(path, 503);
    let dir = tempfile::tempdir().unwrap();
    let keyless = preset_route("keyless", "kie-runway").subscriber(Subscriber::new("k", DOWN));
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(400); 5])).route(keyless);
    let h = start(&cfg).await;
    let id = accepted_at(h.ingest_addrs[0], "/hooks/keyless", &runway("late", &url)).await;
    let until_hits = |n: usize| {
        let s = &s;
        async move {
            let end = tokio::time::Instant::now() + WAIT;
            while s.hits(path) < n {
                assert!(tokio::time::Instant::now() < end, "{n} tries not within {WAIT:?}");
                tokio::time::sleep(ms(10)).await;
            }
        }
    };
    until_hits(2).await;
    s.status(path, 404);
    until_hits(3).await;
    s.bytes(path, b"late bytes", "video/mp4");
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    let m = item(&media, &url);
    assert_eq!(
        m["state"], "stored",
        "the first 404 after two 503s failed the file: {m}"
    );
    assert_eq!(m["attempts"], 4, "{m}");
    h.shutdown().await;
}
