//! The forwarder's two HTTP clients: to the relay's pull API (long-poll and
//! acknowledge, bearer token, TLS verified against the system roots or
//! `--ca-file`) and to the local service (POST each message's headers and
//! original body bytes). Both h1/h2, rustls with ring.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::auth::Secret;
use crate::pull::wire;
use crate::stall::StallGuard;

pub use super::relay_error::RelayError;

type Http = Client<hyper_rustls::HttpsConnector<StallGuard<HttpConnector>>, Full<Bytes>>;

/// The `User-Agent` of the forwarder's requests (to the relay and locally).
pub const USER_AGENT: &str = concat!("hookrelay-forward/", env!("CARGO_PKG_VERSION"));
/// Bytes of an answer read at most: the relay bounds a pull answer to
/// [`wire::ANSWER_BUDGET`] (or one larger message alone), and this is that
/// budget plus one message of [`wire::MAX_FORWARDED_BODY`].
pub(super) const MAX_ANSWER: usize = wire::MAX_ANSWER;
/// The longest an HTTP/2 connection with requests in flight stays silent
/// before a ping, and the ping unanswered before it is closed.
const PING_MAX: Duration = Duration::from_secs(20);
/// How long the head of the relay's answer may take beyond the long-poll's wait.
const RELAY_SLACK: Duration = Duration::from_secs(15);
/// The longest an answer's body may stop arriving.
pub(super) const BODY_IDLE: Duration = Duration::from_secs(30);
/// The longest an answer's body may take while it keeps arriving: beyond
/// the longest lease, what it carries has been offered again.
const BODY_MAX: Duration = crate::config::MAX_PULL_LEASE;

/// An HTTP client; `ping`: how long an HTTP/2 connection with requests in
/// flight may read nothing before it is pinged, and how long the ping may go
/// unanswered before the connection is closed. One that went silent (state
/// dropped by a NAT or load balancer, a peer gone without a reset) would
/// otherwise carry every request, each timing out, until the kernel gives
/// up on it (many minutes). A connection whose peer takes nothing sent for
/// `stall` (a request's timeout) is closed (see `stall`).
fn http(tls: rustls::ClientConfig, connect_timeout: Duration, ping: Duration, stall: Duration) -> Http {
    let mut conn = HttpConnector::new();
    conn.enforce_http(false);
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(StallGuard::new(conn, stall));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(50))
        .http2_keep_alive_interval(ping)
        .http2_keep_alive_timeout(ping)
        .build(https)
}

/// The relay's pull API for one subscriber.
pub struct Relay {
    http: Http,
    /// `…/pull/{subscriber}`.
    url: Uri,
    ack_url: Uri,
    token: Secret,
    /// Sent as `hookrelay-forwarder`: our leases are ours, not another forwarder's.
    forwarder: String,
    wait: Duration,
}

impl Relay {
    pub fn new(
        url: Uri,
        token: Secret,
        tls: rustls::ClientConfig,
        forwarder: String,
        wait: Duration,
    ) -> Result<Relay, String> {
        // `…/pull/laptop/` works too: the API's paths have no trailing slash.
        let base = url.to_string().trim_end_matches('/').to_string();
        let url: Uri = base.parse().map_err(|e| format!("invalid relay URL {base}: {e}"))?;
        let ack_url: Uri = format!("{base}/ack")
            .parse()
            .map_err(|e| format!("cannot build the acknowledgement URL from {base}: {e}"))?;
        Ok(Relay {
            http: http(tls, Duration::from_secs(10), PING_MAX, RELAY_SLACK),
            url,
            ack_url,
            token,
            forwarder,
            wait,
        })
    }

    /// A request whose answer is small (an acknowledgement's): its head
    /// within `limit`, its body within `limit` more.
    async fn call(&self, method: Method, uri: Uri, body: Bytes, limit: Duration) -> Result<Bytes, RelayError> {
        self.head(method, uri, body, limit).await?.read(limit).await
    }

