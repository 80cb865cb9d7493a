//! A callback against the provider's record: forged bodies, lagging records.
use super::*;
use serde_json::json;

fn runway(state: &str) -> Record {
    let info = json!({"videoId": "v", "videoUrl": "https://f/k.mp4", "imageUrl": "https://f/m.png"});
    Record::from_data(
        Product::Runway,
        "t",
        json!({"taskId": "t", "state": state, "videoInfo": info, "failCode": 400}),
    )
    .unwrap()
}

fn runway_cb(code: i64, url: &str) -> Value {
    json!({"code": code, "msg": "m", "data": {"task_id": "t", "video_id": "v", "video_url": url, "image_url": "https://f/m.png"}})
}

#[test]
fn a_genuine_callback_agrees() {
    assert_eq!(
        verify(&runway_cb(200, "https://f/k.mp4"), &runway("success")),
        Verdict::Agree
    );
}

#[test]
fn a_forged_url_disagrees() {
    let v = verify(&runway_cb(200, "https://evil/x.mp4"), &runway("success"));
    assert!(
        matches!(&v, Verdict::Disagree(m) if m.contains("https://evil/x.mp4")),
        "{v:?}"
    );
}

#[test]
fn outcome_and_task_must_match() {
    assert!(matches!(
        verify(&runway_cb(200, "https://f/k.mp4"), &runway("fail")),
        Verdict::Disagree(_)
    ));
    let fail =
        json!({"code": 400, "msg": "m", "data": {"task_id": "t", "video_id": "", "video_url": "", "image_url": ""}});
    assert!(matches!(verify(&fail, &runway("success")), Verdict::Disagree(_)));
    assert_eq!(verify(&fail, &runway("fail")), Verdict::Agree);
    let mut other = runway_cb(200, "https://f/k.mp4");
    other["data"]["task_id"] = "u".into();
    assert!(matches!(verify(&other, &runway("success")), Verdict::Disagree(m) if m.contains("\"u\"")));
    assert!(matches!(
        verify(&json!({"code": 200}), &runway("success")),
        Verdict::Disagree(_)
    ));
}

/// A failed task's callback `code` and its record's failure code are
/// different enums for every product but Market: a genuine failure agrees
/// whatever the two say (it was held as unverified, a dead letter).
#[test]
fn a_genuine_failure_agrees_whatever_its_callback_code() {
    let fail = json!({"code": 500, "msg": "m", "data": {"task_id": "t"}});
    assert_eq!(verify(&fail, &runway("fail")), Verdict::Agree, "Runway 500, record 400");
    let suno = Record::from_data(
        Product::Suno,
        "s",
        json!({"taskId": "s", "status": "GENERATE_AUDIO_FAILED", "errorCode": 400, "errorMessage": "x"}),
    )
    .unwrap();
    let refunded = json!({"code": 531, "msg": "m", "data": {"callbackType": "error", "task_id": "s", "data": null}});
    assert_eq!(verify(&refunded, &suno), Verdict::Agree, "Suno 531, record 400");
    let veo = Record::from_data(
        Product::Veo,
        "v",
        json!({"taskId": "v", "successFlag": 2, "errorCode": 400, "errorMessage": "x"}),
    )
    .unwrap();
    let flow = json!({"code": 422, "msg": "rejected by Flow", "data": {"taskId": "v"}});
    assert_eq!(verify(&flow, &veo), Verdict::Agree, "Veo 422, record 400");
}

#[test]
fn a_success_without_results_disagrees() {
    let empty =
        json!({"code": 200, "msg": "m", "data": {"task_id": "t", "video_id": "v", "video_url": "", "image_url": ""}});
    assert!(matches!(verify(&empty, &runway("success")), Verdict::Disagree(_)));
}

#[test]
fn a_record_behind_the_callback_is_not_terminal_yet() {
    assert_eq!(
        verify(&runway_cb(200, "https://f/k.mp4"), &runway("generating")),
        Verdict::NotTerminalYet
    );
}

