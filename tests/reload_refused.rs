//! A reload refused while it is applied changes nothing, the store's view of
//! the subscribers included: a subscriber the refused file removes still has
//! its lane, and the callbacks answered 200 after the refusal are still its
//! work (the store leaves ended subscribers out of new events). The refusal
//! here: a subscriber's `ca_file` valid when the file was read and unusable
//! when the reload builds the clients. Embedded store and cluster mode. From
//! review 14, finding 2.

use crate::common;

use common::nats::NatsCluster;
use common::*;

async fn a_refused_reload_ends_no_subscriber(base: TestConfig, dir: &std::path::Path) {
    let x = Sub::ok().await;
    let ca = TestCert::write(dir, "private-ca");
    let c = || Subscriber::new("c", DOWN).ca_file(&ca.cert);
    let h = start(&base.clone().subscriber(c()).subscriber(Subscriber::new("x", x.url()))).await;
    // The new file removes x, and is valid when read...
    let path = base.clone().subscriber(c()).write();
    let new = hookrelay::Config::load(&path).expect("the new file is valid");
    // ...but c's CA file is not a certificate any more when it is applied.
    std::fs::write(&ca.cert, "not a certificate").unwrap();
    let refused = hookrelay::reload::apply(&h.app, new).await;
    assert!(refused.is_err(), "the reload is refused: c's CA file is unusable");
    // x is still configured: a callback accepted now is delivered to it.
    let id = accepted(h.ingest_addrs[0], &runway("after-the-refused-reload")).await;
    x.wait_for(
        secs(10),
        "the callback accepted after a refused reload that would have removed x",
        |r| r.iter().any(|d| d.header("webhook-id") == id),
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_does_not_end_a_subscriber_it_would_have_removed() {
    let dir = tempfile::tempdir().unwrap();
    a_refused_reload_ends_no_subscriber(TestConfig::new(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_does_not_end_a_subscriber_it_would_have_removed_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    a_refused_reload_ends_no_subscriber(TestConfig::new(dir.path()).nats(nats.urls(), 1), dir.path()).await;
}
