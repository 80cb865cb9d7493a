//! Provider presets: what a route gets from `preset = "kie-…"` — the dedupe
//! key, where the task id is, and which fields hold result media — as data.
//!
//! Owns the per-product facts (from the platform's callback and status
//! documentation) and their rendering for `check-config`. Does not own how a
//! route merges them with explicit keys (config: an explicit key replaces the
//! preset's value for that key), the status endpoints and poll mapping (the
//! reconciler), nor evaluating pointers (`media::pointer`, the ingest path).
//!
//! Facts shared by every product: the body is a `{code, msg, data}` JSON
//! envelope; the same task may be called back more than once (provider
//! retries, and Suno's stages), so the dedupe key must tell a retry of one
//! callback (drop) from a different callback of the same task (keep). A
//! preset's key is the task id and the callback's [`Outcome`]: success or
//! failure (not the failure code: a result the reconciler recovers by polling
//! carries the record's code, or a guess when the record has none, and the
//! late real callback must still be its duplicate), or the stage before the
//! end for products that call back several times per task. Result
//! URLs expire (14 days; Flux's origin URL after 10 minutes; market results
//! "typically" after 24 hours), so media is archived at once.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::provider::{CallbackStage, Product};

/// What a callback says about its task, as its preset reads it (the
/// product's own reading: [`Product::callback_stage`], which verification
/// uses too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The task ended with a result (`code` 200, a market `success`, Suno `complete`).
    Success,
    /// The task ended without one, whatever the failure code.
    Failure,
    /// A stage before the end, by the name the callback gives it (Suno's
    /// `text`, a market `generating`).
    Stage(String),
    /// Nothing the preset can read (no `code`, no stage).
    Unknown,
}

/// One product's preset.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name routes use, `kie-…`.
    pub name: &'static str,
    /// The product, for humans (check-config output, errors).
    pub product: &'static str,
    /// Where the task id is, tried in order (the first non-empty string or
    /// number wins). Used by the `kie` signature (taskId + "." + timestamp)
    /// and to match callbacks with expected tasks. Several pointers because
    /// the callback and the polled record spell it differently.
    pub task_id: &'static [&'static str],
    /// Media pointers (`*` = every array element; a string holding JSON is
    /// entered) for the result files to archive.
    pub media: &'static [&'static str],
    /// Where a product that calls back several times per task names the
    /// stage (Suno's `callbackType`, the market's `state`); None: one
    /// callback per task, every one final.
    pub stage: Option<&'static str>,
    /// A field (a non-empty array) that marks a success callback as a
    /// separate result of the same task, keyed apart from the task's first
    /// success (Veo's 4K upgrade: called back under the original task id
    /// with `info.imageUrls`, it was dropped as a duplicate of the
    /// generation's callback). With its label in the key.
    pub separate_success: Option<(&'static str, &'static str)>,
}

/// Runway generate/extend: one callback per task; `code` 200, 400 or 500.
/// `video_url`/`image_url` (the cover) are `""` on failure. Keyed by task and
/// outcome, so a failure and a later success of the same task id both pass
/// (and a failure with code 500 is a duplicate of one with 400).
pub const KIE_RUNWAY: Preset = Preset {
    name: "kie-runway",
    product: "Runway generate/extend",
    task_id: &["/data/task_id", "/data/taskId"],
    media: &["/data/video_url", "/data/image_url"],
    stage: None,
    separate_success: None,
};

/// Runway Aleph: the task id is at the top level (`/taskId`), `data` holds only
/// the two snake-case result URLs and is `null` on error; `code` 200 or 400.
pub const KIE_ALEPH: Preset = Preset {
    name: "kie-aleph",
    product: "Runway Aleph",
    task_id: &["/taskId", "/data/taskId"],
    media: &["/data/result_video_url", "/data/result_image_url"],
    stage: None,
    separate_success: None,
};

