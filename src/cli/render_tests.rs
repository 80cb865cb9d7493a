//! Tests of [`super`]: what the CLI prints for the admin API's answers.

use super::*;

#[test]
fn the_event_view_says_where_a_polled_result_came_from_and_who_waits_for_media() {
    let v = serde_json::json!({
        "id": "evt_1", "route": "r", "task_id": "t1", "source": null, "origin": "poll", "status": "pending",
        "subscribers": [{"name": "app", "state": "pending", "waiting_for_media": true, "attempts": []}],
    });
    let out = render_event(&v);
    assert!(
        out.contains("source:    polled from the provider (origin: poll)"),
        "{out}"
    );
    assert!(out.contains("task:      t1"), "{out}");
    assert!(out.contains("pending (waiting for its media)"), "{out}");
}

#[test]
fn a_pull_hand_back_with_the_private_services_status_says_it_was_handed_back() {
    let attempt = |status: Value, error: Value| serde_json::json!({"attempt": 1, "at": "t", "duration_ms": 5, "status": status, "error": error});
    let v = serde_json::json!({
        "id": "evt_1", "route": "r", "task_id": null, "source": null, "origin": "callback", "status": "pending",
        "subscribers": [{"name": "laptop", "state": "retrying", "waiting_for_media": false, "attempts": [
            attempt(Value::from(503), Value::from("handed back by the pull client")),
            attempt(Value::from(502), Value::Null),
            attempt(Value::Null, Value::Null),
        ]}],
    });
    let out = render_event(&v);
    assert!(out.contains("handed back by the pull client (local HTTP 503)"), "{out}");
    assert!(
        out.contains("HTTP 502") && out.contains("acknowledged by the pull client"),
        "{out}"
    );
}

#[test]
fn a_replay_names_whom_it_queued_and_who_was_pending() {
    let v = serde_json::json!({"id": "evt_1", "queued": ["a", "b"], "already_pending": ["c"]});
    assert_eq!(
        render_replay(&v),
        "queued evt_1 for a, b\nalready pending for c: being sent or due now, not queued twice\n"
    );
    let v = serde_json::json!({"id": "evt_1", "queued": [], "already_pending": ["hang"]});
    assert_eq!(
        render_replay(&v),
        "nothing queued for evt_1\nalready pending for hang: being sent or due now, not queued twice\n"
    );
    let v = serde_json::json!({"id": "evt_1", "queued": [], "already_pending": [], "filtered": ["f"]});
    assert_eq!(
        render_replay(&v),
        "nothing queued for evt_1\nskipped again for f: its filter does not match this event\n"
    );
}

#[test]
fn empty_lists_say_so_instead_of_a_bare_header() {
    assert_eq!(
        render_dead_letters(&serde_json::json!({"dead_letters": [], "total": 0})),
        "no dead letters\n"
    );
    assert_eq!(render_events(&serde_json::json!({"events": []})), "no events\n");
    assert_eq!(
        crate::cli::render_tasks::render_tasks(&serde_json::json!({"tasks": []})),
        "no tasks\n"
    );
}

#[test]
fn a_delivery_state_is_shown_once_not_on_each_attempt() {
    let v = serde_json::json!({
        "id": "evt_1", "route": "r", "status": "delivered",
        "subscribers": [{"name": "flaky", "state": "delivered", "attempts": [
            {"attempt": 1, "at": "t1", "duration_ms": 3, "status": 500, "error": null},
            {"attempt": 2, "at": "t2", "duration_ms": 4, "status": 200, "error": null}]}],
    });
    let out = render_event(&v);
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("SUBSCRIBER"))
        .skip(1)
        .collect();
    assert!(
        rows[0].starts_with("flaky") && rows[0].contains("delivered") && rows[0].contains("HTTP 500"),
        "{out}"
    );
    assert!(
        !rows[1].contains("delivered") && !rows[1].contains("flaky") && rows[1].contains("HTTP 200"),
        "{out}"
    );
}

