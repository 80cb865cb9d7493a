//! The memory that requests not yet authenticated may hold together
//! (`server.max_body_memory`): their headers and the bodies that must be
//! read before they can be checked (signature routes, routes without a
//! token). `max_body` bounds one body; without a shared bound it was
//! multiplied by every stream of every connection — 128 HTTP/2 streams each
//! on 4,096 connections — and a stranger could make the daemon run out of
//! memory. One client (an IPv4 address, an IPv6 /64, or together every
//! client whose address is unknown) may hold a quarter of the bound, or one
//! whole request if that is more: without that share a single stranger
//! could hold all of it and every signed callback got 503. A request that
//! would pass either bound is answered 503 (retry later) at once. Requests
//! with a valid route token are past that point and not counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Headers a request may hold besides its body, for the share's floor.
const HEADER_ALLOWANCE: usize = 64 << 10;

/// Who a share belongs to: an IPv4 address, an IPv6 /64 (what one host
/// usually gets), or every client whose address is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(u32),
    V6(u64),
    Unknown,
}

impl Client {
    pub fn of(ip: Option<IpAddr>) -> Client {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(a)) => Client::V4(a.into()),
            Some(IpAddr::V6(a)) => Client::V6((u128::from(a) >> 64) as u64),
            None => Client::Unknown,
        }
    }
}

pub struct BodyBudget {
    state: Mutex<Held>,
}

struct Held {
    limit: usize,
    share: usize,
    used: usize,
    by_client: HashMap<Client, usize>,
}

/// Bytes one request holds of the budget; given back when dropped.
pub struct BodyLease {
    budget: Arc<BodyBudget>,
    client: Client,
    bytes: usize,
}

/// A client's share of `limit`: a quarter, or one request of `max_body`
/// with its headers if that is more, never more than the whole.
fn share_of(limit: usize, max_body: usize) -> usize {
    (limit / 4).max(max_body.saturating_add(HEADER_ALLOWANCE)).min(limit)
}

impl BodyBudget {
    pub fn new(limit: usize, max_body: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            state: Mutex::new(Held {
                limit,
                share: share_of(limit, max_body),
                used: 0,
                by_client: HashMap::new(),
            }),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Nothing panics while holding it; a poisoned count is still right.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New bounds (a reload); what is held stays held.
    pub fn set_limit(&self, limit: usize, max_body: usize) {
        let mut h = self.held();
        h.limit = limit;
        h.share = share_of(limit, max_body);
    }

    /// Bytes held by requests being received now.
    pub fn used(&self) -> usize {
        self.held().used
    }

    pub fn lease(self: &Arc<Self>, client: Client) -> BodyLease {
        BodyLease {
            budget: self.clone(),
            client,
            bytes: 0,
        }
    }
}

impl BodyLease {
    /// Hold `n` more bytes; false (nothing taken) when that passes the
    /// budget or the client's share of it.
    pub fn grow(&mut self, n: usize) -> bool {
        if n == 0 {
            // Nothing to hold (a request without header fields): no entry
            // for its client, which `Drop` would never remove.
            return true;
        }
        let mut h = self.budget.held();
        let Some(used) = h.used.checked_add(n).filter(|&u| u <= h.limit) else {
            return false;
        };
        let share = h.share;
        let mine = h.by_client.get(&self.client).copied().unwrap_or(0);
        let Some(mine) = mine.checked_add(n).filter(|&m| m <= share) else {
            return false;
        };
        h.used = used;
        h.by_client.insert(self.client, mine);
        drop(h);
        self.bytes += n;
        true
    }
}

/// What a request's headers hold, counted as HTTP/2 does (name, value and
/// 32 bytes per field).
pub fn header_bytes(headers: &http::HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum()
}

impl Drop for BodyLease {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut h = self.budget.held();
        h.used -= self.bytes;
        if let Some(mine) = h.by_client.get_mut(&self.client) {
            *mine -= self.bytes;
            if *mine == 0 {
                h.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str) -> Client {
        Client::of(Some(ip.parse().unwrap()))
    }

    #[test]
    fn leases_share_the_limit_and_give_back_when_dropped() {
        // A share of the whole: only the global bound counts here.
        let b = BodyBudget::new(100, 100);
        let mut one = b.lease(client("192.0.2.1"));
        let mut two = b.lease(client("192.0.2.1"));
        assert!(one.grow(60));
        assert!(!two.grow(41), "60 + 41 passes 100");
        assert!(two.grow(40));
        assert_eq!(b.used(), 100);
        drop(one);
        assert_eq!(b.used(), 40);
        assert!(two.grow(60));
        b.set_limit(50, 50);
        let mut three = b.lease(client("192.0.2.1"));
        assert!(!three.grow(1));
        drop(two);
        assert!(three.grow(50));
    }

    #[test]
    fn one_client_holds_at_most_its_share_and_others_still_get_in() {
        let limit = 4 << 20;
        let b = BodyBudget::new(limit, 64 << 10);
        assert_eq!(share_of(limit, 64 << 10), 1 << 20, "a quarter");
        let mut a = b.lease(client("192.0.2.1"));
        assert!(a.grow(1 << 20));
        let mut a2 = b.lease(client("192.0.2.1"));
        assert!(!a2.grow(1), "past its share");
        // The same host's IPv4-mapped form is the same client.
        assert!(!b.lease(client("::ffff:192.0.2.1")).grow(1));
        // Another address, an IPv6 /64 and the unknown ones have their own.
        for other in ["192.0.2.2", "2001:db8::1"] {
            assert!(b.lease(client(other)).grow(1 << 20), "{other}");
        }
        assert!(b.lease(Client::Unknown).grow(1 << 20));
        // Addresses in one /64 share one.
        let mut v6 = b.lease(client("2001:db8::1"));
        assert!(v6.grow(1 << 20));
        assert!(!b.lease(client("2001:db8::ffff")).grow(1));
        drop(v6);
        assert!(b.lease(client("2001:db8::ffff")).grow(1));
        // Given back when dropped.
        drop(a);
        assert!(a2.grow(1 << 20));
        assert_eq!(b.used(), 1 << 20);
        // Holding nothing leaves nothing behind for its client.
        drop(a2);
        let mut empty = b.lease(client("198.51.100.7"));
        assert!(empty.grow(0));
        drop(empty);
        assert!(!b.held().by_client.contains_key(&client("198.51.100.7")));
    }

    #[test]
    fn the_share_is_at_least_one_whole_request_and_at_most_the_budget() {
        assert_eq!(share_of(128 << 20, 1 << 20), 32 << 20);
        assert_eq!(share_of(4 << 20, 2 << 20), (2 << 20) + HEADER_ALLOWANCE);
        assert_eq!(share_of(1 << 20, 1 << 20), 1 << 20);
    }
}
