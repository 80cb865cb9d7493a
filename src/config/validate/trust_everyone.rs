//! `server.trusted_proxies` naming every address (`0.0.0.0/0`, `::/0`), or
//! most of them (networks that together cover half of a family's
//! addresses or more: `0.0.0.0/1`, every address but one): a sender at a
//! trusted address writes `X-Forwarded-For` as it likes, so the source
//! address the relay takes for a request is, for most of the internet, the
//! sender's choice. A route whose only check is `allow_ips` would
//! let anyone in: refused. Otherwise warned about (`allow_ips` beside a
//! token or signature, the addresses logged and listed, are the sender's).

use ipnet::IpNet;

use super::Validator;
use crate::config::{ConfigError, Route, ServerConfig};

impl Validator<'_> {
    /// The warning when every address is trusted and no route relies on
    /// `allow_ips` alone; the refusal when one does.
    pub(super) fn proxies_trusting_everyone(
        &self,
        server: &ServerConfig,
        routes: &[Route],
    ) -> Result<Option<String>, ConfigError> {
        let nets = IpNet::aggregate(&server.trusted_proxies);
        // The share of its family's addresses each family's networks cover
        // (they do not overlap once aggregated).
        let share = |v4: bool| -> f64 {
            nets.iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .map(|n| 0.5f64.powi(i32::from(n.prefix_len())))
                .sum()
        };
        // IPv6 is also judged by the public addresses (global unicast,
        // `2000::/3`): trusting `2000::/3` is trusting every IPv6 sender on
        // the internet, an eighth of the family (stop 66's Left).
        let public6: ipnet::Ipv6Net = "2000::/3".parse().expect("a network");
        let public_share: f64 = nets
            .iter()
            .filter_map(|n| match n {
                IpNet::V6(n) if n.contains(&public6) => Some(1.0),
                IpNet::V6(n) if public6.contains(n) => Some(0.5f64.powi(i32::from(n.prefix_len()) - 3)),
                _ => None,
            })
            .sum();
        let all = match (share(true), share(false), public_share) {
            (s, _, _) if s >= 1.0 => "every IPv4 address".to_string(),
            (_, s, _) if s >= 1.0 => "every IPv6 address".to_string(),
            (s, _, _) if s >= 0.5 => format!("{:.0} % of IPv4 addresses", s * 100.0),
            (_, s, _) if s >= 0.5 => format!("{:.0} % of IPv6 addresses", s * 100.0),
            (_, _, s) if s >= 0.5 => format!("{:.0} % of public IPv6 addresses (2000::/3)", s * 100.0),
            _ => return Ok(None),
        };
        let key = match server.trusted_proxies.iter().position(|n| n.prefix_len() <= 1) {
            Some(j) => format!("server.trusted_proxies[{j}]"),
            None => "server.trusted_proxies".to_string(),
        };
        let only_allow_ips =
            |r: &&Route| !r.allow_ips.is_empty() && r.tokens.is_empty() && r.signature.is_none() && !r.allow_anyone;
        if let Some(r) = routes.iter().find(only_allow_ips) {
            return Err(self.err(
                key,
                None,
                format!(
                    "trusts {all} as proxies, so X-Forwarded-For is whatever the sender writes, and route {:?} \
                     checks callbacks by `allow_ips` alone: anyone could pass it. Name only your proxies' \
                     addresses (or give the route a token or a signature)",
                    r.name
                ),
            ));
        }
        Ok(Some(format!(
            "{}: key `{key}`: trusts {all} as proxies: X-Forwarded-For is whatever the sender writes, so \
             `allow_ips` and the source addresses in logs and listings are the sender's choice; name only your \
             proxies' addresses",
            self.file.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(server: &str, route: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookrelay.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = [\"127.0.0.1:8080\"]\n{server}\n[store]\npath = \"{}\"\n[[routes]]\nname = \"r\"\n\
                 path = \"/hooks/r\"\n{route}\n[[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Config::load(&path)
    }

    const ALLOWLIST: &str = "allow_ips = [\"203.0.113.7/32\"]";

    #[test]
    fn every_address_trusted_is_refused_for_a_route_checked_by_its_allowlist_alone() {
        // Every IPv4 address but one (203.0.113.7): 32 networks.
        let but_one: Vec<String> = (0..32u32)
            .map(|bit| {
                let flipped = u32::from(std::net::Ipv4Addr::new(203, 0, 113, 7)) ^ (1 << (31 - bit));
                let net = ipnet::Ipv4Net::new(flipped.into(), (bit + 1) as u8).unwrap().trunc();
                format!("\"{net}\"")
            })
            .collect();
        let but_one = format!("[{}]", but_one.join(", "));
        for everyone in [
            "[\"0.0.0.0/0\", \"::/0\"]",
            "[\"10.0.0.1/32\", \"::/0\"]",
            "[\"0.0.0.0/1\", \"128.0.0.0/1\"]",
            "[\"::ffff:0.0.0.0/96\"]",
            "[\"0.0.0.0/1\"]",
            // Every public IPv6 address, or half of them.
            "[\"2000::/3\"]",
            "[\"2000::/4\"]",
            but_one.as_str(),
        ] {
            let e = load(&format!("trusted_proxies = {everyone}"), ALLOWLIST)
                .expect_err(everyone)
                .to_string();
            assert!(
                e.contains("key `server.trusted_proxies") && e.contains("route \"r\""),
                "{e}"
            );
            assert!(e.contains("anyone could pass it"), "{e}");
        }
    }

    #[test]
    fn every_address_trusted_is_warned_about_where_a_token_checks_too() {
        let c = load(
            "trusted_proxies = [\"10.0.0.0/8\", \"0.0.0.0/0\"]",
            &format!("{ALLOWLIST}\ntokens = [\"a-long-enough-route-token-0123456789\"]"),
        )
        .expect("a token checks callbacks");
        let w: Vec<_> = c.warnings.iter().filter(|w| w.contains("every IPv4 address")).collect();
        assert!(
            w.len() == 1 && w[0].contains("key `server.trusted_proxies[1]`"),
            "{:?}",
            c.warnings
        );
        // Named proxies, however wide, under half of a family: neither.
        for named in [
            "[\"10.0.0.0/8\"]",
            "[\"0.0.0.0/2\", \"64.0.0.0/3\"]",
            "[\"2000::/5\"]",
            "[\"2001:db8::/32\"]",
        ] {
            let c = load(&format!("trusted_proxies = {named}"), ALLOWLIST).expect(named);
            assert!(!c.warnings.iter().any(|w| w.contains("as proxies")), "{:?}", c.warnings);
        }
    }
}
