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
//!   `Origin` is not the `Host` it was sent to;
//! - and it must say `Content-Type: application/json`, which an HTML form
//!   cannot send and a cross-site `fetch` cannot send without a CORS
//!   preflight (which this API never grants).

use std::net::IpAddr;

use http::{header, HeaderMap, Method, Request, StatusCode};

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
    same_origin(req.headers(), host.as_deref())?;
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
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refusal> {
    let cross = |why: String| Err((StatusCode::FORBIDDEN, format!("cross-site request refused: {why}")));
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return cross(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_matches(origin, host) {
            return cross(format!(
                "Origin {origin:?} is not this server ({})",
                host.unwrap_or("no Host")
            ));
        }
    }
    Ok(())
}

/// `Origin` is `scheme://host[:port]`; it matches when host and port are
/// those the request was sent to. A `Host` without a port means the default
/// port of the scheme the browser used, which is the origin's when the
/// request is same-origin: behind a TLS-terminating reverse proxy
/// (`https://admin.example.com` → the admin listener) the browser sends
/// `Origin: https://admin.example.com` and the proxy `Host:
/// admin.example.com`, both port 443. Another host, or a port given on one
/// side that is not the other's, never matches (a page on another port of
/// the same host is refused), and a same-host page of the other scheme is
/// `Sec-Fetch-Site: same-site`, refused before this. `Origin: null`
/// (sandboxed frames, file: pages) never matches.
fn origin_matches(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host.and_then(split_authority) else {
        return false;
    };
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return false,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_name_the_host_and_port() {
        assert!(origin_matches("http://127.0.0.1:9090", Some("127.0.0.1:9090")));
        assert!(origin_matches("http://LOCALHOST:9090", Some("localhost:9090")));
        assert!(origin_matches("http://[::1]:9090", Some("[::1]:9090")));
        assert!(origin_matches("http://localhost", Some("localhost:80")));
        assert!(!origin_matches("http://127.0.0.1:9091", Some("127.0.0.1:9090")));
        assert!(!origin_matches("https://127.0.0.1:9090", Some("127.0.0.1")));
        assert!(!origin_matches("http://evil.example", Some("127.0.0.1:9090")));
        assert!(!origin_matches("null", Some("127.0.0.1:9090")));
        assert!(!origin_matches("http://127.0.0.1:9090", None));
    }

    #[test]
    fn behind_an_https_proxy_the_origin_matches_its_host_on_443_only() {
        assert!(origin_matches("https://admin.example.com", Some("admin.example.com")));
        assert!(origin_matches(
            "https://admin.example.com",
            Some("admin.example.com:443")
        ));
        assert!(origin_matches(
            "https://admin.example.com:443",
            Some("admin.example.com")
        ));
        assert!(!origin_matches(
            "https://admin.example.com:8443",
            Some("admin.example.com")
        ));
        assert!(!origin_matches(
            "https://admin.example.com",
            Some("admin.example.com:9090")
        ));
        assert!(!origin_matches(
            "http://admin.example.com",
            Some("admin.example.com:443")
        ));
        assert!(!origin_matches("https://evil.example", Some("admin.example.com")));
        assert!(!origin_matches(
            "https://admin.example.com.evil.example",
            Some("admin.example.com")
        ));
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
    fn content_type_parameters_are_allowed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(json_content_type(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(json_content_type(&h).is_err());
    }
}
