//! The acker against a relay older than the `release` list: it refuses the
//! field (400), and the acker must not give up the batch (the delivered ids
//! in it would be sent again): it hands the releases back instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::acker::{run, End, Finished};
use super::client::Relay;
use crate::auth::Secret;

/// A relay of the version before `release`: its acknowledgement refuses
/// unknown fields as that version did; every body it accepted is kept.
async fn old_relay() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let accepted: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let (status, answer) = if v.get("release").is_some() {
                            (400, r#"{"error":"invalid acknowledgement: unknown field `release`, expected `ids` or `retry`"}"#.to_string())
                        } else {
                            let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
                            kept.lock().unwrap().push(v.clone());
                            (
                                200,
                                format!(r#"{{"acknowledged":{},"retried":{},"dead":0}}"#, n("ids"), n("retry")),
                            )
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(answer)));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/pull/laptop"), accepted)
}

#[tokio::test]
async fn an_older_relay_gets_releases_as_hand_backs_and_keeps_the_acknowledgements() {
    crate::tls::install_provider();
    let (url, accepted) = old_relay().await;
    let tls = crate::tls::client_config(None).unwrap();
    let relay = Relay::new(
        url.parse().unwrap(),
        Secret::new("t"),
        tls,
        "fwd-1".into(),
        Duration::from_secs(1),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let done = |id: &str, end| Finished { id: id.into(), end };
    tx.send(done("evt_01M8G5S0QD2RJZ9GWMECMF4Z4N", End::Delivered))
        .await
        .unwrap();
    tx.send(done("evt_01M8G5S0QD2RJZ9GWMECMF4Z4P", End::Release))
        .await
        .unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), run(Arc::new(relay), rx))
        .await
        .unwrap();
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ids"], serde_json::json!(["evt_01M8G5S0QD2RJZ9GWMECMF4Z4N"]));
    assert_eq!(got[0]["retry"], serde_json::json!(["evt_01M8G5S0QD2RJZ9GWMECMF4Z4P"]));
}