/// Veo 3.1: `code` 200 ok; 400, 422, 500, 501 failed. The docs disagree on
/// `resultUrls`: an array or a JSON string holding one, under `info`
/// (callback) or `response` (poll) — the pointers cover all four shapes.
/// `originUrls` exist only for aspect ratios other than 16:9. The 4K upgrade
/// (`POST /api/v1/veo/get-4k-video` with the generation's `taskId`) calls
/// back under that same task id, adding `info.imageUrls[]`: a success of its
/// own (`success 4k`), or a failure (`code` 500, only the task id), which
/// no failed generation shares (only a success is upgraded).
pub const KIE_VEO: Preset = Preset {
    name: "kie-veo",
    product: "Veo 3.1",
    task_id: &["/data/taskId"],
    media: &[
        "/data/info/resultUrls/*",
        "/data/info/originUrls/*",
        "/data/info/imageUrls/*",
        "/data/response/resultUrls/*",
        "/data/response/originUrls/*",
    ],
    stage: None,
    separate_success: Some(("/data/info/imageUrls", "4k")),
};

/// Suno: **several callbacks per task**, told apart by `data.callbackType`:
/// `text`, then `first`, then `complete` — or `error`. Only `complete` and
/// `error` are terminal. The dedupe key must tell the stages apart: with the
/// task id alone, `first` and `complete` would be dropped as duplicates of
/// `text`, and the finished audio would never be delivered. A provider retry
/// of the same stage carries the same pair and is dropped. (A `200` callback
/// without `callbackType` falls back to the body hash at ingest: kept, not lost.)
/// `data.data[]` items carry `audio_url` and `image_url` (snake case;
/// `data.data` is null on error). `stream_audio_url` is a live stream
/// (available from the `first` stage), not a finished file: not archived.
pub const KIE_SUNO: Preset = Preset {
    name: "kie-suno",
    product: "Suno music",
    task_id: &["/data/task_id", "/data/taskId"],
    media: &["/data/data/*/audio_url", "/data/data/*/image_url"],
    stage: Some("/data/callbackType"),
    separate_success: None,
};

/// 4o Image: `code` 200, 400, 451, 500; `data.info` is null on failure. The
/// callback says `result_urls` (snake case); the quickstart reads
/// `resultUrls`, so both are accepted.
pub const KIE_4O_IMAGE: Preset = Preset {
    name: "kie-4o-image",
    product: "4o Image",
    task_id: &["/data/taskId"],
    media: &["/data/info/result_urls/*", "/data/info/resultUrls/*"],
    stage: None,
    separate_success: None,
};

/// Flux Kontext: `code` 200, 400, 500, 501; both URLs `""` on failure. The
/// origin image URL is valid for only 10 minutes.
pub const KIE_FLUX_KONTEXT: Preset = Preset {
    name: "kie-flux-kontext",
    product: "Flux Kontext",
    task_id: &["/data/taskId"],
    media: &["/data/info/resultImageUrl", "/data/info/originImageUrl"],
    stage: None,
    separate_success: None,
};

/// Market jobs (Kling, Sora 2, Seedream, Grok, …): `code` 200 done, 501
/// failed; `data.state` `success` or `fail`; `data.resultJson` is a JSON
/// *string* holding `{"resultUrls": [...]}` (or `resultObject` for text). The
/// callback docs.kie.ai shows has no `state` (`{code: 200|501, msg, data:
/// {taskId}}`): then the code says the outcome. Sora's progress callbacks
/// (state `generating`) are a stage, so they do not make the final `success`
/// a duplicate. Sora's watermarked copies (`resultWaterMarkUrls`) are not
/// archived.
pub const KIE_MARKET: Preset = Preset {
    name: "kie-market",
    product: "Market jobs (Kling, Sora 2, Seedream, Grok, ...)",
    task_id: &["/data/taskId"],
    media: &["/data/resultJson/resultUrls/*"],
    stage: Some("/data/state"),
    separate_success: None,
};

/// Every preset, in the order they are listed to users.
pub const ALL: [Preset; 7] = [
    KIE_RUNWAY,
    KIE_ALEPH,
    KIE_VEO,
    KIE_SUNO,
    KIE_4O_IMAGE,
    KIE_FLUX_KONTEXT,
    KIE_MARKET,
];

/// An unknown preset name (the caller adds file and key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {name:?}: valid presets are {}", valid_names())]
pub struct UnknownPreset {
    pub name: String,
}

