//! Which addresses the media fetcher may connect to.
//!
//! Owns the list of address ranges a callback's URL must never make the relay
//! reach (the relay sits next to private services and cloud metadata
//! endpoints: a provider body, or anyone who can forge one, must not turn the
//! archiver into a proxy into that network). Does not own resolution or
//! connecting (`resolve`, `fetch`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why `ip` is not a public unicast address, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [127, ..] => "loopback",
        [10, ..] => "private (10.0.0.0/8)",
        [172, b, ..] if (16..32).contains(&b) => "private (172.16.0.0/12)",
        [192, 168, ..] => "private (192.168.0.0/16)",
        [100, b, ..] if (64..128).contains(&b) => "shared address space (100.64.0.0/10, CGNAT)",
        [169, 254, ..] => "link-local (169.254.0.0/16, cloud metadata)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0.0/24)",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        [192, 0, 2, _] => "documentation (192.0.2.0/24)",
        [198, 51, 100, _] => "documentation (198.51.100.0/24)",
        [203, 0, 113, _] => "documentation (203.0.113.0/24)",
        [255, 255, 255, 255] => "broadcast",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    let s = ip.segments();
    // Forms that carry an IPv4 address: judge the embedded address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4).map(|_| "IPv4-mapped non-public address");
    }
    if s[..6] == [0; 6] {
        // Deprecated IPv4-compatible ::a.b.c.d.
        return v4_reason(embedded_v4(s[6], s[7])).map(|_| "IPv4-compatible non-public address");
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // SIIT's IPv4-translated ::ffff:0:a.b.c.d (RFC 2765).
        return v4_reason(embedded_v4(s[6], s[7])).map(|_| "IPv4-translated non-public address");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(embedded_v4(s[6], s[7])).map(|_| "NAT64 of a non-public address");
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 8215's local-use prefix: a local NAT64 may translate any IPv4
        // address into it, private ones included, and where the IPv4 address
        // sits depends on the prefix length the site chose (RFC 6052: /48 to
        // /96), so it cannot be read reliably: the whole prefix is refused.
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if s[0] == 0x2002 {
        return v4_reason(embedded_v4(s[1], s[2])).map(|_| "6to4 of a non-public address");
    }
    match s[0] {
        // IETF protocol assignments (Teredo, benchmarking, ORCHID, …).
        0x2001 if s[1] < 0x200 => Some("IETF protocol assignments (2001::/23)"),
        0x2001 if s[1] == 0xdb8 => Some("documentation (2001:db8::/32)"),
        x if x & 0xfff0 == 0x3ff0 => Some("documentation (3fff::/20)"),
        0x100 if s[1..4] == [0; 3] => Some("discard-only (100::/64)"),
        0x5f00 => Some("segment routing (5f00::/16)"),
        x if x & 0xfe00 == 0xfc00 => Some("unique local (fc00::/7)"),
        x if x & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        x if x & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        x if x & 0xff00 == 0xff00 => Some("multicast (ff00::/8)"),
        _ => None,
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The rule the fetcher applies to every address it would connect to, on the
/// first request and on every redirect hop.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    /// `media.allow_private`: connect anywhere (for archives inside a private
    /// network, and for tests on loopback).
    pub allow_private: bool,
    /// Non-public networks permitted even without `allow_private`, e.g. one
    /// internal file server; everything else non-public stays refused.
    pub allowed_nets: Vec<IpNet>,
}

impl AddressPolicy {
    /// `Err(reason)` when the fetcher must not connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allow_private {
            return Ok(());
        }
        let ip = canonical(ip);
        match non_public_reason(ip) {
            Some(_) if self.allowed_nets.iter().any(|n| n.contains(&ip)) => Ok(()),
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-translated (`::ffff:0:a.b.c.d`)
/// IPv6 addresses compare as the IPv4 address they carry, so an allowed IPv4
/// network also covers those forms.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.segments() {
            [0, 0, 0, 0, 0xffff, 0, hi, lo] => IpAddr::V4(embedded_v4(hi, lo)),
            _ => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        non_public_reason(s.parse().unwrap())
    }

    #[test]
    fn non_public_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.255",
            "2001:db8::1",
            "2001::1",
            "2001:1ff::1",
            "3fff::1",
            "100::1",
            "5f00::1",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:7f00:1",
            "64:ff9b::c000:201",
            "2002:cb00:7101::",
        ] {
            assert!(reason(ip).is_some(), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:0:808:808",
            "2001:200::1",
            "2001:db9::1",
            "64:ff9b:2::1",
            "192.0.3.1",
            "203.0.114.1",
        ] {
            assert_eq!(reason(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn policy() {
        let strict = AddressPolicy::default();
        assert_eq!(strict.check("127.0.0.1".parse().unwrap()), Err("loopback"));
        assert!(strict.check("1.1.1.1".parse().unwrap()).is_ok());
        let open = AddressPolicy {
            allow_private: true,
            ..Default::default()
        };
        assert!(open.check("169.254.169.254".parse().unwrap()).is_ok());
        let one_net = AddressPolicy {
            allow_private: false,
            allowed_nets: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert!(one_net.check("10.1.2.3".parse().unwrap()).is_ok());
        assert!(one_net.check("::ffff:10.1.2.3".parse().unwrap()).is_ok());
        assert!(one_net.check("::ffff:0:10.1.2.3".parse().unwrap()).is_ok());
        assert!(one_net.check("10.2.0.1".parse().unwrap()).is_err());
        assert!(one_net.check("127.0.0.1".parse().unwrap()).is_err());
    }
}
