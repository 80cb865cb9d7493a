//! Unit tests for media pointers: the provider shapes, the JSON-in-a-string
//! continuation, escapes, and inputs that must be skipped rather than fail.

use serde_json::json;

use super::*;

fn urls(pointers: &[&str], doc: &Value) -> Vec<String> {
    let ps: Vec<MediaPointer> = pointers.iter().map(|p| MediaPointer::parse(p).unwrap()).collect();
    media_urls(&ps, doc)
}

#[test]
fn runway_fields() {
    let doc = json!({"code": 200, "data": {"task_id": "t", "video_url": "https://f.example/v.mp4", "image_url": "https://f.example/c.png"}});
    assert_eq!(
        urls(&["/data/video_url", "/data/image_url"], &doc),
        ["https://f.example/v.mp4", "https://f.example/c.png"]
    );
}

#[test]
fn failed_task_with_empty_and_null_fields_yields_nothing() {
    let doc = json!({"code": 400, "data": {"video_url": "", "image_url": null}});
    assert!(urls(&["/data/video_url", "/data/image_url"], &doc).is_empty());
    // Aleph sends `data: null` on error.
    let doc = json!({"code": 400, "taskId": "t", "data": null});
    assert!(urls(&["/data/result_video_url"], &doc).is_empty());
}

#[test]
fn star_matches_every_array_element() {
    let doc = json!({"data": {"info": {"resultUrls": ["http://a/1", "http://a/2"], "originUrls": ["http://a/3"]}}});
    assert_eq!(
        urls(&["/data/info/resultUrls/*", "/data/info/originUrls/*"], &doc),
        ["http://a/1", "http://a/2", "http://a/3"]
    );
}

#[test]
fn star_over_objects_in_an_array() {
    let doc = json!({"data": {"callbackType": "complete", "data": [
        {"audio_url": "https://s/1.mp3", "image_url": "https://s/1.jpg"},
        {"audio_url": "https://s/2.mp3", "image_url": ""},
    ]}});
    assert_eq!(
        urls(&["/data/data/*/audio_url", "/data/data/*/image_url"], &doc),
        ["https://s/1.mp3", "https://s/2.mp3", "https://s/1.jpg"]
    );
}

#[test]
fn continues_inside_a_string_holding_json() {
    // Market: resultJson is a JSON string.
    let doc = json!({"data": {"state": "success", "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\",\"https://m/2.mp4\"]}"}});
    assert_eq!(
        urls(&["/data/resultJson/resultUrls/*"], &doc),
        ["https://m/1.mp4", "https://m/2.mp4"]
    );
    // Veo quickstart shape: resultUrls itself is a JSON string holding an array.
    let doc = json!({"data": {"info": {"resultUrls": "[\"https://v/1.mp4\"]"}}});
    assert_eq!(urls(&["/data/info/resultUrls/*"], &doc), ["https://v/1.mp4"]);
    // The same pointer still handles the array shape.
    let doc = json!({"data": {"info": {"resultUrls": ["https://v/1.mp4"]}}});
    assert_eq!(urls(&["/data/info/resultUrls/*"], &doc), ["https://v/1.mp4"]);
}

#[test]
fn string_that_is_not_json_or_text_result_is_skipped() {
    let doc = json!({"data": {"resultJson": "not json {"}});
    assert!(urls(&["/data/resultJson/resultUrls/*"], &doc).is_empty());
    // A text result (`resultObject`) has no URLs.
    let doc = json!({"data": {"resultJson": "{\"resultObject\":{\"text\":\"hi\"}}"}});
    assert!(urls(&["/data/resultJson/resultUrls/*"], &doc).is_empty());
    let doc = json!({"data": {"resultJson": ""}});
    assert!(urls(&["/data/resultJson/resultUrls/*"], &doc).is_empty());
}

#[test]
fn nesting_of_json_strings_is_capped() {
    let mut inner = json!(["https://deep/x"]);
    for _ in 0..MAX_STRING_DEPTH {
        inner = Value::String(inner.to_string());
    }
    assert_eq!(urls(&["/a/*"], &json!({ "a": inner.clone() })), ["https://deep/x"]);
    let too_deep = Value::String(inner.to_string());
    assert!(urls(&["/a/*"], &json!({ "a": too_deep })).is_empty());
}

