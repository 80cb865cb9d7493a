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
