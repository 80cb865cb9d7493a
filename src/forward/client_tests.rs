//! The relay's API as the forwarder calls it: an answer too large named as
//! such, a long-poll held past the stall limit, a slow answer read while it
//! keeps coming.

use super::client::{Relay, RelayError, BODY_IDLE, MAX_ANSWER};
use crate::auth::Secret;
use crate::pull::wire;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::Uri;
use std::time::Duration;

/// A relay answer longer than the forwarder reads is told as such, not
/// as an unreachable relay (the relay is there; its message is too large).
#[tokio::test]
async fn an_answer_larger_than_the_forwarder_reads_is_named() {
    let relay = relay_answering_once(|mut s| async move {
        use tokio::io::AsyncWriteExt;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", MAX_ANSWER + 1);
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(b"{\"messages\": [").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let err = relay.pull(1, false).await.unwrap_err();
    assert!(
        matches!(err, RelayError::TooLarge(Some(n)) if n == MAX_ANSWER as u64 + 1),
        "{err:?}"
    );
    let said = err.to_string();
    assert!(said.contains("larger than the 256 MiB this forwarder reads"), "{said}");
    assert!(err.is_transient(), "other answers may be smaller");
}

/// The relay's API at a server on loopback that takes one request and
/// answers it with `answer` (on the raw socket).
async fn relay_answering_once<F, Fut>(answer: F) -> Relay
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        answer(s).await;
    });
    crate::tls::install_provider();
    let tls = crate::tls::client_config(None).unwrap();
    let url: Uri = format!("http://{addr}/pull/laptop").parse().unwrap();
    Relay::new(url, Secret::new(b"t".to_vec()), tls, "f".into(), Duration::ZERO).unwrap()
}

/// A request's head and body from a raw socket (`Content-Length` framing).
async fn read_request(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the forwarder closed the connection");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = got[end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the forwarder closed the connection mid-body");
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}

/// The stall guard watches only what the forwarder sends: a long-poll the
/// relay holds for longer than the guard's 15 s, whose large answer then
/// comes in two pieces 20 s apart, is read whole, and an acknowledgement
/// after it, on the same connection, is answered.
#[tokio::test(start_paused = true)]
async fn a_long_poll_held_past_the_stall_limit_then_an_ack_work() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let payload = vec![b'p'; 3 << 20];
    let message = serde_json::json!({"messages": [{
        "id": "evt_1", "route": "r", "attempt": 1, "headers": {}, "body": B64.encode(&payload),
    }]});
    let answer = serde_json::to_vec(&message).unwrap();
    let relay = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (head, _) = read_request(&mut s).await;
        assert!(head.starts_with("get /pull/laptop?wait=60000ms"), "{head}");
        tokio::time::sleep(Duration::from_secs(40)).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", answer.len());
        s.write_all(head.as_bytes()).await.unwrap();
        let (first, rest) = answer.split_at(answer.len() / 2);
        s.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        s.write_all(rest).await.unwrap();
        let (head, body) = read_request(&mut s).await;
        assert!(head.starts_with("post /pull/laptop/ack"), "{head}");
        let ack: wire::Ack = serde_json::from_slice(&body).unwrap();
        assert_eq!(ack.ids, ["evt_1"]);
        let acked = br#"{"acknowledged": 1, "retried": 0, "dead": 0}"#;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", acked.len());
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(acked).await.unwrap();
    });
    crate::tls::install_provider();
    let tls = crate::tls::client_config(None).unwrap();
    let url: Uri = format!("http://{addr}/pull/laptop").parse().unwrap();
    let wait = Duration::from_secs(60);
    let relay_api = Relay::new(url, Secret::new(b"t".to_vec()), tls, "f".into(), wait).unwrap();
    let started = tokio::time::Instant::now();
    let got = relay_api.pull(1, true).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(60), "{:?}", started.elapsed());
    assert_eq!(got.messages.len(), 1);
    assert_eq!(B64.decode(&got.messages[0].body).unwrap(), payload);
    let acked = relay_api
        .ack(&["evt_1".to_string()], &[], &[], Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(acked.acknowledged, 1);
    relay.await.unwrap();
}

/// A large answer on a slow link: its head within the limit, its body
/// over 40 s in pieces 10 s apart, is read whole (the limit covered the
/// body too: "no answer within 15s", and what it carried was leased for
/// nothing); one whose body then stops says so, with how much came.
#[tokio::test(start_paused = true)]
async fn a_slow_answer_is_read_while_it_keeps_coming() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let payload = vec![b'p'; 1 << 20];
    let message = serde_json::json!({"messages": [{
        "id": "evt_1", "route": "r", "attempt": 1, "headers": {}, "body": B64.encode(&payload),
    }]});
    let answer = serde_json::to_vec(&message).unwrap();
    let relay = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        for stops in [false, true] {
            let (head, _) = read_request(&mut s).await;
            assert!(head.starts_with("get /pull/laptop?wait=0ms"), "{head}");
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", answer.len());
            s.write_all(head.as_bytes()).await.unwrap();
            for (i, piece) in answer.chunks(answer.len() / 4 + 1).enumerate() {
                if stops && i == 2 {
                    tokio::time::sleep(BODY_IDLE * 2).await;
                    break;
                }
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    });
    crate::tls::install_provider();
    let tls = crate::tls::client_config(None).unwrap();
    let url: Uri = format!("http://{addr}/pull/laptop").parse().unwrap();
    let relay_api = Relay::new(url, Secret::new(b"t".to_vec()), tls, "f".into(), Duration::ZERO).unwrap();
    let started = tokio::time::Instant::now();
    let got = relay_api.pull(1, false).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(B64.decode(&got.messages[0].body).unwrap(), payload);
    let err = relay_api.pull(1, false).await.unwrap_err();
    let said = err.to_string();
    assert!(
        matches!(err, RelayError::Away(_)) && said.contains("nothing more for 30s") && said.contains(" bytes of "),
        "{said}"
    );
    relay.abort();
}

/// A redirect on the pull URL (a front proxy sending http to https) is not
/// followed, and its refusal says where it points (review 58: it said only
/// "HTTP 301").
#[tokio::test]
async fn a_redirect_is_named_with_where_it_points() {
    let relay = relay_answering_once(|mut s| async move {
        use tokio::io::AsyncWriteExt;
        let answer = "HTTP/1.1 301 Moved Permanently\r\nlocation: https://relay.example/pull/laptop\r\ncontent-length: 0\r\n\r\n";
        let _ = s.write_all(answer.as_bytes()).await;
    })
    .await;
    let err = relay.pull(1, false).await.unwrap_err();
    let said = err.to_string();
    assert!(
        said.contains("301") && said.contains("https://relay.example/pull/laptop"),
        "{said}"
    );
    assert!(!err.is_transient(), "{said}");
}
