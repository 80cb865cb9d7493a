//! Callback bodies as providers send them (Runway, via kie.ai). Only the text
//! (or JSON a test still adds to); sending it is `client`'s job.

/// A Runway "generated" callback for `task`; distinct tasks are distinct events.
pub fn runway(task: &str) -> String {
    format!(
        r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"{task}","video_id":"v-{task}","video_url":"https://file.com/k/{task}.mp4"}}}}"#
    )
}

/// A Runway "generated" callback for `task` naming a video and a cover to
/// archive (either may be `""`, as a failed task sends).
pub fn runway_media(task: &str, video_url: &str, image_url: &str) -> serde_json::Value {
    serde_json::json!({"code": 200, "msg": "All generated successfully.", "data": {
        "task_id": task, "video_id": format!("v-{task}"), "video_url": video_url, "image_url": image_url}})
}
