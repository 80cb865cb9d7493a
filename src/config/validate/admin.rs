//! `[admin]`: the listen address, the token, and the warnings about a weak
//! token (other hosts, or on loopback web pages through DNS rebinding, can
//! guess at it) and about an admin API other hosts reach in plain HTTP.
//!
//! Why a warning and not a refusal: a non-loopback `admin.listen` is not
//! necessarily public (a private network, a firewall), which the config
//! cannot tell, and refusing a config that ran before would keep the relay
//! from starting after an upgrade (no webhook received) for a risk the
//! operator may already have closed. The token itself is never shown: only
//! its length and the rule it breaks.

use std::net::SocketAddr;

use toml::Spanned;

use super::Validator;
use crate::auth::Secret;
use crate::config::raw::RawAdmin;
use crate::config::secret::SecretSource;
use crate::config::{ConfigError, Route};

/// Shorter than this (bytes) is weak: `hookrelay gen-token` makes 64.
const ADMIN_TOKEN_MIN_LEN: usize = 32;
/// Fewer distinct bytes than this is low entropy (a word repeated, one
/// character): a random hex token of 32 has about 16.
const ADMIN_TOKEN_MIN_DISTINCT: usize = 8;

/// Whether only this host can reach `listen`: a loopback address, also
/// IPv4-mapped (`[::ffff:127.0.0.1]`, which `Ipv6Addr::is_loopback` is
/// false for).
pub(super) fn is_loopback(listen: SocketAddr) -> bool {
    listen.ip().to_canonical().is_loopback()
}

