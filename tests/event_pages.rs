//! Pages of `/api/events` on the embedded store: a filter that matches few
//! events stops after leaving out 10,000 (it read the whole log at every
//! request: a console or poller on `status=dead` slowed ingest), says so
//! (`more`, `cut`), and `next_before` goes on from where it stopped, to
//! the event. (Cluster mode: `nats_queries::pages`.)

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_past_the_scan_budget_is_reached_by_next_before() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    let addr = h.ingest_addrs[0];
    let wanted = accepted(addr, &runway("budget-needle")).await;
    // 10,001 newer events of other tasks.
    send_hay(addr, 10_001).await;
    let first = "/api/events?task=budget-needle&limit=5";
    let (s, v) = admin(h.admin_addr, "GET", first).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["events"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["more"] == true && v["cut"] == true, "{v}");
    let next = v["next_before"].as_str().expect("next_before");
    let (s, v) = admin(h.admin_addr, "GET", &format!("{first}&before={next}")).await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [wanted.as_str()], "{v}");
    assert!(v["more"] == false && v["cut"] == false, "{v}");
    // Unfiltered, a page is full and not cut.
    let (_, v) = admin(h.admin_addr, "GET", "/api/events?limit=10000").await;
    assert_eq!(v["events"].as_array().unwrap().len(), 10_000);
    assert!(v["more"] == true && v["cut"] == false, "{}", v["more"]);
    h.shutdown().await;
}
