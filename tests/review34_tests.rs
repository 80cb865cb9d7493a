//! Review 34: failing tests for the findings in /work/notes/review34.md.

use crate::common;

use common::*;

/// Finding 2: `start_before` binary-searches a route's stream by event
/// time, but times in one stream are not ordered by sequence when relays'
/// clocks differ (ingest stamps `Hr-Time` with its own clock; the anchored
/// scheduling clock of f33 keeps a relay started with a wrong clock wrong for
/// its lifetime). Here a relay 60 s ahead wrote five messages on route `t`
/// between two events of this relay: the search meets one of them, puts the
/// page's start below them, and route `t`'s newer event `b`, older than the
/// page's `before`, is never listed (nor on later pages, which go on below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_before_another_routes_event_lists_every_older_event_when_relays_clocks_differ() {
    use common::nats::NatsCluster;
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

/// Finding 4: `hookrelay forward` exits 2 on a pull answered `200` with
/// something that is not a pull answer, to stop leasing messages into a
/// captive portal; the shipped unit (`Restart=on-failure`, `RestartSec=30s`)
/// restarts it every 30 s, each start pulling (and leasing) again. Exit 2 is
/// also the refused-token exit, so the unit cannot tell them apart.
#[test]
fn the_forward_unit_does_not_restart_a_forwarder_that_stopped_for_a_non_pull_answer() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/hookrelay-forward.service"
    ))
    .unwrap();
    let restarts_on_failure = unit.lines().any(|l| l.trim() == "Restart=on-failure");
    let prevented = unit
        .lines()
        .any(|l| l.trim_start().starts_with("RestartPreventExitStatus="));
    assert!(
        !restarts_on_failure || prevented,
        "the unit restarts `hookrelay forward` after the exit meant to stop it (no RestartPreventExitStatus=)"
    );
}
