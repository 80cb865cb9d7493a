//! An S3 endpoint that answers `503 SlowDown` to part uploads in the middle
//! of a multipart upload (moto behind a proxy that injects the answers): a
//! passing fault is retried within the request and the file stored; one
//! that lasts fails the try (retryable), the multipart upload is aborted
//! and nothing is left in the bucket.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::client::request;
use common::fetcher::archive_fetcher;
use common::files::{generated_sha256, FileServer, Route};
use common::s3::Moto;
use hookrelay::media::{archive, ArchiveError, MediaStore, S3Store, StoreError};
use http_body_util::{BodyExt, Full};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DOWNLOAD: Duration = Duration::from_secs(60);
const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                         <Message>Please reduce your request rate.</Message></Error>";

/// A proxy to `upstream` answering the first `fail` part uploads
/// (`PUT …?partNumber=…`) with `503 SlowDown`, passing everything else on;
/// its address and the count of part uploads it refused.
async fn slow_down_proxy(upstream: SocketAddr, fail: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    use hyper::service::service_fn;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let (client, count) = (client.clone(), count.clone());
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (client, count) = (client.clone(), count.clone());
                async move {
                    let (mut parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let part = parts.method == http::Method::PUT
                        && parts.uri.query().is_some_and(|q| q.contains("partNumber="));
                    if part && count.fetch_add(1, Ordering::SeqCst) < fail {
                        return Ok::<_, hyper::Error>(
                            http::Response::builder()
                                .status(503)
                                .body(Full::new(Bytes::from_static(SLOW_DOWN.as_bytes())))
                                .unwrap(),
                        );
                    }
                    if part {
                        count.fetch_sub(1, Ordering::SeqCst);
                    }
                    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                    parts.uri = format!("http://{upstream}{pq}").parse().unwrap();
                    let resp = client
                        .request(http::Request::from_parts(parts, Full::new(body)))
                        .await
                        .expect("moto answers");
                    let (parts, body) = resp.into_parts();
                    let body = body.collect().await?.to_bytes();
                    Ok(http::Response::from_parts(parts, Full::new(body)))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(c), svc)
                    .await;
            });
        }
    });
    (addr, refused)
}

/// Anonymous bucket-level reads (listings), straight from moto.
async fn raw_get(moto: &Moto, path: &str) -> String {
    let (status, _, body) = request(moto.addr, None, "GET", path, &[], Bytes::new()).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[tokio::test]
async fn slow_down_mid_multipart_is_retried_then_fails_the_try_and_leaves_nothing() {
    let moto = Moto::start().await;
    moto.create_bucket("faults").await;
    let s = FileServer::start(LOCAL).await;
    let len = 12 << 20; // three 5 MiB parts, the last one short
    s.route(
        "/big.mp4",
        Route::Generated {
            len,
            content_length: false,
        },
    );
    let fetcher = archive_fetcher(1 << 30, DOWNLOAD);

    // Two refusals: each within the request's own retries (two more tries).
    let (proxy, refused) = slow_down_proxy(moto.addr, 2).await;
    let store = MediaStore::S3(S3Store::new(&Moto::settings_for(&format!("http://{proxy}"), "faults")).unwrap());
    let st = archive(&fetcher, &store, &s.url("/big.mp4")).await.unwrap();
    assert_eq!(refused.load(Ordering::SeqCst), 2, "the faults were met");
    assert_eq!((st.size, st.sha256.as_str()), (len, generated_sha256(len).as_str()));

    // A store that keeps refusing parts: the try fails (a later one may
    // work), its multipart upload is aborted, no temporary object stays.
    let (proxy, _) = slow_down_proxy(moto.addr, usize::MAX).await;
    let store = MediaStore::S3(S3Store::new(&Moto::settings_for(&format!("http://{proxy}"), "faults")).unwrap());
    let err = archive(&fetcher, &store, &s.url("/big.mp4")).await.unwrap_err();
    assert!(matches!(err, ArchiveError::Store(StoreError::Object(_))), "{err}");
    assert!(err.retryable());
    assert!(err.to_string().contains("SlowDown"), "{err}");
    let listing = raw_get(&moto, "/faults?list-type=2").await;
    assert_eq!(
        listing.matches("<Key>").count(),
        1,
        "only the file stored above: {listing}"
    );
    let uploads = raw_get(&moto, "/faults?uploads").await;
    assert_eq!(uploads.matches("<Upload>").count(), 0, "aborted: {uploads}");
}
