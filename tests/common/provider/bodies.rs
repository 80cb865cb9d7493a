//! The fake provider's wire shapes: each product's status record at each stage
//! and the callbacks it sends, written from the reference documents on their
//! own (not from `hookrelay::provider`), so tests comparing the two mean something.

use hookrelay::provider::Product;
use serde_json::{json, Value};

use super::{Outcome, Task};

/// The stages a task passes through before its end, per product.
pub fn stages(task: &Task) -> &'static [&'static str] {
    let failing = matches!(task.plan.outcome, Outcome::Failure { .. });
    match task.product {
        Product::Runway => &["wait", "queueing", "generating"],
        Product::Market => &["waiting", "queuing", "generating"],
        Product::Suno if failing => &["PENDING"],
        Product::Suno => &["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS"],
        Product::FourOImage => &["GENERATING"],
        Product::Aleph | Product::Veo | Product::FluxKontext => &["running"],
    }
}

fn url(task: &Task, file: &str) -> String {
    format!("{}/files/{}/{file}", task.base, task.id)
}

fn failure(task: &Task) -> Option<(i64, &str)> {
    match &task.plan.outcome {
        Outcome::Success => None,
        Outcome::Failure { code, message } => Some((*code, message.as_str())),
    }
}

/// One Suno track at a stage: (poll camelCase, callback snake_case).
fn suno_track(task: &Task, n: &str, ready: bool) -> (Value, Value) {
    let u = |f: &str| {
        if ready {
            url(task, &format!("{n}-{f}"))
        } else {
            String::new()
        }
    };
    let (audio, stream, image) = (u("audio.mp3"), u("stream"), u("cover.jpeg"));
    let id = format!("{}-{n}", task.id);
    let poll = json!({"id": id, "audioUrl": audio, "sourceAudioUrl": audio, "streamAudioUrl": stream,
        "sourceStreamAudioUrl": stream, "imageUrl": image, "sourceImageUrl": image, "prompt": "[Verse] fake",
        "modelName": "chirp-v3-5", "title": "Fake song", "tags": "rock", "createTime": "2025-01-01 00:00:00", "duration": 198.44});
    let callback = json!({"id": id, "audio_url": audio, "source_audio_url": audio, "stream_audio_url": stream,
        "source_stream_audio_url": stream, "image_url": image, "source_image_url": image, "prompt": "[Verse] fake",
        "model_name": "chirp-v3-5", "title": "Fake song", "tags": "rock", "createTime": "2025-01-01 00:00:00", "duration": 198.44});
    (poll, callback)
}

