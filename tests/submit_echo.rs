//! The submit proxy hands the provider's answer back, but never the route's
//! token (in the `callBackUrl` the relay added) nor the API key, should the
//! answer echo the create call: no secret in an admin answer.

use crate::common;

use std::net::SocketAddr;

use common::route::{Provider, Route, Subscriber};
use common::tasks::{submit, tasks_config};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "route-token/echoed-7f3a9c";
const KEY: &str = "sk-provider-key-echoed-42";

/// A provider stand-in that accepts every create and quotes the request
/// (its body and `Authorization` line) in its answer, as a debug field would.
async fn echoing_provider() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let request: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
                let answer = json!({"code": 200, "msg": "success",
                    "data": {"taskId": "echo-1", "request": request, "headers": head}});
                let body = answer.to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_submit_proxy_never_hands_back_the_route_token_or_the_api_key() {
    let provider = echoing_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let route = Route::new("runway", "/hooks/runway")
        .tokens([TOKEN])
        .preset("kie-runway")
        .provider(Provider::new(KEY, &format!("http://{provider}")))
        .subscriber(Subscriber::new("runway-sub", "http://127.0.0.1:9/"));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let (status, _, body) = submit(
        h.admin_addr,
        "runway",
        "/api/v1/runway/generate",
        &json!({"prompt": "x"}),
    )
    .await;
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_slice(&body).expect("the answer is still JSON");
    assert_eq!(v["data"]["taskId"], "echo-1", "{text}");
    let url = v["data"]["request"]["callBackUrl"].as_str().unwrap_or_default();
    assert!(
        url.contains("/hooks/runway?token=<redacted>"),
        "the echo is still recognisable: {text}"
    );
    for secret in [TOKEN, "echoed-7f3a9c", KEY] {
        assert!(!text.contains(secret), "{secret:?} in the admin answer: {text}");
    }
    h.shutdown().await;
}
