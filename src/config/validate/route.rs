//! `[[routes]]`: path, tokens, allowlist, dedupe key and provider signature
//! (preset, media pointers and provider key: [`super::route_media`]).

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::route_media::preset_report;
use super::{valid_name, SubscriberDefaults, Validator};
use crate::auth::Secret;
use crate::config::raw::{RawRoute, RawSignature};
use crate::config::secret::{decode_whsec, SecretSource};
use crate::config::units::Dur;
use crate::config::values::{Route, Signature};
use crate::config::ConfigError;
use crate::dedupe::DedupeKey;

impl Validator<'_> {
    pub(super) fn route(
        &self,
        key: &str,
        r: RawRoute,
        defaults: &SubscriberDefaults,
        sub_names: &mut HashMap<String, String>,
    ) -> Result<Route, ConfigError> {
        let name = r.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(self.err(
                format!("{key}.name"),
                Some(r.name.span()),
                format!("invalid name {name:?}: use letters, digits, '-', '_' or '.'"),
            ));
        }
        let path = r.path.get_ref().clone();
        // Compared with the request's path as sent: it must be one a request can have.
        let as_sent = path.parse::<http::uri::PathAndQuery>().ok();
        if !path.starts_with('/') || as_sent.is_none_or(|p| p.as_str() != p.path() || p.as_str() != path) {
            return Err(self.err(
                format!("{key}.path"),
                Some(r.path.span()),
                format!(
                    "invalid path {path:?}: must start with '/', have no query or '#' and use only characters a URL \
                     path can have (write a space as %20)"
                ),
            ));
        }
        let tokens = r
            .tokens
            .iter()
            .enumerate()
            .map(|(j, t)| self.token(&format!("{key}.tokens[{j}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        if r.allow_ips.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(self.err(
                format!("{key}.allow_ips"),
                None,
                "allow_ips is an empty list: list the allowed CIDRs, or leave allow_ips out to accept every source",
            ));
        }
        let preset = self.preset(key, &r.preset)?;
        let dedupe_key = match &r.dedupe_key {
            Some(list) => {
                let mut out = Vec::new();
                for (j, p) in list.iter().enumerate() {
                    let ptr = p.get_ref();
                    if let Some(why) = Some(ptr)
                        .filter(|p| !p.is_empty())
                        .and_then(|p| super::pointer_problem(p))
                    {
                        return Err(self.err(format!("{key}.dedupe_key[{j}]"), Some(p.span()), why));
                    }
                    out.push(ptr.clone());
                }
                if out.is_empty() {
                    DedupeKey::Body
                } else {
                    DedupeKey::Pointers(out)
                }
            }
            None => match preset {
                Some(p) => DedupeKey::Preset(p),
                // The message id the signature covers (the header is read
                // whatever the signature's parse: this is only the key).
                None if matches!(
                    r.signature.as_ref().map(|s| s.get_ref()),
                    Some(RawSignature::StandardWebhooks { .. })
                ) =>
                {
                    DedupeKey::MessageId
                }
                None => DedupeKey::Body,
            },
        };
        if matches!(dedupe_key, DedupeKey::Pointers(_) | DedupeKey::Preset(_)) && !r.json {
            return Err(self.err(
                format!("{key}.dedupe_key"),
                None,
                "dedupe_key needs a JSON route (json = true)",
            ));
        }
        let preset_task_id: Vec<String> =
            preset.map_or_else(Vec::new, |p| p.task_id.iter().map(|s| s.to_string()).collect());
        let signature = r
            .signature
            .as_ref()
            .map(|s| self.signature(&format!("{key}.signature"), s, &preset_task_id))
            .transpose()?;
        if matches!(signature, Some(Signature::Kie { .. })) && !r.json {
            return Err(self.err(
                format!("{key}.signature"),
                r.signature.as_ref().map(|s| s.span()),
                "the kie scheme reads the task id from the JSON body: it needs json = true",
            ));
        }
        let media = self.media_pointers(key, r.media.as_deref(), preset)?;
        if !media.is_empty() && !r.json {
            return Err(self.err(
                format!("{key}.media"),
                None,
                "media pointers read the JSON body: they need json = true",
            ));
        }
        let provider = r
            .provider
            .as_ref()
            .map(|p| self.provider(&format!("{key}.provider"), p))
            .transpose()?;
        let (reconcile, verify) = self.tasks(key, &r, preset, provider.is_some())?;
        // The body's bytes, or the whole document (the pointer ""): the
        // relay's rebuilt callback is never the provider's, byte for byte.
        let whole = match &dedupe_key {
            DedupeKey::Body => Some("an empty dedupe_key (the body's bytes)"),
            DedupeKey::Pointers(p) if p.iter().any(String::is_empty) => {
                Some("a dedupe_key with the pointer \"\" (the whole document)")
            }
            _ => None,
        };
        if let (Some(_), Some(p), Some(what)) = (&reconcile, preset, whole) {
            return Err(self.err(
                format!("{key}.dedupe_key"),
                None,
                format!(
                    "{what} cannot tell a result recovered by reconcile from the provider's own callback (they differ): both would be delivered; leave dedupe_key out to use the preset's ({})",
                    p.dedupe_text()
                ),
            ));
        }
        let preset_report = preset.map_or_else(Vec::new, |p| preset_report(p, &r, &signature));
        if r.subscribers.is_empty() {
            return Err(self.err(
                format!("{key}.subscribers"),
                Some(r.name.span()),
                format!("route {name:?} has no subscribers: add a [[routes.subscribers]] table"),
            ));
        }
        let mut subscribers = Vec::new();
        for (j, s) in r.subscribers.into_iter().enumerate() {
            let skey = format!("{key}.subscribers[{j}]");
            if let Some(prev) = sub_names.insert(s.name.get_ref().clone(), skey.clone()) {
                return Err(self.err(
                    format!("{skey}.name"),
                    Some(s.name.span()),
                    format!(
                        "duplicate subscriber name {:?} (also {prev}.name); names are unique across all routes",
                        s.name.get_ref()
                    ),
                ));
            }
            subscribers.push(self.subscriber(&skey, &name, s, defaults)?);
        }
        // Pieces that add up to everything (`0.0.0.0/1` and `128.0.0.0/1`)
        // are everyone too.
        let everyone = r.allow_ips.as_ref().is_none_or(|nets| {
            let nets: Vec<ipnet::IpNet> = nets.iter().map(|c| c.0).collect();
            ipnet::IpNet::aggregate(&nets).iter().any(|n| n.prefix_len() == 0)
        });
        if tokens.is_empty() && signature.is_none() && everyone && !r.allow_anyone {
            return Err(self.err(
                key,
                Some(r.name.span()),
                format!(
                    "route {name:?} would accept callbacks from anyone: it has no tokens, no signature and no \
                     allow_ips narrower than 0.0.0.0/0 (a stranger's POST would be stored and delivered with \
                     this relay's signature). Add one of them, or set allow_anyone = true if that is intended"
                ),
            ));
        }
        Ok(Route {
            name,
            path,
            token_digests: tokens.iter().map(crate::auth::TokenDigest::of).collect(),
            tokens,
            allow_ips: r.allow_ips.unwrap_or_default().into_iter().map(|c| c.0).collect(),
            allow_anyone: r.allow_anyone,
            dedupe_key,
            signature,
            preset,
            preset_report,
            task_id: preset_task_id,
            media,
            provider,
            json: r.json,
            reconcile,
            verify,
            subscribers,
        })
    }

    /// The secrets of a signature's `secret` value (a list only where `list`
    /// allows), each resolved, with the key each came from.
    fn signature_secrets(
        &self,
        key: &str,
        span: &Option<std::ops::Range<usize>>,
        value: &Option<toml::Value>,
        list: bool,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let skey = format!("{key}.secret");
        let Some(value) = value else {
            return Err(self.err(&skey, span.clone(), "a secret is required"));
        };
        let items: Vec<(String, &toml::Value)> = match value {
            toml::Value::Array(items) if list => {
                if items.is_empty() {
                    return Err(self.err(&skey, span.clone(), "the list of secrets is empty"));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(j, v)| (format!("{skey}[{j}]"), v))
                    .collect()
            }
            v => vec![(skey, v)],
        };
        items
            .into_iter()
            .map(|(k, v)| {
                SecretSource::from_value(v.clone())
                    .and_then(|src| src.resolve_text(self))
                    .and_then(|text| match text.trim().is_empty() {
                        // An HMAC key of spaces is one anyone can guess.
                        true => Err("the secret is blank (only whitespace)".to_string()),
                        false => Ok((k.clone(), text)),
                    })
                    .map_err(|m| self.err(k, span.clone(), m))
            })
            .collect()
    }

    /// A signature; `preset_task_id` is where the task id is when the `kie`
    /// scheme names no `task_id` of its own. One it names is read first,
    /// the preset's after it: every one the body holds must agree, so the
    /// task id signed is the one dedupe and the expected tasks act on
    /// (taken alone, a signature over task A could carry a body whose
    /// preset field says B, stored as B's callback and the genuine B then a
    /// duplicate).
    fn signature(
        &self,
        key: &str,
        s: &Spanned<RawSignature>,
        preset_task_id: &[String],
    ) -> Result<Signature, ConfigError> {
        let span = Some(s.span());
        let tolerance = |t: &Option<Dur>| match t {
            None => Ok(Duration::from_secs(300)),
            Some(d) if d.0.is_zero() => {
                Err(self.err(format!("{key}.tolerance"), span.clone(), "must be greater than 0"))
            }
            Some(d) => Ok(d.0),
        };
        let one = |value: &Option<toml::Value>| -> Result<Secret, ConfigError> {
            let (_, text) = self.signature_secrets(key, &span, value, false)?.remove(0);
            Ok(Secret::new(text))
        };
        Ok(match s.get_ref() {
            RawSignature::Kie {
                secret,
                task_id,
                tolerance: t,
            } => {
                if let Some(why) = task_id.as_deref().and_then(super::pointer_problem) {
                    return Err(self.err(format!("{key}.task_id"), span, why));
                }
                Signature::Kie {
                    secret: one(secret)?,
                    task_id: task_id
                        .iter()
                        .chain(preset_task_id.iter().filter(|p| Some(*p) != task_id.as_ref()))
                        .cloned()
                        .collect(),
                    tolerance: tolerance(t)?,
                }
            }
            RawSignature::StandardWebhooks { secret, tolerance: t } => {
                let keys = self
                    .signature_secrets(key, &span, secret, true)?
                    .into_iter()
                    .map(|(k, text)| decode_whsec(&text).map_err(|m| self.err(k, span.clone(), m)))
                    .collect::<Result<Vec<_>, _>>()?;
                Signature::StandardWebhooks {
                    keys,
                    tolerance: tolerance(t)?,
                }
            }
            RawSignature::HmacSha256 {
                secret,
                header,
                encoding,
                prefix,
            } => {
                let header = HeaderName::try_from(header.as_str()).map_err(|_| {
                    self.err(
                        format!("{key}.header"),
                        span.clone(),
                        format!("invalid header name {header:?}"),
                    )
                })?;
                // The relay's own marks on a stored event (`hookrelay-verify`,
                // `hookrelay-contests`) are kept headers too: a sender's
                // signature header of that name would set them.
                if header.as_str().starts_with("hookrelay-") {
                    return Err(self.err(
                        format!("{key}.header"),
                        span,
                        format!("{header:?}: a header name starting hookrelay- is the relay's own (its marks on stored events); name the provider's signature header"),
                    ));
                }
                // No header value holds one: every callback would be 401.
                if prefix.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(self.err(
                        format!("{key}.prefix"),
                        span,
                        "the prefix holds a control character (a newline?), which no header value can carry: \
                         no signature would ever match",
                    ));
                }
                Signature::HmacSha256 {
                    secret: one(secret)?,
                    header,
                    encoding: *encoding,
                    prefix: prefix.clone(),
                }
            }
        })
    }
}

