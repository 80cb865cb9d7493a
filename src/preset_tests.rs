//! Preset tests against callback bodies shaped like the provider's documented
//! examples, one per product.

use serde_json::{json, Value};

use super::*;
use crate::media::pointer::{media_urls, MediaPointer};

fn media(p: &Preset, body: &Value) -> Vec<String> {
    let ptrs: Vec<MediaPointer> = p.media.iter().map(|m| MediaPointer::parse(m).unwrap()).collect();
    media_urls(&ptrs, body)
}

/// The values the dedupe key hashes; `None` when one is missing (ingest
/// then falls back to the body hash).
fn key(p: &Preset, body: &Value) -> Option<(String, String)> {
    p.dedupe_values(body)
}

#[test]
fn names_parse_and_unknown_names_list_the_valid_ones() {
    for p in ALL {
        assert_eq!(p.name.parse::<Preset>().unwrap(), p);
    }
    let err = "kie-runaway".parse::<Preset>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown preset \"kie-runaway\": valid presets are \"kie-runway\", \"kie-aleph\", \"kie-veo\", \"kie-suno\", \"kie-4o-image\", \"kie-flux-kontext\", \"kie-market\""
    );
    assert!("KIE-RUNWAY".parse::<Preset>().is_err(), "names are exact");
}

