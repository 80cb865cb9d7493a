//! Route tokens too weak for a public listener: a short or low-entropy
//! `routes[].tokens` entry is warned about (by file and key, never shown)
//! when `server.listen` has an address other hosts can reach. Ingest does
//! not slow down wrong guesses, and a guessed token lets anyone post
//! callbacks the subscribers take for the provider's.

use super::admin::is_loopback;
use super::Validator;
use crate::config::{Route, ServerConfig};

/// Shorter than this (bytes) is weak: `hookrelay gen-token` makes 64.
const ROUTE_TOKEN_MIN_LEN: usize = 16;
/// Fewer distinct bytes than this is low entropy (a word repeated).
const ROUTE_TOKEN_MIN_DISTINCT: usize = 8;

impl Validator<'_> {
    pub(super) fn weak_route_token_warnings(&self, server: &ServerConfig, routes: &[Route]) -> Vec<String> {
        let Some(public) = server.listen.iter().find(|a| !is_loopback(**a)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for (j, t) in r.tokens.iter().enumerate() {
                let problem = if t.len() < ROUTE_TOKEN_MIN_LEN {
                    format!("is {} bytes long, shorter than {ROUTE_TOKEN_MIN_LEN}", t.len())
                } else if t.distinct_bytes() < ROUTE_TOKEN_MIN_DISTINCT {
                    format!("has fewer than {ROUTE_TOKEN_MIN_DISTINCT} different characters (low entropy)")
                } else {
                    continue;
                };
                out.push(format!(
                    "{}: key `routes[{i}].tokens[{j}]`: a token of route {:?} {problem}, and server.listen has \
                     {public}, which other hosts can reach, so they can guess at it: use `hookrelay gen-token` \
                     (64 random hex characters)",
                    self.file.display(),
                    r.name
                ));
            }
        }
        out
    }
}
