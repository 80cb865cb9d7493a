//! The checks that keep a browser from being turned against the admin API:
//! DNS rebinding (a hostile name resolving to the admin address, when no token
//! protects it) and cross-site requests that change state (CSRF: replay).
//! Owns the rules and their refusals; not authentication (the token, in
//! `mod.rs`) and not the console's response headers (`ui.rs`).
//!
//! The rules:
//! - without `admin.token`, the `Host` must be an IP literal or `localhost`
//!   (the listen address is always an IP literal): a rebound name is refused;
//! - a request that changes state (anything but GET, HEAD, OPTIONS) is refused
//!   when `Sec-Fetch-Site` says it comes from another site, or when its
//!   `Origin` is not the scheme, `Host` and port it was sent to (the scheme
//!   is http, the listener's own, unless a TLS-terminating proxy says
//!   `X-Forwarded-Proto: https`);
//! - and it must say `Content-Type: application/json`, which an HTML form
//!   cannot send and a cross-site `fetch` cannot send without a CORS
//!   preflight (which this API never grants).
//!
//! And guessing the token ([`WrongTokens`]): each client address may send
//! [`WRONG_TOKEN_BURST`] wrong or missing tokens at once, then about one a
//! second; past that its requests without the right token are answered
//! `429`. The right token is never slowed down.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use http::{header, HeaderMap, Method, Request, StatusCode};

use crate::ingest::Client;

/// A refusal: the status and a message for whoever sent the request.
pub(super) type Refusal = (StatusCode, String);

/// Run every check; `token_set` is whether `admin.token` protects the API.
pub(super) fn check<B>(req: &Request<B>, token_set: bool) -> Result<(), Refusal> {
    let host = host_of(req);
    if !token_set {
        host_allowed(host.as_deref())?;
    }
    if !changes_state(req.method()) {
        return Ok(());
    }
    same_origin(req.headers(), host.as_deref(), forwarded_https(req.headers()))?;
    json_content_type(req.headers())
}

/// The authority the request was sent to: `Host` (HTTP/1.1) or the URI's
/// authority (HTTP/2 `:authority`).
fn host_of<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

/// Whether the request reached the proxy in front over https. The admin
/// listener serves no TLS itself, so a request is https only when a
/// TLS-terminating proxy says so (`X-Forwarded-Proto: https`, the first
/// entry when proxies append). Believing it from anyone is safe here: the
/// header guards against browsers, and a page cannot add it to a
/// cross-origin request without a CORS preflight, which this API never
/// grants (it answers no `Access-Control-*` header); a client that is not a
/// browser can send any `Origin` anyway.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Host and port of an authority (`name`, `name:port`, `[v6]:port`), the host
/// lower-cased and without brackets.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let a: http::uri::Authority = authority.parse().ok()?;
    let host = a
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((host, a.port_u16()))
}

/// DNS rebinding: a page on `evil.example` whose name now resolves to
/// 127.0.0.1 sends `Host: evil.example`; a client that asked for the admin
/// address itself names an IP or localhost. No `Host` at all is not a browser.
fn host_allowed(host: Option<&str>) -> Result<(), Refusal> {
    let Some(host) = host else { return Ok(()) };
    let ok = split_authority(host)
        .is_some_and(|(name, _)| name.parse::<IpAddr>().is_ok() || name == "localhost" || name == "localhost.");
    if ok {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} refused: without admin.token the admin API answers only requests addressed to an IP \
                 address or localhost (protection against DNS rebinding); set admin.token to use a host name"
            ),
        ))
    }
}

/// CSRF: browsers say where a request comes from (`Sec-Fetch-Site`, and
/// `Origin` on every cross-origin and every POST request).
fn same_origin(headers: &HeaderMap, host: Option<&str>, https: bool) -> Result<(), Refusal> {
    let cross = |why: String| Err((StatusCode::FORBIDDEN, format!("cross-site request refused: {why}")));
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return cross(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_matches(origin, host, https) {
            let scheme = if https { "https" } else { "http" };
            return cross(format!(
                "Origin {origin:?} is not this server ({scheme}://{}; behind a TLS proxy, it must pass Host and \
                 set X-Forwarded-Proto: https)",
                host.unwrap_or("no Host")
            ));
        }
    }
    Ok(())
}

