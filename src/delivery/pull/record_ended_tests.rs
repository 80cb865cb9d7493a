//! A record task that panics while it writes an acknowledgement: the
//! acknowledgement gets `503` (send it again), the lease is kept, and an
//! acknowledgement of the same message that waited for that record is
//! answered too (applied to the lease put back). The daemon runs in-process
//! on port 0 with its embedded store; requests go over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::settle::panic_hook;

/// One HTTP/1.1 request; the status and the body.
async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const PULL: [(&str, &str); 2] = [("authorization", "Bearer pull-secret"), ("hookrelay-forwarder", "f1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_whose_record_task_panics_gets_503_and_keeps_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let toml = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
[store]
path = "{store}"
[admin]
listen = "127.0.0.1:0"
[[routes]]
name = "t"
path = "/hooks/t"
tokens = ["tok"]
[[routes.subscribers]]
name = "panicky"
pull = {{ token = "pull-secret", lease = "60s" }}
"#,
        store = dir.path().join("store").display()
    );
    std::fs::write(&path, toml).unwrap();
    let config = crate::Config::load(&path).expect("config");
    let relay = crate::start(config).await.expect("starts");
    let addr = relay.ingest_addrs[0];
    let (s, got) = call(addr, "POST", "/hooks/t?token=tok", &[], r#"{"data":{"task_id":"a"}}"#).await;
    assert_eq!(s, 200, "{got}");
    let id = serde_json::from_str::<serde_json::Value>(&got).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, got) = call(addr, "GET", "/pull/panicky?wait=5s", &PULL, "").await;
    assert_eq!(s, 200, "{got}");
    assert!(got.contains(&id), "{got}");

    panic_hook::arm("panicky");
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let send = |ack: String| {
        tokio::spawn(async move {
            let answer = call(addr, "POST", "/pull/panicky/ack", &PULL, &ack);
            tokio::time::timeout(Duration::from_secs(10), answer).await
        })
    };
    let first = send(ack.clone());
    // The same acknowledgement while the first one's record is in progress:
    // it waits for that record.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = send(ack.clone());
    let (s, got) = first.await.unwrap().expect("the acknowledgement is answered");
    assert_eq!(s, 503, "{got}");
    assert!(got.contains("send it again"), "{got}");
    // The lease was put back: the waiting acknowledgement applies to it.
    let (s, got) = second
        .await
        .unwrap()
        .expect("the acknowledgement that waited is answered");
    assert_eq!(s, 200, "{got}");
    assert!(got.contains(r#""acknowledged":1"#), "{got}");
    // Recorded once: nothing more is leased.
    let (s, got) = call(addr, "POST", "/pull/panicky/ack", &PULL, &ack).await;
    assert_eq!(s, 409, "{got}");
    relay.shutdown().await;
}
