//! Volume: callbacks sent from many connections until a deadline (with the
//! acknowledged ones kept), a store prefilled through the group-commit writer,
//! and the check that every acknowledged event is on disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use sha2::Digest;

use super::bodies::runway;
use super::client::callback;

/// Send callbacks from `conns` connections until `stop` has passed or the daemon
/// stops answering; the acknowledged (event id, body) pairs.
pub async fn load_until(addr: SocketAddr, conns: usize, tag: &str, stop: Duration) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + stop;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let acked = acked.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                if Instant::now() > deadline {
                    return;
                }
                let body = runway(&format!("{tag}-{c}-{i}"));
                match tokio::time::timeout(Duration::from_secs(2), callback(addr, &body)).await {
                    Ok((StatusCode::OK, v)) => acked
                        .lock()
                        .unwrap()
                        .push((v["id"].as_str().unwrap().to_string(), body)),
                    _ => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let v = acked.lock().unwrap().clone();
    v
}

/// Every acknowledged event id is in the store at `data`; the opened store.
pub fn assert_stored<'a>(data: &Path, acked: impl IntoIterator<Item = &'a String>) -> hookrelay::store::Store {
    let store = hookrelay::store::Store::open(data, 1 << 20).unwrap();
    for id in acked {
        assert!(
            store.event(id.parse().unwrap()).unwrap().is_some(),
            "acknowledged {id} lost"
        );
    }
    store
}

/// Write `n` distinct Runway events of route `t`, fanned out to `subscribers`,
/// into the store at `data` as ingest would (through the group-commit writer,
/// 64 writers at once), with no daemon running. Each subscriber then has `n`
/// jobs waiting.
pub async fn prefill(data: &Path, n: usize, subscribers: &[&str]) {
    use hookrelay::store::{now_ms, EventMeta, NewEvent, Store};
    let store = Store::open(data, 16 << 20).unwrap();
    let committer = store.committer(4096, Arc::new(|_: &[String]| {}));
    let subscribers: Vec<String> = subscribers.iter().map(|s| s.to_string()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..64 {
        let (c, subscribers) = (committer.clone(), subscribers.clone());
        tasks.spawn(async move {
            for i in (w..n).step_by(64) {
                let body = runway(&format!("backlog-{i}"));
                let hash: [u8; 32] = sha2::Sha256::digest(body.as_bytes()).into();
                let meta = EventMeta {
                    route: "t".into(),
                    received_ms: now_ms(),
                    source: "127.0.0.1".into(),
                    content_type: Some("application/json".into()),
                    headers: vec![],
                    subscribers: subscribers.clone(),
                    dedupe: hex::encode(hash),
                    dedupe_fallback: false,
                };
                let a = c
                    .commit(NewEvent {
                        meta,
                        dedupe_hash: hash,
                        body: body.into(),
                    })
                    .await
                    .unwrap();
                assert!(!a.duplicate);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    committer.stop().await;
    store.flush().unwrap();
    for s in &subscribers {
        assert_eq!(store.count_jobs(s), n, "jobs of {s} after the prefill");
    }
}
