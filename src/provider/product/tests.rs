//! State classification, including the reference's UNCONFIRMED variants.
use super::*;
use serde_json::json;

fn stage(p: Product, data: Value) -> Stage {
    p.classify(&data).stage
}

#[test]
fn runway_and_market_state_words() {
    use Stage::*;
    for (word, want) in [
        ("wait", Waiting),
        ("queueing", Waiting),
        ("generating", Running),
        ("success", Succeeded),
        ("fail", Failed),
    ] {
        assert_eq!(stage(Product::Runway, json!({ "state": word })), want, "{word}");
    }
    for (word, want) in [
        ("waiting", Waiting),
        ("queuing", Waiting),
        ("generating", Running),
        ("success", Succeeded),
        ("fail", Failed),
    ] {
        assert_eq!(stage(Product::Market, json!({ "state": word })), want, "{word}");
    }
    // Unknown or missing words keep the task polled, never end it.
    assert_eq!(stage(Product::Runway, json!({"state": "rendering"})), Running);
    let c = Product::Market.classify(&json!({}));
    assert_eq!((c.stage, c.state.as_str()), (Running, "state missing"));
}

#[test]
fn aleph_has_no_failed_value() {
    assert_eq!(stage(Product::Aleph, json!({"successFlag": 1})), Stage::Succeeded);
    assert_eq!(
        stage(Product::Aleph, json!({"successFlag": 0, "errorMessage": ""})),
        Stage::Running
    );
    assert_eq!(
        stage(
            Product::Aleph,
            json!({"successFlag": 0, "errorMessage": null, "errorCode": 0})
        ),
        Stage::Running
    );
    assert_eq!(
        stage(Product::Aleph, json!({"successFlag": 0, "errorMessage": "moderator"})),
        Stage::Failed
    );
    assert_eq!(
        stage(Product::Aleph, json!({"successFlag": "0", "errorCode": 400})),
        Stage::Failed
    );
    assert_eq!(
        stage(Product::Aleph, json!({"successFlag": 0, "errorMessage": "  "})),
        Stage::Running
    );
}

#[test]
fn veo_and_flux_success_flags() {
    for p in [Product::Veo, Product::FluxKontext] {
        assert_eq!(stage(p, json!({"successFlag": 0})), Stage::Running);
        assert_eq!(stage(p, json!({"successFlag": 1})), Stage::Succeeded);
        // Veo's schema lists only 0/1/2; its status table adds 3. Both fail.
        assert_eq!(stage(p, json!({"successFlag": 2})), Stage::Failed);
        assert_eq!(stage(p, json!({"successFlag": 3})), Stage::Failed);
        assert_eq!(stage(p, json!({"successFlag": "3"})), Stage::Failed);
        assert_eq!(stage(p, json!({})), Stage::Running);
    }
}

#[test]
fn suno_intermediate_stages_are_not_terminal() {
    use Stage::*;
    for (status, want) in [
        ("PENDING", Waiting),
        ("TEXT_SUCCESS", Running),
        ("FIRST_SUCCESS", Running),
        ("SUCCESS", Succeeded),
        ("CREATE_TASK_FAILED", Failed),
        ("GENERATE_AUDIO_FAILED", Failed),
        ("SENSITIVE_WORD_ERROR", Failed),
    ] {
        assert_eq!(stage(Product::Suno, json!({ "status": status })), want, "{status}");
    }
}

#[test]
fn suno_callback_exception_depends_on_audio() {
    let with_audio =
        json!({"status": "CALLBACK_EXCEPTION", "response": {"sunoData": [{"audioUrl": "https://a/1.mp3"}]}});
    assert_eq!(stage(Product::Suno, with_audio), Stage::Succeeded);
    let empty_url = json!({"status": "CALLBACK_EXCEPTION", "response": {"sunoData": [{"audioUrl": "", "streamAudioUrl": "https://s/1"}]}});
    assert_eq!(stage(Product::Suno, empty_url), Stage::Failed);
    let no_response = json!({"status": "CALLBACK_EXCEPTION", "response": null});
    assert_eq!(stage(Product::Suno, no_response), Stage::Failed);
}

