//! Route and subscriber numbers (`N` rows): keys carry 4-byte numbers instead
//! of names. A number is never reused; a subscriber's row also remembers its
//! route, so a subscriber removed from the config can still be reported.

use std::collections::HashMap;

use super::keys;
use crate::store::StoreError;

const ROUTE: u8 = b'r';
const SUB: u8 = b's';

#[derive(Debug, Default, Clone)]
pub(super) struct Registry {
    routes: HashMap<String, u32>,
    route_names: HashMap<u32, String>,
    subs: HashMap<String, u32>,
    sub_names: HashMap<u32, String>,
    /// The route each subscriber belongs to (the last one configured).
    sub_route: HashMap<u32, u32>,
    /// The configured subscribers of each route (from the last registration).
    route_subs: HashMap<u32, Vec<u32>>,
    next: u32,
}

impl Registry {
    pub fn load(tree: &sled::Tree) -> Result<Registry, StoreError> {
        let mut r = Registry::default();
        for item in tree.scan_prefix([keys::N]) {
            let (k, v) = item?;
            let (Some(&kind), Ok(name)) = (k.get(1), std::str::from_utf8(&k[2..])) else {
                continue;
            };
            let Some(no) = v.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) else {
                continue;
            };
            r.next = r.next.max(no + 1);
            match kind {
                ROUTE => {
                    r.routes.insert(name.to_string(), no);
                    r.route_names.insert(no, name.to_string());
                }
                SUB => {
                    r.subs.insert(name.to_string(), no);
                    r.sub_names.insert(no, name.to_string());
                    if let Some(route) = v.get(4..8).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) {
                        r.sub_route.insert(no, route);
                    }
                }
                _ => {}
            }
        }
        Ok(r)
    }

    pub fn route(&self, name: &str) -> Option<u32> {
        self.routes.get(name).copied()
    }
    pub fn sub(&self, name: &str) -> Option<u32> {
        self.subs.get(name).copied()
    }
    pub fn route_name(&self, no: u32) -> Option<&str> {
        self.route_names.get(&no).map(String::as_str)
    }
    pub fn sub_name(&self, no: u32) -> Option<&str> {
        self.sub_names.get(&no).map(String::as_str)
    }
    pub fn sub_route(&self, sub: u32) -> Option<u32> {
        self.sub_route.get(&sub).copied()
    }
    /// The configured subscribers of a route.
    pub fn route_subs(&self, route: u32) -> &[u32] {
        self.route_subs.get(&route).map_or(&[], Vec::as_slice)
    }
    pub fn route_numbers(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.route_names.keys().copied().collect();
        v.sort_unstable();
        v
    }
    /// Every subscriber ever registered, by number.
    pub fn sub_numbers(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.sub_names.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The number of a route, allocated (with its row added to `rows`) when new.
    pub fn route_or_new(&mut self, name: &str, rows: &mut Vec<(Vec<u8>, Vec<u8>)>) -> u32 {
        if let Some(no) = self.route(name) {
            return no;
        }
        let no = self.alloc();
        self.routes.insert(name.to_string(), no);
        self.route_names.insert(no, name.to_string());
        rows.push((keys::name(ROUTE, name), no.to_be_bytes().to_vec()));
        no
    }

    /// The number of a subscriber on `route`, allocated when new; the row is
    /// rewritten when its route changed. Returns (number, new).
    pub fn sub_or_new(&mut self, name: &str, route: u32, rows: &mut Vec<(Vec<u8>, Vec<u8>)>) -> (u32, bool) {
        let (no, new) = match self.sub(name) {
            Some(no) => (no, false),
            None => (self.alloc(), true),
        };
        if new || self.sub_route.get(&no) != Some(&route) {
            self.subs.insert(name.to_string(), no);
            self.sub_names.insert(no, name.to_string());
            self.sub_route.insert(no, route);
            let mut v = no.to_be_bytes().to_vec();
            v.extend_from_slice(&route.to_be_bytes());
            rows.push((keys::name(SUB, name), v));
        }
        (no, new)
    }

    /// Replace the configured subscribers of every route.
    pub fn set_configured(&mut self, route_subs: HashMap<u32, Vec<u32>>) {
        self.route_subs = route_subs;
    }

    fn alloc(&mut self) -> u32 {
        let no = self.next;
        self.next += 1;
        no
    }
}
