//! Human-friendly value types of the config file: durations ("15s"), sizes
//! ("1MiB"), networks ("10.0.0.0/8") and rates ("50/s"), each with the error
//! message a user needs when one is mistyped.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// A duration written as "15s", "2m", "14d" (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration: {} (use e.g. \"15s\", \"2m\", \"14d\")",
                duration_problem(&e)
            ))
        })?;
        if d > MAX_DURATION {
            return Err(serde::de::Error::custom(
                "invalid duration: longer than 100 years (no setting needs that much)",
            ));
        }
        Ok(Dur(d))
    }
}

/// The longest duration any key accepts. Far beyond any useful setting, it
/// keeps `Instant + duration` (a timeout's deadline, a lease's end) from
/// overflowing, which would panic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What is wrong with a duration, without quoting any of it: humantime's
/// message for an unknown unit quotes the unit's text, and the value may be
/// a secret written under the wrong key.
fn duration_problem(e: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    match e {
        E::UnknownUnit { start, .. } => {
            format!("unknown time unit at {start} (units: ns, us, ms, s, m, h, d, w, M, y)")
        }
        other => other.to_string(),
    }
}

impl Dur {
    pub fn from_str_const(s: &str) -> Dur {
        Dur(humantime::parse_duration(s).expect("a valid built-in duration"))
    }
}

/// A size written as "1MiB", "64KiB", "500kB" or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "invalid size: expected a whole number of bytes, or text such as \"64KiB\" or \"1MiB\""
        )]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(Size(n)),
            Either::S(s) => parse_size::parse_size(s.trim())
                .map(Size)
                .map_err(|e| serde::de::Error::custom(format!("invalid size: {e} (use e.g. \"1MiB\", \"64KiB\")"))),
        }
    }
}

/// An IPv4 or IPv6 network ("10.0.0.0/8", "::1/128"); a bare address means one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_cidr(&s).map(Cidr).map_err(serde::de::Error::custom)
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    let net = match t.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => t
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| "invalid CIDR (use e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or a single address)".to_string())?,
    };
    Ok(ipv4_mapped_as_ipv4(net))
}

/// A peer at an IPv4-mapped address (`::ffff:1.2.3.4`) is seen as IPv4, so a
/// network written in that form (`::ffff:10.0.0.0/104`) is the IPv4 network
/// it maps (`10.0.0.0/8`); otherwise it could never match anyone.
fn ipv4_mapped_as_ipv4(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// A rate such as "50/s", "600/m" or "1000/h".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map_err(serde::de::Error::custom)
    }
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || "invalid rate (use e.g. \"50/s\", \"600/m\", \"1000/h\")".to_string();
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    let count = NonZeroU32::new(count).ok_or_else(bad)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}
