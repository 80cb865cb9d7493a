//! Pages of `/api/events` in cluster mode: where each route's walk starts
//! and stops, and how `more` / `next_before` go on from there.

use crate::common;

use common::nats::NatsCluster;
use common::*;

/// `/api/events` looks at most at 10 000 messages of a route per page, so
/// with a filter (`task=`) an event that matches below that is not on the
/// first page: the page says `more` (not "no more match", a claim that the
/// older pages are complete), and its `next_before` goes on from where the
/// scan stopped, to the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_event_past_a_cut_scan_is_reached_by_more_and_next_before() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let wanted = accepted_retrying(addr, &runway("r32-needle")).await;
    send_hay(addr, 10_001).await;
    let mut path = "/api/events?task=r32-needle&limit=5".to_string();
    let mut pages = Vec::new();
    let listed = loop {
        let (s, v) = admin(h.admin_addr, "GET", &path).await;
        assert_eq!(s, 200, "{v}");
        let listed = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == wanted.as_str());
        pages.push(v.clone());
        if listed || v["more"] != true || pages.len() == 4 {
            break listed;
        }
        let next = v["next_before"]
            .as_str()
            .unwrap_or_else(|| panic!("more without next_before: {v}"));
        path = format!("/api/events?task=r32-needle&limit=5&before={next}");
    };
    h.shutdown().await;
    assert!(
        listed,
        "event {wanted} matches task=r32-needle but is neither listed nor reached by `more` and `next_before`: {pages:#?}"
    );
    assert!(
        pages.len() > 1 && pages[0]["more"] == true && pages[0]["cut"] == true,
        "{pages:#?}"
    );
}

/// A page older than an event of route `u` walks route `t` from the last
/// event older than it, not from `t`'s newest message: 10 001 newer events
/// on `t` would use up the walk and leave `t`'s older event out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_before_another_routes_event_starts_each_route_at_its_time() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let other = Route::new("u", "/hooks/u")
        .tokens(["tok"])
        .subscriber(Subscriber::new("s2", sub.url()));
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .route(other)
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let wanted = accepted_retrying(addr, &runway("cross-needle")).await;
    tokio::time::sleep(ms(5)).await;
    let anchor = accepted_at(addr, "/hooks/u?token=tok", &runway("cross-anchor")).await;
    tokio::time::sleep(ms(5)).await;
    send_hay(addr, 10_001).await;
    let path = format!("/api/events?task=cross-needle&limit=5&before={anchor}");
    let (s, v) = admin(h.admin_addr, "GET", &path).await;
    h.shutdown().await;
    assert_eq!(s, 200, "{v}");
    let listed = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == wanted.as_str());
    assert!(
        listed,
        "route t's event {wanted}, older than {anchor}, is not on the page older than it: {v}"
    );
}

/// Times in a route's stream are not ordered by sequence when relays'
/// clocks differ (each stamps `Hr-Time` with its own clock). Here a relay
/// 60 s ahead wrote five messages on route `t` between two events of this
/// relay: a page before an event of route `u` lists both (the search for
/// where to start walking `t` allows for the skew). From review 34, finding 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_before_another_routes_event_lists_events_stamped_by_a_relay_whose_clock_is_ahead() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let other = Route::new("u", "/hooks/u")
        .tokens(["tok"])
        .subscriber(Subscriber::new("s2", sub.url()));
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .route(other)
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let a = accepted_retrying(addr, &runway("skew-a")).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    for n in 0..5u64 {
        let mut hdr = async_nats::HeaderMap::new();
        hdr.insert("Hr-Time", (ahead + n).to_string().as_str());
        hdr.insert("Hr-Subs", "s");
        hdr.insert("Hr-Src", "-");
        hdr.insert("Nats-Msg-Id", format!("r34-skewed-{n}").as_str());
        let subject = format!("hr.ev.t.{:032x}", 0xabc0 + n);
        js.publish_with_headers(subject, hdr, runway(&format!("skew-x{n}")).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    tokio::time::sleep(ms(5)).await;
    let b = accepted_retrying(addr, &runway("skew-b")).await;
    tokio::time::sleep(ms(5)).await;
    let anchor = accepted_at(addr, "/hooks/u?token=tok", &runway("skew-anchor")).await;
    let (s, v) = admin(h.admin_addr, "GET", &format!("/api/events?limit=50&before={anchor}")).await;
    h.shutdown().await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(ids.contains(&a.as_str()), "a {a} missing: {v}");
    assert!(
        ids.contains(&b.as_str()),
        "route t's event b {b}, received before {anchor}, is not on the page older than it (a {a} is): {v}"
    );
}
