//! Store-only probe of the v2 layout: ingest, disk per event, drain.
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hookrelay::store::*;
use sha2::{Digest, Sha256};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let subs: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sled(&Options {
        path: dir.path().join("d"),
        cache_bytes: 16 << 20,
        min_free: 0,
        compression: false,
        discard_v1_rows: false,
    })
    .unwrap();
    let names: Vec<String> = (0..subs).map(|i| format!("s{i}")).collect();
    store
        .register(&Topology {
            routes: vec![("runway".into(), names.clone())],
        })
        .await
        .unwrap();
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..128 {
        let (s, next, names) = (store.clone(), next.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n { return; }
                let task = format!("{i:08x}-debb-48d1-98c4-a6d1c717eba6");
                let body = format!(r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"{task}","video_id":"485da89c-7fca-4340-8c04-101025b2ae71","video_url":"https://file.com/k/{i}.mp4","image_url":"https://file.com/m/{i}.png"}}}}"#);
                let ev = NewEvent { meta: EventMeta { route: "runway".into(), received_ms: hookrelay::clock::now_ms(), source: Some("127.0.0.1".parse().unwrap()), content_type: Some("application/json".into()), headers: vec![("user-agent".into(), "bench/1".into())], subscribers: names.clone(), dedupe_fallback: false, origin: Origin::Callback }, dedupe_hash: Sha256::digest(task.as_bytes()).into(), body: Bytes::from(body), media: Vec::new(), media_after_verify: false, task: None };
                s.append(ev).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = t.elapsed();
    store.close().await;
    drop(store);
    let size: u64 = walk(&dir.path().join("d"));
    println!(
        "ingest {n} events: {:.0}/s; disk {} B/event; peak RSS {} MiB",
        n as f64 / el.as_secs_f64(),
        size / n as u64,
        rss_kib() / 1024
    );
    let store = Store::open_sled(&Options {
        path: dir.path().join("d"),
        cache_bytes: 16 << 20,
        min_free: 0,
        compression: false,
        discard_v1_rows: false,
    })
    .unwrap();
    store
        .register(&Topology {
            routes: vec![("runway".into(), names.clone())],
        })
        .await
        .unwrap();
    let t = Instant::now();
    tokio::spawn(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            eprintln!("rss {} MiB", cur_rss() / 1024);
        }
    });
    let mut src = store.work_source("s0").unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ticket>();
    let mut in_flight = 0;
    let mut done = 0;
    let now = hookrelay::clock::now_ms();
    while done < n {
        if in_flight < 64 {
            let work = src.take(64 - in_flight, now).await.unwrap();
            for w in work {
                in_flight += 1;
                let (s, tx) = (store.clone(), tx.clone());
                tokio::spawn(async move {
                    s.record(
                        &w.ticket,
                        Some(Attempt {
                            attempt: 1,
                            at_ms: now,
                            duration_ms: 1,
                            status: Some(200),
                            error: None,
                        }),
                        Outcome::Delivered,
                    )
                    .await
                    .unwrap();
                    let _ = tx.send(w.ticket);
                });
            }
        }
        if let Some(t) = rx.recv().await {
            src.done(&t).await;
            in_flight -= 1;
            done += 1;
            if done % 20000 == 0 {
                eprintln!("{done}: rss {} MiB", cur_rss() / 1024);
            }
        }
        while let Ok(t) = rx.try_recv() {
            src.done(&t).await;
            in_flight -= 1;
            done += 1;
        }
    }
    let el = t.elapsed();
    store.close().await;
    println!(
        "drain {n}: {:.0}/s; peak RSS {} MiB; disk after {} B/event",
        n as f64 / el.as_secs_f64(),
        rss_kib() / 1024,
        walk(&dir.path().join("d")) / n as u64
    );
}

fn cur_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn walk(p: &std::path::Path) -> u64 {
    let mut s = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        s += if m.is_dir() { walk(&e.path()) } else { m.len() };
    }
    s
}