    /// Send a request; the answer's head (within `limit`), its body not read.
    async fn head(&self, method: Method, uri: Uri, body: Bytes, limit: Duration) -> Result<Head, RelayError> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, crate::auth::bearer(&self.token))
            .header(header::USER_AGENT, USER_AGENT)
            .header(wire::FORWARDER_HEADER, &self.forwarder)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| RelayError::Away(format!("cannot build the request: {e}")))?;
        // The limit is for the answer's head: its body may be large (a
        // message of up to 160 MiB) on a slow link, and is read while it
        // keeps coming (see [`read_answer`]).
        let resp = tokio::time::timeout(limit, self.http.request(req))
            .await
            .map_err(|_| RelayError::Away(format!("no answer within {}s", limit.as_secs())))?
            .map_err(|e| RelayError::Away(crate::error_chain::error_chain(&e)))?;
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(RelayError::TooLarge(declared));
        }
        Ok(Head { resp, declared })
    }

    /// Long-poll for up to `max` messages.
    /// Pull up to `max` messages: a long-poll (`--wait`), or, when `long` is
    /// false, an answer at once (to learn that the relay is there).
    pub async fn pull(&self, max: usize, long: bool) -> Result<wire::Messages, RelayError> {
        self.pull_head(max, long).await?.messages().await
    }

    /// A pull's answer, up to its head: once it has come, the relay has
    /// leased what its body carries (read it with [`Head::messages`]).
    pub async fn pull_head(&self, max: usize, long: bool) -> Result<Head, RelayError> {
        let wait = if long { self.wait } else { Duration::ZERO };
        let uri: Uri = format!("{}?wait={}ms&max={max}", self.url, wait.as_millis())
            .parse()
            .map_err(|e| RelayError::Away(format!("invalid pull URL: {e}")))?;
        self.head(Method::GET, uri, Bytes::new(), wait + RELAY_SLACK).await
    }

    /// Acknowledge `ids`, hand back `retry` (with what the local service
    /// answered them, `local`), release `release`.
    pub async fn ack(
        &self,
        ids: &[String],
        retry: &[String],
        release: &[String],
        local: std::collections::BTreeMap<String, wire::LocalAnswer>,
        attempts: std::collections::BTreeMap<String, u32>,
    ) -> Result<wire::Acked, RelayError> {
        let body = serde_json::to_vec(&wire::Ack {
            ids: ids.to_vec(),
            retry: retry.to_vec(),
            release: release.to_vec(),
            local,
            attempts,
        })
        .unwrap_or_default();
        let answer = self
            .call(Method::POST, self.ack_url.clone(), Bytes::from(body), RELAY_SLACK)
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| RelayError::Status(StatusCode::OK, format!("not an acknowledgement answer: {e}")))
    }
}

/// The relay's answer, its body still to read.
pub struct Head {
    resp: http::Response<hyper::body::Incoming>,
    declared: Option<u64>,
}

impl Head {
    /// The body (read within `max` while it keeps arriving), and what the status says.
    async fn read(self, max: Duration) -> Result<Bytes, RelayError> {
        let status = self.resp.status();
        // A redirect (a front proxy sending http to https, a moved host) is
        // not followed: where it points is said, to give forward that URL.
        let location = self
            .resp
            .headers()
            .get(http::header::LOCATION)
            .filter(|_| status.is_redirection())
            .map(|l| {
                String::from_utf8_lossy(l.as_bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            });
        let body = read_answer(self.resp.into_body(), self.declared, BODY_IDLE.min(max), max).await?;
        let message = || match &location {
            Some(to) => {
                format!("redirected to {to:?}, not followed: give hookrelay forward the URL the relay answers at")
            }
            None => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect()),
        };
        match status {
            s if s.is_success() => Ok(body),
            StatusCode::UNAUTHORIZED => Err(RelayError::Refused),
            StatusCode::CONFLICT => match serde_json::from_slice::<wire::NotLeased>(&body) {
                Ok(n) => Err(RelayError::NotLeased {
                    ids: n.not_leased,
                    rest_applied: n.applied.is_some(),
                    delivered: n.delivered,
                    unknown: n.unknown,
                }),
                Err(_) => Err(RelayError::Status(status, message())),
            },
            s => Err(RelayError::Status(s, message())),
        }
    }

    /// A pull's messages. A `200` of a type other than JSON that is not a
    /// pull answer is not the relay's (it always answers JSON): a captive
    /// portal's page, or a proxy's while the relay is deployed. The relay
    /// was not reached, so nothing was leased: waited out like a relay
    /// away. (One of no type, or JSON, that is not a pull answer ends the
    /// forwarder: see `pump::Fatal::NotPullAnswer`; a pull answer a proxy
    /// relabelled is used.)
    pub async fn messages(self) -> Result<wire::Messages, RelayError> {
        let other_type = self
            .resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|t| t.to_str().unwrap_or_default().trim().to_ascii_lowercase())
            .filter(|t| !t.starts_with("application/json"));
        let body = self.read(BODY_MAX).await?;
        // A proxy may relabel the relay's answer: what parses is used.
        match (serde_json::from_slice::<wire::Messages>(&body), other_type) {
            (Ok(m), _) => Ok(m),
            (Err(_), Some(t)) => Err(RelayError::Away(format!(
                "the pull URL answered 200 with {t:?}, not the relay's JSON: a captive portal, or a proxy's page \
                 (the relay being deployed?); the relay was not reached, trying again"
            ))),
            (Err(e), None) => Err(RelayError::Status(StatusCode::OK, format!("not a pull answer: {e}"))),
        }
    }
}

