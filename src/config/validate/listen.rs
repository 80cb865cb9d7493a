//! The listen addresses together ([`crate::config::listen`]): none two
//! that cannot both listen.

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
}
