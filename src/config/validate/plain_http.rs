//! A public listener without TLS: route tokens (in the callback URL's
//! query or path), the callbacks themselves and what pull subscribers
//! fetch cross the network unencrypted. Warned about, not refused: a TLS
//! reverse proxy on another host may be what reaches it, and naming that
//! proxy in `server.trusted_proxies` says so (no warning then). On a
//! reload the listeners serve as they were bound until a restart (a reload
//! turns TLS neither on nor off): they are judged by that, the file's own
//! addresses by the file.

use std::net::SocketAddr;

use super::admin::is_loopback;
use super::Validator;
use crate::config::ServerConfig;

impl Validator<'_> {
    /// `server`: the file's own `[server]`.
    pub(super) fn plain_http_warning(&self, server: &ServerConfig) -> Option<String> {
        if !server.trusted_proxies.is_empty() {
            return None;
        }
        let public = |a: &&SocketAddr| !is_loopback(**a);
        let advice = "set `server.tls` (a certificate, or `{ acme = … }`), or let only a TLS reverse proxy reach it \
                      and name it in `server.trusted_proxies`";
        let serving_plain = self.bound.filter(|b| !b.tls).and_then(|b| b.server.iter().find(public));
        let (public, what, advice) = match (serving_plain, &server.tls) {
            (Some(a), Some(_)) => (
                a,
                "is plain HTTP until a restart (a reload does not turn TLS on)",
                "restart hookrelay to serve the file's `server.tls`",
            ),
            (Some(a), None) => (a, "is plain HTTP", advice),
            (None, Some(_)) => return None,
            // On a reload the file's addresses are its listeners after the next restart.
            (None, None) => (
                server.listen.iter().find(public)?,
                match self.bound {
                    Some(_) => "will be plain HTTP after a restart",
                    None => "is plain HTTP",
                },
                advice,
            ),
        };
        Some(format!(
            "{}: key `server.listen`: {public} {what} and other hosts can reach it: route tokens, callbacks and \
             what pull subscribers fetch cross the network unencrypted: {advice}",
            self.file.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Bound, Config};

    fn warnings(server: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), server);
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        c.warnings.into_iter().filter(|w| w.contains("plain HTTP")).collect()
    }

    /// A config with this `[server]` (and certificate files) in `dir`.
    fn write(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
        let path = dir.join("config.toml");
        let (cert, key) = crate::tls::test_cert::self_signed("relay.test");
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let text = format!(
            "[server]\n{server}\n[store]\npath = \"data\"\n[[routes]]\nname = \"r\"\npath = \"/r\"\n\
             tokens = [\"2f1c0e9a7b3d4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6\"]\n\
             [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_public_plain_listener_is_warned_about_and_loopback_tls_or_a_named_proxy_are_not() {
        let tls = "tls = { cert = \"cert.pem\", key = \"key.pem\" }";
        assert!(warnings(&format!("listen = [\"0.0.0.0:8443\"]\n{tls}")).is_empty());
        let w = warnings("listen = [\"0.0.0.0:8080\"]");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("key `server.listen`: 0.0.0.0:8080 is plain HTTP"),
            "{w:?}"
        );
        assert!(warnings("listen = [\"127.0.0.1:8080\", \"[::1]:8080\"]").is_empty());
        assert!(warnings("listen = [\"0.0.0.0:8080\"]\ntrusted_proxies = [\"10.0.0.0/8\"]").is_empty());
    }

    /// Stop 53's review: a reload judged TLS by the file, which turns it on
    /// only at a restart: a file adding `server.tls` silenced the warning
    /// while the public listener still served plain HTTP, and one removing
    /// it warned about a listener still serving TLS (and about bound
    /// addresses the file no longer names).
    #[test]
    fn a_reload_judges_the_bound_listeners_by_how_they_serve_until_a_restart() {
        let tls = "tls = { cert = \"cert.pem\", key = \"key.pem\" }";
        let public: std::net::SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let bound = |tls: bool| Bound {
            server: vec![public],
            admin: "127.0.0.1:9090".parse().unwrap(),
            tls,
        };
        let w = reload_warnings(&format!("listen = [\"0.0.0.0:8443\"]\n{tls}"), &bound(false));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("0.0.0.0:8443 is plain HTTP until a restart (a reload does not turn TLS on)")
                && w[0].ends_with("restart hookrelay to serve the file's `server.tls`"),
            "{w:?}"
        );
        let w = reload_warnings("listen = [\"0.0.0.0:8443\"]", &bound(false));
        assert!(w.len() == 1 && w[0].contains("0.0.0.0:8443 is plain HTTP and"), "{w:?}");
        // Serving TLS until a restart, after which only loopback listens.
        assert!(reload_warnings("listen = [\"127.0.0.1:8080\"]", &bound(true)).is_empty());
        // Serving TLS until a restart, after which 0.0.0.0:8443 (or :80) is plain.
        for addr in ["0.0.0.0:8443", "0.0.0.0:80"] {
            let w = reload_warnings(&format!("listen = [\"{addr}\"]"), &bound(true));
            assert!(
                w.len() == 1 && w[0].contains(&format!("{addr} will be plain HTTP after a restart and")),
                "{w:?}"
            );
        }
        assert!(reload_warnings(&format!("listen = [\"0.0.0.0:8443\"]\n{tls}"), &bound(true)).is_empty());
    }

    fn reload_warnings(server: &str, bound: &Bound) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), server);
        let c = Config::load_bound(&path, bound).unwrap_or_else(|e| panic!("{e}"));
        c.warnings.into_iter().filter(|w| w.contains("plain HTTP")).collect()
    }
}
