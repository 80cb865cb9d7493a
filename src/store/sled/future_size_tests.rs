//! The store's hot calls on the embedded backend stay small futures: a
//! future is as large as the largest of its backends' arms, and every
//! ingest request carried (and moved, several times, at about 10 % of its
//! CPU) the cluster backend's ~22 KB append state on one host too.

use super::tests::{event, open};
use crate::store::Outcome;

/// Bytes a hot-path future of the `Store` may take on one host.
const SMALL: usize = 4096;

#[tokio::test]
async fn the_append_and_record_futures_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let append = store.append(event("t1", &["a"], 1));
    let size = std::mem::size_of_val(&append);
    assert!(size <= SMALL, "Store::append's future is {size} bytes");
    append.await.unwrap();
    // What ingest awaits (a `verify = "fetch"` route reads the key's owner too).
    let ingest = crate::ingest::append_contested(&store, None, event("t2", &["a"], 1));
    let size = std::mem::size_of_val(&ingest);
    assert!(size <= SMALL, "ingest's append future is {size} bytes");
    ingest.await.unwrap();
    // A route with a preset's key that does not verify (its duplicates'
    // owners are read for a verification that held them).
    let verifier = crate::delivery::verify_gate::Verifier::default();
    let unchecked = crate::ingest::contested::append_unchecked(&store, &verifier, event("t3", &["a"], 1));
    let size = std::mem::size_of_val(&unchecked);
    assert!(
        size <= SMALL,
        "ingest's append future on a preset's route is {size} bytes"
    );
    unchecked.await.unwrap();
    let mut src = store.work_source("a").unwrap();
    let w = src.take(1, 2).await.unwrap().pop().expect("one delivery");
    let record = store.record(&w.ticket, None, Outcome::Delivered);
    let size = std::mem::size_of_val(&record);
    assert!(size <= SMALL, "Store::record's future is {size} bytes");
    record.await.unwrap();
    let begin = store.begin_attempt(&w.ticket, 1);
    let size = std::mem::size_of_val(&begin);
    assert!(size <= SMALL, "Store::begin_attempt's future is {size} bytes");
}
