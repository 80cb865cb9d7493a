//! How a subscriber URL is shown (admin API, console, CLI, logs, config
//! errors): what identifies the target, without what may be its secret.
//! Many webhook URLs are capability URLs whose secret is the path itself
//! (`https://hooks.slack.com/services/T…/B…/SECRET`, Discord's
//! `/api/webhooks/ID/TOKEN`), so the path and query are shown as `/…` and
//! `user:password@` never: `https://hooks.slack.com/…`. The subscriber's name
//! is what tells subscribers apart.

/// `scheme://host[:port]`, then `/…` when the URL has a path other than `/`
/// or a query (or a fragment). Text that is not a URL (an invalid one in a
/// config error) is cut the same way at its first `/`, `?` or `#` after the
/// host, credentials removed first.
pub fn shown_target(url: &str) -> String {
    // Credentials out first, even where a `/` in the password would end the
    // host for the cut below.
    let url = super::hide_userinfo(url.trim());
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) if super::token::is_scheme(s) => (Some(s), r),
        _ => (None, url.as_str()),
    };
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let tail = &rest[end..];
    let more = if tail.is_empty() || tail == "/" { tail } else { "/…" };
    match scheme {
        Some(s) => format!("{s}://{host}{more}"),
        None => format!("{host}{more}"),
    }
}

#[cfg(test)]
mod tests {
    use super::shown_target;

    #[test]
    fn paths_queries_and_credentials_are_not_shown() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
                "https://hooks.slack.com/…",
            ),
            (
                "https://discord.com/api/webhooks/123456789/T0KEN-SECRET",
                "https://discord.com/…",
            ),
            ("http://127.0.0.1:9000/callbacks?code=SECRET", "http://127.0.0.1:9000/…"),
            ("http://127.0.0.1:9000?code=SECRET", "http://127.0.0.1:9000/…"),
            ("http://[::1]:9000/x#SECRET", "http://[::1]:9000/…"),
            ("https://hooks.example.com/", "https://hooks.example.com/"),
            ("https://hooks.example.com", "https://hooks.example.com"),
            (
                "https://user:SECRET@hooks.example.com/p/SECRET",
                "https://hooks.example.com/…",
            ),
            // Not URLs (shown in config errors): cut the same way.
            ("http://u:pa/SECRET word@host/p", "http://host/…"),
            ("http://bob:SECRET?pw@127.0.0.1:9/x", "http://127.0.0.1:9/…"),
            ("http://bob:SECRET#pw@127.0.0.1:9", "http://127.0.0.1:9"),
            ("hooks.slack.com/services/T000/B000/SECRET", "hooks.slack.com/…"),
            ("ftp://files.example/SECRET", "ftp://files.example/…"),
        ] {
            assert_eq!(shown_target(url), shown, "{url}");
            assert!(!shown_target(url).contains("SECRET"), "{url}");
        }
    }
}
