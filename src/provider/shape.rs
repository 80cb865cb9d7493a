//! A terminal poll record → exactly the body the provider would have POSTed to
//! the callback URL for that product, so the preset's dedupe key (the task id
//! and the outcome, see [`crate::preset::Preset::dedupe_values`]) gives a
//! polled result and the real callback the same value.
//!
//! Only fields the record holds can be reproduced: the provider's free-text
//! `msg` on success is the documented example text, and fields that exist only
//! in callbacks (Market's `consumeCredits` / `remainedCredits`) are absent.
//! Where a failure record gives no usable code, the product's most likely
//! callback code is used (documented per product below). Does not decide
//! whether a record is terminal (see [`super::product`]).

use serde_json::{json, Map, Value};

use super::loose::{first_present, str_at};
use super::product::{Product, Stage};
use super::record::{four_o_urls, suno_tracks, veo_list, Record, SUNO_URL_FIELDS};

/// Why a record cannot become a callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("task {task_id} is not finished yet (provider state {state})")]
    NotTerminal { task_id: String, state: String },
}

/// The callback body for a terminal record.
pub fn to_callback(record: &Record) -> Result<Value, ShapeError> {
    let ok = match record.stage() {
        Stage::Succeeded => true,
        Stage::Failed => false,
        Stage::Waiting | Stage::Running => {
            return Err(ShapeError::NotTerminal {
                task_id: record.task_id().into(),
                state: record.state().into(),
            })
        }
    };
    let d = record.data();
    let id = record.task_id();
    let fail_msg = || {
        record
            .failure()
            .and_then(|f| f.message)
            .unwrap_or_else(|| format!("generation failed ({})", record.state()))
    };
    // A failure code as the record states it, when it is a real error code.
    let fail_code = |default: i64| {
        record
            .failure()
            .and_then(|f| f.code)
            .filter(|c| (400..=599).contains(c))
            .unwrap_or(default)
    };
    let text = |ptr: &str| Value::from(str_at(d, ptr).unwrap_or(""));
    let body = match record.product() {
        Product::Runway if ok => json!({
            "code": 200, "msg": "All generated successfully.",
            "data": {"task_id": id, "video_id": text("/videoInfo/videoId"),
                     "video_url": text("/videoInfo/videoUrl"), "image_url": text("/videoInfo/imageUrl")},
        }),
        // failCode's only documented value is 400 (client-side failures).
        Product::Runway => json!({
            "code": fail_code(400), "msg": fail_msg(),
            "data": {"task_id": id, "video_id": "", "video_url": "", "image_url": ""},
        }),
        Product::Aleph if ok => json!({
            "code": 200, "msg": "success", "taskId": id,
            "data": {"result_video_url": text("/response/resultVideoUrl"),
                     "result_image_url": text("/response/resultImageUrl")},
        }),
        Product::Aleph => json!({"code": fail_code(400), "msg": fail_msg(), "taskId": id, "data": null}),
        Product::Veo => veo(record, ok, fail_code, fail_msg),
        Product::Suno => suno(record, ok, fail_code, fail_msg),
        Product::FourOImage if ok => json!({
            "code": 200, "msg": "success",
            "data": {"taskId": id, "info": {"result_urls": four_o_urls(d)}},
        }),
        Product::FourOImage => {
            let default = if str_at(d, "/status") == Some("CREATE_TASK_FAILED") {
                400
            } else {
                500
            };
            json!({"code": fail_code(default), "msg": fail_msg(), "data": {"taskId": id, "info": null}})
        }
        Product::FluxKontext if ok => json!({
            "code": 200, "msg": "success",
            "data": {"taskId": id, "info": {"originImageUrl": text("/response/originImageUrl"),
                                             "resultImageUrl": text("/response/resultImageUrl")}},
        }),
        // successFlag 2 = the task could not be created (input problems: 400),
        // 3 = generation failed upstream (501).
        Product::FluxKontext => json!({
            "code": fail_code(flag_default(d)), "msg": fail_msg(),
            "data": {"taskId": id, "info": {"originImageUrl": "", "resultImageUrl": ""}},
        }),
        // Market callbacks carry the record's `data` itself; 200 done, 501 failed.
        Product::Market => {
            let mut data = d.clone();
            data["taskId"] = Value::from(id);
            let (code, msg) = if ok {
                (200, "Playground task completed successfully.")
            } else {
                (501, "Playground task failed.")
            };
            json!({"code": code, "msg": msg, "data": data})
        }
    };
    Ok(body)
}

