//! The secrets the shipped `config.toml` and the README write out (route
//! token `change-me`, the example subscriber signing secret) are known to
//! everyone: on a public listener they authenticate nothing. A config that
//! keeps one while other hosts reach the relay (an address in
//! `server.listen` that is not loopback, a proxy in front, a public
//! `server.public_url`: [`reach`]) is refused, as a route open to anyone is
//! (a route checking providers' signatures with one of them too: anyone
//! could sign its callbacks);
//! on loopback only (the shipped config as it is) they stay allowed. The
//! secret is never shown, only its key.

use super::exposed::reach;
use super::Validator;
use crate::auth::Secret;
use crate::config::{decode_whsec, ConfigError, Route, ServerConfig, Signature};

/// The route token of the shipped config and the README.
pub(super) const PLACEHOLDER_TOKEN: &str = "change-me";
/// The subscriber signing secret of the shipped config.
pub(super) const PLACEHOLDER_SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl Validator<'_> {
    pub(super) fn no_placeholder_secrets(&self, server: &ServerConfig, routes: &[Route]) -> Result<(), ConfigError> {
        let Some(reach) = reach(server) else {
            return Ok(());
        };
        let (why, otherwise) = (&reach.why, reach.otherwise);
        let token = Secret::new(PLACEHOLDER_TOKEN);
        let signing = decode_whsec(PLACEHOLDER_SIGNING_SECRET).ok();
        for (i, r) in routes.iter().enumerate() {
            if let Some(j) = r.tokens.iter().position(|t| *t == token) {
                return Err(self.err(
                    format!("routes[{i}].tokens[{j}]"),
                    None,
                    format!(
                        "route {:?} keeps the example token of the shipped config, which everyone knows, and \
                         {why}: make one with `hookrelay gen-token`{otherwise}",
                        r.name
                    ),
                ));
            }
            if let Some(field) = r
                .signature
                .as_ref()
                .and_then(|s| known_signature_secret(s, &token, signing.as_ref()))
            {
                return Err(self.err(
                    format!("routes[{i}].signature.{field}"),
                    None,
                    format!(
                        "route {:?} checks provider signatures with an example secret of the shipped config or \
                         the README, which everyone knows (anyone could sign callbacks to it), and {why}: use the \
                         signing secret your provider gives you{otherwise}",
                        r.name
                    ),
                ));
            }
            for (k, s) in r.subscribers.iter().enumerate() {
                if s.pull().is_some_and(|p| p.token == token) {
                    return Err(self.err(
                        format!("routes[{i}].subscribers[{k}].pull.token"),
                        None,
                        format!(
                            "subscriber {:?} has the example token of the shipped config as its pull token, \
                             which everyone knows (anyone could read its callbacks), and {why}: make one with \
                             `hookrelay gen-token`{otherwise}",
                            s.name
                        ),
                    ));
                }
                if let Some(m) = s.keys.iter().position(|key| Some(key) == signing.as_ref()) {
                    let key = match s.keys.len() {
                        1 => format!("routes[{i}].subscribers[{k}].secret"),
                        _ => format!("routes[{i}].subscribers[{k}].secret[{m}]"),
                    };
                    return Err(self.err(
                        key,
                        None,
                        format!(
                            "subscriber {:?} keeps the example signing secret of the shipped config, which everyone \
                             knows (anyone could sign deliveries as this relay), and {why}: make one with \
                             `hookrelay gen-secret`{otherwise}",
                            s.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The key under `signature` (`secret`, or `secret[n]` of a list) holding
/// one of the examples: the token, or the signing secret (as text for the
/// schemes that use the text, decoded for Standard Webhooks).
fn known_signature_secret(sig: &Signature, token: &Secret, signing: Option<&Secret>) -> Option<String> {
    match sig {
        Signature::Kie { secret, .. } | Signature::HmacSha256 { secret, .. } => {
            (*secret == *token || *secret == Secret::new(PLACEHOLDER_SIGNING_SECRET)).then(|| "secret".to_string())
        }
        Signature::StandardWebhooks { keys, .. } => {
            let m = keys.iter().position(|k| Some(k) == signing)?;
            Some(match keys.len() {
                1 => "secret".to_string(),
                _ => format!("secret[{m}]"),
            })
        }
    }
}