/// `Origin` is `scheme://host[:port]`; it matches when scheme, host and port
/// are those the request was sent to. The scheme is http (the listener's
/// own) unless `https` (a TLS-terminating proxy's `X-Forwarded-Proto`), and
/// a `Host` without a port means that scheme's default port: behind the
/// proxy (`https://admin.example.com` → the admin listener) the browser
/// sends `Origin: https://admin.example.com`, the proxy `Host:
/// admin.example.com` and `X-Forwarded-Proto: https`, both port 443. The
/// scheme is never taken from the `Origin` itself: one `Host` would then
/// match a page of either scheme, and one of them is another origin.
/// Another host, or a port given on one side that is not the other's, never
/// matches. `Origin: null` (sandboxed frames, file: pages) never matches.
fn origin_matches(origin: &str, host: Option<&str>, https: bool) -> bool {
    let Some(host) = host.and_then(split_authority) else {
        return false;
    };
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    let (scheme, default_port) = if https { ("https", 443) } else { ("http", 80) };
    if uri.scheme_str() != Some(scheme) {
        return false;
    }
    let Some(o) = uri.authority().and_then(|a| split_authority(a.as_str())) else {
        return false;
    };
    o.0 == host.0 && o.1.unwrap_or(default_port) == host.1.unwrap_or(default_port)
}

fn json_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a request that changes state needs Content-Type: application/json (got {given:?})"),
        ))
    }
}

/// Wrong or missing admin tokens one client may send at once.
pub(crate) const WRONG_TOKEN_BURST: u32 = 10;
/// The clients whose guesses are tracked at most; past that (after the ones
/// back to a full budget are forgotten), new ones share one budget.
const TRACKED_CLIENTS: usize = 4096;
/// How often the first refusal is logged at warn, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Wrong (or missing) admin tokens by client (an IPv4 address, an IPv6 /64:
/// [`Client`]; the TCP peer, so behind a proxy, the proxy): a budget of
/// [`WRONG_TOKEN_BURST`], refilled at one a second. Memory is bounded:
/// clients back to a full budget are forgotten when [`TRACKED_CLIENTS`] are
/// held, and if that many are still guessing, the rest share one budget.
pub(crate) struct WrongTokens {
    limiter: governor::RateLimiter<Client, DefaultKeyedStateStore<Client>, DefaultClock>,
    clock: DefaultClock,
    /// When a refusal was last logged at warn.
    warned: Mutex<Option<Instant>>,
}

impl Default for WrongTokens {
    fn default() -> Self {
        let burst = NonZeroU32::new(WRONG_TOKEN_BURST).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::per_second(NonZeroU32::MIN).allow_burst(burst);
        let clock = DefaultClock::default();
        WrongTokens {
            limiter: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            warned: Mutex::new(None),
        }
    }
}

impl WrongTokens {
    /// Count a request from `peer` without the right token: `Err` with how
    /// long until it may try again when its budget is spent (nothing is
    /// counted then).
    pub(super) fn count(&self, peer: IpAddr) -> Result<(), Duration> {
        let mut client = Client::of(Some(peer));
        if self.limiter.len() >= TRACKED_CLIENTS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            if self.limiter.len() >= TRACKED_CLIENTS {
                client = Client::Unknown;
            }
        }
        let Err(not_until) = self.limiter.check_key(&client) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(self.clock.now());
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                client = %peer,
                "admin API: more than {WRONG_TOKEN_BURST} wrong or missing admin tokens from this address; \
                 its requests without the right token are answered 429 until its budget refills (one a \
                 second); refusals are logged at most once a minute"
            );
        }
        Err(wait)
    }
}

