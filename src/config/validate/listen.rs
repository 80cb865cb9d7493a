//! The listen addresses together ([`crate::config::listen`]): none two
//! that cannot both listen, and a warning when `admin.listen` alone turns a
//! public IPv6 wildcard IPv6-only.

use std::net::SocketAddr;

use super::Validator;
use crate::config::ConfigError;

impl Validator<'_> {
    /// No two listen addresses (public and admin) that cannot both bind.
    pub(super) fn listen_clashes(&self, listen: &[SocketAddr], admin: SocketAddr) -> Result<(), ConfigError> {
        let keyed: Vec<(String, SocketAddr)> = (listen.iter().enumerate())
            .map(|(i, a)| (format!("server.listen[{i}]"), *a))
            .chain([("admin.listen".to_string(), admin)])
            .collect();
        for (j, (key, addr)) in keyed.iter().enumerate() {
            if let Some((first, other)) = keyed[..j].iter().find(|(_, o)| crate::config::listen::clash(*o, *addr)) {
                return Err(self.err(
                    key,
                    None,
                    format!(
                        "{addr} wants the port {first} ({other}) listens on: both cannot listen (a wildcard such as \
                         0.0.0.0 or [::] takes the port on every address of its family)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `admin.listen` on the port of a public IPv6 wildcard (`[::]:8080`
    /// with `127.0.0.1:8080`): both bind, but the wildcard then takes IPv6
    /// only (see [`crate::config::listen::v6_only`]), so IPv4 callbacks to
    /// that port reach no listener, or the admin API, while the README says
    /// `[::]` alone takes both. A warning (a config that ran keeps running).
    pub(super) fn admin_port_warning(&self, listen: &[SocketAddr], admin: SocketAddr) -> Option<String> {
        let public_v4 = |port| {
            listen
                .iter()
                .any(|a| a.port() == port && a.ip().to_canonical().is_ipv4())
        };
        let (i, wildcard) = listen
            .iter()
            .enumerate()
            .find(|(_, a)| crate::config::listen::v6_only(**a, &[admin]) && !public_v4(a.port()))?;
        Some(format!(
            "{}: key `admin.listen`: {admin} is on the port of server.listen[{i}] ({wildcard}), which then takes IPv6 \
             only: IPv4 callbacks to port {} reach no callback listener: give the admin API another port",
            self.file.display(),
            wildcard.port(),
        ))
    }
}

#[cfg(test)]
mod tests {
    fn warnings(listen: &str, admin: &str) -> Vec<String> {
        let text = format!(
            "[server]\nlisten = {listen}\n[admin]\nlisten = \"{admin}\"\n[[routes]]\nname = \"r\"\npath = \"/r\"\n\
             tokens = [\"2f1c0e9a7b3d4c5e6f708192\"]\n[[routes.subscribers]]\nname = \"s\"\n\
             url = \"http://127.0.0.1:9/\"\n"
        );
        let c = crate::config::tests::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        c.warnings
            .into_iter()
            .filter(|w| w.contains("takes IPv6 only"))
            .collect()
    }

    /// The review of stop 59: `[::]:18500` with `admin.listen =
    /// "127.0.0.1:18500"` was accepted, and IPv4 callbacks to 18500 then
    /// reached nothing (the wildcard bound IPv6-only beside the admin socket).
    #[test]
    fn an_admin_address_that_makes_the_public_wildcard_ipv6_only_is_warned_about() {
        let w = warnings("[\"[::]:18500\"]", "127.0.0.1:18500");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("key `admin.listen`: 127.0.0.1:18500") && w[0].contains("[::]:18500"),
            "{w:?}"
        );
        // Another port, or IPv4 listened on for callbacks on that port too.
        assert!(warnings("[\"[::]:18500\"]", "127.0.0.1:9090").is_empty());
        assert!(warnings("[\"[::]:18500\", \"10.0.0.1:18500\"]", "127.0.0.1:18500").is_empty());
        assert!(warnings("[\"0.0.0.0:18500\"]", "[::1]:18500").is_empty());
    }
}
