//! Cluster mode with the results bucket full (JetStream's storage or the
//! bucket's limit reached) while the route streams still take callbacks: a
//! delivery whose result cannot be written is let go, and handed out again
//! after `takeover` with no result. It was sent again at each such hand-out,
//! without end (only a result counts attempts); now a message handed out
//! again with no result writes one before its attempt, and is not sent
//! while that cannot be written.

use crate::common;

use async_nats::jetstream;
use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_result_cannot_be_written_is_not_sent_again_and_again() {
    let nats = NatsCluster::start(1).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(&nats.relay_with_one_subscriber(dir.path(), &sub.url())).await;
    let addr = h.ingest_addrs[0];
    // One delivery recorded, so that the bucket holds something…
    accepted(addr, &runway("first")).await;
    sub.wait_for(secs(10), "the first delivery", |r| r.len() == 1).await;
    // …then no room for another result.
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let mut results = js.get_stream("KV_hr_results").await.unwrap();
    let deadline = std::time::Instant::now() + secs(10);
    let info = loop {
        let info = results.info().await.unwrap().clone();
        if info.state.bytes > 0 {
            break info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no result written: {:?}",
            info.state
        );
        tokio::time::sleep(ms(50)).await;
    };
    let mut config = info.config.clone();
    config.max_bytes = info.state.bytes as i64;
    config.discard = jetstream::stream::DiscardPolicy::New;
    js.update_stream(config).await.unwrap();

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(accepted(addr, &runway(&format!("full-{i}"))).await);
    }
    // Each is sent once (its result not written: 10 s of tries), let go,
    // handed out again after `takeover` (5 s), and again, and again.
    tokio::time::sleep(secs(25)).await;
    let seen = seen_ids(&sub);
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "{id} sent {:?} times: {seen:?}", seen.get(id));
    }
    h.shutdown().await;
}