fn valid_names() -> String {
    ALL.iter()
        .map(|p| format!("\"{}\"", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(name: &str) -> Result<Preset, UnknownPreset> {
        ALL.iter()
            .copied()
            .find(|p| p.name == name)
            .ok_or_else(|| UnknownPreset { name: name.to_string() })
    }
}

impl Preset {
    /// The task id in a callback body: the first of [`Preset::task_id`] that
    /// holds a non-empty string or a number.
    pub fn task_id_of(&self, body: &Value) -> Option<String> {
        self.task_id.iter().find_map(|p| match body.pointer(p) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    }

    /// What a callback body says about its task.
    pub fn outcome(&self, body: &Value) -> Outcome {
        match Product::from_preset_name(self.name).map(|p| p.callback_stage(body)) {
            Some(CallbackStage::Succeeded) => Outcome::Success,
            Some(CallbackStage::Failed) => Outcome::Failure,
            _ => match self.stage.and_then(|p| body.pointer(p)) {
                Some(Value::String(s)) if !s.is_empty() => Outcome::Stage(s.clone()),
                _ => Outcome::Unknown,
            },
        }
    }

    /// Whether this callback is the last one its task will send: every
    /// callback of a product that sends one per task; otherwise a success or
    /// a failure.
    pub fn is_terminal(&self, body: &Value) -> bool {
        self.stage.is_none() || matches!(self.outcome(body), Outcome::Success | Outcome::Failure)
    }

    /// The values of the preset's dedupe key: the task id and the outcome
    /// (`success`, `failure`, or `stage NAME`, with its `data.progress` when
    /// it has one: Sora's progress posts, each a callback of its own). None
    /// when either is missing: ingest then keys the callback by its body
    /// hash (kept, never dropped).
    pub fn dedupe_values(&self, body: &Value) -> Option<(String, String)> {
        let outcome = match self.outcome(body) {
            Outcome::Success => match self.separate_success {
                // A list, or a string holding one (Veo may send its URL
                // lists as JSON strings).
                Some((field, label))
                    if body
                        .pointer(field)
                        .is_some_and(|v| !crate::provider::loose::strings_of(v).is_empty()) =>
                {
                    format!("success {label}")
                }
                _ => "success".to_string(),
            },
            Outcome::Failure => "failure".to_string(),
            Outcome::Stage(s) => match body.pointer("/data/progress").and_then(progress_text) {
                Some(p) => format!("stage {s} {p}"),
                None => format!("stage {s}"),
            },
            Outcome::Unknown => return None,
        };
        Some((self.task_id_of(body)?, outcome))
    }

    /// The preset's dedupe key, in words (`check-config`).
    pub fn dedupe_text(&self) -> String {
        let mut text = "task id + outcome (success or failure, whatever the failure code".to_string();
        if let Some(stage) = self.stage {
            text.push_str(&format!(
                "; before the end, the stage at {stage:?}, with \"/data/progress\" when it has one"
            ));
        }
        if let Some((field, label)) = self.separate_success {
            text.push_str(&format!(
                "; a success naming {field:?} is another one, \"success {label}\""
            ));
        }
        text.push(')');
        text
    }

    /// What the preset sets, as TOML-like lines for `check-config`.
    pub fn describe(&self) -> String {
        let list = |v: &[&str]| v.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        let terminal = match self.stage {
            None => "every callback".to_string(),
            Some(stage) => format!("a success or a failure (not a stage at {stage:?})"),
        };
        format!(
            "preset {:?} ({}):\n  dedupe_key = {}\n  task_id    = [{}]  # tried in order\n  media      = [{}]\n  terminal   : {}\n",
            self.name,
            self.product,
            self.dedupe_text(),
            list(self.task_id),
            list(self.media),
            terminal
        )
    }
}

/// A stage's progress figure as the dedupe key spells it: a number, or a
/// string (`"40"` and `40` are one figure).
fn progress_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<serde_json::Number>() {
                Ok(n) => Some(n.to_string()),
                Err(_) => (!s.is_empty()).then(|| s.to_string()),
            }
        }
        _ => None,
    }
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Preset({})", self.name)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
#[path = "preset_tests.rs"]
mod tests;
