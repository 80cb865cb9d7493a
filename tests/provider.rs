//! The provider client against the fake provider on loopback: answer codes
//! mapped to retry-later or give-up, 429 storms, submit, download-url,
//! transport failures, HTTPS with a private CA, and the key kept secret.

use crate::common;

use std::time::Duration;

use common::certs::TestCert;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use hookrelay::provider::outcome::{Backoff, BackoffPolicy};
use hookrelay::provider::{Action, ApiKey, ClientConfig, ErrorKind, Product, ProviderClient, Stage};
use serde_json::json;

const KEY: &str = "fake-provider-key";

fn config(base: &str, key: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(base, ApiKey::new(key).unwrap());
    let quick = |ms| Backoff {
        base: Duration::from_millis(ms),
        max: Duration::from_secs(2),
    };
    cfg.backoff = BackoffPolicy {
        rate_limited: quick(100),
        maintenance: quick(100),
        transient: quick(50),
        max_retry_after: Duration::from_secs(2),
    };
    cfg.timeout = Duration::from_millis(800);
    cfg
}

fn client(fake: &FakeProvider) -> ProviderClient {
    ProviderClient::new(config(&fake.url(), fake.api_key())).unwrap()
}

#[tokio::test]
async fn a_429_storm_means_retry_later_with_growing_backoff() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    let id = fake.create(Product::Veo, TaskPlan::success(), None);
    fake.rate_limit(3);
    let mut waits = Vec::new();
    let mut answered = 0;
    let record = loop {
        match client.record(Product::Veo, &id).await {
            Ok(r) => break r,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
                let Action::RetryLater { after } = e.action else {
                    panic!("a 429 must not give up: {e}")
                };
                if e.http_status == Some(429) {
                    answered += 1;
                    waits.push(after);
                    // While the key is paused nothing is sent.
                    let before = fake.requests().len();
                    let again = client.record(Product::Veo, &id).await.unwrap_err();
                    assert!(again.is_retryable() && again.http_status.is_none(), "{again}");
                    assert!(again.retry_after().unwrap() <= after);
                    assert_eq!(fake.requests().len(), before, "a request was sent during the pause");
                }
                tokio::time::sleep(after).await;
            }
        }
    };
    assert_eq!(answered, 3);
    assert_eq!(
        waits,
        [100, 200, 400].map(Duration::from_millis),
        "back-off doubles per consecutive 429"
    );
    assert_eq!(record.task_id(), id);
    // Success resets the back-off.
    fake.rate_limit(1);
    let e = client.record(Product::Veo, &id).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_millis(100)));
}

#[tokio::test]
async fn unauthorized_expired_and_unknown_tasks_give_up() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let id = fake.create(Product::Runway, TaskPlan::success(), None);
    let wrong = ProviderClient::new(config(&fake.url(), "not-the-key")).unwrap();
    let e = wrong.record(Product::Runway, &id).await.unwrap_err();
    // The fake answers HTTP 200 with body code 401: the body code counts.
    assert_eq!(
        (e.kind, e.action, e.code, e.http_status),
        (ErrorKind::Unauthorized, Action::GiveUp, Some(401), Some(200))
    );

    let client = client(&fake);
    fake.expire(&id);
    let e = client.record(Product::Runway, &id).await.unwrap_err();
    assert_eq!(
        (e.kind, e.action, e.code),
        (ErrorKind::Rejected, Action::GiveUp, Some(422))
    );
    assert!(e.message.contains("14 days"), "{e}");

    let e = client.record(Product::Runway, "no-such-task").await.unwrap_err();
    assert_eq!(
        (e.kind, e.action, e.code),
        (ErrorKind::NotFound, Action::GiveUp, Some(404))
    );
    // A task of another product is not found at this product's endpoint.
    let suno = fake.create(Product::Suno, TaskPlan::success(), None);
    assert_eq!(
        client.record(Product::Runway, &suno).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    let e = client.record(Product::Suno, "").await.unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::InvalidInput, Action::GiveUp));
}