/// The `429` for a client past its budget of wrong tokens, with
/// `Retry-After` (whole seconds, at least one).
pub(super) fn too_many_guesses(wait: Duration) -> Refusal {
    (
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many wrong admin tokens from this address: try again in {} s (the right token is never refused \
             for this)",
            retry_after(wait)
        ),
    )
}

/// `Retry-After` for [`too_many_guesses`].
pub(super) fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_name_the_host_and_port() {
        let http = |o, h| origin_matches(o, h, false);
        assert!(http("http://127.0.0.1:9090", Some("127.0.0.1:9090")));
        assert!(http("http://LOCALHOST:9090", Some("localhost:9090")));
        assert!(http("http://[::1]:9090", Some("[::1]:9090")));
        assert!(http("http://localhost", Some("localhost:80")));
        assert!(!http("http://127.0.0.1:9091", Some("127.0.0.1:9090")));
        assert!(!http("https://127.0.0.1:9090", Some("127.0.0.1")));
        assert!(!http("http://evil.example", Some("127.0.0.1:9090")));
        assert!(!http("null", Some("127.0.0.1:9090")));
        assert!(!http("http://127.0.0.1:9090", None));
    }

    #[test]
    fn a_portless_host_is_one_scheme_the_listeners_unless_a_proxy_says_https() {
        let (o_http, o_https) = ("http://admin.example.com", "https://admin.example.com");
        let h = Some("admin.example.com");
        assert!(origin_matches(o_http, h, false));
        assert!(!origin_matches(o_https, h, false));
        assert!(origin_matches(o_https, h, true));
        assert!(!origin_matches(o_http, h, true));
    }

    #[test]
    fn behind_an_https_proxy_the_origin_matches_its_host_on_443_only() {
        let https = |o, h| origin_matches(o, h, true);
        assert!(https("https://admin.example.com", Some("admin.example.com")));
        assert!(https("https://admin.example.com", Some("admin.example.com:443")));
        assert!(https("https://admin.example.com:443", Some("admin.example.com")));
        assert!(!https("https://admin.example.com:8443", Some("admin.example.com")));
        assert!(!https("https://admin.example.com", Some("admin.example.com:9090")));
        assert!(!https("http://admin.example.com", Some("admin.example.com:443")));
        assert!(!https("https://evil.example", Some("admin.example.com")));
        assert!(!https(
            "https://admin.example.com.evil.example",
            Some("admin.example.com")
        ));
    }

    #[test]
    fn the_forwarded_scheme_is_the_first_entry() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-proto", v.parse().unwrap());
            forwarded_https(&h)
        };
        assert!(with("https") && with("HTTPS") && with("https, http"));
        assert!(!with("http") && !with("http, https") && !forwarded_https(&HeaderMap::new()));
    }

    #[test]
    fn hosts_without_a_token() {
        for ok in [
            "127.0.0.1:9090",
            "[::1]:9090",
            "localhost:9090",
            "LocalHost",
            "10.1.2.3",
        ] {
            assert!(host_allowed(Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["evil.example:9090", "localhost.evil.example", "127.0.0.1.nip.io", ""] {
            assert!(host_allowed(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrong_tokens_are_budgeted_per_client() {
        let w = WrongTokens::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..WRONG_TOKEN_BURST {
            assert!(w.count(a).is_ok());
        }
        let wait = w.count(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && retry_after(wait) == 1, "{wait:?}");
        // Another address has its own budget; one in the same IPv6 /64 does not.
        assert!(w.count("192.0.2.2".parse().unwrap()).is_ok());
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for _ in 0..WRONG_TOKEN_BURST {
            assert!(w.count(v6("2001:db8::1")).is_ok());
        }
        assert!(w.count(v6("2001:db8::2")).is_err());
        assert!(w.count(v6("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn content_type_parameters_are_allowed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(json_content_type(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(json_content_type(&h).is_err());
    }
}
