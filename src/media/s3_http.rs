//! The HTTP client object_store uses for S3, over hyper-util and rustls/ring.
//!
//! Why not object_store's own client: its `aws` feature brings reqwest with
//! aws-lc-rs, and reqwest's `rustls-no-provider` would still be a second HTTP
//! stack relying on the process-wide provider being installed first. This
//! adapter reuses the crate's hyper-util client and `tls::client_config`
//! (ring, system roots plus an optional private CA), so `cargo tree -i
//! aws-lc-rs` stays empty. Owns only the transport; signing, retries and
//! multipart logic stay object_store's.
//!
//! Unlike the media fetcher, this client resolves names normally and may reach
//! private addresses: the S3 endpoint is the operator's configuration, not
//! input from a callback.

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector as HyperHttp;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};
use object_store::ClientOptions;

use crate::stall::StallGuard;

type Inner = Client<hyper_rustls::HttpsConnector<StallGuard<HyperHttp>>, HttpRequestBody>;

/// Time allowed for a request until the response headers arrive, unless
/// told otherwise. A part upload sends its whole body first, so this bounds
/// a part's transfer time (8 MiB in a minute: 140 KB/s at least); a store
/// that hangs holds a download slot this long per request. Copies and
/// multipart completions, which the store does over the whole file, get ten
/// times as long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the object_store client over hyper-util (one shared pool).
#[derive(Clone)]
pub struct HyperConnector {
    client: Inner,
    timeout: Duration,
}

impl std::fmt::Debug for HyperConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HyperConnector(hyper-util, rustls/ring)")
    }
}

impl HyperConnector {
    /// `timeout`: each request's, until its response headers arrive.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<HyperConnector, crate::tls::TlsError> {
        let tls = crate::tls::client_config(ca_file)?;
        let mut http = HyperHttp::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            // A connection whose store takes nothing sent for a request's
            // timeout is closed (the request has given up; see `stall`).
            .wrap_connector(StallGuard::new(http, timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HyperConnector { client, timeout })
    }
}

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(HyperService {
            client: self.client.clone(),
            timeout: self.timeout,
        }))
    }
}

#[derive(Clone)]
struct HyperService {
    client: Inner,
    timeout: Duration,
}

impl std::fmt::Debug for HyperService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HyperService")
    }
}

#[async_trait::async_trait]
impl HttpService for HyperService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // A copy (the upload moved under its digest) and the completion of a
        // multipart upload work on the whole file before they answer: up to
        // ten times as long.
        let whole_file = req.headers().contains_key("x-amz-copy-source")
            || (req.method() == http::Method::POST && req.uri().query().is_some_and(|q| q.contains("uploadId=")));
        let timeout = if whole_file { self.timeout * 10 } else { self.timeout };
        let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(elapsed) => return Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                return Err(HttpError::new(kind, e));
            }
            Ok(Ok(resp)) => resp,
        };
        let (parts, body) = resp.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's TCP sockets whose peer is `port`.
    fn sockets_to(port: u16) -> usize {
        let mine: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|t| Some(t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_string()))
            .collect();
        let port = format!(":{port:04X}");
        let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9 && f[2].ends_with(&port) && mine.contains(f[9])
            })
            .count()
    }

    /// A store that accepts each connection and never reads a part's body
    /// (12 MiB: more than the socket buffers on both sides take): each
    /// upload times out, and its connection is closed a timeout later
    /// instead of kept for as long as the store holds it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_never_reads_a_part_keeps_no_connection_per_upload() {
        crate::tls::install_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let holder = held.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                holder.lock().unwrap().push(s);
            }
        });
        let timeout = Duration::from_millis(300);
        let client = HyperConnector::new(None, timeout)
            .unwrap()
            .connect(&ClientOptions::default())
            .unwrap();
        let part = bytes::Bytes::from(vec![b'a'; 12 << 20]);
        for _ in 0..3 {
            let req = http::Request::put(format!("http://{addr}/bucket/part"))
                .body(HttpRequestBody::from(part.clone()))
                .unwrap();
            // The request's timeout, or (the guard's timer started with the
            // first write that waited, a moment after the request) the guard.
            let err = client.execute(req).await.unwrap_err();
            let guard = format!("{err:?}").contains("took nothing sent");
            assert!(matches!(err.kind(), HttpErrorKind::Timeout) || guard, "{err:?}");
        }
        assert_eq!(held.lock().unwrap().len(), 3, "each upload connected anew");
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut open = sockets_to(addr.port());
        while open > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            open = sockets_to(addr.port());
        }
        assert_eq!(
            open, 0,
            "{open} connections to the store kept after their uploads gave up"
        );
    }
}