impl Validator<'_> {
    pub fn admin_listen(&self, admin: &RawAdmin) -> Result<SocketAddr, ConfigError> {
        admin.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            self.err(
                "admin.listen",
                Some(admin.listen.span()),
                format!(
                    "invalid address {:?} (use e.g. \"127.0.0.1:9090\")",
                    admin.listen.get_ref()
                ),
            )
        })
    }

    pub fn admin_token(&self, t: &Spanned<SecretSource>) -> Result<Secret, ConfigError> {
        self.header_token("admin.token", t)
    }

    /// An `admin.token` that is also a route token (which the provider sees
    /// in the callback URL: its logs, its dashboard) or a pull token (which
    /// a forwarder in a private network holds): whoever has that one could
    /// read and replay every stored event and submit provider jobs. Refused,
    /// naming both keys.
    pub(super) fn admin_token_not_shared(&self, admin: Option<&Secret>, routes: &[Route]) -> Result<(), ConfigError> {
        let Some(admin) = admin else { return Ok(()) };
        for (i, r) in routes.iter().enumerate() {
            let other = if let Some(j) = r.tokens.iter().position(|t| t == admin) {
                format!("the route token `routes[{i}].tokens[{j}]`, which the provider sees in the callback URL")
            } else if let Some(k) = r
                .subscribers
                .iter()
                .position(|s| s.pull().is_some_and(|p| p.token == *admin))
            {
                format!("the pull token `routes[{i}].subscribers[{k}].pull.token`, which its forwarder holds")
            } else {
                continue;
            };
            return Err(self.err(
                "admin.token",
                None,
                format!(
                    "admin.token is also {other}: whoever has that token could read and replay every stored \
                     event and submit provider jobs; give the admin API its own (`hookrelay gen-token`)"
                ),
            ));
        }
        Ok(())
    }

    /// A short or low-entropy `admin.token`: the admin API slows wrong
    /// guesses down only per client address (about one a second after a
    /// burst: `admin::guard`), and it can replay and read every
    /// stored event. Other hosts can guess on a listener that is not loopback; on
    /// loopback, any web page the operator's browser opens can, through DNS
    /// rebinding (its own host name made to resolve to 127.0.0.1: the page
    /// is then same-origin with the admin API, and with a token set the API
    /// answers any `Host`, so that a proxy in front may pass its name on).
    pub(super) fn admin_token_warning(&self, listen: SocketAddr, token: Option<&Secret>) -> Option<String> {
        let token = token?;
        let problem = if token.len() < ADMIN_TOKEN_MIN_LEN {
            format!("is {} bytes long, shorter than {ADMIN_TOKEN_MIN_LEN}", token.len())
        } else if token.distinct_bytes() < ADMIN_TOKEN_MIN_DISTINCT {
            format!(
                "has fewer than {ADMIN_TOKEN_MIN_DISTINCT} different characters (low entropy: a repeated word or character)"
            )
        } else {
            return None;
        };
        let who = if is_loopback(listen) {
            format!(
                "`admin.listen` ({listen}) is a loopback address, but a web page open in a browser on this host \
                 can guess at it through DNS rebinding"
            )
        } else {
            format!("`admin.listen` ({listen}) is not a loopback address, so other hosts can guess at it")
        };
        Some(format!(
            "{}: key `admin.token`: the admin token {problem}, and {who} (the admin API can read and replay \
             events and submit provider jobs): use `hookrelay gen-token` (64 random hex characters)",
            self.file.display()
        ))
    }

    /// An admin API other hosts can reach (`public`: the file's
    /// `admin.listen`, or the one bound until a restart) speaks plain HTTP:
    /// its token (which reads every callback and archived file, replays
    /// events and places provider jobs through the submit proxy) and what
    /// it answers cross the network unencrypted. Warned about as a plain
    /// public listener is; a TLS reverse proxy on this host or an SSH
    /// tunnel, with `admin.listen` on loopback, is the way.
    pub(super) fn admin_plain_http_warning(&self, public: Option<SocketAddr>) -> Option<String> {
        let public = public?;
        Some(format!(
            "{}: key `admin.listen`: {public} is not a loopback address and the admin API speaks plain HTTP: the \
             admin token and every callback it shows cross the network unencrypted: keep admin.listen on \
             loopback and reach it through a TLS reverse proxy on this host or an SSH tunnel \
             (`ssh -L 9090:127.0.0.1:9090 HOST`)",
            self.file.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    /// The review of stop 59: an admin API on a public address was accepted
    /// without a word, its token sent in the clear on every request.
    #[test]
    fn a_public_admin_listener_is_warned_about_as_plain_http() {
        let config = |admin: &str| {
            let text = format!(
                "[server]\nlisten = [\"127.0.0.1:8080\"]\n[admin]\nlisten = \"{admin}\"\n\
                 token = \"6f1e0d9c8b7a69584736251403f2e1d0c9b8a79685746352\"\n[[routes]]\nname = \"r\"\n\
                 path = \"/r\"\ntokens = [\"2f1c0e9a7b3d4c5e6f708192\"]\n[[routes.subscribers]]\nname = \"s\"\n\
                 url = \"http://127.0.0.1:9/\"\n"
            );
            let c = crate::config::tests::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            c.warnings
                .into_iter()
                .filter(|w| w.contains("admin API speaks plain HTTP"))
                .collect::<Vec<_>>()
        };
        let w = config("0.0.0.0:9090");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("key `admin.listen`: 0.0.0.0:9090 is not a loopback address"),
            "{w:?}"
        );
        assert!(!w[0].contains("6f1e0d9c"), "the token is shown: {w:?}");
        assert!(config("127.0.0.1:9090").is_empty());
        assert!(config("[::1]:9090").is_empty());
    }

    #[test]
    fn an_ipv4_mapped_loopback_address_is_loopback() {
        for a in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1", "[::ffff:127.3.2.1]:1"] {
            assert!(is_loopback(a.parse().unwrap()), "{a}");
        }
        for a in ["0.0.0.0:1", "[::]:1", "[::ffff:10.0.0.1]:1", "10.0.0.1:1"] {
            assert!(!is_loopback(a.parse().unwrap()), "{a}");
        }
    }
}
