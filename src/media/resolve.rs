//! Name resolution for the media fetcher, behind a small trait.
//!
//! Owns turning a host name into addresses. The fetcher resolves each hop
//! exactly once, checks every address against its `AddressPolicy`, and
//! connects only to an address it checked — so a resolver can never widen
//! what may be reached, only say where a name points. That is what makes the
//! trait safe to swap: tests map public-looking names to loopback ports, and a
//! deployment could pin hosts, without a code path that skips the check.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Resolves a host name (never an IP literal: the fetcher handles those) to
/// socket addresses for `port`.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + 'static {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver (getaddrinfo on tokio's blocking pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// A fixed name → addresses table; names not in it do not resolve.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    /// Lower-case host name → addresses, in the order they are tried.
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `host` to `addrs` (replacing an earlier entry).
    pub fn with(mut self, host: &str, addrs: &[IpAddr]) -> Self {
        self.hosts.insert(host.to_ascii_lowercase(), addrs.to_vec());
        self
    }
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match self.hosts.get(&host.to_ascii_lowercase()) {
            Some(addrs) => Ok(addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} is not in the static table"),
            )),
        }
    }
}