#[test]
fn four_o_status_words_then_the_unconfirmed_flag() {
    assert_eq!(
        stage(Product::FourOImage, json!({"status": "GENERATING", "successFlag": 1})),
        Stage::Running
    );
    assert_eq!(
        stage(Product::FourOImage, json!({"status": "SUCCESS"})),
        Stage::Succeeded
    );
    assert_eq!(
        stage(Product::FourOImage, json!({"status": "GENERATE_FAILED"})),
        Stage::Failed
    );
    assert_eq!(
        stage(Product::FourOImage, json!({"status": "CREATE_TASK_FAILED"})),
        Stage::Failed
    );
    // No (known) status: third parties say successFlag 0/1/2.
    assert_eq!(stage(Product::FourOImage, json!({"successFlag": 0})), Stage::Running);
    assert_eq!(stage(Product::FourOImage, json!({"successFlag": 1})), Stage::Succeeded);
    assert_eq!(stage(Product::FourOImage, json!({"successFlag": 2})), Stage::Failed);
    assert_eq!(
        stage(Product::FourOImage, json!({"status": "QUEUED", "successFlag": 0})),
        Stage::Running
    );
}

#[test]
fn suno_callbacks_only_complete_or_error_end_a_task() {
    let cb = |t: &str, code: i64| json!({"code": code, "data": {"callbackType": t, "task_id": "x"}});
    assert_eq!(Product::Suno.callback_stage(&cb("text", 200)), CallbackStage::Progress);
    assert_eq!(Product::Suno.callback_stage(&cb("first", 200)), CallbackStage::Progress);
    assert_eq!(
        Product::Suno.callback_stage(&cb("complete", 200)),
        CallbackStage::Succeeded
    );
    assert_eq!(Product::Suno.callback_stage(&cb("error", 400)), CallbackStage::Failed);
    assert_eq!(
        Product::Suno.callback_stage(&cb("complete", 531)),
        CallbackStage::Failed
    );
    assert_eq!(
        Product::Suno.callback_stage(&cb("later", 200)),
        CallbackStage::Unrecognised
    );
    assert!(!CallbackStage::Progress.is_terminal());
}

#[test]
fn market_progress_posts_are_not_terminal() {
    let m = |body: Value| Product::Market.callback_stage(&body);
    assert_eq!(
        m(json!({"code": 200, "data": {"taskId": "x", "state": "generating", "progress": 40}})),
        CallbackStage::Progress
    );
    assert_eq!(
        m(json!({"code": 200, "data": {"taskId": "x", "progress": 40}})),
        CallbackStage::Progress
    );
    assert_eq!(
        m(json!({"code": 200, "data": {"taskId": "x", "state": "success"}})),
        CallbackStage::Succeeded
    );
    assert_eq!(
        m(json!({"code": 501, "data": {"taskId": "x", "state": "fail"}})),
        CallbackStage::Failed
    );
    // The Grok page's minimal body: the code decides.
    assert_eq!(
        m(json!({"code": 200, "msg": "ok", "data": {"taskId": "x"}})),
        CallbackStage::Succeeded
    );
    assert_eq!(m(json!({"code": 501, "data": {"taskId": "x"}})), CallbackStage::Failed);
    assert_eq!(m(json!({"data": {"taskId": "x"}})), CallbackStage::Unrecognised);
}

#[test]
fn task_ids_and_names() {
    let aleph = json!({"code": 200, "taskId": "a1", "data": null});
    assert_eq!(Product::Aleph.callback_task_id(&aleph), Some("a1"));
    let runway = json!({"data": {"task_id": "r1"}});
    assert_eq!(Product::Runway.callback_task_id(&runway), Some("r1"));
    assert_eq!(Product::Veo.callback_task_id(&runway), None);
    for p in Product::ALL {
        assert_eq!(p.preset_name().parse::<Product>().unwrap(), p);
        assert!(p.status_path().starts_with("/api/v1/"));
    }
    let e = "kie-nope".parse::<Product>().unwrap_err();
    assert!(e.contains("kie-runway") && e.contains("kie-nope"), "{e}");
}

#[test]
fn documented_rate_limits() {
    assert_eq!(Product::Suno.poll_limits().per_task, Some(PER_TASK_3_PER_S));
    assert_eq!(Product::FourOImage.poll_limits().per_task, Some(PER_TASK_3_PER_S));
    assert_eq!(Product::Market.poll_limits().per_key, Some(MARKET_PER_KEY));
    assert_eq!(
        Product::Runway.poll_limits(),
        PollLimits {
            per_task: None,
            per_key: None
        }
    );
    assert_eq!(
        (ACCOUNT_CREATE_LIMIT.cells.get(), ACCOUNT_CREATE_LIMIT.per),
        (20, Duration::from_secs(10))
    );
}
