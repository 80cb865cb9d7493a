//! A synthetic backlog: Runway-style callbacks appended through the normal
//! write path (exactly what ingest would have stored), for the tests and the
//! benchmark (`examples/prefill.rs`, `bench/run.sh`) alike.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Accepted, EventMeta, NewEvent, Origin, Store, StoreError, Topology};

/// The body of the `i`-th synthetic callback tagged `tag` (~210 bytes, the
/// provider's Runway shape).
pub fn runway_body(tag: &str, i: usize) -> String {
    format!(
        r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"{tag}-{i}","video_id":"485da89c-7fca-4340-8c04-101025b2ae71","video_url":"https://file.com/k/{i}.mp4","image_url":"https://file.com/m/{i}.png"}}}}"#
    )
}

/// Register `route` with `subscribers`, then append `n` distinct callbacks
/// for them (256 in flight at once). Returns what the store answered, in order.
pub async fn prefill(
    store: &Store,
    route: &str,
    subscribers: &[&str],
    n: usize,
    tag: &str,
) -> Result<Vec<Accepted>, StoreError> {
    let subs: Vec<String> = subscribers.iter().map(|s| s.to_string()).collect();
    store
        .register(&Topology {
            routes: vec![(route.to_string(), subs.clone())],
        })
        .await?;
    const IN_FLIGHT: usize = 256;
    let mut out = vec![None; n];
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT.min(n.max(1)) {
        let (store, route, subs, tag) = (store.clone(), route.to_string(), subs.clone(), tag.to_string());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for i in (w..n).step_by(IN_FLIGHT) {
                let body = runway_body(&tag, i);
                let event = NewEvent {
                    media: Vec::new(),
                    media_after_verify: false,
                    task: None,
                    meta: EventMeta {
                        route: route.clone(),
                        received_ms: crate::clock::now_ms(),
                        source: Some(std::net::Ipv4Addr::LOCALHOST.into()),
                        content_type: Some("application/json".into()),
                        headers: Vec::new(),
                        subscribers: subs.clone(),
                        dedupe_fallback: false,
                        origin: Origin::Callback,
                    },
                    dedupe_hash: Sha256::digest(body.as_bytes()).into(),
                    body: Bytes::from(body),
                };
                mine.push((i, store.append(event).await?));
            }
            Ok::<_, StoreError>(mine)
        });
    }
    while let Some(done) = tasks.join_next().await {
        for (i, a) in done.map_err(|e| StoreError::Engine(e.to_string()))?? {
            out[i] = Some(a);
        }
    }
    Ok(out.into_iter().flatten().collect())
}
