//! Cluster mode: the NATS node one relay is connected to freezes (SIGSTOP:
//! its sockets stay open, nothing answers) and later comes back (SIGCONT)
//! while callbacks come in at two relays (real binaries). No callback is
//! answered `200` and then lost: every id answered `200` is delivered, and
//! nothing else is.

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_answered_200_is_lost_when_a_relays_node_freezes_mid_ingest() {
    let nats = NatsCluster::start(3).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let sub = Sub::ok().await;
    // Relay A knows only node 0; B the others.
    let servers = [vec![nats.url(0)], vec![nats.url(1), nats.url(2)]];
    let paths: Vec<_> = dirs
        .iter()
        .zip(servers)
        .map(|(d, s)| {
            TestConfig::new(d.path())
                .subscriber(Subscriber::new("s", sub.url()))
                .nats(s, 3)
                .write()
        })
        .collect();
    let envs = [("RUST_LOG", "warn,hookrelay::app=info")];
    let (ra, rb) = (Bin::start(&paths[0], &envs), Bin::start(&paths[1], &envs));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0usize));
    // Answers that took over 2 s: the freeze felt as a wait, not a refusal
    // (a 4 s freeze is within a provider's 5 s timeout).
    let held = Arc::new(Mutex::new(0usize));
    let stop = Instant::now() + secs(9);
    let mut providers = Vec::new();
    for w in 0..6 {
        let (acked, refused, held, addrs) = (acked.clone(), refused.clone(), held.clone(), [ra.addr, rb.addr]);
        providers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = runway(&format!("w{w}-{i}"));
                // Half the providers only ever call relay A.
                let addr = addrs[if w % 2 == 0 { 0 } else { i % 2 }];
                // A callback begun is sent until answered 200, as a provider
                // does (one refused yet stored would be delivered unacknowledged).
                if Instant::now() > stop {
                    return;
                }
                loop {
                    let sent = Instant::now();
                    match tokio::time::timeout(secs(5), try_callback(addr, &body)).await {
                        Ok(Some((StatusCode::OK, v))) => {
                            acked.lock().unwrap().push(v["id"].as_str().unwrap().to_string());
                            if sent.elapsed() > secs(2) {
                                *held.lock().unwrap() += 1;
                            }
                            break;
                        }
                        _ => {
                            *refused.lock().unwrap() += 1;
                            tokio::time::sleep(ms(100)).await;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(secs(2)).await;
    nats.signal(0, "STOP");
    tokio::time::sleep(secs(4)).await;
    nats.signal(0, "CONT");
    for p in providers {
        p.await.unwrap();
    }
    let want: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(want.len() > 100, "load was under way ({})", want.len());
    let (refused, held) = (*refused.lock().unwrap(), *held.lock().unwrap());
    assert!(
        refused + held > 0,
        "the freeze was felt at relay A: no callback refused, none answered after over 2 s"
    );
    sub.wait_for(Duration::from_secs(20), "every callback answered 200", |_| {
        let seen = seen_ids(&sub);
        want.iter().all(|id| seen.contains_key(id))
    })
    .await;
    tokio::time::sleep(secs(1)).await;
    let seen = seen_ids(&sub);
    let extra: Vec<_> = seen.keys().filter(|id| !want.contains(*id)).collect();
    assert!(extra.is_empty(), "delivered but never answered 200: {extra:?}");
    drop((ra, rb));
}
