//! Callback bodies as providers send them (Runway, via kie.ai). Only the text;
//! sending it is `client`'s job.

/// A Runway "generated" callback for `task`; distinct tasks are distinct events.
pub fn runway(task: &str) -> String {
    format!(
        r#"{{"code":200,"msg":"All generated successfully.","data":{{"task_id":"{task}","video_id":"v-{task}","video_url":"https://file.com/k/{task}.mp4"}}}}"#
    )
}
