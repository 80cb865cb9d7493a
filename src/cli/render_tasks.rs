//! `hookrelay tasks`: expected tasks as a table, or one task in full.

use serde_json::Value;

use super::render::{s, table};

/// `GET /api/tasks` as a table, newest first.
pub fn render_tasks(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                s(&t["task_id"]),
                s(&t["route"]),
                s(&t["state"]),
                s(&t["registered_at"]),
                s(&t["polls"]),
                s(&t["provider_state"]),
                s(&t["event"]),
                s(&t["last_error"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no tasks\n".into();
    }
    let mut out = table(
        &[
            "TASK",
            "ROUTE",
            "STATE",
            "REGISTERED",
            "POLLS",
            "PROVIDER",
            "EVENT",
            "LAST ERROR",
        ],
        &rows,
    );
    // Say so when more tasks match than are listed.
    if v["more"] == true {
        out.push_str(&format!(
            "showing the newest {}; more tasks match (--limit N for more)\n",
            rows.len()
        ));
    }
    out
}

/// `GET /api/tasks/{id}`: one field a line.
pub fn render_task(v: &Value) -> String {
    let mut out = String::new();
    for key in [
        "task_id",
        "route",
        "state",
        "registered_at",
        "updated_at",
        "next_poll_at",
        "polls",
        "provider_state",
        "event",
        "last_error",
    ] {
        out.push_str(&format!("{key:<15} {}\n", s(&v[key])));
    }
    out
}
