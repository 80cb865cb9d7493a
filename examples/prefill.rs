//! Benchmark helper (not part of the product): a backlog of COUNT Runway-style
//! events for one route and its subscribers, written through the store's
//! normal write path ([`hookrelay::store::prefill`]).
//!
//! prefill STORE_DIR COUNT ROUTE SUBSCRIBER[,SUBSCRIBER…] [--compression]

use hookrelay::store::{prefill::prefill, Options, Store};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (dir, n, route, sub) = (a[1].clone(), a[2].parse::<usize>().unwrap(), a[3].clone(), a[4].clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::open_sled(&Options {
            path: dir.into(),
            cache_bytes: 64 << 20,
            min_free: 0,
            compression: a.get(5).is_some_and(|f| f == "--compression"),
            discard_v1_rows: false,
        })
        .unwrap();
        let started = std::time::Instant::now();
        let subs: Vec<&str> = sub.split(',').collect();
        prefill(&store, &route, &subs, n, "backlog").await.unwrap();
        store.close().await;
        eprintln!("prefilled {n} events in {:.1}s", started.elapsed().as_secs_f64());
    });
}
