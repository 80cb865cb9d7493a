//! The addresses the daemon listens on, taken together: the public ones and
//! the admin one. On Linux an IPv6 wildcard (`[::]:443`) also takes IPv4
//! unless the socket says otherwise; it says so when an IPv4 address on its
//! port is listened on too (`["0.0.0.0:443", "[::]:443"]`), so that both
//! bind, and alone it keeps taking both. Two addresses that would still want
//! the same port are refused by the config ([`clash`]), naming both keys,
//! rather than by the start.

use std::net::SocketAddr;

/// Whether `addr`'s socket is IPv6 only: an IPv6 wildcard with an IPv4
/// address among `all` on the same port.
pub fn v6_only(addr: SocketAddr, all: &[SocketAddr]) -> bool {
    addr.is_ipv6()
        && addr.ip().is_unspecified()
        && addr.port() != 0
        && all
            .iter()
            .any(|a| a.port() == addr.port() && a.ip().to_canonical().is_ipv4())
}

/// Whether `a` and `b` cannot both listen: the same port (not 0, which picks
/// a free one) and family, and the same address or a wildcard among them.
pub fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let (ia, ib) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() != 0
        && a.port() == b.port()
        && ia.is_ipv4() == ib.is_ipv4()
        && (ia == ib || ia.is_unspecified() || ib.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn which_addresses_clash_and_which_socket_is_v6_only() {
        assert!(clash(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(clash(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(clash(a("[::ffff:127.0.0.1]:80"), a("0.0.0.0:80")));
        assert!(clash(a("[::]:80"), a("[::1]:80")));
        assert!(!clash(a("127.0.0.1:0"), a("127.0.0.1:0")));
        assert!(!clash(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!clash(a("0.0.0.0:80"), a("[::]:80")));
        assert!(!clash(a("0.0.0.0:80"), a("0.0.0.0:81")));
        let all = [a("0.0.0.0:443"), a("[::]:443"), a("[::]:9090")];
        assert!(v6_only(all[1], &all));
        assert!(!v6_only(all[2], &all), "alone on its port, the wildcard takes IPv4 too");
        assert!(!v6_only(all[0], &all));
    }
}
