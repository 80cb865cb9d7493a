//! Promise 5, clear answers by source address: `allow_ips` on the TCP peer, or
//! on the client a trusted proxy names in `X-Forwarded-For` (right-most
//! untrusted entry), junk there meaning an unknown client, never the proxy;
//! the header is kept with the event only when a trusted proxy sent it.

use crate::common;

use std::net::IpAddr;

use bytes::Bytes;
use common::*;
use http::StatusCode;

/// A second loopback address, the "trusted proxy" of these tests.
const PROXY: &str = "127.0.0.2";

/// A daemon that trusts `PROXY`, with route `t` and, at `/hooks/NAME`, each
/// route of `routes` (`allow_ips` when given, else `allow_anyone`), all
/// delivering to one subscriber.
async fn behind_proxy(dir: &std::path::Path, routes: &[(&str, Option<&[&str]>)]) -> (Sub, hookrelay::Handle) {
    let sub = Sub::ok().await;
    let mut cfg = TestConfig::new(dir)
        .trusted_proxies(["127.0.0.2/32"])
        .subscriber(Subscriber::new("s", sub.url()));
    for (name, allow) in routes {
        let mut route = Route::new(name, &format!("/hooks/{name}"));
        route = match allow {
            Some(nets) => route.allow_ips(nets.iter().copied()),
            None => route.allow_anyone(),
        };
        cfg = cfg.route(route.subscriber(Subscriber::new(&format!("{name}-sub"), sub.url())));
    }
    let h = start(&cfg).await;
    (sub, h)
}

#[tokio::test]
async fn allowlist_by_peer_and_forwarded_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_sub, h) = behind_proxy(
        dir.path(),
        &[
            ("direct", Some(&["127.0.0.1/32"])),
            ("proxied", Some(&["203.0.113.0/24", "::1"])),
        ],
    )
    .await;
    let addr = h.ingest_addrs[0];
    let from2: Option<IpAddr> = Some(PROXY.parse().unwrap());
    let body = || Bytes::from(runway("x"));
    // The TCP peer decides when it is not a trusted proxy.
    assert_eq!(
        request(addr, None, "POST", "/hooks/direct", &[], body()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        request(addr, from2, "POST", "/hooks/direct", &[], body()).await.0,
        StatusCode::FORBIDDEN
    );
    // From the trusted proxy, the right-most untrusted X-Forwarded-For entry decides.
    let xff = [("x-forwarded-for", "198.51.100.7, 203.0.113.5")];
    assert_eq!(
        request(addr, from2, "POST", "/hooks/proxied", &xff, body()).await.0,
        StatusCode::OK
    );
    let spoofed = [("x-forwarded-for", "203.0.113.5, 198.51.100.7")];
    assert_eq!(
        request(addr, from2, "POST", "/hooks/proxied", &spoofed, body()).await.0,
        StatusCode::FORBIDDEN
    );
    // From an untrusted peer the header is ignored.
    assert_eq!(
        request(addr, None, "POST", "/hooks/proxied", &xff, body()).await.0,
        StatusCode::FORBIDDEN
    );
    // The recorded source is the resolved client address.
    let (_, v) = admin(h.admin_addr, "GET", "/api/events?route=proxied").await;
    assert_eq!(v["events"][0]["source"], "203.0.113.5");
    h.shutdown().await;
}

#[tokio::test]
async fn junk_in_forwarded_for_means_an_unknown_client_not_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // The proxy's own range is allowed: falling back to the proxy would let anyone in.
    let (_sub, h) = behind_proxy(dir.path(), &[("proxied", Some(&["127.0.0.0/8"])), ("open", None)]).await;
    let addr = h.ingest_addrs[0];
    let proxy = Some(PROXY.parse().unwrap());
    let send = |path: &'static str, xff: Vec<&'static str>, task: &'static str| async move {
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
        request(addr, proxy, "POST", path, &headers, Bytes::from(runway(task)))
            .await
            .0
    };
    // A well-formed chain still works: the right-most untrusted entry is the client.
    assert_eq!(
        send("/hooks/proxied", vec!["203.0.113.1, 127.0.0.9"], "a").await,
        StatusCode::OK
    );
    // Junk left of the client is the client's own business.
    assert_eq!(
        send("/hooks/proxied", vec!["garbage, 198.51.100.7"], "b").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send("/hooks/proxied", vec!["garbage, 127.0.0.9"], "c").await,
        StatusCode::OK
    );
    // Junk where the client should be: unknown, refused where allow_ips applies.
    for (i, xff) in [
        vec!["198.51.100.7,"],
        vec!["198.51.100.7,,127.0.0.2"],
        vec!["fe80::1%eth0"],
        vec!["not-an-ip"],
        vec![""],
        vec!["198.51.100.7", "junk"],
    ]
    .into_iter()
    .enumerate()
    {
        let task = ["d0", "d1", "d2", "d3", "d4", "d5"][i];
        assert_eq!(
            send("/hooks/proxied", xff.clone(), task).await,
            StatusCode::FORBIDDEN,
            "{xff:?}"
        );
    }
    // Without allow_ips the callback is taken, its source recorded as unknown.
    assert_eq!(
        send("/hooks/open", vec!["198.51.100.7, junk"], "e").await,
        StatusCode::OK
    );
    let (_, v) = admin(h.admin_addr, "GET", "/api/events?route=open").await;
    assert_eq!(v["events"][0]["source"], "unknown");
    h.shutdown().await;
}

