//! Tokens too weak for a public listener: a short or low-entropy
//! `routes[].tokens` entry or subscriber `pull.token` is warned about (by
//! file and key, never shown) when other hosts reach the relay (a public
//! address in `server.listen`, a proxy in front, a `server.public_url` on
//! another host: `exposed::reach`). Neither ingest nor the pull API slows down wrong
//! guesses: a guessed route token lets anyone post callbacks the
//! subscribers take for the provider's, a guessed pull token lets anyone
//! read (and acknowledge away) a subscriber's callbacks.

use super::exposed::reach;
use super::Validator;
use crate::auth::Secret;
use crate::config::{Route, ServerConfig};

/// Shorter than this (bytes) is weak: `hookrelay gen-token` makes 64.
const TOKEN_MIN_LEN: usize = 16;
/// Fewer distinct bytes than this is low entropy (a word repeated).
const TOKEN_MIN_DISTINCT: usize = 8;

/// Why `t` is weak, if it is.
fn weakness(t: &Secret) -> Option<String> {
    if t.len() < TOKEN_MIN_LEN {
        Some(format!("is {} bytes long, shorter than {TOKEN_MIN_LEN}", t.len()))
    } else if t.distinct_bytes() < TOKEN_MIN_DISTINCT {
        Some(format!(
            "has fewer than {TOKEN_MIN_DISTINCT} different characters (low entropy)"
        ))
    } else {
        None
    }
}

impl Validator<'_> {
    pub(super) fn weak_token_warnings(&self, server: &ServerConfig, routes: &[Route]) -> Vec<String> {
        let Some(reach) = reach(server) else {
            return Vec::new();
        };
        let advice = format!(
            "and {}, so they can guess at it: use `hookrelay gen-token` (64 random hex characters)",
            reach.why
        );
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for (j, t) in r.tokens.iter().enumerate() {
                if let Some(problem) = weakness(t) {
                    out.push(format!(
                        "{}: key `routes[{i}].tokens[{j}]`: a token of route {:?} {problem}, {advice}",
                        self.file.display(),
                        r.name
                    ));
                }
            }
            for (k, s) in r.subscribers.iter().enumerate() {
                let Some(problem) = s.pull().and_then(|p| weakness(&p.token)) else {
                    continue;
                };
                out.push(format!(
                    "{}: key `routes[{i}].subscribers[{k}].pull.token`: the pull token of subscriber {:?} \
                     {problem} (it reads the subscriber's callbacks), {advice}",
                    self.file.display(),
                    s.name
                ));
            }
        }
        out
    }
}