#[test]
fn the_media_summary_counts_downloads_once() {
    let v = serde_json::json!({"store": "local directory /m", "queue_depth": 6, "in_flight": 4, "recent": [], "waiting": []});
    assert!(render_media(&v).starts_with("store:     local directory /m\npending:   6 (4 downloading now)\n"));
}

#[test]
fn a_list_cut_at_its_limit_says_so_and_names_the_next_page() {
    let e = |id: &str| serde_json::json!({"id": id, "subscribers": []});
    let v = serde_json::json!({"events": [e("evt_2"), e("evt_1")], "more": true, "next_before": "evt_1"});
    let out = render_events(&v);
    assert!(
        out.ends_with(
            "showing the newest 2 events; older ones match too (--before evt_1 for the next page, or --limit N)\n"
        ),
        "{out}"
    );
    // A walk stopped at the store's budget: older ones may match, and a
    // larger --limit does not reach them (it said "match too, or --limit N";
    // the change review, stop 63).
    let cut = serde_json::json!({"events": [e("evt_9")], "more": true, "cut": true, "next_before": "evt_5"});
    assert!(
        render_events(&cut)
            .ends_with("showing the newest 1 events; older ones may match (--before evt_5 for the next page)\n"),
        "{}",
        render_events(&cut)
    );
    let all = serde_json::json!({"events": [e("evt_1")], "more": false, "next_before": null});
    assert!(!render_events(&all).contains("showing"));
    let t = serde_json::json!({"tasks": [{"task_id": "t1"}], "more": true});
    let out = crate::cli::render_tasks::render_tasks(&t);
    assert!(
        out.ends_with("showing the newest 1; more tasks match (--limit N for more)\n"),
        "{out}"
    );
}

#[test]
fn an_older_page_says_what_it_shows_and_an_empty_cut_page_says_more_may_match() {
    let e = |id: &str| serde_json::json!({"id": id, "subscribers": []});
    let older = serde_json::json!({"events": [e("evt_2")], "more": true, "next_before": "evt_2", "before": "evt_3"});
    assert!(
        render_events(&older).ends_with(
            "showing 1 events older than evt_3; older ones match too (--before evt_2 for the next page, or --limit N)\n"
        ),
        "{}",
        render_events(&older)
    );
    let cut = serde_json::json!({"events": [], "more": true, "next_before": "evt_9"});
    assert_eq!(
        render_events(&cut),
        "no events in this page; older ones may match (--before evt_9 for the next page)\n"
    );
}

/// A body that is not UTF-8 (the API sends it as base64) says so, with its
/// size as received (it was shown as if the provider had sent that text).
#[test]
fn a_base64_body_says_so() {
    let v =
        serde_json::json!({"id": "evt_1", "body": "Ymlu//4AAWRhdGE=", "body_encoding": "base64", "subscribers": []});
    let out = render_event(&v);
    assert!(
        out.contains("body (base64, not UTF-8 text; 11 bytes as received):"),
        "{out}"
    );
    let v = serde_json::json!({"id": "evt_1", "body": "{}", "body_encoding": "utf-8", "subscribers": []});
    assert!(render_event(&v).contains("body:      {}"));
}

#[test]
fn a_large_body_is_shown_in_part_with_how_to_see_it_whole() {
    let body = format!("{{\"data\":\"{}é\"}}", "x".repeat(100_000));
    let v = serde_json::json!({
        "id": "evt_1", "route": "r", "task_id": null, "source": null, "origin": "callback", "status": "delivered",
        "body": body, "subscribers": [],
    });
    let out = render_event(&v);
    assert!(out.len() < 20_000, "{} bytes printed", out.len());
    assert!(
        out.contains(&format!(
            "… ({} bytes in all, the first 16384 shown: `hookrelay --json event evt_1` prints it whole)",
            body.len()
        )),
        "{}",
        &out[out.len() - 300..]
    );
    let small = serde_json::json!({"id": "evt_2", "body": "{\"a\":1}", "subscribers": []});
    assert!(render_event(&small).contains("body:      {\"a\":1}\n"));
}
