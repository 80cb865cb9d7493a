//! The HTTP client of a subscriber's lane (h1/h2, plain or TLS with ring,
//! system roots plus an optional private CA) and the errors a send can end in.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Subscriber;
use crate::stall::StallGuard;
use crate::tls::TlsError;

pub(super) type HttpClient = Client<hyper_rustls::HttpsConnector<StallGuard<HttpConnector>>, Full<Bytes>>;

/// A lane's client and what it was built from: a reload keeps the client (and
/// its open connections) when that is the same.
pub(super) struct LaneClient {
    pub(super) http: HttpClient,
    made_from: Made,
}

#[derive(PartialEq, Eq)]
struct Made {
    /// The CA file and its contents (a file replaced under the same name is a change).
    ca_file: Option<(PathBuf, Vec<u8>)>,
    /// The connect timeout.
    timeout: Duration,
}

impl LaneClient {
    /// Whether `other` was built from the same settings as this one.
    pub(super) fn made_like(&self, other: &LaneClient) -> bool {
        self.made_from == other.made_from
    }
}

pub(super) fn build(sub: &Subscriber) -> Result<LaneClient, TlsError> {
    // Read before the client is built: a file changed in between is read
    // again at the next reload rather than taken for the same.
    let made_from = Made {
        ca_file: sub.ca_file.as_ref().map(|p| {
            let pem = crate::config::small_file::read(p, crate::config::small_file::PEM_MAX);
            (p.clone(), pem.unwrap_or_default())
        }),
        timeout: sub.timeout,
    };
    let tls = crate::tls::client_config(sub.ca_file.as_deref())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(sub.timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        // A connection that takes nothing for an attempt's timeout is closed
        // (the attempt has given up by then; see `stall`).
        .wrap_connector(StallGuard::new(http, sub.timeout));
    // An HTTP/2 subscriber's one connection carries every attempt: one that
    // goes silent (state dropped by a NAT or load balancer, a peer gone
    // without a reset) is found by an unanswered ping and closed, so the
    // next attempt connects again instead of timing out on it (for as long
    // as the kernel keeps it: many minutes). HTTP/1.1 connections are not
    // reused after an attempt's timeout.
    let ping = keep_alive(sub.timeout);
    let http = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http2_keep_alive_interval(ping)
        .http2_keep_alive_timeout(ping)
        .build(https);
    Ok(LaneClient { http, made_from })
}

/// How long an HTTP/2 connection with requests in flight may read nothing
/// before it is pinged, and how long the ping may go unanswered before the
/// connection is closed: the attempt's `timeout`, at most 20 s.
fn keep_alive(timeout: Duration) -> Duration {
    timeout.min(Duration::from_secs(20))
}

/// Why an attempt got no status from the subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("cannot build request: {0}")]
    Build(String),
    /// Refused, reset, TLS or protocol failure (the whole error chain).
    #[error("connection error: {0}")]
    Connection(String),
    #[error("timeout after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}