#[test]
fn suno_stages_against_the_record() {
    let record = |status: &str, tracks: Value| {
        Record::from_data(
            Product::Suno,
            "s",
            json!({"status": status, "response": {"sunoData": tracks}}),
        )
        .unwrap()
    };
    let first = json!({"code": 200, "data": {"callbackType": "first", "task_id": "s", "data": [{"audio_url": "https://a/1.mp3"}]}});
    let tracks = json!([{"audioUrl": "https://a/1.mp3"}]);
    assert_eq!(verify(&first, &record("FIRST_SUCCESS", tracks.clone())), Verdict::Agree);
    assert_eq!(
        verify(&first, &record("TEXT_SUCCESS", json!([]))),
        Verdict::NotTerminalYet
    );
    assert!(matches!(
        verify(&first, &record("SUCCESS", json!([{"audioUrl": "https://a/2.mp3"}]))),
        Verdict::Disagree(_)
    ));
    // A `first` naming no track (review 33, finding 3): waits for the record
    // to have tracks, then disagrees; it never agrees.
    let bare = json!({"code": 200, "data": {"callbackType": "first", "task_id": "s", "data": []}});
    assert_eq!(verify(&bare, &record("PENDING", json!([]))), Verdict::NotTerminalYet);
    assert!(matches!(
        verify(&bare, &record("FIRST_SUCCESS", tracks.clone())),
        Verdict::Disagree(_)
    ));
    assert!(matches!(
        verify(&bare, &record("GENERATE_AUDIO_FAILED", json!([]))),
        Verdict::Disagree(_)
    ));
    let text = json!({"code": 200, "data": {"callbackType": "text", "task_id": "s", "data": []}});
    assert_eq!(
        verify(&text, &record("GENERATE_AUDIO_FAILED", json!([]))),
        Verdict::Agree
    );
    let complete = json!({"code": 200, "data": {"callbackType": "complete", "task_id": "s", "data": [{"audio_url": "https://a/1.mp3"}]}});
    assert_eq!(
        verify(&complete, &record("FIRST_SUCCESS", tracks.clone())),
        Verdict::NotTerminalYet
    );
    assert_eq!(verify(&complete, &record("SUCCESS", tracks)), Verdict::Agree);
}

#[test]
fn market_failure_code_is_in_data() {
    let record = Record::from_data(
        Product::Market,
        "m",
        json!({"taskId": "m", "state": "fail", "failCode": "422"}),
    )
    .unwrap();
    let cb = |fc: &str| json!({"code": 501, "data": {"taskId": "m", "state": "fail", "failCode": fc}});
    assert_eq!(verify(&cb("422"), &record), Verdict::Agree);
    assert!(matches!(verify(&cb("500"), &record), Verdict::Disagree(_)));
}

fn market(data: Value) -> Record {
    Record::from_data(Product::Market, "m", data).unwrap()
}

fn market_success() -> Record {
    market(json!({"taskId": "m", "state": "success", "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\"]}"}))
}

#[test]
fn market_short_success_claims_only_the_outcome() {
    // The documented short form: no state, no resultJson.
    let short = json!({"code": 200, "msg": "success", "data": {"taskId": "m"}});
    assert_eq!(verify(&short, &market_success()), Verdict::Agree);
    let failed = market(json!({"taskId": "m", "state": "fail", "failCode": "422"}));
    assert!(matches!(verify(&short, &failed), Verdict::Disagree(_)));
    let running = market(json!({"taskId": "m", "state": "generating"}));
    assert_eq!(verify(&short, &running), Verdict::NotTerminalYet);
    let mut other = short.clone();
    other["data"]["taskId"] = "n".into();
    assert!(matches!(verify(&other, &market_success()), Verdict::Disagree(_)));
}