/// The status record's `data` at stage `idx` (`stages(task).len()` = finished).
pub fn record(task: &Task, idx: usize) -> Value {
    let names = stages(task);
    let done = idx >= names.len();
    let word = names.get(idx).copied().unwrap_or("");
    let id = task.id.as_str();
    let fail = failure(task).filter(|_| done);
    let ok = done && fail.is_none();
    let alt = task.plan.alternate;
    // Runway's and the market's `state`: the stage, then success or fail.
    let state = if !done {
        word
    } else if ok {
        "success"
    } else {
        "fail"
    };
    match task.product {
        Product::Runway => {
            let info = ok.then(|| json!({"videoId": format!("vid-{id}"), "taskId": id, "videoUrl": url(task, "video.mp4"), "imageUrl": url(task, "cover.png")}));
            let fail_code = match fail {
                Some(_) if alt => json!(""),
                Some((c, _)) => json!(c),
                None => Value::Null,
            };
            let mut d = json!({"taskId": id, "parentTaskId": "", "state": state, "generateTime": "2025-01-01 00:00:00",
                "videoInfo": info, "expireFlag": 0, "failCode": fail_code, "failMsg": fail.map(|f| f.1).unwrap_or("")});
            if alt {
                d.as_object_mut().unwrap().remove("taskId");
            }
            d
        }
        Product::Aleph => json!({"taskId": id, "paramJson": task.param, "createTime": "2025-01-01T00:00:00Z",
            "completeTime": if done { json!("2025-01-01T00:05:00Z") } else { Value::Null },
            "response": ok.then(|| json!({"taskId": id, "resultVideoUrl": url(task, "video.mp4"), "resultImageUrl": url(task, "cover.png")})),
            "successFlag": i64::from(ok), "errorCode": fail.map(|f| f.0).unwrap_or(0), "errorMessage": fail.map(|f| f.1).unwrap_or("")}),
        Product::Veo => {
            let flag = match fail {
                _ if !done => 0,
                None => 1,
                Some((501, _)) => 3,
                Some(_) => 2,
            };
            let results = vec![url(task, "video.mp4")];
            let origins = vec![url(task, "origin.mp4")];
            let mut d = json!({"taskId": id, "paramJson": task.param, "successFlag": flag, "fallbackFlag": false,
                "errorCode": fail.map(|f| json!(f.0)).unwrap_or(Value::Null), "errorMessage": fail.map(|f| json!(f.1)).unwrap_or(Value::Null),
                "createTime": "2025-01-01 00:00:00", "response": Value::Null});
            if ok && alt {
                // The quickstart's reading: JSON strings under `info`.
                d["info"] = json!({"resultUrls": serde_json::to_string(&results).unwrap(),
                    "originUrls": serde_json::to_string(&origins).unwrap(), "resolution": "1080p"});
            } else if ok {
                d["response"] =
                    json!({"taskId": id, "resultUrls": results, "originUrls": origins, "resolution": "1080p"});
            }
            d
        }
        Product::Suno => {
            let status = match fail {
                _ if !done => word,
                None => "SUCCESS",
                Some((400, _)) => "SENSITIVE_WORD_ERROR",
                Some(_) => "GENERATE_AUDIO_FAILED",
            };
            let tracks = match status {
                "PENDING" => Value::Null,
                "TEXT_SUCCESS" => json!([suno_track(task, "a", false).0, suno_track(task, "b", false).0]),
                "FIRST_SUCCESS" => json!([suno_track(task, "a", true).0, suno_track(task, "b", false).0]),
                "SUCCESS" => json!([suno_track(task, "a", true).0, suno_track(task, "b", true).0]),
                _ => Value::Null,
            };
            json!({"taskId": id, "parentMusicId": "", "param": task.param, "status": status, "type": "chirp-v3-5",
                "operationType": "generate", "response": {"taskId": id, "sunoData": tracks},
                "errorCode": fail.map(|f| json!(f.0)).unwrap_or(Value::Null), "errorMessage": fail.map(|f| json!(f.1)).unwrap_or(Value::Null)})
        }
        Product::FourOImage => {
            let (status, flag) = match fail {
                _ if !done => ("GENERATING", 0),
                None => ("SUCCESS", 1),
                Some((400, _)) => ("CREATE_TASK_FAILED", 2),
                Some(_) => ("GENERATE_FAILED", 2),
            };
            let urls = vec![url(task, "image.png")];
            let response = match (ok, alt) {
                (false, _) => Value::Null,
                (true, false) => json!({"resultUrls": urls}),
                (true, true) => json!({"result_urls": urls}),
            };
            json!({"taskId": id, "paramJson": task.param, "completeTime": Value::Null, "response": response,
                "successFlag": flag, "status": status, "errorCode": fail.map(|f| json!(f.0)).unwrap_or(Value::Null),
                "errorMessage": fail.map(|f| json!(f.1)).unwrap_or(Value::Null), "createTime": 1735689600000u64,
                "progress": if done { "1.00" } else { "0.50" }})
        }
        Product::FluxKontext => {
            let flag = match fail {
                _ if !done => 0,
                None => 1,
                Some((501, _)) => 3,
                Some(_) => 2,
            };
            json!({"taskId": id, "paramJson": task.param, "completeTime": Value::Null, "createTime": "2025-01-01T00:00:00Z",
                "response": ok.then(|| json!({"originImageUrl": url(task, "origin.png"), "resultImageUrl": url(task, "result.png")})),
                "successFlag": flag, "errorCode": fail.map(|f| json!(f.0)).unwrap_or(Value::Null),
                "errorMessage": fail.map(|f| json!(f.1)).unwrap_or(Value::Null)})
        }
        Product::Market => {
            let result = if ok {
                json!({"resultUrls": [url(task, "video.mp4")]}).to_string()
            } else {
                String::new()
            };
            json!({"taskId": id, "model": "kling/v2-1-standard", "state": state, "param": task.param, "resultJson": result,
                "failCode": fail.map(|f| json!(f.0.to_string())).unwrap_or(Value::Null), "failMsg": fail.map(|f| f.1).unwrap_or(""),
                "costTime": if done { json!(42000) } else { Value::Null }, "completeTime": if done { json!(1735689642000u64) } else { Value::Null },
                "createTime": 1735689600000u64, "updateTime": 1735689600000u64})
        }
    }
}

