//! Volume: callbacks sent from many connections until stopped (counting the
//! acknowledged ones as they come), or one after another at a pace, a store prefilled
//! through the group-commit writer, and the check that every acknowledged
//! event is on disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::bodies::runway;
use super::client::{callback, try_callback};

/// Callbacks sent from `conns` connections in the background until `finish`
/// or until the daemon refuses or cuts them (it was killed; one slow to
/// answer is sent the same callback again, for up to 30 s), keeping the
/// acknowledged (event id, body) pairs as they come: a test can act once
/// enough were acknowledged rather than after a fixed time.
pub struct Load {
    acked: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    /// Callbacks sent whose answer never came (refused, cut, or given up
    /// at the stop): each may be stored, or not.
    unanswered: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, conns: usize, tag: &str) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let unanswered = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for c in 0..conns {
            let (acked, stop, unanswered) = (acked.clone(), stop.clone(), unanswered.clone());
            let tag = tag.to_string();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let body = runway(&format!("{tag}-{c}-{i}"));
                    let given_up = Instant::now() + Duration::from_secs(30);
                    loop {
                        match tokio::time::timeout(Duration::from_secs(2), try_callback(addr, &body)).await {
                            Ok(Some((StatusCode::OK, v))) => {
                                let id = v["id"].as_str().unwrap().to_string();
                                acked.lock().unwrap().push((id, body));
                                break;
                            }
                            // Slow to answer (a loaded machine), not dead: the
                            // same callback again, as a provider does (the first
                            // may be stored: the retry's answer names it).
                            Err(_) if !stop.load(Ordering::SeqCst) && Instant::now() < given_up => continue,
                            // Refused or cut (the daemon was killed), or given
                            // up (at the stop, or unanswered for 30 s): stored
                            // or not, nobody knows.
                            _ => {
                                unanswered.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                }
            }));
        }
        Load {
            acked,
            stop,
            unanswered,
            tasks,
        }
    }

    /// How many callbacks were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Wait until more than `n` callbacks were acknowledged; panics after `limit`.
    pub async fn until_more_than(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.acked() <= n {
            assert!(
                Instant::now() < deadline,
                "only {} callbacks acknowledged within {limit:?}",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop sending and wait for the requests under way; every acknowledged
    /// pair, and how many callbacks were sent but never answered `200`.
    pub async fn finish(self) -> (Vec<(String, String)>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let unanswered = self.unanswered.clone();
        let acked = self.join().await;
        (acked, unanswered.load(Ordering::SeqCst))
    }

    /// Wait until every connection stopped (the daemon was killed, or
    /// `finish`); every acknowledged pair.
    pub async fn join(self) -> Vec<(String, String)> {
        for t in self.tasks {
            let _ = t.await;
        }
        let v = self.acked.lock().unwrap().clone();
        v
    }
}

/// Send `n` callbacks tagged `tag`, `gap` apart, until the daemon stops
/// answering (it was killed); the acknowledged event ids.
pub async fn send_spaced(addr: SocketAddr, tag: &str, n: usize, gap: Duration) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..n {
        let body = runway(&format!("{tag}-{i}"));
        // Its own task: a request cut by the daemon's death ends this loop, not the test.
        match tokio::spawn(async move { callback(addr, &body).await }).await {
            Ok((StatusCode::OK, v)) => acked.push(v["id"].as_str().unwrap().to_string()),
            _ => break,
        }
        tokio::time::sleep(gap).await;
    }
    acked
}

/// Open the store at `data` (no daemon runs on it).
pub fn open_store(data: &Path) -> hookrelay::store::Store {
    hookrelay::store::Store::open_sled(&hookrelay::store::Options {
        path: data.to_path_buf(),
        cache_bytes: 1 << 20,
        min_free: 0,
        compression: false,
        discard_v1_rows: false,
    })
    .unwrap()
}

/// Pending deliveries of `sub` in a store no daemon runs on.
pub async fn backlog(store: &hookrelay::store::Store, sub: &str) -> u64 {
    let stats = store.subscriber_stats().await.unwrap();
    stats.iter().find(|s| s.name == sub).map_or(0, |s| s.backlog)
}

/// Every acknowledged event id is in the store at `data`; the opened store.
pub async fn assert_stored<'a>(data: &Path, acked: impl IntoIterator<Item = &'a String>) -> hookrelay::store::Store {
    let store = open_store(data);
    for id in acked {
        assert!(
            store.event(id.parse().unwrap()).await.unwrap().is_some(),
            "acknowledged {id} lost"
        );
    }
    store
}

/// Write `n` distinct Runway events of route `t`, fanned out to `subscribers`,
/// into the store at `data` as ingest would (the store's one write path, the
/// same prefill the benchmark uses), with no daemon running. Each subscriber
/// then has `n` deliveries waiting.
pub async fn prefill(data: &Path, n: usize, subscribers: &[&str]) {
    let store = open_store(data);
    let acked = hookrelay::store::prefill::prefill(&store, "t", subscribers, n, "backlog")
        .await
        .unwrap();
    assert!(acked.iter().all(|a| !a.duplicate));
    for s in subscribers {
        assert_eq!(backlog(&store, s).await, n as u64, "backlog of {s} after the prefill");
    }
    store.close().await;
}
