//! The web console: `GET /ui` and its assets, embedded in the binary (plain
//! HTML, JavaScript and CSS from `src/admin/ui/`; no build step, nothing loaded
//! from elsewhere). The page is a client of the admin JSON API and asks for the
//! admin token itself, so serving it needs no token. Owns the assets and the
//! headers that lock the page down (CSP without inline script, no framing, no
//! referrer); not the request checks (`guard.rs`) nor the API.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::StatusCode;

use super::Reply;

/// One embedded file: its content type and bytes.
struct Asset {
    /// Sent as `Content-Type`: browsers run module scripts only when it says JavaScript.
    content_type: &'static str,
    /// The file as compiled into the binary (no file system at run time).
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("ui/index.html"),
};

/// The console's files by path below `/ui/`.
fn asset(name: &str) -> Option<Asset> {
    Some(match name {
        "" | "index.html" => INDEX,
        "app.js" => script(include_bytes!("ui/app.js")),
        "dom.js" => script(include_bytes!("ui/dom.js")),
        "indent.js" => script(include_bytes!("ui/indent.js")),
        "pages.js" => script(include_bytes!("ui/pages.js")),
        "style.css" => Asset {
            content_type: "text/css; charset=utf-8",
            body: include_bytes!("ui/style.css"),
        },
        _ => return None,
    })
}

/// A JavaScript module (the type browsers require of module scripts).
const fn script(body: &'static [u8]) -> Asset {
    Asset {
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

/// Whether `path` belongs to the console.
pub(super) fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// The answer to a GET of a console path.
pub(super) fn serve(path: &str) -> Reply {
    let name = path.strip_prefix("/ui").unwrap_or("").trim_start_matches('/');
    match asset(name) {
        Some(a) => respond(StatusCode::OK, a.content_type, Bytes::from_static(a.body)),
        None => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from(format!("no console file {path}\n")),
        ),
    }
}

/// Content-Security-Policy of the console: its own files only, no inline
/// script or style, no framing, no form posts, no `<base>` tricks, and
/// Trusted Types with no policy: the page never parses a string as HTML or
/// script (`innerHTML`, `javascript:` URLs), so a slip that would (callback
/// content is shown everywhere) throws instead of injecting.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
                   require-trusted-types-for 'script'; trusted-types 'none'";

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = http::Response::new(super::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    // `Cache-Control: no-store` as on every answer (`harden`): the page
    // changes with every release and holds nothing worth caching.
    r
}

/// Headers every admin answer carries (API and console): browsers must not
/// guess types, frame or embed the answers or leak the admin URL as a referrer, and
/// neither they nor a proxy in front may keep a copy (an answer holds
/// callback bodies, signed URLs in them, stored media files).
pub(super) fn harden(r: &mut Reply) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Another site's page must not embed an answer either (`<img>` or
    // `<video>` of an archived file, `<script>` or `<link>` of the
    // console's): without a token that would show whether a file is
    // archived, and its dimensions. Nor keep a handle on a console it opened.
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
}