#[test]
fn a_market_result_json_must_name_the_records_urls() {
    let cb = |result: Value| json!({"code": 200, "data": {"taskId": "m", "state": "success", "resultJson": result}});
    assert_eq!(
        verify(&cb(json!("{\"resultUrls\":[\"https://m/1.mp4\"]}")), &market_success()),
        Verdict::Agree
    );
    // Its URLs stripped: a result that names none of the record's.
    for stripped in [json!(""), json!(null), json!("{\"resultUrls\":[]}")] {
        let v = verify(&cb(stripped.clone()), &market_success());
        assert!(
            matches!(&v, Verdict::Disagree(m) if m.contains("none of the record's")),
            "{stripped}: {v:?}"
        );
    }
    let v = verify(&cb(json!({"resultUrls": ["https://evil/x.mp4"]})), &market_success());
    assert!(
        matches!(&v, Verdict::Disagree(m) if m.contains("https://evil/x.mp4")),
        "{v:?}"
    );
}

#[test]
fn market_short_failure_agrees_with_a_failed_record() {
    let short = json!({"code": 501, "msg": "failed", "data": {"taskId": "m"}});
    let failed = market(json!({"taskId": "m", "state": "fail", "failCode": "422", "failMsg": "nsfw"}));
    assert_eq!(verify(&short, &failed), Verdict::Agree);
    assert!(matches!(verify(&short, &market_success()), Verdict::Disagree(_)));
}

#[test]
fn other_products_without_results_still_disagree() {
    let veo = Record::from_data(
        Product::Veo,
        "v",
        json!({"taskId": "v", "successFlag": 1, "response": {"resultUrls": ["https://v/1.mp4"]}}),
    )
    .unwrap();
    let short = json!({"code": 200, "msg": "success", "data": {"taskId": "v"}});
    assert!(matches!(verify(&short, &veo), Verdict::Disagree(m) if m.contains("none of the record's")));
}

#[test]
fn a_market_short_form_with_result_fields_of_its_own_disagrees() {
    // A replayed signature on the short form, plus URLs a subscriber might
    // read as the result: wherever they are, the record must have them.
    let forged = [
        json!({"code": 200, "msg": "success", "data": {"taskId": "m", "resultUrls": ["https://evil/x.mp4"]}}),
        json!({"code": 200, "msg": "success", "data": {"taskId": "m", "info": {"result_urls": "[\"https://evil/x.mp4\"]"}}}),
        json!({"code": 200, "msg": "success", "data": {"taskId": "m"}, "resultUrl": "https://evil/x.mp4"}),
        json!({"code": 200, "data": {"taskId": "m", "state": "success",
            "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\"]}", "videoUrl": "https://evil/x.mp4"}}),
    ];
    for body in forged {
        let v = verify(&body, &market_success());
        assert!(
            matches!(&v, Verdict::Disagree(m) if m.contains("https://evil/x.mp4")),
            "{body}: {v:?}"
        );
    }
    // The same URL in a failure callback, against a failed record.
    let failed = market(json!({"taskId": "m", "state": "fail", "failCode": "422"}));
    let body = json!({"code": 501, "msg": "failed", "data": {"taskId": "m", "resultUrls": ["https://evil/x.mp4"]}});
    assert!(matches!(verify(&body, &failed), Verdict::Disagree(_)));
    // A record that has not caught up yet: ask again later, as for resultJson.
    let running = market(json!({"taskId": "m", "state": "generating"}));
    let body = json!({"code": 200, "data": {"taskId": "m", "resultUrls": ["https://evil/x.mp4"]}});
    assert_eq!(verify(&body, &running), Verdict::NotTerminalYet);
}