#[test]
fn only_http_and_https_urls_count() {
    let doc = json!({"u": ["ftp://h/x", "file:///etc/passwd", "javascript:alert(1)", "/relative/x.mp4",
        "video-id-123", "https://", "HTTPS://Upper.example/x", " https://spaces.example/x ", 42, true, {"k": 1}]});
    assert_eq!(
        urls(&["/u/*"], &doc),
        ["HTTPS://Upper.example/x", "https://spaces.example/x"]
    );
}

#[test]
fn duplicates_within_one_event_are_dropped_in_order() {
    let doc = json!({"data": {"info": {"resultUrls": ["https://a/1", "https://a/2", "https://a/1"],
        "originUrls": ["https://a/2", "https://a/3"]}}});
    assert_eq!(
        urls(&["/data/info/resultUrls/*", "/data/info/originUrls/*"], &doc),
        ["https://a/1", "https://a/2", "https://a/3"]
    );
}

#[test]
fn escapes_and_indexes() {
    let doc = json!({"a/b": {"m~n": "https://e/1"}, "arr": ["https://e/2", "https://e/3"], "*": "https://e/4"});
    assert_eq!(urls(&["/a~1b/m~0n"], &doc), ["https://e/1"]);
    assert_eq!(urls(&["/arr/1"], &doc), ["https://e/3"]);
    // Out of range, leading zeros, negative and "-" indexes reach nothing.
    for p in ["/arr/2", "/arr/01", "/arr/-1", "/arr/-", "/arr/", "/arr/1/x"] {
        assert!(urls(&[p], &doc).is_empty(), "{p}");
    }
    // On an object, `*` is the member literally named "*".
    assert_eq!(urls(&["/*"], &doc), ["https://e/4"]);
    // `~01` is "~1" literally, not "/".
    assert_eq!(urls(&["/~01"], &json!({"~1": "https://e/5"})), ["https://e/5"]);
}

#[test]
fn parse_errors_are_clear() {
    assert_eq!(MediaPointer::parse(""), Err(PointerError::Empty));
    assert_eq!(
        MediaPointer::parse("data/video_url").unwrap_err().to_string(),
        "invalid media pointer \"data/video_url\": must start with '/'"
    );
    for bad in ["/a~", "/a~2", "/~x/b"] {
        assert!(
            matches!(MediaPointer::parse(bad), Err(PointerError::BadEscape(_))),
            "{bad}"
        );
    }
    assert_eq!(MediaPointer::parse("/data/x").unwrap().to_string(), "/data/x");
}

#[test]
fn missing_paths_and_wrong_types_never_panic() {
    let shapes = [
        json!(null),
        json!(1),
        json!("https://top/level"),
        json!([]),
        json!({}),
        json!({"data": []}),
        json!({"data": {"info": null}}),
        json!({"data": {"info": {"resultUrls": {}}}}),
        json!({"data": {"info": {"resultUrls": [null, [], {}, 3]}}}),
    ];
    let pointers = ["/data/info/resultUrls/*", "/data/*/x", "/*/*/*", "/data/0"];
    for doc in &shapes {
        assert!(urls(&pointers, doc).is_empty(), "{doc}");
    }
}

#[test]
fn generated_documents_agree_with_serde_pointer() {
    // Property-style: for keys with every escape-worthy character, the media
    // pointer reaches exactly what serde_json's RFC 6901 pointer reaches.
    let keys = ["plain", "a/b", "t~x", "~1", "~0/", "", " ", "ü/ß", "0", "*x"];
    for (i, k) in keys.iter().enumerate() {
        let url = format!("https://k.example/{i}");
        let doc = json!({ "outer": { *k: url } });
        let escaped = k.replace('~', "~0").replace('/', "~1");
        let p = format!("/outer/{escaped}");
        assert_eq!(doc.pointer(&p).and_then(Value::as_str), Some(url.as_str()), "{p}");
        assert_eq!(urls(&[&p], &doc), [url], "{p}");
    }
}
