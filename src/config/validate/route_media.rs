//! The route keys of the media archive: `preset` (a product's dedupe key,
//! task id and media pointers), `media` (pointers to result files) and
//! `provider` (the platform's API key, used to refresh expired URLs). What a
//! preset set is reported for `check-config`. The `[media]` section itself is
//! [`super::media`].

use toml::Spanned;

use super::Validator;
use crate::auth::{credential_text, Secret};
use crate::config::raw::{RawProvider, RawRoute, RawSignature};
use crate::config::secret::SecretSource;
use crate::config::values::{ProviderKey, Signature};
use crate::config::ConfigError;
use crate::media::MediaPointer;
use crate::preset::Preset;

impl Validator<'_> {
    /// The preset a route names, if any.
    pub(super) fn preset(&self, key: &str, p: &Option<Spanned<String>>) -> Result<Option<Preset>, ConfigError> {
        let Some(p) = p else { return Ok(None) };
        p.get_ref()
            .parse::<Preset>()
            .map(Some)
            .map_err(|e| self.err(format!("{key}.preset"), Some(p.span()), e.to_string()))
    }

    /// The route's media pointers: its own `media`, else the preset's.
    pub(super) fn media_pointers(
        &self,
        key: &str,
        own: Option<&[Spanned<String>]>,
        preset: Option<Preset>,
    ) -> Result<Vec<MediaPointer>, ConfigError> {
        match own {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    MediaPointer::parse(p.get_ref())
                        .map_err(|e| self.err(format!("{key}.media[{j}]"), Some(p.span()), e.to_string()))
                })
                .collect(),
            None => Ok(preset.map_or_else(Vec::new, |p| {
                p.media
                    .iter()
                    .map(|m| MediaPointer::parse(m).expect("preset pointers are valid (preset tests)"))
                    .collect()
            })),
        }
    }

    /// `provider = { api_key = …, base_url = … }`.
    pub(super) fn provider(&self, key: &str, p: &Spanned<RawProvider>) -> Result<ProviderKey, ConfigError> {
        let span = Some(p.span());
        let raw = p.get_ref();
        let akey = format!("{key}.api_key");
        let Some(value) = &raw.api_key else {
            return Err(self.err(
                &akey,
                span,
                "an API key is required (e.g. api_key = { env = \"KIE_API_KEY\" })",
            ));
        };
        let text = SecretSource::from_value(value.clone())
            .and_then(|src| src.resolve_text(self))
            .map_err(|m| self.err(&akey, span.clone(), m))?;
        let api_key = Secret::new(text);
        crate::provider::ApiKey::new(credential_text(&api_key)).map_err(|m| self.err(&akey, span.clone(), m))?;
        let base_url = raw
            .base_url
            .clone()
            .unwrap_or_else(|| crate::provider::DEFAULT_BASE_URL.to_string());
        let base_url = crate::provider::check_base_url(&base_url)
            .map_err(|e| self.err(format!("{key}.base_url"), span, e.to_string()))?;
        Ok(ProviderKey { api_key, base_url })
    }
}

/// What a preset set for a route, and which of its values explicit keys
/// replaced, one line each (shown by `check-config`).
pub(super) fn preset_report(p: Preset, r: &RawRoute, signature: &Option<Signature>) -> Vec<String> {
    let list = |v: &[&str]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let from = |own: bool, name: &str, value: String| {
        if own {
            format!("{name}: set by the route (the preset's [{value}] is not used)")
        } else {
            format!("{name} = [{value}]  (from the preset)")
        }
    };
    let mut out = vec![format!("preset {:?}: {}", p.name, p.product)];
    out.push(if r.dedupe_key.is_some() {
        format!(
            "dedupe_key: set by the route (the preset's {} is not used)",
            p.dedupe_text()
        )
    } else {
        format!("dedupe_key = {}  (from the preset)", p.dedupe_text())
    });
    out.push(from(r.media.is_some(), "media", list(p.media)));
    let task_line = match r.signature.as_ref().map(|s| s.get_ref()) {
        Some(RawSignature::Kie { task_id: Some(own), .. }) => format!(
            "task id: {own:?} (the route's) first, then the preset's [{}]; a body's must agree",
            list(p.task_id)
        ),
        _ => format!("task id = [{}]  (from the preset)", list(p.task_id)),
    };
    match signature {
        Some(Signature::Kie { .. }) => out.push(format!("{task_line}; used by the kie signature")),
        _ => out.push(task_line),
    }
    out
}
