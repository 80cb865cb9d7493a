//! How a media URL appears in logs and admin answers: scheme, host and path,
//! never the query nor a `user:password@`. Result URLs are usually signed, and
//! the signature in the query string is a credential for the file; a file
//! server's password may sit in the URL itself.

/// `https://REDACTED@host/path?…` for a URL with credentials and a query,
/// the URL itself when it has neither.
pub fn shown(url: &str) -> String {
    let url = crate::auth::hide_userinfo(url);
    let without_fragment = url.split('#').next().unwrap_or(&url);
    match without_fragment.split_once('?') {
        Some((base, q)) if !q.is_empty() => format!("{base}?…"),
        Some((base, _)) => base.to_string(),
        None => without_fragment.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn queries_are_hidden() {
        assert_eq!(
            shown("https://file.com/k/x.mp4?X-Amz-Signature=abc&exp=1"),
            "https://file.com/k/x.mp4?…"
        );
        assert_eq!(shown("https://file.com/k/x.mp4"), "https://file.com/k/x.mp4");
        assert_eq!(shown("https://file.com/k/x.mp4?"), "https://file.com/k/x.mp4");
        assert_eq!(shown("https://file.com/x#sig=1"), "https://file.com/x");
        assert_eq!(
            shown("http://alice:S3CRET@files.example/new.bin?sig=Q"),
            "http://REDACTED@files.example/new.bin?…"
        );
    }
}