#[test]
fn a_market_full_callback_agrees_with_every_url_it_echoes() {
    // The model pages' callback: the record's `data` plus the credit fields;
    // `param` (a JSON string here, an object there) echoes input URLs.
    let param = json!({"model": "kling", "callBackUrl": "https://me/hook",
        "input": {"image_url": "https://in/cat.png", "prompt": "a cat"}});
    let record = market(json!({"taskId": "m", "state": "success", "param": param.to_string(),
        "resultJson": "{\"resultUrls\":[\"https://m/1.mp4\"]}", "failMsg": ""}));
    let mut data = record.data().clone();
    data["consumeCredits"] = json!(10);
    let full = json!({"code": 200, "msg": "Playground task completed successfully.", "data": data});
    assert_eq!(verify(&full, &record), Verdict::Agree);
    let mut structured = full.clone();
    structured["data"]["param"] = param;
    assert_eq!(verify(&structured, &record), Verdict::Agree);
    // The documented short form still claims only the outcome.
    let short = json!({"code": 200, "msg": "success", "data": {"taskId": "m"}});
    assert_eq!(verify(&short, &record), Verdict::Agree);
    // A message that happens to hold a URL is not a result.
    let noted = json!({"code": 200, "msg": "see https://docs/x", "data": {"taskId": "m"}});
    assert_eq!(verify(&noted, &record), Verdict::Agree);
}

/// The reason names a URL as logs and the admin API show URLs (its query,
/// a signed URL's signature, cut), quoted: a line break in a forged body
/// cannot start a line of its own in the log.
#[test]
fn a_disagreeing_url_is_named_without_its_query_or_line_breaks() {
    let forged = "https://evil/x.mp4\n2026-12-04T00:00:00Z ERROR forged";
    let signed = "https://cdn.example/x.mp4?X-Amz-Signature=s3cr3t";
    for url in [forged, signed] {
        let v = verify(&runway_cb(200, url), &runway("success"));
        let Verdict::Disagree(m) = &v else { panic!("{v:?}") };
        assert!(!m.contains('\n') && !m.contains("s3cr3t"), "{m}");
        assert!(m.contains("\"https://"), "{m}");
    }
}

fn veo_record(response: Value) -> Record {
    Record::from_data(
        Product::Veo,
        "v",
        json!({"taskId": "v", "successFlag": 1, "response": response}),
    )
    .unwrap()
}

/// A URL in a second documented place of the same list is compared too:
/// the archive reads every place (hostile review, stop 65).
#[test]
fn a_url_in_a_second_place_of_a_list_is_compared() {
    let veo = veo_record(json!({"resultUrls": ["https://v/1.mp4"]}));
    let hidden = json!({"code": 200, "data": {"taskId": "v",
        "info": {"resultUrls": ["https://v/1.mp4"], "imageUrls": ["https://evil/4k.mp4"]},
        "response": {"imageUrls": ["https://v/1.mp4"]}}});
    assert!(matches!(verify(&hidden, &veo), Verdict::Disagree(m) if m.contains("evil")));
    let image = Record::from_data(
        Product::FourOImage,
        "i",
        json!({"taskId": "i", "successFlag": 1, "response": {"resultUrls": ["https://i/1.png"]}}),
    )
    .unwrap();
    let hidden = json!({"code": 200, "data": {"taskId": "i",
        "info": {"result_urls": ["https://i/1.png"], "resultUrls": ["https://evil/x.png"]}}});
    assert!(matches!(verify(&hidden, &image), Verdict::Disagree(m) if m.contains("evil")));
    let genuine = json!({"code": 200, "data": {"taskId": "i", "info": {"result_urls": ["https://i/1.png"]}}});
    assert_eq!(verify(&genuine, &image), Verdict::Agree);
}

/// Veo's 4K upgrade is a success of its own: its `imageUrls` must be the
/// record's `imageUrls`, not the generation's video.
#[test]
fn a_veo_4k_callback_agrees_only_with_a_record_that_has_the_4k_result() {
    let cb = |image: &str| {
        json!({"code": 200, "data": {"taskId": "v",
            "info": {"resultUrls": ["https://v/1.mp4"], "imageUrls": [image]}}})
    };
    let generated = veo_record(json!({"resultUrls": ["https://v/1.mp4"]}));
    assert!(matches!(
        verify(&cb("https://v/1.mp4"), &generated),
        Verdict::Disagree(_)
    ));
    let upgraded = veo_record(json!({"resultUrls": ["https://v/1.mp4"], "imageUrls": ["https://v/4k.mp4"]}));
    assert_eq!(verify(&cb("https://v/4k.mp4"), &upgraded), Verdict::Agree);
    assert!(matches!(
        verify(&cb("https://v/1.mp4"), &upgraded),
        Verdict::Disagree(_)
    ));
    // The generation's own callback, without `imageUrls`, still agrees.
    let plain = json!({"code": 200, "data": {"taskId": "v", "info": {"resultUrls": ["https://v/1.mp4"]}}});
    assert_eq!(verify(&plain, &generated), Verdict::Agree);
}

