//! The wire under the provider client: the API key as a sensitive bearer
//! header, the base URL rules, rustls (ring) with system roots plus an
//! optional CA, connect and whole-request timeouts, size-capped answers.
//!
//! Knows nothing of the provider's envelope or codes (see [`super::client`]
//! and [`super::outcome`]); it returns raw answers or why there was none.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Answers are small JSON documents; anything bigger is not one.
const MAX_ANSWER: usize = 4 << 20;
const UA: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The provider API key. Shows as `<redacted>`; there is no way to print it.
#[derive(Clone)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Result<ApiKey, String> {
        let key = key.into();
        if key.is_empty() {
            return Err("provider API key is empty".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("provider API key holds spaces or characters that cannot go in a header".into());
        }
        Ok(ApiKey(key.into()))
    }

    /// `text` with every occurrence of the key replaced by `<redacted>`: an
    /// answer that echoes the request's `Authorization` (a gateway's error
    /// page, a message naming the refused key) becomes a task's
    /// `last_error`, a log line and an admin API answer.
    /// A text cut short (an error quotes the first 200 bytes of a page) may
    /// end in the key's first characters: that start goes too.
    /// That start goes in any form the key may be quoted in (percent-encoded,
    /// JSON-escaped), as [`Self::redact_bytes`] finds the whole key.
    pub(crate) fn redact(&self, text: &str) -> String {
        crate::auth::redact_cut_end(text.replace(&*self.0, "<redacted>"), self.0.as_bytes())
    }

    /// Bytes relayed from the provider with the key, if it echoes it, redacted.
    pub(crate) fn redact_bytes(&self, text: Bytes) -> Bytes {
        crate::auth::redact_bytes(text, self.0.as_bytes())
    }

    /// The same key (compared in constant time).
    pub fn same(&self, other: &ApiKey) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A raw answer: status, headers and (size-capped) body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why no answer came back.
pub(crate) enum NoAnswer {
    /// The connection was never made: nothing was sent.
    Connect(String),
    /// Something went wrong after the request may have left.
    Failed(String),
    Timeout,
}

/// One base URL, one key, one connection pool.
pub(crate) struct Transport {
    /// Scheme, authority and optional path prefix, without a trailing slash.
    pub base: String,
    auth: HeaderValue,
    http: HttpClient,
    /// Whole request: connect, send, last byte of the answer.
    timeout: Duration,
}

impl Transport {
    pub fn new(
        base_url: &str,
        key: &ApiKey,
        timeout: Duration,
        connect_timeout: Duration,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Transport> {
        let base = check_base_url(base_url)?;
        let mut auth = HeaderValue::try_from(format!("Bearer {}", key.0))
            .map_err(|_| anyhow::anyhow!("provider API key cannot go in a header"))?;
        auth.set_sensitive(true);
        let tls = crate::tls::client_config(ca_file)?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Transport {
            base,
            auth,
            http,
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `method` to `base + path_and_query` with an optional JSON body.
    pub async fn send(&self, method: Method, path_and_query: &str, body: Option<Bytes>) -> Result<Answer, NoAnswer> {
        let uri: Uri = format!("{}{path_and_query}", self.base)
            .parse()
            .map_err(|e| NoAnswer::Failed(format!("bad request URI: {e}")))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, UA);
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| NoAnswer::Failed(e.to_string()))?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let text = crate::error_chain::error_chain(&e);
                if e.is_connect() {
                    NoAnswer::Connect(text)
                } else {
                    NoAnswer::Failed(text)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| NoAnswer::Failed(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(NoAnswer::Timeout),
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date (read as deliveries read it,
/// against the daemon's clock).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    crate::delivery::retry::parse_retry_after(v, crate::clock::time_of_day())
}

/// `https://host[:port][/prefix]`; `http` only for loopback (tests), since the
/// key would otherwise cross the network in clear.
pub fn check_base_url(raw: &str) -> anyhow::Result<String> {
    // Messages show the URL without credentials or query values: they are
    // refused because they may be secrets, so they must not be echoed.
    let shown = crate::auth::redact_url(raw);
    let bad = |why: &str| anyhow::anyhow!("provider base_url {shown:?}: {why}");
    let uri: Uri = raw.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if crate::config::unusable_port(raw) {
        return Err(bad("the port must be 1 to 65535"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("must not carry credentials; the API key is configured separately"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query string"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        Some("http") => return Err(bad("must use https (http is only allowed to a loopback address)")),
        _ => return Err(bad("must start with https://")),
    }
    Ok(raw.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(check_base_url("https://api.kie.ai/").unwrap(), "https://api.kie.ai");
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080").is_ok());
        let e = check_base_url("http://api.kie.ai").unwrap_err().to_string();
        assert!(e.contains("must use https"), "{e}");
        let e = check_base_url("https://user:pw@api.kie.ai").unwrap_err().to_string();
        assert!(e.contains("credentials"), "{e}");
        assert!(check_base_url("ftp://api.kie.ai").is_err());
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(ApiKey::new("").is_err());
        assert!(ApiKey::new("a b").is_err());
        let k = ApiKey::new("sk-very-secret").unwrap();
        assert!(!format!("{k:?}").contains("sk-very-secret"));
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let got = retry_after(&h).unwrap();
        assert!(
            got > Duration::from_secs(100) && got <= Duration::from_secs(120),
            "{got:?}"
        );
    }
}
