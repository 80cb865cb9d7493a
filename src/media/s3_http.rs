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

type Inner = Client<hyper_rustls::HttpsConnector<HyperHttp>, HttpRequestBody>;

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
            .wrap_connector(http);
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
