//! The seven product shapes of the provider platform and their facts: status
//! endpoint, where the task id sits, how a polled state is classified, whether
//! a callback is terminal, and the documented rate limits.
//!
//! Facts come from `reference/provider-polling.md` and
//! `reference/provider-callbacks.md`; where those say UNCONFIRMED the reading
//! here is deliberately loose (see the per-product comments). This module does
//! not read whole records (see [`super::record`]) nor build callbacks
//! (see [`super::shape`]).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use super::loose::{int_at, str_at};

/// One product shape of the platform (a preset name selects one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    Runway,
    Aleph,
    Veo,
    Suno,
    FourOImage,
    FluxKontext,
    Market,
}

/// Where a polled task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Accepted, not started (`wait`, `queueing`, `PENDING`, …).
    Waiting,
    /// Being generated, including Suno's `TEXT_SUCCESS` / `FIRST_SUCCESS` and
    /// any state value this code does not know (keep polling; `give_up` bounds it).
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished without a result.
    Failed,
}

impl Stage {
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Succeeded | Stage::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Running => "running",
            Stage::Succeeded => "succeeded",
            Stage::Failed => "failed",
        }
    }
}

/// A classified poll state together with the provider's own value, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub stage: Stage,
    /// The state as the provider wrote it (`generating`, `successFlag=2`, …):
    /// operators recognise the provider's words, not ours.
    pub state: String,
}

/// What a received callback says about its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackStage {
    /// A stage before the end (Suno `text`/`first`, a market progress post).
    Progress,
    Succeeded,
    Failed,
    /// No status field this code can read: not treated as terminal, so the
    /// reconciler keeps asking the provider instead of trusting it.
    Unrecognised,
}

impl CallbackStage {
    pub fn is_terminal(self) -> bool {
        matches!(self, CallbackStage::Succeeded | CallbackStage::Failed)
    }
}

/// A request rate: `cells` requests per `per`, allowed as a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub cells: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub const fn new(cells: NonZeroU32, per: Duration) -> Rate {
        Rate { cells, per }
    }
}

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("rate must be positive"),
    }
}

/// Documented poll limits; `None` where the documentation gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollLimits {
    pub per_task: Option<Rate>,
    pub per_key: Option<Rate>,
}

/// "At most 20 new generation requests per 10 s per account" (429 beyond, not queued).
pub const ACCOUNT_CREATE_LIMIT: Rate = Rate::new(nz(20), Duration::from_secs(10));
/// Suno and 4o Image: 3 status requests per second per task.
pub const PER_TASK_3_PER_S: Rate = Rate::new(nz(3), Duration::from_secs(1));
/// Market: 10 status requests per second per API key.
pub const MARKET_PER_KEY: Rate = Rate::new(nz(10), Duration::from_secs(1));
/// The platform's advice when callbacks cannot be used.
pub const SUGGESTED_POLL_INTERVAL: Duration = Duration::from_secs(30);

impl Product {
    pub const ALL: [Product; 7] = [
        Product::Runway,
        Product::Aleph,
        Product::Veo,
        Product::Suno,
        Product::FourOImage,
        Product::FluxKontext,
        Product::Market,
    ];