/// An answer's body, up to [`MAX_ANSWER`] bytes, read while it keeps
/// arriving: `idle` at most without a byte, `max` at most in all. Its error
/// says how much had come (a slow link is not a relay that is away).
async fn read_answer<B>(mut body: B, declared: Option<u64>, idle: Duration, max: Duration) -> Result<Bytes, RelayError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let started = tokio::time::Instant::now();
    let end = started + max;
    let mut got = bytes::BytesMut::new();
    let of = || declared.map_or(String::new(), |n| format!(" of {n}"));
    loop {
        let deadline = (tokio::time::Instant::now() + idle).min(end);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return Ok(got.freeze()),
            Ok(Some(Err(e))) => {
                return Err(RelayError::Away(format!(
                    "reading the answer ({} bytes{} came): {e}",
                    got.len(),
                    of()
                )))
            }
            Err(_) => {
                let why = if deadline == end {
                    format!("still arriving after {}s", max.as_secs())
                } else {
                    format!("nothing more for {}s", idle.as_secs())
                };
                return Err(RelayError::Away(format!(
                    "the answer's body stopped: {why}, {} bytes{} came in {}s (a slow link: raise the subscriber's \
                     lease or lower --concurrency)",
                    got.len(),
                    of(),
                    started.elapsed().as_secs()
                )));
            }
        };
        if let Ok(data) = frame.into_data() {
            if got.len() + data.len() > MAX_ANSWER {
                return Err(RelayError::TooLarge(declared));
            }
            got.extend_from_slice(&data);
        }
    }
}

/// The private service.
pub struct Local {
    http: Http,
    to: Uri,
    timeout: Duration,
}

impl Local {
    /// How long one local delivery may take (`--timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(to: Uri, tls: rustls::ClientConfig, timeout: Duration) -> Local {
        Local {
            http: http(tls, timeout, timeout.min(PING_MAX), timeout),
            to,
            timeout,
        }
    }

    /// POST a message (its headers, its original bytes); the answer's status
    /// with the rest of it not read yet, or why there is none.
    pub async fn post(&self, m: &wire::Message) -> Result<Answer, String> {
        let body = B64
            .decode(&m.body)
            .map_err(|e| format!("the relay sent a body that is not base64: {e}"))?;
        let mut req = Request::post(self.to.clone()).header(header::USER_AGENT, USER_AGENT);
        // An empty body's length said, as hyper does not (a POST should
        // have one: RFC 9110 §8.6).
        if body.is_empty() {
            req = req.header(header::CONTENT_LENGTH, 0);
        }
        let mut req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        for (k, v) in &m.headers {
            match (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
                (Ok(k), Ok(v)) => {
                    req.headers_mut().insert(k, v);
                }
                _ => tracing::warn!(event = %m.id, header = %k, "skipping a header that is not valid HTTP"),
            }
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        // An answer that came while the forwarder was paused (a laptop
        // asleep) is read, not taken for a timeout and posted again.
        let resp = crate::clock::pauses::timeout_at(deadline, self.http.request(req))
            .await
            .map_err(|_| format!("no answer within {}", humantime::format_duration(self.timeout)))?
            .map_err(|e| crate::error_chain::error_chain(&e))?;
        // The status decides, as for a push delivery: the rest of the answer
        // is read only after the outcome went to the acker (`Answer::drain`).
        let retry_after = match crate::delivery::retry::classify(
            resp.status(),
            resp.headers().get(header::RETRY_AFTER),
            crate::clock::time_of_day(),
        ) {
            crate::delivery::retry::Verdict::Retry { after } => after,
            _ => None,
        };
        Ok(Answer {
            status: resp.status(),
            retry_after,
            rest: resp.into_body(),
            deadline,
        })
    }
}

/// The local service's answer: its status decides; the rest is read after.
pub struct Answer {
    pub status: StatusCode,
    /// The wait its `Retry-After` asks for (on 429, 502, 503, 504, as a
    /// push subscriber's counts), for the relay's retry schedule.
    pub retry_after: Option<Duration>,
    rest: hyper::body::Incoming,
    /// The delivery's deadline, which bounds reading the rest too.
    deadline: tokio::time::Instant,
}

impl Answer {
    /// Read (and drop) the rest of the answer, bounded in size and by the
    /// delivery's deadline, only so that its connection can be reused. A 2xx
    /// whose body is slow (or never ends) was delivered: this comes after the
    /// acknowledgement is on its way, never before.
    pub async fn drain(self) {
        let drain = http_body_util::Limited::new(self.rest, 64 * 1024).collect();
        let _ = tokio::time::timeout_at(self.deadline, drain).await;
    }
}