/// Route paths most clients cannot send as written (warnings: a client
/// that sends raw bytes, or keeps dot segments, reaches them, so a config
/// that ran keeps running): a character outside ASCII is sent
/// percent-encoded by browsers, curl and most libraries (`%C3%A9` or
/// `%c3%a9`, two paths here, both unlike `é`), and `.`/`..` segments are
/// removed by most before sending.
pub(super) fn path_warnings(file: &std::path::Path, routes: &[crate::config::Route]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let why = if !r.path.is_ascii() {
            "has a character outside ASCII, which most clients send percent-encoded (as %C3%A9 or %c3%a9 for \
             'é'), a different path: only clients sending raw bytes reach it; prefer an ASCII path"
        } else if r.path.split('/').any(|seg| seg == "." || seg == "..") {
            "has a '.' or '..' segment, which most clients remove before sending: only clients keeping it reach \
             this route; write the path without"
        } else {
            continue;
        };
        out.push(format!(
            "{}: key `routes[{i}].path`: {:?} {why}",
            file.display(),
            r.path
        ));
    }
    out
}

/// What a route path looks like to a person: percent-encoded unreserved
/// characters decoded (`%61` is `a`), other escapes in upper case, doubled
/// `/` collapsed and a trailing `/` dropped. Two routes whose paths look
/// alike are refused: requests match a path exactly, so they would be two
/// routes a typo tells apart.
pub(super) fn path_likeness(path: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => Some((h * 16 + l) as u8),
            _ => None,
        };
        match escaped {
            Some(d) if d.is_ascii_alphanumeric() || b"-._~".contains(&d) => out.push(d),
            Some(_) => out.extend(b[i..i + 3].to_ascii_uppercase()),
            None if b[i] == b'/' && out.last() == Some(&b'/') => {}
            None => out.push(b[i]),
        }
        i += if escaped.is_some() { 3 } else { 1 };
    }
    if out.len() > 1 && out.last() == Some(&b'/') {
        out.pop();
    }
    String::from_utf8_lossy(&out).into_owned()
}