#[tokio::test]
async fn submit_sets_the_callback_url_and_returns_the_answer_unchanged() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    let ours = "https://hooks.example.com/hooks/runway?token=t0k";
    let body = br#"{"prompt":"a cat on a skateboard","duration":5,"callBackUrl":"https://someone.else/cb"}"#;
    let answer = client.submit("/api/v1/runway/generate", body, ours).await.unwrap();
    let task_id = answer.task_id.clone().expect("task id from data.taskId");
    assert_eq!(fake.task_ids(), std::slice::from_ref(&task_id));
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/api/v1/runway/generate");
    assert_eq!(
        sent.body.unwrap(),
        json!({"prompt": "a cat on a skateboard", "duration": 5, "callBackUrl": ours})
    );
    // The bytes are the fake's own serialisation of its answer, untouched.
    let want = json!({"code": 200, "msg": "success", "data": {"taskId": task_id}}).to_string();
    assert_eq!(answer.body, want.as_bytes());
    assert_eq!((answer.http_status.as_u16(), answer.code), (200, Some(200)));
    assert_eq!(answer.content_type.unwrap(), "application/json");
    assert_eq!(fake.task(&task_id).unwrap().callback_url.as_deref(), Some(ours));

    // A refusal is still the provider's answer, passed back as it came.
    fake.rate_limit(1);
    let answer = client.submit("/api/v1/veo/generate", b"{}", ours).await.unwrap();
    assert_eq!(
        (answer.http_status.as_u16(), answer.code, answer.task_id),
        (429, Some(429), None)
    );
    let answer = client.submit("/api/v1/jobs/createTask", b"{}", ours).await.unwrap();
    assert!(answer.task_id.is_some());
}

#[tokio::test]
async fn submit_refuses_what_it_cannot_forward() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    for (endpoint, body) in [
        ("/api/v1/../../admin", &b"{}"[..]),
        ("https://evil.example/api/v1/x", b"{}"),
        ("/api/v1/runway/generate?x=1", b"{}"),
        ("/api/v1/runway/generate", b"[1,2]"),
        ("/api/v1/runway/generate", b"not json"),
    ] {
        let e = client.submit(endpoint, body, "https://h/cb").await.unwrap_err();
        assert_eq!(
            (e.kind, e.action),
            (ErrorKind::InvalidInput, Action::GiveUp),
            "{endpoint}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn download_url_refreshes_platform_urls_only() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    let file = format!("{}/files/task/video.mp4", fake.url());
    let fresh = client.download_url(&file).await.unwrap();
    assert!(fresh.starts_with(&format!("{file}?fresh=")), "{fresh}");
    assert_eq!(fake.requests().pop().unwrap().body.unwrap(), json!({"url": file}));
    let e = client
        .download_url("https://elsewhere.example/x.mp4")
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.action, e.code),
        (ErrorKind::Rejected, Action::GiveUp, Some(422))
    );
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn refused_connections_and_timeouts() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = ProviderClient::new(config(&format!("http://{closed}"), KEY)).unwrap();
    let e = client.record(Product::Market, "t").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_millis(50)));
    let e = client
        .submit("/api/v1/jobs/createTask", b"{}", "https://h/cb")
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Network,
        "nothing was sent, so it can be retried: {e}"
    );
    assert!(e.is_retryable());

    let (addr, server) = silent_server().await;
    let client = ProviderClient::new(config(&format!("http://{addr}"), KEY)).unwrap();
    let e = client.record(Product::Market, "t").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable());
    // A create that may have reached the provider must not be blindly repeated.
    let e = client
        .submit("/api/v1/jobs/createTask", b"{}", "https://h/cb")
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::OutcomeUnknown, Action::GiveUp), "{e}");
    server.abort();
}

