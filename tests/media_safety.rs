//! Promise 5 for the media archive, what the daemon's archiver refuses: URLs
//! that resolve to loopback, private or link-local addresses are failed
//! without a connection unless allowed; a redirect from an allowed host to a
//! private one is refused; a file over `max_size` is cut off and leaves no
//! partial file. (The fetcher's address policy on its own: media_policy.rs.)

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::files::{FileServer, Route as File};
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// A file far over the 1 MiB cap of the size test.
const BIG: u64 = 64 << 20;

/// Route `runway` archiving what `pointers` name, delivering nowhere.
fn runway_route<'a>(pointers: impl IntoIterator<Item = &'a str>) -> common::Route {
    common::Route::new("runway", "/hooks/runway")
        .allow_anyone()
        .media(pointers)
        .subscriber(Subscriber::new("s", DOWN))
}

#[tokio::test]
async fn private_addresses_are_refused_without_allow_private() {
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let loopback = s.bytes("/x.mp4", b"private bytes", "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let route = runway_route(["/data/video_url", "/data/image_url", "/data/more/*"]);
    let h = start(&media_config(dir.path(), Media::new()).route(route)).await;
    let mut body = runway_media("t", &loopback, "http://10.1.2.3/cover.png");
    body["data"]["more"] = json!(["http://169.254.169.254/latest/meta-data/iam", "http://[::1]:9/x"]);
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
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
        File::Redirect {
            status: 302,
            location: inner.clone(),
        },
    );
    public.route(
        "/m/meta.png",
        File::Redirect {
            status: 307,
            location: "http://169.254.169.254/latest/meta-data/".into(),
        },
    );
    public.route(
        "/big.mp4",
        File::Generated {
            len: BIG,
            content_length: false,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let route = runway_route(["/data/video_url", "/data/image_url", "/data/big"]);
    let media = Media::new().allow_networks(["127.0.0.1/32"]).max_size(1 << 20);
    let h = start(&media_config(dir.path(), media).route(route)).await;
    let mut body = runway_media("t", &public.url("/k/x.mp4"), &public.url("/m/meta.png"));
    body["data"]["big"] = json!(public.url("/big.mp4"));
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
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
