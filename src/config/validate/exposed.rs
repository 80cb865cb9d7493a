//! What other hosts can reach, for the checks that depend on it (an admin
//! API without a token, the example secrets, weak tokens, plain HTTP): the
//! file's listeners and, on a reload, those bound now as well. A reload does
//! not move listeners, and the file's are bound at the next start, which must
//! not refuse the file either.

use std::net::SocketAddr;
use std::ops::Range;

use super::admin::is_loopback;
use super::Validator;
use crate::auth::Secret;
use crate::config::{ConfigError, ServerConfig};

/// The listeners those checks judge.
pub(super) struct Exposed {
    /// The file's `[server]`, listening on its addresses and the bound ones.
    pub server: ServerConfig,
    /// A public admin address (the file's first), if either is public.
    pub admin: Option<SocketAddr>,
}

impl Validator<'_> {
    /// The listeners other hosts can reach; refused: an admin API reachable
    /// by them without `admin.token` (`admin_span`: `admin.listen`'s place).
    pub(super) fn exposed(
        &self,
        server: &ServerConfig,
        admin_listen: SocketAddr,
        admin_token: Option<&Secret>,
        admin_span: Range<usize>,
    ) -> Result<Exposed, ConfigError> {
        let public = |a: &SocketAddr| !is_loopback(*a);
        let bound_admin = self.bound.map(|b| b.admin).filter(public);
        let admin = Some(admin_listen).filter(public).or(bound_admin);
        let server = match self.bound {
            Some(b) => ServerConfig {
                listen: server.listen.iter().chain(&b.server).copied().collect(),
                ..server.clone()
            },
            None => server.clone(),
        };
        if let (None, Some(public)) = (admin_token, admin) {
            let message = match public == admin_listen {
                true => "the admin listener is not on a loopback address, so admin.token is required".to_string(),
                false => format!(
                    "the admin API listens on {public} until a restart (a reload does not move it), which is not \
                     a loopback address, so admin.token is required until then: restart with the new admin.listen \
                     first"
                ),
            };
            return Err(self.err("admin.token", Some(admin_span), message));
        }
        Ok(Exposed { server, admin })
    }
}

/// Why other hosts reach the public listeners, for the checks of secrets
/// everyone knows or can guess: an address that is not loopback, a proxy
/// in front (`server.trusted_proxies`), or a `server.public_url` on a host
/// that is not this one — a relay on loopback behind a TLS proxy is as
/// public as one listening on `0.0.0.0`.
pub(super) struct Reach {
    /// "server.listen has 0.0.0.0:8080, which other hosts can reach", …
    pub why: String,
    /// Advice that ends a refusal: what else would make the key allowed.
    pub otherwise: &'static str,
}

pub(super) fn reach(server: &ServerConfig) -> Option<Reach> {
    if let Some(a) = server.listen.iter().find(|a| !is_loopback(**a)) {
        return Some(Reach {
            why: format!("server.listen has {a}, which other hosts can reach"),
            otherwise: " (or listen on loopback only)",
        });
    }
    if !server.trusted_proxies.is_empty() {
        return Some(Reach {
            why: "server.trusted_proxies names a proxy in front, through which other hosts reach the relay".to_string(),
            otherwise: "",
        });
    }
    let url = server.public_url.as_deref()?;
    let host = url::Url::parse(url).ok()?.host()?.to_owned();
    let local = match &host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.to_canonical().is_loopback(),
    };
    (!local).then(|| Reach {
        why: format!("server.public_url names {host}, where providers reach the relay"),
        otherwise: "",
    })
}
