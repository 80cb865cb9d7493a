//! Records mapped to the documented callback examples.
use super::*;
use serde_json::json;

fn shape(p: Product, id: &str, data: Value) -> Value {
    to_callback(&Record::from_data(p, id, data).unwrap()).unwrap()
}

#[test]
fn runway_success_matches_the_documented_callback() {
    let got = shape(
        Product::Runway,
        "ee603959",
        json!({"taskId": "ee603959", "state": "success", "expireFlag": 0,
               "videoInfo": {"videoId": "485da89c", "taskId": "ee603959", "videoUrl": "https://file.com/k/x.mp4", "imageUrl": "https://file.com/m/x.png"}}),
    );
    let documented = json!({"code": 200, "msg": "All generated successfully.",
        "data": {"task_id": "ee603959", "video_id": "485da89c", "video_url": "https://file.com/k/x.mp4", "image_url": "https://file.com/m/x.png"}});
    assert_eq!(got, documented);
}

#[test]
fn runway_failure_has_empty_fields_and_a_code() {
    let got = shape(
        Product::Runway,
        "t",
        json!({"state": "fail", "failCode": 400, "failMsg": "Inappropriate content detected.", "videoInfo": null}),
    );
    assert_eq!(got["code"], 400);
    assert_eq!(got["msg"], "Inappropriate content detected.");
    assert_eq!(
        got["data"],
        json!({"task_id": "t", "video_id": "", "video_url": "", "image_url": ""})
    );
    // The older page's `failCode: ""`: the documented 400.
    let got = shape(
        Product::Runway,
        "t",
        json!({"state": "fail", "failCode": "", "failMsg": "x"}),
    );
    assert_eq!(got["code"], 400);
}

#[test]
fn aleph_task_id_is_top_level_and_data_null_on_error() {
    let ok = shape(
        Product::Aleph,
        "a",
        json!({"successFlag": 1, "response": {"taskId": "a", "resultVideoUrl": "https://v", "resultImageUrl": "https://i"}}),
    );
    assert_eq!(
        ok,
        json!({"code": 200, "msg": "success", "taskId": "a", "data": {"result_video_url": "https://v", "result_image_url": "https://i"}})
    );
    let err = shape(
        Product::Aleph,
        "a",
        json!({"successFlag": 0, "errorCode": 0, "errorMessage": "caught by the moderator", "response": null}),
    );
    assert_eq!(
        err,
        json!({"code": 400, "msg": "caught by the moderator", "taskId": "a", "data": null})
    );
}

#[test]
fn veo_lists_become_arrays_under_info() {
    let got = shape(
        Product::Veo,
        "v",
        json!({"taskId": "v", "successFlag": 1, "paramJson": "{\"prompt\":\"cat\"}", "fallbackFlag": false,
               "info": {"resultUrls": "[\"https://v/1.mp4\"]", "originUrls": "[\"https://v/o.mp4\"]", "resolution": "1080p"}}),
    );
    assert_eq!(
        got,
        json!({"code": 200, "msg": "Veo3.1 video generated successfully.",
               "data": {"taskId": "v", "promptJson": "{\"prompt\":\"cat\"}", "fallbackFlag": false,
                        "info": {"resultUrls": ["https://v/1.mp4"], "originUrls": ["https://v/o.mp4"], "resolution": "1080p"}}})
    );
    let failed = shape(Product::Veo, "v", json!({"successFlag": 3, "errorMessage": "flagged"}));
    assert_eq!(failed, json!({"code": 501, "msg": "flagged", "data": {"taskId": "v"}}));
    let failed = shape(
        Product::Veo,
        "v",
        json!({"successFlag": 2, "errorCode": 500, "errorMessage": "timeout"}),
    );
    assert_eq!(failed["code"], 500);
}

#[test]
fn suno_tracks_become_snake_case_but_create_time_stays() {
    let got = shape(
        Product::Suno,
        "s",
        json!({"status": "SUCCESS", "response": {"taskId": "s", "sunoData": [
            {"id": "8551", "audioUrl": "https://a/1.mp3", "streamAudioUrl": "https://a/s1", "imageUrl": "https://a/1.jpeg",
             "modelName": "chirp-v3-5", "title": "Iron Man", "createTime": "2025-01-01 00:00:00", "duration": 198.44}]}}),
    );
    assert_eq!(
        got,
        json!({"code": 200, "msg": "All generated successfully.", "data": {"callbackType": "complete", "task_id": "s", "data": [
            {"id": "8551", "audio_url": "https://a/1.mp3", "stream_audio_url": "https://a/s1", "image_url": "https://a/1.jpeg",
             "model_name": "chirp-v3-5", "title": "Iron Man", "createTime": "2025-01-01 00:00:00", "duration": 198.44}]}})
    );
    let err = shape(
        Product::Suno,
        "s",
        json!({"status": "SENSITIVE_WORD_ERROR", "errorCode": 400, "errorMessage": "lyrics"}),
    );
    assert_eq!(
        err,
        json!({"code": 400, "msg": "lyrics", "data": {"callbackType": "error", "task_id": "s", "data": null}})
    );
}

#[test]
fn suno_first_success_is_not_a_result() {
    let r = Record::from_data(Product::Suno, "s", json!({"status": "FIRST_SUCCESS"})).unwrap();
    let e = to_callback(&r).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task s is not finished yet (provider state FIRST_SUCCESS)"
    );
}

#[test]
fn four_o_and_flux() {
    for urls in [
        json!({"resultUrls": ["https://i/1.png"]}),
        json!({"result_urls": ["https://i/1.png"]}),
    ] {
        let got = shape(Product::FourOImage, "f", json!({"status": "SUCCESS", "response": urls}));
        assert_eq!(
            got,
            json!({"code": 200, "msg": "success", "data": {"taskId": "f", "info": {"result_urls": ["https://i/1.png"]}}})
        );
    }
    let err = shape(
        Product::FourOImage,
        "f",
        json!({"status": "GENERATE_FAILED", "errorCode": 451, "errorMessage": "fetch"}),
    );
    assert_eq!(
        err,
        json!({"code": 451, "msg": "fetch", "data": {"taskId": "f", "info": null}})
    );
    let err = shape(
        Product::FluxKontext,
        "k",
        json!({"successFlag": 2, "errorMessage": "bad input"}),
    );
    assert_eq!(
        err,
        json!({"code": 400, "msg": "bad input", "data": {"taskId": "k", "info": {"originImageUrl": "", "resultImageUrl": ""}}})
    );
}

#[test]
fn market_callback_is_the_record_data() {
    let data = json!({"taskId": "m", "model": "kling", "state": "success", "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\"]}", "failCode": null});
    let got = shape(Product::Market, "m", data.clone());
    assert_eq!(
        got,
        json!({"code": 200, "msg": "Playground task completed successfully.", "data": data})
    );
    let got = shape(
        Product::Market,
        "m",
        json!({"taskId": "m", "state": "fail", "failCode": "500", "failMsg": "x"}),
    );
    assert_eq!(
        (got["code"].as_i64(), got["data"]["failCode"].as_str()),
        (Some(501), Some("500"))
    );
}

#[test]
fn bytes_are_json() {
    let r = Record::from_data(Product::Market, "m", json!({"state": "fail"})).unwrap();
    let v: Value = serde_json::from_slice(&to_callback_bytes(&r).unwrap()).unwrap();
    assert_eq!(v["data"]["taskId"], "m");
}
