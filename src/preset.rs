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
//! callback (drop) from a different callback of the same task (keep); result
//! URLs expire (14 days; Flux's origin URL after 10 minutes; market results
//! "typically" after 24 hours), so media is archived at once.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Which callbacks end a task (for reconciliation: a task whose terminal
/// callback arrived needs no polling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// The product sends one callback per task, success or failure.
    Every,
    /// Terminal only when the string at `pointer` is one of `values`.
    When {
        pointer: &'static str,
        values: &'static [&'static str],
    },
}

/// One product's preset.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name routes use, `kie-…`.
    pub name: &'static str,
    /// The product, for humans (check-config output, errors).
    pub product: &'static str,
    /// JSON pointers whose values form the dedupe key: one callback per
    /// distinct combination is kept, provider retries of it are dropped.
    pub dedupe_key: &'static [&'static str],
    /// Where the task id is, tried in order (the first non-empty string or
    /// number wins). Used by the `kie` signature (taskId + "." + timestamp)
    /// and to match callbacks with expected tasks. Several pointers because
    /// the callback and the polled record spell it differently.
    pub task_id: &'static [&'static str],
    /// Media pointers (`*` = every array element; a string holding JSON is
    /// entered) for the result files to archive.
    pub media: &'static [&'static str],
    /// Which callbacks are the last one for their task.
    pub terminal: Terminal,
}

/// Runway generate/extend: one callback per task; `code` 200, 400 or 500.
/// `video_url`/`image_url` (the cover) are `""` on failure. Keyed by task and
/// `code` so a failure and a later success of the same task id both pass.
pub const KIE_RUNWAY: Preset = Preset {
    name: "kie-runway",
    product: "Runway generate/extend",
    dedupe_key: &["/data/task_id", "/code"],
    task_id: &["/data/task_id", "/data/taskId"],
    media: &["/data/video_url", "/data/image_url"],
    terminal: Terminal::Every,
};

/// Runway Aleph: the task id is at the top level (`/taskId`), `data` holds only
/// the two snake-case result URLs and is `null` on error; `code` 200 or 400.
pub const KIE_ALEPH: Preset = Preset {
    name: "kie-aleph",
    product: "Runway Aleph",
    dedupe_key: &["/taskId", "/code"],
    task_id: &["/taskId", "/data/taskId"],
    media: &["/data/result_video_url", "/data/result_image_url"],
    terminal: Terminal::Every,
};

/// Veo 3.1: `code` 200 ok; 400, 422, 500, 501 failed. The docs disagree on
/// `resultUrls`: an array or a JSON string holding one, under `info`
/// (callback) or `response` (poll) — the pointers cover all four shapes.
/// `originUrls` exist only for aspect ratios other than 16:9; the separate 4K
/// callback adds `info.imageUrls[]`.
pub const KIE_VEO: Preset = Preset {
    name: "kie-veo",
    product: "Veo 3.1",
    dedupe_key: &["/data/taskId", "/code"],
    task_id: &["/data/taskId"],
    media: &[
        "/data/info/resultUrls/*",
        "/data/info/originUrls/*",
        "/data/info/imageUrls/*",
        "/data/response/resultUrls/*",
        "/data/response/originUrls/*",
    ],
    terminal: Terminal::Every,
};

/// Suno: **several callbacks per task**, told apart by `data.callbackType`:
/// `text`, then `first`, then `complete` — or `error`. Only `complete` and
/// `error` are terminal. The dedupe key must include `callbackType`: with the
/// task id alone, `first` and `complete` would be dropped as duplicates of
/// `text`, and the finished audio would never be delivered. A provider retry
/// of the same stage carries the same pair and is dropped. (A callback without
/// `callbackType` falls back to the body hash at ingest: kept, not lost.)
/// `data.data[]` items carry `audio_url` and `image_url` (snake case;
/// `data.data` is null on error). `stream_audio_url` is a live stream
/// (available from the `first` stage), not a finished file: not archived.
pub const KIE_SUNO: Preset = Preset {
    name: "kie-suno",
    product: "Suno music",
    dedupe_key: &["/data/task_id", "/data/callbackType"],
    task_id: &["/data/task_id", "/data/taskId"],
    media: &["/data/data/*/audio_url", "/data/data/*/image_url"],
    terminal: Terminal::When {
        pointer: "/data/callbackType",
        values: &["complete", "error"],
    },
};

/// 4o Image: `code` 200, 400, 451, 500; `data.info` is null on failure. The
/// callback says `result_urls` (snake case); the quickstart reads
/// `resultUrls`, so both are accepted.
pub const KIE_4O_IMAGE: Preset = Preset {
    name: "kie-4o-image",
    product: "4o Image",
    dedupe_key: &["/data/taskId", "/code"],
    task_id: &["/data/taskId"],
    media: &["/data/info/result_urls/*", "/data/info/resultUrls/*"],
    terminal: Terminal::Every,
};

/// Flux Kontext: `code` 200, 400, 500, 501; both URLs `""` on failure. The
/// origin image URL is valid for only 10 minutes.
pub const KIE_FLUX_KONTEXT: Preset = Preset {
    name: "kie-flux-kontext",
    product: "Flux Kontext",
    dedupe_key: &["/data/taskId", "/code"],
    task_id: &["/data/taskId"],
    media: &["/data/info/resultImageUrl", "/data/info/originImageUrl"],
    terminal: Terminal::Every,
};

/// Market jobs (Kling, Sora 2, Seedream, Grok, …): `code` 200 done, 501
/// failed; `data.state` `success` or `fail`; `data.resultJson` is a JSON
/// *string* holding `{"resultUrls": [...]}` (or `resultObject` for text). Keyed
/// by task and `state`, not `code`: Sora's progress callbacks (state
/// `generating`) must not make the final `success` a duplicate. Sora's
/// watermarked copies (`resultWaterMarkUrls`) are not archived.
pub const KIE_MARKET: Preset = Preset {
    name: "kie-market",
    product: "Market jobs (Kling, Sora 2, Seedream, Grok, ...)",
    dedupe_key: &["/data/taskId", "/data/state"],
    task_id: &["/data/taskId"],
    media: &["/data/resultJson/resultUrls/*"],
    terminal: Terminal::When {
        pointer: "/data/state",
        values: &["success", "fail"],
    },
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

    /// Whether this callback is the last one its task will send.
    pub fn is_terminal(&self, body: &Value) -> bool {
        match self.terminal {
            Terminal::Every => true,
            Terminal::When { pointer, values } => {
                matches!(body.pointer(pointer), Some(Value::String(s)) if values.contains(&s.as_str()))
            }
        }
    }

    /// What the preset sets, as TOML-like lines for `check-config`.
    pub fn describe(&self) -> String {
        let list = |v: &[&str]| v.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        let terminal = match self.terminal {
            Terminal::Every => "every callback".to_string(),
            Terminal::When { pointer, values } => format!("{pointer} is one of [{}]", list(values)),
        };
        format!(
            "preset {:?} ({}):\n  dedupe_key = [{}]\n  task_id    = [{}]  # tried in order\n  media      = [{}]\n  terminal   : {}\n",
            self.name,
            self.product,
            list(self.dedupe_key),
            list(self.task_id),
            list(self.media),
            terminal
        )
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
