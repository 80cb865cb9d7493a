//! Benchmark helper (not part of the product): writes N Runway-style events for
//! one route and subscriber straight into a store, through the same group-commit
//! writer ingest uses, to build a backlog.
//!
//! prefill STORE_DIR COUNT ROUTE SUBSCRIBER

use std::sync::Arc;

use hookrelay::store::{now_ms, EventMeta, NewEvent, Store};
use sha2::{Digest, Sha256};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (dir, n, route, sub) = (a[1].clone(), a[2].parse::<usize>().unwrap(), a[3].clone(), a[4].clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::open(std::path::Path::new(&dir), 64 << 20).unwrap();
        let committer = store.committer(8192, Arc::new(|_: &[String]| {}));
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for w in 0..256 {
            let (c, route, sub) = (committer.clone(), route.clone(), sub.clone());
            tasks.push(tokio::spawn(async move {
                for i in (w..n).step_by(256) {
                    let body = format!(
                        r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"backlog-{i}","video_id":"485da89c-7fca-4340-8c04-101025b2ae71","video_url":"https://file.com/k/{i}.mp4","image_url":"https://file.com/m/{i}.png"}}}}"#
                    );
                    let hash: [u8; 32] = Sha256::digest(body.as_bytes()).into();
                    let meta = EventMeta {
                        route: route.clone(),
                        received_ms: now_ms(),
                        source: "127.0.0.1".into(),
                        content_type: Some("application/json".into()),
                        headers: vec![],
                        subscribers: vec![sub.clone()],
                        dedupe: hex::encode(hash),
                        dedupe_fallback: false,
                    };
                    c.commit(NewEvent { meta, dedupe_hash: hash, body: body.into() }).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        committer.stop().await;
        store.flush().unwrap();
        eprintln!("prefilled {n} events in {:.1}s", started.elapsed().as_secs_f64());
    });
}