    /// The preset name in `config.toml` (`preset = "kie-runway"`).
    pub fn preset_name(self) -> &'static str {
        match self {
            Product::Runway => "kie-runway",
            Product::Aleph => "kie-aleph",
            Product::Veo => "kie-veo",
            Product::Suno => "kie-suno",
            Product::FourOImage => "kie-4o-image",
            Product::FluxKontext => "kie-flux-kontext",
            Product::Market => "kie-market",
        }
    }

    pub fn from_preset_name(name: &str) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.preset_name() == name)
    }

    /// The status ("record detail") endpoint; `GET` with `?taskId=`.
    pub fn status_path(self) -> &'static str {
        match self {
            Product::Runway => "/api/v1/runway/record-detail",
            Product::Aleph => "/api/v1/aleph/record-info",
            Product::Veo => "/api/v1/veo/record-info",
            Product::Suno => "/api/v1/generate/record-info",
            Product::FourOImage => "/api/v1/gpt4o-image/record-info",
            Product::FluxKontext => "/api/v1/flux/kontext/record-info",
            Product::Market => "/api/v1/jobs/recordInfo",
        }
    }

    /// JSON pointer of the task id in this product's callback body (also what
    /// the `kie` signature signs).
    pub fn callback_task_id_pointer(self) -> &'static str {
        match self {
            Product::Runway | Product::Suno => "/data/task_id",
            Product::Aleph => "/taskId",
            Product::Veo | Product::FourOImage | Product::FluxKontext | Product::Market => "/data/taskId",
        }
    }

    /// JSON pointers of the task id inside a poll record's `data`, most
    /// authoritative first (an old Runway page has it only in `videoInfo`).
    pub fn record_task_id_pointers(self) -> &'static [&'static str] {
        match self {
            Product::Runway => &["/taskId", "/videoInfo/taskId"],
            Product::Aleph | Product::Veo | Product::Suno => &["/taskId", "/response/taskId"],
            Product::FourOImage | Product::FluxKontext | Product::Market => &["/taskId"],
        }
    }

    /// Documented status-endpoint limits. Only Suno and 4o Image (per task)
    /// and Market (per key) document any; the client applies its own
    /// conservative defaults elsewhere.
    pub fn poll_limits(self) -> PollLimits {
        match self {
            Product::Suno | Product::FourOImage => PollLimits {
                per_task: Some(PER_TASK_3_PER_S),
                per_key: None,
            },
            Product::Market => PollLimits {
                per_task: None,
                per_key: Some(MARKET_PER_KEY),
            },
            _ => PollLimits {
                per_task: None,
                per_key: None,
            },
        }
    }

    /// The task id a callback body names, if any.
    pub fn callback_task_id(self, body: &Value) -> Option<&str> {
        str_at(body, self.callback_task_id_pointer())
    }

    /// Classify a poll record's `data` object.
    pub fn classify(self, data: &Value) -> Classified {
        match self {
            Product::Runway | Product::Market => classify_state_word(data),
            Product::Aleph => classify_aleph(data),
            Product::Veo | Product::FluxKontext => {
                let flag = int_at(data, "/successFlag");
                let stage = match flag {
                    Some(1) => Stage::Succeeded,
                    // Veo: the schema lists 0/1/2 but the status table adds 3; both fail.
                    Some(2) | Some(3) => Stage::Failed,
                    _ => Stage::Running,
                };
                Classified {
                    stage,
                    state: flag_text(flag),
                }
            }
            Product::Suno => classify_suno(data),
            Product::FourOImage => classify_4o(data),
        }
    }

    /// Whether a callback body is a progress post, a final result, or unreadable.
    pub fn callback_stage(self, body: &Value) -> CallbackStage {
        let code = int_at(body, "/code");
        let by_code = || match code {
            Some(200) => CallbackStage::Succeeded,
            Some(_) => CallbackStage::Failed,
            None => CallbackStage::Unrecognised,
        };
        match self {
            Product::Suno => match str_at(body, "/data/callbackType") {
                Some("complete") if code == Some(200) => CallbackStage::Succeeded,
                Some("complete") | Some("error") => CallbackStage::Failed,
                Some("text") | Some("first") => CallbackStage::Progress,
                // An unknown stage name: not terminal, so polling decides.
                Some(_) => CallbackStage::Unrecognised,
                None if code.is_some_and(|c| c != 200) => CallbackStage::Failed,
                None => CallbackStage::Unrecognised,
            },
            Product::Market => market_callback_stage(body, code),
            _ => by_code(),
        }
    }
}

/// Market callbacks are the record's `data` (state, resultJson, …); the Grok
/// page shows only `{code, msg, data:{taskId}}`; Sora's `progressCallBackUrl`
/// posts arrive while the task runs. The state word wins; without one, a
/// progress figure marks a progress post — below 100, or at 100 with no
/// result (`resultJson`) yet: the completion brings that, and a last
/// progress post at 100 taken for it settled the task with no result and
/// had the completion dropped as its duplicate; otherwise the code decides.
fn market_callback_stage(body: &Value, code: Option<i64>) -> CallbackStage {
    if let Some(state) = body.pointer("/data").filter(|d| d.get("state").is_some()) {
        return match classify_state_word(state).stage {
            Stage::Succeeded => CallbackStage::Succeeded,
            Stage::Failed => CallbackStage::Failed,
            Stage::Waiting | Stage::Running => CallbackStage::Progress,
        };
    }
    if let Some(p) = progress_at(body) {
        // A result is one that holds something: `""` and `{}` are none.
        let result = body.pointer("/data/resultJson").is_some_and(|r| match r {
            Value::Null => false,
            Value::String(s) => !s.trim().is_empty() && !matches!(s.trim(), "{}" | "[]" | "null"),
            Value::Object(o) => !o.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        });
        if p < 100.0 || (code == Some(200) && !result) {
            return CallbackStage::Progress;
        }
    }
    match code {
        Some(200) => CallbackStage::Succeeded,
        Some(_) => CallbackStage::Failed,
        None => CallbackStage::Unrecognised,
    }
}

