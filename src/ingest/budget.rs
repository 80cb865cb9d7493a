//! The memory that requests not yet authenticated may hold together
//! (`server.max_body_memory`): their headers and the bodies that must be
//! read before they can be checked (signature routes, routes without a
//! token). `max_body` bounds one body; without a shared bound it was
//! multiplied by every stream of every connection — 128 HTTP/2 streams each
//! on 4,096 connections — and a stranger could make the daemon run out of
//! memory. A request that would pass the bound is answered 503 (retry later)
//! at once. Requests with a valid route token are past that point and not
//! counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct BodyBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
}

/// Bytes one body holds of the budget; given back when dropped.
pub struct BodyLease {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }

    /// Bytes held by bodies being received now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn lease(self: &Arc<Self>) -> BodyLease {
        BodyLease {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

impl BodyLease {
    /// Hold `n` more bytes; false (nothing taken) when that passes the limit.
    pub fn grow(&mut self, n: usize) -> bool {
        let b = &self.budget;
        let mut used = b.used.load(Ordering::Acquire);
        loop {
            let Some(next) = used.checked_add(n).filter(|&u| u <= b.limit.load(Ordering::Acquire)) else {
                return false;
            };
            match b
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.bytes += n;
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }
}

/// What a request's headers hold, counted as HTTP/2 does (name, value and
/// 32 bytes per field).
pub fn header_bytes(headers: &http::HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum()
}

impl Drop for BodyLease {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_share_the_limit_and_give_back_when_dropped() {
        let b = BodyBudget::new(100);
        let mut one = b.lease();
        let mut two = b.lease();
        assert!(one.grow(60));
        assert!(!two.grow(41), "60 + 41 passes 100");
        assert!(two.grow(40));
        assert_eq!(b.used(), 100);
        drop(one);
        assert_eq!(b.used(), 40);
        assert!(two.grow(60));
        b.set_limit(50);
        let mut three = b.lease();
        assert!(!three.grow(1));
        drop(two);
        assert!(three.grow(50));
    }
}