/// The terminal callback body (`complete` / `error` for Suno).
pub fn final_callback(task: &Task) -> Value {
    let id = task.id.as_str();
    let fail = failure(task);
    let done = stages(task).len();
    match (task.product, fail) {
        (Product::Runway, None) => json!({"code": 200, "msg": "All generated successfully.",
            "data": {"task_id": id, "video_id": format!("vid-{id}"), "video_url": url(task, "video.mp4"), "image_url": url(task, "cover.png")}}),
        (Product::Runway, Some((c, m))) => json!({"code": c, "msg": m,
            "data": {"task_id": id, "video_id": "", "video_url": "", "image_url": ""}}),
        (Product::Aleph, None) => json!({"code": 200, "msg": "success", "taskId": id,
            "data": {"result_video_url": url(task, "video.mp4"), "result_image_url": url(task, "cover.png")}}),
        (Product::Aleph, Some((c, m))) => json!({"code": c, "msg": m, "data": null, "taskId": id}),
        (Product::Veo, None) => json!({"code": 200, "msg": "Veo3.1 video generated successfully.",
            "data": {"taskId": id, "promptJson": task.param, "fallbackFlag": false,
                     "info": {"resultUrls": [url(task, "video.mp4")], "originUrls": [url(task, "origin.mp4")], "resolution": "1080p"}}}),
        (Product::Veo, Some((c, m))) => {
            json!({"code": c, "msg": m, "data": {"taskId": id, "promptJson": task.param, "fallbackFlag": false}})
        }
        (Product::Suno, None) => json!({"code": 200, "msg": "All generated successfully.",
            "data": {"callbackType": "complete", "task_id": id, "data": [suno_track(task, "a", true).1, suno_track(task, "b", true).1]}}),
        (Product::Suno, Some((c, m))) => {
            json!({"code": c, "msg": m, "data": {"callbackType": "error", "task_id": id, "data": null}})
        }
        (Product::FourOImage, None) => {
            json!({"code": 200, "msg": "success", "data": {"taskId": id, "info": {"result_urls": [url(task, "image.png")]}}})
        }
        (Product::FourOImage, Some((c, m))) => json!({"code": c, "msg": m, "data": {"taskId": id, "info": null}}),
        (Product::FluxKontext, None) => json!({"code": 200, "msg": "success",
            "data": {"taskId": id, "info": {"originImageUrl": url(task, "origin.png"), "resultImageUrl": url(task, "result.png")}}}),
        (Product::FluxKontext, Some((c, m))) => json!({"code": c, "msg": m,
            "data": {"taskId": id, "info": {"originImageUrl": "", "resultImageUrl": ""}}}),
        (Product::Market, fail) => {
            // The model pages: the record's `data` plus the credit fields.
            let mut data = record(task, done);
            data["consumeCredits"] = json!(10);
            data["remainedCredits"] = json!(990);
            let (code, msg) = if fail.is_none() {
                (200, "Playground task completed successfully.")
            } else {
                (501, "Playground task failed.")
            };
            json!({"code": code, "msg": msg, "data": data})
        }
    }
}

/// Suno's stage callbacks before the end: (stage index it is sent at, type, body).
pub fn stage_callbacks(task: &Task) -> Vec<(usize, &'static str, Value)> {
    if task.product != Product::Suno || failure(task).is_some() {
        return Vec::new();
    }
    let id = task.id.as_str();
    vec![
        (
            1,
            "text",
            json!({"code": 200, "msg": "Text generation completed.", "data": {"callbackType": "text", "task_id": id, "data": []}}),
        ),
        (
            2,
            "first",
            json!({"code": 200, "msg": "First track generated.",
            "data": {"callbackType": "first", "task_id": id, "data": [suno_track(task, "a", true).1]}}),
        ),
    ]
}

/// A Sora-style progress post for `progressCallBackUrl` (market, while generating).
pub fn progress_callback(task: &Task) -> Value {
    json!({"code": 200, "msg": "Playground task progress.", "data": {"taskId": task.id, "state": "generating", "progress": 50}})
}

/// The create path → product table.
pub fn create_product(path: &str) -> Option<Product> {
    Some(match path {
        "/api/v1/runway/generate" | "/api/v1/runway/extend" => Product::Runway,
        "/api/v1/aleph/generate" => Product::Aleph,
        "/api/v1/veo/generate" | "/api/v1/veo/extend" => Product::Veo,
        "/api/v1/generate" | "/api/v1/generate/extend" => Product::Suno,
        "/api/v1/gpt4o-image/generate" => Product::FourOImage,
        "/api/v1/flux/kontext/generate" => Product::FluxKontext,
        "/api/v1/jobs/createTask" => Product::Market,
        _ => return None,
    })
}

/// The status path → product table.
pub fn status_product(path: &str) -> Option<Product> {
    Some(match path {
        "/api/v1/runway/record-detail" => Product::Runway,
        "/api/v1/aleph/record-info" => Product::Aleph,
        "/api/v1/veo/record-info" => Product::Veo,
        "/api/v1/generate/record-info" => Product::Suno,
        "/api/v1/gpt4o-image/record-info" => Product::FourOImage,
        "/api/v1/flux/kontext/record-info" => Product::FluxKontext,
        "/api/v1/jobs/recordInfo" => Product::Market,
        _ => return None,
    })
}
