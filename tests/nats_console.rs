//! The console's Status page in cluster mode, in a real headless Chromium
//! (`tests/console/status.mjs`): it shows the store's message count as
//! `/api/status` reports it, and says the count and size are unknown while
//! NATS is away rather than leaving them blank.

use crate::common;

use crate::common::browser;

use common::nats::NatsCluster;
use common::*;

const UNKNOWN: &str = "unknown (the store cannot be read right now)";

async fn status_page(admin_addr: std::net::SocketAddr, messages: &str, size_unknown: bool) {
    let env = [
        ("ADMIN_URL", format!("http://{admin_addr}")),
        ("MESSAGES", messages.to_string()),
        ("SIZE_UNKNOWN", if size_unknown { "1" } else { "0" }.to_string()),
    ];
    browser::run_script("status.mjs", &env, secs(60), "STATUS OK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_cluster_store_messages_or_says_they_are_unknown() {
    // Fail first, with what to install, when the browser kit is missing.
    let _ = browser::chromium();
    let mut nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&nats.relay_with_one_subscriber(dir.path(), &sub.url())).await;
    for t in ["status-1", "status-2"] {
        let id = accepted(h.ingest_addrs[0], &runway(t)).await;
        // Recorded, not only received: the count below must not move any more.
        admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
    }
    sub.wait_for(secs(10), "the deliveries", |r| r.len() == 2).await;
    let messages = || async {
        let (_, v) = admin(h.admin_addr, "GET", "/api/status").await;
        v["store"]["messages"].as_u64().unwrap_or_else(|| panic!("{v}"))
    };
    // Settled: the same count twice, half a second apart.
    let mut n = messages().await;
    for _ in 0..20 {
        tokio::time::sleep(ms(500)).await;
        let again = messages().await;
        if again == n {
            break;
        }
        n = again;
    }
    assert!(n > 0);
    status_page(h.admin_addr, &n.to_string(), false).await;
    nats.kill9(0);
    let (_, v) = admin(h.admin_addr, "GET", "/api/status").await;
    assert_eq!(v["store"]["messages"], serde_json::Value::Null, "{v}");
    status_page(h.admin_addr, UNKNOWN, true).await;
    h.shutdown().await;
}
