//! For the pull lane's in-process tests: the daemon on port 0 with its
//! embedded store and one pull subscriber, and plain HTTP/1.1 requests to it
//! over real sockets.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The pull token of the subscriber [`start`] configures.
pub const TOKEN: &str = "pull-secret";

/// The daemon with route `t` (`/hooks/t?token=tok`) and pull subscriber
/// `subscriber` (token [`TOKEN`], lease 60 s); its directory.
pub async fn start(subscriber: &str) -> (tempfile::TempDir, crate::Handle) {
    start_with(subscriber, "60s", "").await
}

/// [`start`] with the subscriber's lease `lease` and its other keys `more`
/// (TOML lines).
pub async fn start_with(subscriber: &str, lease: &str, more: &str) -> (tempfile::TempDir, crate::Handle) {
    start_with_server("", subscriber, lease, more).await
}

/// [`start_with`] with more `[server]` keys (TOML lines).
pub async fn start_with_server(
    server: &str,
    subscriber: &str,
    lease: &str,
    more: &str,
) -> (tempfile::TempDir, crate::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let toml = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
{server}
[store]
path = "{store}"
[admin]
listen = "127.0.0.1:0"
[[routes]]
name = "t"
path = "/hooks/t"
tokens = ["tok"]
[[routes.subscribers]]
name = "{subscriber}"
pull = {{ token = "{TOKEN}", lease = "{lease}" }}
{more}
"#,
        store = dir.path().join("store").display()
    );
    std::fs::write(&path, toml).unwrap();
    let config = crate::Config::load(&path).expect("config");
    let relay = crate::start(config).await.expect("starts");
    (dir, relay)
}

/// One HTTP/1.1 request, a pull API one by forwarder `holder` (with the
/// pull token) when given; the status and the body.
pub async fn call(addr: SocketAddr, method: &str, path: &str, holder: Option<&str>, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    if let Some(holder) = holder {
        req.push_str(&format!(
            "authorization: Bearer {TOKEN}\r\nhookrelay-forwarder: {holder}\r\n"
        ));
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

/// A callback stored on route `t` (its body names `task`); its id.
pub async fn accepted(addr: SocketAddr, task: &str) -> String {
    let body = format!(r#"{{"data":{{"task_id":"{task}"}}}}"#);
    let (s, got) = call(addr, "POST", "/hooks/t?token=tok", None, &body).await;
    assert_eq!(s, 200, "{got}");
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// The ids of a pull answer's messages.
pub fn ids(answer: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    v["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["id"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The same acknowledgement `ack` of forwarder `f1` to `subscriber` sent
/// twice, the second 300 ms after the first (while the first one's record
/// is in progress): both answers, each within 10 s.
pub async fn sent_twice(addr: SocketAddr, subscriber: &str, ack: &str) -> ((u16, String), (u16, String)) {
    sent_one_after_the_other(addr, subscriber, ack, ack).await
}

/// [`sent_twice`] with `second` the second request's body.
pub async fn sent_one_after_the_other(
    addr: SocketAddr,
    subscriber: &str,
    ack: &str,
    second: &str,
) -> ((u16, String), (u16, String)) {
    let path = format!("/pull/{subscriber}/ack");
    let send = |ack: String, path: String| {
        tokio::spawn(async move {
            let answer = call(addr, "POST", &path, Some("f1"), &ack);
            tokio::time::timeout(std::time::Duration::from_secs(10), answer)
                .await
                .expect("the acknowledgement is answered")
        })
    };
    let first = send(ack.to_string(), path.clone());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = send(second.to_string(), path);
    (first.await.unwrap(), second.await.unwrap())
}