#[test]
fn every_pointer_is_valid() {
    for p in ALL {
        for m in p.media {
            MediaPointer::parse(m).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        for ptr in p.task_id.iter().chain(p.stage.as_slice()) {
            assert!(ptr.starts_with('/') && !ptr.contains('*'), "{}: {ptr}", p.name);
        }
        assert!(!p.task_id.is_empty() && !p.media.is_empty());
        assert!(
            crate::provider::Product::from_preset_name(p.name).is_some(),
            "{}: the outcome is read as its product reads it",
            p.name
        );
    }
}

#[test]
fn runway() {
    let ok = json!({"code": 200, "msg": "All generated successfully.", "data": {
        "task_id": "ee603959", "video_id": "485da89c",
        "video_url": "https://file.com/k/x.mp4", "image_url": "https://file.com/m/x.png"}});
    assert_eq!(KIE_RUNWAY.task_id_of(&ok).as_deref(), Some("ee603959"));
    assert_eq!(
        media(&KIE_RUNWAY, &ok),
        ["https://file.com/k/x.mp4", "https://file.com/m/x.png"]
    );
    assert!(KIE_RUNWAY.is_terminal(&ok));
    let failed = json!({"code": 400, "msg": "Inappropriate content detected.", "data": {
        "task_id": "ee603959", "video_id": "", "video_url": "", "image_url": ""}});
    assert!(media(&KIE_RUNWAY, &failed).is_empty());
    assert_ne!(key(&KIE_RUNWAY, &ok), key(&KIE_RUNWAY, &failed));
    // A provider failure (500) is the same failure as a client-side one (400):
    // one result per task and outcome, whatever the code.
    let provider_failed = json!({"code": 500, "msg": "Internal error", "data": {
        "task_id": "ee603959", "video_id": "", "video_url": "", "image_url": ""}});
    assert_eq!(key(&KIE_RUNWAY, &failed), key(&KIE_RUNWAY, &provider_failed));
}

#[test]
fn aleph_task_id_is_top_level_and_data_may_be_null() {
    let ok = json!({"code": 200, "msg": "ok", "taskId": "al-1", "data": {
        "result_video_url": "https://file.com/a.mp4", "result_image_url": "https://file.com/a.png"}});
    assert_eq!(KIE_ALEPH.task_id_of(&ok).as_deref(), Some("al-1"));
    assert_eq!(
        media(&KIE_ALEPH, &ok),
        ["https://file.com/a.mp4", "https://file.com/a.png"]
    );
    let err = json!({"code": 400, "msg": "moderation", "taskId": "al-1", "data": null});
    assert_eq!(KIE_ALEPH.task_id_of(&err).as_deref(), Some("al-1"));
    assert!(media(&KIE_ALEPH, &err).is_empty());
    assert!(key(&KIE_ALEPH, &err).is_some());
}

#[test]
fn veo_array_string_info_and_response_shapes() {
    let arr = json!({"code": 200, "data": {"taskId": "veo-1", "info": {
        "resultUrls": ["https://v/1.mp4"], "originUrls": ["https://v/o1.mp4"], "resolution": "1080p"}}});
    assert_eq!(media(&KIE_VEO, &arr), ["https://v/1.mp4", "https://v/o1.mp4"]);
    let stringified = json!({"code": 200, "data": {"taskId": "veo-1", "info": {
        "resultUrls": "[\"https://v/1.mp4\"]"}, "promptJson": "{\"prompt\":\"x\"}"}});
    assert_eq!(media(&KIE_VEO, &stringified), ["https://v/1.mp4"]);
    let polled = json!({"code": 200, "data": {"taskId": "veo-1", "response": {"resultUrls": ["https://v/p.mp4"]}}});
    assert_eq!(media(&KIE_VEO, &polled), ["https://v/p.mp4"]);
    let four_k = json!({"code": 200, "data": {"taskId": "veo-1", "info": {
        "resultUrls": ["https://v/4k.mp4"], "imageUrls": ["https://v/4k.png"]}}});
    assert_eq!(media(&KIE_VEO, &four_k), ["https://v/4k.mp4", "https://v/4k.png"]);
    // The 4K upgrade calls back under the generation's task id: another
    // result, not a duplicate of the generation's callback (it was dropped);
    // its own retry is one.
    assert_eq!(key(&KIE_VEO, &arr), Some(("veo-1".into(), "success".into())));
    assert_eq!(key(&KIE_VEO, &four_k), Some(("veo-1".into(), "success 4k".into())));
    assert_eq!(key(&KIE_VEO, &four_k.clone()), key(&KIE_VEO, &four_k));
    // Veo may send its lists as JSON strings: the 4K upgrade's too (it was
    // keyed `success` then, and dropped as the generation's duplicate).
    let four_k_stringified = json!({"code": 200, "data": {"taskId": "veo-1", "info": {
        "resultUrls": "[\"https://v/4k.mp4\"]", "imageUrls": "[\"https://v/4k.png\"]"}}});
    assert_eq!(
        key(&KIE_VEO, &four_k_stringified),
        Some(("veo-1".into(), "success 4k".into()))
    );
    let no_image = json!({"code": 200, "data": {"taskId": "veo-1", "info": {
        "resultUrls": "[\"https://v/1.mp4\"]", "imageUrls": "[]"}}});
    assert_eq!(key(&KIE_VEO, &no_image), key(&KIE_VEO, &arr), "an empty list is no 4K");
    // A result recovered by polling stands for the generation's callback,
    // whatever the record says of the 4K.
    let record = crate::provider::Record::from_data(
        crate::provider::Product::Veo,
        "veo-1",
        json!({"taskId": "veo-1", "successFlag": 1, "response": {
            "resultUrls": ["https://v/1.mp4"], "imageUrls": ["https://v/4k.png"]}}),
    )
    .unwrap();
    let recovered = crate::provider::to_callback(&record).unwrap();
    assert_eq!(key(&KIE_VEO, &recovered), key(&KIE_VEO, &arr));
    let failed = json!({"code": 500, "msg": "x", "data": {"taskId": "veo-1"}});
    assert_eq!(KIE_VEO.task_id_of(&failed).as_deref(), Some("veo-1"));
    assert!(media(&KIE_VEO, &failed).is_empty());
}

#[test]
fn suno_stages_are_distinct_events_and_only_complete_or_error_is_terminal() {
    let stage = |t: &str, items: Value| {
        json!({"code": 200, "msg": "ok", "data": {
        "callbackType": t, "task_id": "suno-1", "data": items}})
    };
    let items = json!([
        {"id": "a", "audio_url": "https://s/a.mp3", "stream_audio_url": "https://s/stream/a", "image_url": "https://s/a.jpg"},
        {"id": "b", "audio_url": "https://s/b.mp3", "stream_audio_url": "https://s/stream/b", "image_url": "https://s/b.jpg"}]);
    let text = stage(
        "text",
        json!([{"id": "a", "audio_url": "", "stream_audio_url": "", "image_url": ""}]),
    );
    let first = stage(
        "first",
        json!([{"id": "a", "audio_url": "", "stream_audio_url": "https://s/stream/a", "image_url": "https://s/a.jpg"}]),
    );
    let complete = stage("complete", items);
    let error =
        json!({"code": 531, "msg": "refunded", "data": {"callbackType": "error", "task_id": "suno-1", "data": null}});

    let keys: Vec<_> = [&text, &first, &complete, &error]
        .iter()
        .map(|b| key(&KIE_SUNO, b).unwrap())
        .collect();
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            assert_ne!(keys[i], keys[j], "stages {i} and {j} must not dedupe each other");
        }
    }
    // A provider retry of the same stage is a duplicate.
    assert_eq!(key(&KIE_SUNO, &complete), key(&KIE_SUNO, &complete.clone()));

    assert!(!KIE_SUNO.is_terminal(&text));
    assert!(!KIE_SUNO.is_terminal(&first));
    assert!(KIE_SUNO.is_terminal(&complete));
    assert!(KIE_SUNO.is_terminal(&error));
    assert!(!KIE_SUNO.is_terminal(&json!({"data": {"task_id": "suno-1"}})));

    assert_eq!(
        media(&KIE_SUNO, &complete),
        [
            "https://s/a.mp3",
            "https://s/b.mp3",
            "https://s/a.jpg",
            "https://s/b.jpg"
        ]
    );
    // The stream URL of the `first` stage is not a file to archive.
    assert_eq!(media(&KIE_SUNO, &first), ["https://s/a.jpg"]);
    assert!(media(&KIE_SUNO, &error).is_empty());
    assert_eq!(KIE_SUNO.task_id_of(&error).as_deref(), Some("suno-1"));
}

