//! Where a callback comes from: the TCP peer, or, behind trusted proxies, the
//! right-most `X-Forwarded-For` entry that is not a proxy (unknown when that
//! walk meets junk), and whether a route's allowlist lets it in.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Where a callback comes from, as far as it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Known(IpAddr),
    /// A trusted proxy forwarded something that is not an address where the
    /// client should be: nobody can say who sent it.
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Known(ip) => write!(f, "{ip}"),
            Source::Unknown => f.write_str("unknown"),
        }
    }
}

/// The address a callback comes from: the TCP peer, or, when the peer is a
/// trusted proxy, the first `X-Forwarded-For` entry from the right (all header
/// lines in order) that is not itself a trusted proxy. An entry on that walk
/// that is not an address (junk, empty, a zone id) makes the client unknown.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Source {
    let peer = canonical(peer);
    if !contains(trusted, peer) {
        return Source::Known(peer);
    }
    let mut lines = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(v) => lines.push(v),
            Err(_) => return Source::Unknown,
        }
    }
    if lines.is_empty() {
        return Source::Known(peer);
    }
    let mut leftmost_proxy = peer;
    for entry in lines.iter().rev().flat_map(|v| v.rsplit(',')) {
        match parse_forwarded_addr(entry.trim()) {
            None => return Source::Unknown,
            Some(ip) if contains(trusted, ip) => leftmost_proxy = ip,
            Some(ip) => return Source::Known(ip),
        }
    }
    // Every hop is a trusted proxy: the left-most one is as far as it goes.
    Source::Known(leftmost_proxy)
}

/// Whether `peer` is a trusted proxy: its `X-Forwarded-For` says who the
/// client is. Anyone else's is the client's own claim.
pub fn via_trusted_proxy(peer: IpAddr, trusted: &[IpNet]) -> bool {
    contains(trusted, canonical(peer))
}

fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // "[2001:db8::1]": the bracketed form some proxies write without a port.
    if let Some(Ok(ip)) = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .map(str::parse::<std::net::Ipv6Addr>)
    {
        return Some(canonical(IpAddr::V6(ip)));
    }
    // "1.2.3.4:5678" or "[::1]:5678"
    s.parse::<std::net::SocketAddr>().ok().map(|a| canonical(a.ip()))
}

/// IPv4-mapped IPv6 addresses are treated as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// An empty allowlist allows every source; a non-empty one only known addresses in it.
pub fn ip_allowed(source: Source, allow: &[IpNet]) -> bool {
    match source {
        _ if allow.is_empty() => true,
        Source::Known(ip) => contains(allow, canonical(ip)),
        Source::Unknown => false,
    }
}
