//! A public listener without TLS: route tokens (in the callback URL's
//! query or path), the callbacks themselves and what pull subscribers
//! fetch cross the network unencrypted. Warned about, not refused: a TLS
//! reverse proxy on another host may be what reaches it, and naming that
//! proxy in `server.trusted_proxies` says so (no warning then).

use super::admin::is_loopback;
use super::Validator;
use crate::config::ServerConfig;

impl Validator<'_> {
    pub(super) fn plain_http_warning(&self, server: &ServerConfig) -> Option<String> {
        if server.tls.is_some() || !server.trusted_proxies.is_empty() {
            return None;
        }
        let public = server.listen.iter().find(|a| !is_loopback(**a))?;
        Some(format!(
            "{}: key `server.listen`: {public} is plain HTTP and other hosts can reach it: route tokens, \
             callbacks and what pull subscribers fetch cross the network unencrypted: set `server.tls` \
             (a certificate, or `{{ acme = … }}`), or let only a TLS reverse proxy reach it and name it in \
             `server.trusted_proxies`",
            self.file.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn warnings(server: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let (cert, key) = crate::tls::test_cert::self_signed("relay.test");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let text = format!(
            "[server]\n{server}\n[store]\npath = \"data\"\n[[routes]]\nname = \"r\"\npath = \"/r\"\n\
             tokens = [\"2f1c0e9a7b3d4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6\"]\n\
             [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        c.warnings.into_iter().filter(|w| w.contains("plain HTTP")).collect()
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
}
