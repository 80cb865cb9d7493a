//! A record task that panics while it writes an acknowledgement: the
//! acknowledgement gets `503` (send it again), the lease is kept, and an
//! acknowledgement of the same message that waited for that record is
//! answered too (applied to the lease put back). The daemon runs in-process
//! on port 0 with its embedded store; requests go over real sockets.

use super::settle::panic_hook;
use super::test_relay::{accepted, call, ids, sent_twice, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_whose_record_task_panics_gets_503_and_keeps_its_lease() {
    let (_dir, relay) = start("panicky").await;
    let addr = relay.ingest_addrs[0];
    let id = accepted(addr, "a").await;
    let (s, got) = call(addr, "GET", "/pull/panicky?wait=5s", Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");

    panic_hook::arm("panicky");
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    // The same acknowledgement again while the first one's record is in
    // progress: it waits for that record.
    let ((s, got), second) = sent_twice(addr, "panicky", &ack).await;
    assert_eq!(s, 503, "{got}");
    assert!(got.contains("send it again"), "{got}");
    // The lease was put back: the waiting acknowledgement applies to it.
    let (s, got) = second;
    assert_eq!(s, 200, "{got}");
    assert!(got.contains(r#""acknowledged":1"#), "{got}");
    // Recorded once: nothing more is leased.
    let (s, got) = call(addr, "POST", "/pull/panicky/ack", Some("f1"), &ack).await;
    assert_eq!(s, 409, "{got}");
    relay.shutdown().await;
}