/// What the route archives (its own media pointers may reach any field)
/// must be a string of the record.
#[test]
fn what_the_route_archives_must_be_in_the_record() {
    let body = runway_cb(200, "https://f/k.mp4");
    let record = runway("success");
    let ours = ["https://f/k.mp4".to_string(), "https://f/m.png".to_string()];
    assert_eq!(verify_archiving(&body, &record, &ours), Verdict::Agree);
    assert_eq!(verify_archiving(&body, &record, &[]), Verdict::Agree);
    let theirs = ["https://evil/x.mp4".to_string()];
    let v = verify_archiving(&body, &record, &theirs);
    assert!(
        matches!(&v, Verdict::Disagree(m) if m.contains("media archive") && m.contains("evil")),
        "{v:?}"
    );
    // A record still running may not have its URLs yet: ask again later.
    let progress = Record::from_data(
        Product::Suno,
        "s",
        json!({"taskId": "s", "status": "FIRST_SUCCESS", "response": {"sunoData": [
            {"audioUrl": "https://s/a.mp3"}]}}),
    )
    .unwrap();
    let first = json!({"code": 200, "data": {"callbackType": "first", "task_id": "s",
        "data": [{"audio_url": "https://s/a.mp3"}]}});
    assert_eq!(
        verify_archiving(&first, &progress, &["https://s/a.mp3".to_string()]),
        Verdict::Agree
    );
    assert_eq!(
        verify_archiving(&first, &progress, &["https://s/b.mp3".to_string()]),
        Verdict::NotTerminalYet
    );
    // A verdict other than agreement is kept.
    let forged = runway_cb(200, "https://evil/x.mp4");
    assert!(matches!(
        verify_archiving(&forged, &record, &ours),
        Verdict::Disagree(_)
    ));
}

/// The record's other strings are the task's inputs, not its results: a
/// forged body cannot have them archived; a URL with whitespace around it
/// (the archive trims it) is still the record's (change review, stop 65).
#[test]
fn only_the_records_results_may_be_archived() {
    let record = Record::from_data(
        Product::Runway,
        "t",
        json!({"taskId": "t", "state": "success", "param": {"imageUrl": "https://in/put.png"},
            "videoInfo": {"videoUrl": "https://f/k.mp4\n", "imageUrl": "https://f/m.png"}}),
    )
    .unwrap();
    let body = runway_cb(200, "https://f/k.mp4\n");
    let input = ["https://in/put.png".to_string()];
    assert!(matches!(verify_archiving(&body, &record, &input), Verdict::Disagree(_)));
    let trimmed = ["https://f/k.mp4".to_string()];
    assert_eq!(verify_archiving(&body, &record, &trimmed), Verdict::Agree);
    // A Market model's own result shape: any string of its `resultJson`.
    let result = "{\"resultUrls\":[\"https://m/1.mp4\"],\"cover\":\"https://m/c.png\"}";
    let market = Record::from_data(
        Product::Market,
        "m",
        json!({"taskId": "m", "state": "success", "param": "{\"image_url\":\"https://in/put.png\"}",
            "resultJson": result}),
    )
    .unwrap();
    let cb = json!({"code": 200, "data": {"taskId": "m", "state": "success", "resultJson": result}});
    assert_eq!(
        verify_archiving(&cb, &market, &["https://m/c.png".to_string()]),
        Verdict::Agree
    );
    assert!(matches!(
        verify_archiving(&cb, &market, &["https://in/put.png".to_string()]),
        Verdict::Disagree(_)
    ));
}
