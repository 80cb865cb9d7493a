//! The writer thread ending in a panic: the store says it failed.

use std::sync::atomic::Ordering;

use super::tests::{event, open, sled};

/// Before, the writer's panic left the failed flag unset: every later write
/// waited for an answer that never came (`503` forever) while the health
/// check, which reads the flag, saw nothing wrong and never restarted it.
#[tokio::test]
async fn a_writer_that_panics_marks_the_store_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let t0 = crate::clock::now_ms();
    store.append(event("before", &["a"], t0)).await.unwrap();
    assert!(!store.has_failed());
    sled(&store).inner.panic_next_batch.store(true, Ordering::SeqCst);
    assert!(store.append(event("during", &["a"], t0)).await.is_err());
    // The answer is refused as the writer unwinds; the mark follows at once.
    let t = std::time::Instant::now();
    while !store.has_failed() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "the writer panicked and the store says it is fine"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(store.append(event("after", &["a"], t0)).await.is_err());
}