/// An IPv6 client a proxy writes in brackets without a port
/// (`[2001:db8::7]`, as in RFC 7239's `for=`) is that address, not junk
/// (it was refused as an unknown client); mapped forms are IPv4.
#[tokio::test]
async fn a_bracketed_ipv6_forwarded_for_entry_is_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (_sub, h) = behind_proxy(dir.path(), &[("v6", Some(&["2001:db8::/32", "203.0.113.0/24"]))]).await;
    let addr = h.ingest_addrs[0];
    let proxy = Some(PROXY.parse().unwrap());
    for (i, xff) in [
        "[2001:db8::7]",
        "198.51.100.7, [2001:db8::8]",
        "[::ffff:203.0.113.5]",
        "[2001:db8::9]:443",
    ]
    .into_iter()
    .enumerate()
    {
        let (s, _, _) = request(
            addr,
            proxy,
            "POST",
            "/hooks/v6",
            &[("x-forwarded-for", xff)],
            Bytes::from(runway(&format!("v6-{i}"))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{xff}");
    }
    // Outside the list, or not closed: refused.
    for xff in ["[2001:db9::7]", "[2001:db8::7", "[198.51.100.7]"] {
        let (s, _, _) = request(
            addr,
            proxy,
            "POST",
            "/hooks/v6",
            &[("x-forwarded-for", xff)],
            Bytes::from(runway("no")),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{xff}");
    }
    let (_, v) = admin(h.admin_addr, "GET", "/api/events?route=v6").await;
    let sources: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["source"].as_str())
        .collect();
    assert!(
        sources.contains(&"2001:db8::7") && sources.contains(&"203.0.113.5"),
        "{sources:?}"
    );
    h.shutdown().await;
}

/// `X-Forwarded-For` sent by a client that is not a trusted proxy is its own
/// claim: not kept with the event (the console showed it as a header beside
/// the real source, misleading whoever reads an incident). A trusted
/// proxy's is kept. From review 58, edge finding 6.
#[tokio::test]
async fn only_a_trusted_proxys_forwarded_for_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_sub, h) = behind_proxy(dir.path(), &[("open", None)]).await;
    let addr = h.ingest_addrs[0];
    let xff = [("x-forwarded-for", "198.51.100.7")];
    let mut kept = Vec::new();
    for (from, task) in [(None, "direct"), (Some(PROXY.parse().unwrap()), "proxied")] {
        let (s, _, body) = request(addr, from, "POST", "/hooks/open", &xff, Bytes::from(runway(task))).await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
        kept.push((ev["source"].clone(), ev.to_string().contains("198.51.100.7")));
    }
    assert_eq!(
        kept[0],
        (serde_json::json!("127.0.0.1"), false),
        "a stranger's claim kept"
    );
    assert_eq!(kept[1], (serde_json::json!("198.51.100.7"), true));
    h.shutdown().await;
}

/// The log line of a refusal says why: a source address refused by
/// `allow_ips` was logged with an empty `reason` (only a 401's, a 400's and
/// a full disk's had theirs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_is_logged_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .route(
            Route::new("ips", "/hooks/ips")
                .allow_ips(["10.0.0.0/8"])
                .subscriber(Subscriber::new("s", DOWN)),
        )
        .subscriber(Subscriber::new("t", DOWN))
        .log_format("json");
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "")]);
    let (s, _, _) = post(bin.addr, "/hooks/ips", &[], runway("ips")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    log_until(|| bin.log_text(), "callback refused", secs(10)).await;
    bin.signal("TERM");
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("callback refused"))
        .expect("the refusal's line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["reason"], "source address not allowed", "{line}");
}
