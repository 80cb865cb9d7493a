//! Human tables for the admin subcommands (`--json` prints the API's answer instead).

use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Render rows as an aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn render_events(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let subs = e["subscribers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| format!("{}={}", s(&x["name"]), s(&x["state"])))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                s(&e["id"]),
                s(&e["received_at"]),
                s(&e["route"]),
                s(&e["status"]),
                s(&e["size"]),
                subs,
            ]
        })
        .collect();
    table(&["ID", "RECEIVED", "ROUTE", "STATUS", "BYTES", "SUBSCRIBERS"], &rows)
}

pub fn render_event(v: &Value) -> String {
    let mut out = format!(
        "id:        {}\nroute:     {}\nreceived:  {}\nsource:    {}\nstatus:    {}\ntype:      {}\n",
        s(&v["id"]),
        s(&v["route"]),
        s(&v["received_at"]),
        s(&v["source"]),
        s(&v["status"]),
        s(&v["content_type"])
    );
    out.push_str(&format!("body:      {}\n\n", s(&v["body"])));
    let mut rows = Vec::new();
    for sub in v["subscribers"].as_array().into_iter().flatten() {
        let attempts = sub["attempts"].as_array().cloned().unwrap_or_default();
        if attempts.is_empty() {
            rows.push(vec![
                s(&sub["name"]),
                s(&sub["state"]),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for a in attempts {
            let result = if a["status"].is_null() {
                s(&a["error"])
            } else {
                format!("HTTP {}", s(&a["status"]))
            };
            rows.push(vec![
                s(&sub["name"]),
                s(&sub["state"]),
                s(&a["attempt"]),
                s(&a["at"]),
                format!("{}ms", s(&a["duration_ms"])),
                result,
            ]);
        }
    }
    out.push_str(&table(
        &["SUBSCRIBER", "STATE", "ATTEMPT", "AT", "TOOK", "RESULT"],
        &rows,
    ));
    let media = media_rows(&v["media"]);
    if !media.is_empty() {
        out.push_str("\nmedia:\n");
        out.push_str(&table(&MEDIA_HEADERS, &media));
    }
    out
}

fn media_rows(items: &Value) -> Vec<Vec<String>> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let result = match m["state"].as_str() {
                Some("stored") => format!("{} bytes  {}", s(&m["size"]), s(&m["location"])),
                _ => s(&m["error"]),
            };
            vec![s(&m["state"]), s(&m["url"]), s(&m["sha256"]), s(&m["attempts"]), result]
        })
        .collect()
}

const MEDIA_HEADERS: [&str; 5] = ["STATE", "URL", "SHA256", "TRIES", "RESULT"];

/// `hookrelay media EVENT`
pub fn render_event_media(v: &Value) -> String {
    let rows = media_rows(&v["media"]);
    if rows.is_empty() {
        return format!("{}: no media\n", s(&v["event"]));
    }
    table(&MEDIA_HEADERS, &rows)
}

/// `hookrelay media`
pub fn render_media(v: &Value) -> String {
    let mut out = format!(
        "store:     {}\nwaiting:   {}\nin flight: {}\n\nrecent:\n",
        s(&v["store"]),
        s(&v["queue_depth"]),
        s(&v["in_flight"])
    );
    out.push_str(&table(&MEDIA_HEADERS, &media_rows(&v["recent"])));
    out.push_str("\nwaiting:\n");
    out.push_str(&table(&MEDIA_HEADERS, &media_rows(&v["waiting"])));
    out
}

pub fn render_dead_letters(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                s(&d["event"]),
                s(&d["subscriber"]),
                s(&d["at"]),
                s(&d["attempts"]),
                s(&d["last_error"]),
            ]
        })
        .collect();
    table(&["EVENT", "SUBSCRIBER", "GAVE UP", "ATTEMPTS", "LAST ERROR"], &rows)
}

pub fn render_subscribers(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["subscribers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            vec![
                s(&x["name"]),
                s(&x["route"]),
                s(&x["state"]),
                s(&x["queue_depth"]),
                s(&x["in_flight"]),
                s(&x["oldest_pending_seconds"]),
                s(&x["dead_letters"]),
                s(&x["url"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ROUTE",
            "STATE",
            "QUEUED",
            "IN FLIGHT",
            "OLDEST(S)",
            "DEAD",
            "URL",
        ],
        &rows,
    )
}
