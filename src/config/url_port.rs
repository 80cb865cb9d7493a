//! A URL's port as its text gives it: `http::Uri` takes `:0`, `:` and a port
//! past 65535 (and then has none), so a config URL naming one would connect
//! somewhere else (the scheme's port) or nowhere. Every URL key checks it.

/// Whether `url` names a port no connection can have: `0`, an empty one, or
/// one past 65535. A URL without a port has none to check.
pub fn unusable_port(url: &str) -> bool {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = host_port.rsplit_once(':').map(|(_, p)| p).filter(|p| !p.contains(']'));
    port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|p| p > 0))
}

#[cfg(test)]
mod tests {
    use super::unusable_port;

    #[test]
    fn ports_no_connection_can_have_are_found() {
        for bad in [
            "http://h:0/",
            "http://h:/x",
            "https://h:65536",
            "http://h:99999/x?y",
            "http://[::1]:0/",
            "http://u:p@h:0/",
            "http://h:8o/",
        ] {
            assert!(unusable_port(bad), "{bad}");
        }
        for ok in [
            "http://h/",
            "http://h:1/",
            "https://h:65535/x",
            "http://[::1]/",
            "http://[::1]:9000",
            "http://u:p@h/x:0",
            "http://h/x?port=:0",
        ] {
            assert!(!unusable_port(ok), "{ok}");
        }
    }
}
