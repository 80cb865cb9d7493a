//! What can go wrong downloading one media URL, and what the archiver should
//! do about it.
//!
//! Owns the error type and its classification (retry later, try the
//! provider's refresh endpoint, or give up). Messages name the host, never the
//! full URL: result URLs are often signed, and the query string is a
//! credential.

use std::time::Duration;

/// One download's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not an absolute URL.
    #[error("invalid URL: {0}")]
    BadUrl(String),
    /// Only http and https are fetched (file:, ftp:, gopher: … never).
    #[error("unsupported URL scheme {0:?}: only http and https are fetched")]
    BadScheme(String),
    /// Every address of the host is non-public and `allow_private` is off.
    #[error("refused {host}: {reason} (list its network in media.allow_networks, or set media.allow_private = true to allow every private address)")]
    Refused { host: String, reason: String },
    /// The name did not resolve (DNS down, NXDOMAIN during an outage, …).
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    /// TCP connect failed or timed out for every permitted address.
    #[error("cannot connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    /// The connection broke or the server spoke bad HTTP, before or during the body.
    #[error("HTTP exchange with {host} failed: {detail}")]
    Http { host: String, detail: String },
    /// The whole download (every hop and the body) exceeded its time budget.
    #[error("download timed out after {} (media.timeout, for the whole download)", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// 403, 404 or 410: the signed URL expired or the file is gone. Reported
    /// on its own so the caller can ask the provider for a fresh URL.
    #[error("expired or gone: {host} answered HTTP {status}")]
    Gone { host: String, status: u16 },
    /// Any other non-success answer; 408, 429 and 5xx are worth retrying.
    #[error("{host} answered HTTP {status}")]
    Status {
        host: String,
        status: u16,
        /// The server's `Retry-After`, when it sent one (429, 503).
        retry_after: Option<Duration>,
    },
    /// A redirect chain longer than the limit.
    #[error("too many redirects (more than {0})")]
    TooManyRedirects(usize),
    /// A 3xx answer without a usable `Location`.
    #[error("bad redirect from {host}: {detail}")]
    BadRedirect { host: String, detail: String },
    /// The file is larger than `max_size`, as announced by `Content-Length`
    /// or found while streaming (the download was cut off).
    #[error("{}", too_large_message(*.max, *.announced))]
    TooLarge { max: u64, announced: Option<u64> },
    /// A success answer without a byte of body (`204 No Content`, or a 2xx
    /// with an empty body): no file, e.g. an object not ready yet. Result
    /// media is never empty, so it is not stored; tried again later.
    #[error("{host} answered without a file (empty body)")]
    Empty { host: String },
    /// The body came compressed (`Content-Encoding`, though the request
    /// asked for `identity`): its bytes are not the file, and the relay
    /// does not decode them. A server that stores the file that way sends
    /// it that way every time: not tried again.
    #[error("{host} sent the file with Content-Encoding {encoding:?}, which the relay does not decode (it asks for identity): not stored")]
    Encoded { host: String, encoding: String },
}

fn too_large_message(max: u64, announced: Option<u64>) -> String {
    match announced {
        Some(n) => format!("file too large: Content-Length {n} bytes exceeds media.max_size {max} bytes"),
        None => format!("file too large: cut off after more than media.max_size {max} bytes"),
    }
}

impl FetchError {
    /// Whether a later attempt may succeed (network trouble, timeouts,
    /// overloaded or failing servers, an empty answer). Refused addresses, bad schemes and
    /// URLs, files over the cap and 4xx answers other than 408/429 are
    /// permanent. `Gone` is not retryable as such: see [`FetchError::is_gone`].
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::Resolve { .. }
            | FetchError::Connect { .. }
            | FetchError::Tls { .. }
            | FetchError::Http { .. }
            | FetchError::Timeout(_)
            | FetchError::Empty { .. } => true,
            FetchError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            FetchError::BadUrl(_)
            | FetchError::BadScheme(_)
            | FetchError::Refused { .. }
            | FetchError::Gone { .. }
            | FetchError::TooManyRedirects(_)
            | FetchError::BadRedirect { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Encoded { .. } => false,
        }
    }

    /// 403/404/410: the URL expired or the file was removed; the provider's
    /// refresh endpoint may hand out a new URL for it.
    pub fn is_gone(&self) -> bool {
        matches!(self, FetchError::Gone { .. })
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short stable label for metrics and the media state (`refused`,
    /// `too_large`, `gone`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_url",
            FetchError::BadScheme(_) => "bad_scheme",
            FetchError::Refused { .. } => "refused",
            FetchError::Resolve { .. } => "resolve",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Http { .. } => "http",
            FetchError::Timeout(_) => "timeout",
            FetchError::Gone { .. } => "gone",
            FetchError::Status { .. } => "status",
            FetchError::TooManyRedirects(_) => "redirects",
            FetchError::BadRedirect { .. } => "bad_redirect",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Empty { .. } => "empty",
            FetchError::Encoded { .. } => "encoded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> FetchError {
        FetchError::Status {
            host: "h".into(),
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s).retryable(), "{s}");
        }
        for s in [400, 401, 405, 451] {
            assert!(!status(s).retryable(), "{s}");
        }
        let gone = FetchError::Gone {
            host: "h".into(),
            status: 410,
        };
        assert!(gone.is_gone() && !gone.retryable());
        assert!(FetchError::Timeout(Duration::from_secs(1)).retryable());
        assert!(!FetchError::TooLarge {
            max: 1,
            announced: None
        }
        .retryable());
        assert!(!FetchError::Refused {
            host: "h".into(),
            reason: "loopback".into()
        }
        .retryable());
        assert!(!FetchError::BadScheme("ftp".into()).retryable());
    }

    #[test]
    fn messages() {
        assert_eq!(
            FetchError::TooLarge {
                max: 10,
                announced: Some(11)
            }
            .to_string(),
            "file too large: Content-Length 11 bytes exceeds media.max_size 10 bytes"
        );
        assert_eq!(
            FetchError::Timeout(Duration::from_secs(600)).to_string(),
            "download timed out after 10m (media.timeout, for the whole download)"
        );
    }
}