#[tokio::test]
async fn the_api_key_never_shows() {
    let secret = "sk-live-0123456789abcdef";
    let fake = FakeProvider::start(FakeOptions {
        api_key: secret.into(),
        ..FakeOptions::default()
    })
    .await;
    let good = ProviderClient::new(config(&fake.url(), secret)).unwrap();
    let id = fake.create(Product::Suno, TaskPlan::success(), None);
    let record = good.record(Product::Suno, &id).await.unwrap();
    let wrong_key = format!("{secret}-wrong");
    let bad = ProviderClient::new(config(&fake.url(), &wrong_key)).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = ProviderClient::new(config(&format!("http://{closed}"), secret)).unwrap();
    let mut shown = vec![
        format!("{good:?}"),
        format!("{bad:?}"),
        format!("{:?}", config(&fake.url(), secret)),
        format!("{record:?}"),
    ];
    let errors = [
        bad.record(Product::Suno, &id).await.unwrap_err(),
        down.record(Product::Suno, &id).await.unwrap_err(),
        down.download_url("https://x/y").await.unwrap_err(),
        down.submit("/api/v1/generate", b"{}", "https://h/cb")
            .await
            .unwrap_err(),
        good.submit("/api/v1/../x", b"{}", "https://h/cb").await.unwrap_err(),
    ];
    for e in &errors {
        shown.push(e.to_string());
        shown.push(format!("{e:?}"));
    }
    let bad_config = ProviderClient::new(config(&format!("https://user:{secret}@api.kie.ai"), secret)).unwrap_err();
    assert!(bad_config.to_string().contains("credentials"));
    for text in &shown {
        assert!(!text.contains(secret), "the key leaked: {text}");
    }
    assert!(errors[0].to_string().contains("unauthorized"));
}

#[tokio::test]
async fn https_to_a_provider_with_a_private_ca() {
    hookrelay::tls::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "fake");
    let fake = FakeProvider::start(FakeOptions {
        tls: Some(cert.http1_server_config()),
        ..FakeOptions::default()
    })
    .await;
    assert!(fake.url().starts_with("https://localhost:"));
    let id = fake.create(Product::FluxKontext, TaskPlan::success().manual(), None);
    let mut cfg = config(&fake.url(), fake.api_key());
    cfg.ca_file = Some(cert.cert.clone());
    let trusted = ProviderClient::new(cfg).unwrap();
    assert_eq!(
        trusted.record(Product::FluxKontext, &id).await.unwrap().stage(),
        Stage::Running
    );
    let untrusted = ProviderClient::new(config(&fake.url(), fake.api_key())).unwrap();
    let e = untrusted.record(Product::FluxKontext, &id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network);
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");
}

/// A provider (or a gateway before it) that echoes the request's
/// `Authorization` in its answer: as the envelope's `msg` with `code`, or in
/// an error page that is not JSON (after `pad` bytes), answered with `status`.
async fn echoing_server(status: u16, json: bool, pad: usize) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let auth = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .unwrap_or_default()
                .to_string();
            let body = if json {
                json!({"code": 401, "msg": format!("invalid key, you sent {auth}")}).to_string()
            } else {
                format!("<html>Bad request. {}Your headers: {auth}</html>", "x".repeat(pad))
            };
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                if json { "application/json" } else { "text/html" },
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn an_answer_that_echoes_the_key_does_not_carry_it_into_errors() {
    let secret = "sk-live-echoed-0123456789";
    // The last: the key straddles the 200 bytes of a page an error quotes.
    for (status, json, pad) in [
        (200, true, 0),
        (401, true, 0),
        (400, false, 0),
        (502, false, 0),
        (400, false, 135),
    ] {
        let (addr, server) = echoing_server(status, json, pad).await;
        let client = ProviderClient::new(config(&format!("http://{addr}"), secret)).unwrap();
        let e = client.record(Product::Runway, "t1").await.unwrap_err();
        for text in [e.to_string(), format!("{e:?}"), e.cause(), e.message.clone()] {
            assert!(!text.contains(secret), "the key leaked ({status}): {text}");
            assert!(
                !text.contains(&secret[..10]),
                "a part of the key leaked ({status}): {text}"
            );
        }
        assert!(e.message.contains("<redacted>"), "the echo is still recognisable: {e}");
        server.abort();
    }
}

/// A task id with path and query characters goes into the status call's
/// query encoded: the call stays on the status endpoint and the provider
/// reads back the very id (the record's own id must match it).
#[tokio::test]
async fn a_task_id_with_path_and_query_characters_is_sent_encoded() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let client = client(&fake);
    for id in ["../../api/v1/x", "a?taskId=b", "a#b", "a%2Fb", "a&b=c", "a b+c/"] {
        fake.set_record(Product::Runway, id, json!({"taskId": id, "state": "generating"}));
        let record = client.record(Product::Runway, id).await.unwrap();
        assert_eq!(record.task_id(), id);
        let sent = fake.requests().pop().unwrap();
        assert_eq!(sent.path, Product::Runway.status_path(), "{id:?}");
        assert_eq!(sent.task_id.as_deref(), Some(id));
    }
}