/// The bytes to append to the log for a polled result.
pub fn to_callback_bytes(record: &Record) -> Result<Vec<u8>, ShapeError> {
    to_callback(record).map(|v| serde_json::to_vec(&v).expect("a JSON value serialises"))
}

fn flag_default(d: &Value) -> i64 {
    if super::loose::int_at(d, "/successFlag") == Some(3) {
        501
    } else {
        400
    }
}

/// Veo: `data.info.{resultUrls, originUrls, resolution}` as arrays (whatever
/// encoding the record used), `promptJson` from the record's `paramJson`,
/// `fallbackFlag` when the record has one (4K records do not).
fn veo(record: &Record, ok: bool, fail_code: impl Fn(i64) -> i64, fail_msg: impl Fn() -> String) -> Value {
    let d = record.data();
    let mut data = Map::new();
    data.insert("taskId".into(), record.task_id().into());
    if let Some(p) = first_present(d, &["/paramJson", "/promptJson"]) {
        data.insert("promptJson".into(), p.clone());
    }
    if let Some(f) = first_present(d, &["/fallbackFlag"]) {
        data.insert("fallbackFlag".into(), f.clone());
    }
    if !ok {
        return json!({"code": fail_code(flag_default(d)), "msg": fail_msg(), "data": data});
    }
    let mut info = Map::new();
    info.insert("resultUrls".into(), veo_list(d, "resultUrls").into());
    // Not `imageUrls`: those mark the 4K upgrade's own callback, keyed apart
    // from the generation's (`preset::KIE_VEO`), which this stands for.
    let origin = ["/response/originUrls", "/info/originUrls", "/originUrls"]
        .iter()
        .any(|p| d.pointer(p).is_some_and(|v| !v.is_null()));
    if origin {
        info.insert("originUrls".into(), veo_list(d, "originUrls").into());
    }
    if let Some(r) = first_present(d, &["/response/resolution", "/info/resolution", "/resolution"]) {
        info.insert("resolution".into(), r.clone());
    }
    data.insert("info".into(), info.into());
    json!({"code": 200, "msg": "Veo3.1 video generated successfully.", "data": data})
}

/// Suno: `callbackType` `complete` (or `error`), snake_case tracks in
/// `data.data[]` from the camelCase `sunoData[]`; `data.data` is null on error.
fn suno(record: &Record, ok: bool, fail_code: impl Fn(i64) -> i64, fail_msg: impl Fn() -> String) -> Value {
    let id = record.task_id();
    if !ok {
        let default = match str_at(record.data(), "/status") {
            Some("GENERATE_AUDIO_FAILED") => 501,
            Some("CALLBACK_EXCEPTION") => 500,
            _ => 400,
        };
        return json!({
            "code": fail_code(default), "msg": fail_msg(),
            "data": {"callbackType": "error", "task_id": id, "data": null},
        });
    }
    let tracks: Vec<Value> = suno_tracks(record.data()).iter().map(snake_track).collect();
    json!({
        "code": 200, "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": id, "data": tracks},
    })
}

/// One `sunoData` track with the callback's field names. The callback keeps
/// `createTime`, `id`, `title`, … as they are; only these names differ.
fn snake_track(track: &Value) -> Value {
    let Some(fields) = track.as_object() else {
        return track.clone();
    };
    let rename = |k: &str| -> String {
        SUNO_URL_FIELDS
            .iter()
            .find(|(camel, _)| *camel == k)
            .map(|(_, snake)| (*snake).to_string())
            .unwrap_or_else(|| {
                if k == "modelName" {
                    "model_name".into()
                } else {
                    k.into()
                }
            })
    };
    fields
        .iter()
        .map(|(k, v)| (rename(k), v.clone()))
        .collect::<Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests;