#[test]
fn four_o_image_both_spellings() {
    let snake = json!({"code": 200, "data": {"taskId": "4o-1", "info": {"result_urls": ["https://i/1.png", "https://i/2.png"]}}});
    assert_eq!(media(&KIE_4O_IMAGE, &snake), ["https://i/1.png", "https://i/2.png"]);
    let camel = json!({"code": 200, "data": {"taskId": "4o-1", "info": {"resultUrls": ["https://i/3.png"]}}});
    assert_eq!(media(&KIE_4O_IMAGE, &camel), ["https://i/3.png"]);
    let failed = json!({"code": 451, "data": {"taskId": "4o-1", "info": null}});
    assert!(media(&KIE_4O_IMAGE, &failed).is_empty());
}

#[test]
fn flux_kontext() {
    let ok = json!({"code": 200, "data": {"taskId": "fx-1", "info": {
        "originImageUrl": "https://f/o.png", "resultImageUrl": "https://f/r.png"}}});
    assert_eq!(media(&KIE_FLUX_KONTEXT, &ok), ["https://f/r.png", "https://f/o.png"]);
    let failed = json!({"code": 501, "data": {"taskId": "fx-1", "info": {"originImageUrl": "", "resultImageUrl": ""}}});
    assert!(media(&KIE_FLUX_KONTEXT, &failed).is_empty());
}