/// A market post's `data.progress`: a number or a string holding one,
/// fractions included (`45.5`, `"0.50"`).
fn progress_at(body: &Value) -> Option<f64> {
    match body.pointer("/data/progress")? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn flag_text(flag: Option<i64>) -> String {
    match flag {
        Some(f) => format!("successFlag={f}"),
        None => "successFlag missing".into(),
    }
}

/// Runway and Market: `state` = wait|waiting, queueing|queuing, generating, success, fail.
fn classify_state_word(data: &Value) -> Classified {
    let raw = str_at(data, "/state").unwrap_or("");
    let stage = match raw.to_ascii_lowercase().as_str() {
        "wait" | "waiting" | "queueing" | "queuing" => Stage::Waiting,
        "success" => Stage::Succeeded,
        "fail" | "failed" => Stage::Failed,
        _ => Stage::Running,
    };
    Classified {
        stage,
        state: if raw.is_empty() {
            "state missing".into()
        } else {
            raw.into()
        },
    }
}

/// Aleph has no failed value: `successFlag` 0 with an error message (or an
/// error code of 400 and above) is a failure; 0 with neither is still running.
fn classify_aleph(data: &Value) -> Classified {
    let flag = int_at(data, "/successFlag");
    let message = str_at(data, "/errorMessage").is_some_and(|m| !m.trim().is_empty());
    let code = int_at(data, "/errorCode").is_some_and(|c| c >= 400);
    let stage = match flag {
        Some(1) => Stage::Succeeded,
        _ if message || code => Stage::Failed,
        _ => Stage::Running,
    };
    Classified {
        stage,
        state: flag_text(flag),
    }
}

/// Suno: only `SUCCESS` and the failure values end a task. `CALLBACK_EXCEPTION`
/// ("error during callback process") is UNCONFIRMED: it counts as success when
/// the record holds audio, else as failure.
fn classify_suno(data: &Value) -> Classified {
    let raw = str_at(data, "/status").unwrap_or("");
    let stage = match raw {
        "PENDING" => Stage::Waiting,
        "TEXT_SUCCESS" | "FIRST_SUCCESS" => Stage::Running,
        "SUCCESS" => Stage::Succeeded,
        "CREATE_TASK_FAILED" | "GENERATE_AUDIO_FAILED" | "SENSITIVE_WORD_ERROR" => Stage::Failed,
        "CALLBACK_EXCEPTION" if suno_has_audio(data) => Stage::Succeeded,
        "CALLBACK_EXCEPTION" => Stage::Failed,
        s if s.ends_with("_FAILED") || s.ends_with("_ERROR") => Stage::Failed,
        _ => Stage::Running,
    };
    Classified {
        stage,
        state: if raw.is_empty() {
            "status missing".into()
        } else {
            raw.into()
        },
    }
}

/// Whether any `sunoData` track has a downloadable audio URL.
pub(crate) fn suno_has_audio(data: &Value) -> bool {
    data.pointer("/response/sunoData")
        .and_then(Value::as_array)
        .is_some_and(|tracks| {
            tracks
                .iter()
                .any(|t| str_at(t, "/audioUrl").is_some() || str_at(t, "/sourceAudioUrl").is_some())
        })
}

/// 4o Image: the `status` word is documented; `successFlag` values are
/// UNCONFIRMED (third parties say 0/1/2), so it is only read when `status`
/// is missing or unknown.
fn classify_4o(data: &Value) -> Classified {
    let raw = str_at(data, "/status").unwrap_or("");
    let by_word = match raw {
        "GENERATING" => Some(Stage::Running),
        "SUCCESS" => Some(Stage::Succeeded),
        "CREATE_TASK_FAILED" | "GENERATE_FAILED" => Some(Stage::Failed),
        _ => None,
    };
    if let Some(stage) = by_word {
        return Classified {
            stage,
            state: raw.into(),
        };
    }
    let flag = int_at(data, "/successFlag");
    let stage = match flag {
        Some(1) => Stage::Succeeded,
        Some(2) | Some(3) => Stage::Failed,
        _ => Stage::Running,
    };
    let state = if raw.is_empty() {
        flag_text(flag)
    } else {
        format!("{raw} ({})", flag_text(flag))
    };
    Classified { stage, state }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.preset_name())
    }
}

impl FromStr for Product {
    type Err = String;

    fn from_str(s: &str) -> Result<Product, String> {
        Product::from_preset_name(s).ok_or_else(|| {
            let names: Vec<_> = Product::ALL.iter().map(|p| p.preset_name()).collect();
            format!("unknown provider preset `{s}`: expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests;