#[test]
fn market_result_json_string_and_progress_callbacks() {
    let done = json!({"code": 200, "msg": "Playground task completed successfully.", "data": {
        "taskId": "mk-1", "model": "kling", "state": "success",
        "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\"],\"resultWaterMarkUrls\":[\"https://m/wm.mp4\"]}",
        "failCode": null, "failMsg": ""}});
    assert_eq!(media(&KIE_MARKET, &done), ["https://m/1.mp4"]);
    assert!(KIE_MARKET.is_terminal(&done));
    let progress = json!({"code": 200, "data": {"taskId": "mk-1", "state": "generating", "progress": 40}});
    assert!(!KIE_MARKET.is_terminal(&progress));
    assert_ne!(key(&KIE_MARKET, &progress), key(&KIE_MARKET, &done));
    // Sora's successive progress posts are distinct callbacks, not retries
    // of one (the second was dropped as a duplicate of the first).
    let further = json!({"code": 200, "data": {"taskId": "mk-1", "state": "generating", "progress": 80}});
    assert_ne!(key(&KIE_MARKET, &progress), key(&KIE_MARKET, &further));
    assert_eq!(key(&KIE_MARKET, &further), key(&KIE_MARKET, &further.clone()));
    // A figure sent as a string is the same figure: "40" and "80" were one
    // key (the second dropped), and "40" is 40.
    let as_text = |p: &str| json!({"code": 200, "data": {"taskId": "mk-1", "state": "generating", "progress": p}});
    assert_ne!(key(&KIE_MARKET, &as_text("40")), key(&KIE_MARKET, &as_text("80")));
    assert_eq!(key(&KIE_MARKET, &as_text(" 40")), key(&KIE_MARKET, &progress));
    // A progress post without `state` is one at 100 too while no result
    // came with it: taken for the completion, it settled the task with no
    // result and had the real completion dropped as its duplicate.
    let last_post = json!({"code": 200, "data": {"taskId": "mk-1", "progress": 100}});
    assert!(!KIE_MARKET.is_terminal(&last_post));
    assert_ne!(key(&KIE_MARKET, &last_post), key(&KIE_MARKET, &done));
    let early_post = json!({"code": 200, "data": {"taskId": "mk-1", "progress": "60"}});
    assert!(!KIE_MARKET.is_terminal(&early_post));
    // Fractions, and an empty result at 100 (change review).
    for post in [
        json!({"code": 200, "data": {"taskId": "mk-1", "progress": 45.5}}),
        json!({"code": 200, "data": {"taskId": "mk-1", "progress": "0.50"}}),
        json!({"code": 200, "data": {"taskId": "mk-1", "progress": 100, "resultJson": ""}}),
        json!({"code": 200, "data": {"taskId": "mk-1", "progress": 100.0, "resultJson": "{}"}}),
    ] {
        assert!(!KIE_MARKET.is_terminal(&post), "{post}");
    }
    let with_result = json!({"code": 200, "data": {"taskId": "mk-1", "progress": 100,
        "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\"]}"}});
    assert!(
        KIE_MARKET.is_terminal(&with_result),
        "a result at 100 is the completion"
    );
    assert_eq!(key(&KIE_MARKET, &with_result), key(&KIE_MARKET, &done));
    let failed = json!({"code": 501, "msg": "Playground task failed.", "data": {
        "taskId": "mk-1", "state": "fail", "resultJson": "", "failCode": "500", "failMsg": "x"}});
    assert!(KIE_MARKET.is_terminal(&failed));
    assert!(media(&KIE_MARKET, &failed).is_empty());
    // The minimal shape docs.kie.ai shows has no state: its code says the
    // outcome, so it ends the task and keys like the full one.
    let minimal = json!({"code": 200, "msg": "Playground task completed successfully.", "data": {"taskId": "mk-1"}});
    assert!(KIE_MARKET.is_terminal(&minimal));
    assert_eq!(key(&KIE_MARKET, &minimal), key(&KIE_MARKET, &done));
    let minimal_failed = json!({"code": 501, "msg": "Playground task failed.", "data": {"taskId": "mk-1"}});
    assert!(KIE_MARKET.is_terminal(&minimal_failed));
    assert_eq!(key(&KIE_MARKET, &minimal_failed), key(&KIE_MARKET, &failed));
    assert!(
        key(&KIE_MARKET, &json!({"data": {"taskId": "mk-1"}})).is_none(),
        "no code, no state"
    );
}

#[test]
fn task_id_accepts_numbers_and_skips_empty_strings() {
    assert_eq!(
        KIE_RUNWAY
            .task_id_of(&json!({"data": {"task_id": "", "taskId": "t2"}}))
            .as_deref(),
        Some("t2")
    );
    assert_eq!(
        KIE_VEO.task_id_of(&json!({"data": {"taskId": 42}})).as_deref(),
        Some("42")
    );
    assert_eq!(KIE_VEO.task_id_of(&json!({"data": {"taskId": null}})), None);
}

#[test]
fn describe_lists_what_the_preset_sets() {
    let d = KIE_SUNO.describe();
    assert!(d.starts_with("preset \"kie-suno\" (Suno music):\n"), "{d}");
    assert!(
        d.contains("dedupe_key = task id + outcome (success or failure, whatever the failure code; before the end, the stage at \"/data/callbackType\", with \"/data/progress\" when it has one)"),
        "{d}"
    );
    assert!(d.contains("task_id    = [\"/data/task_id\", \"/data/taskId\"]"), "{d}");
    assert!(
        d.contains("media      = [\"/data/data/*/audio_url\", \"/data/data/*/image_url\"]"),
        "{d}"
    );
    assert!(
        d.contains("terminal   : a success or a failure (not a stage at \"/data/callbackType\")"),
        "{d}"
    );
    for p in ALL {
        let d = p.describe();
        for m in p.media {
            assert!(d.contains(m), "{}: {m}", p.name);
        }
    }
}
