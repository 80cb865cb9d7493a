//! Human tables and summaries for the admin subcommands (`--json` prints the API's answer instead).

use serde_json::Value;

/// A JSON value as a table cell (`-` for null, strings unquoted, control
/// characters escaped: much of it comes from the public internet).
pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => super::terminal::cell(s).into_owned(),
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
                s(&e["task_id"]),
                s(&e["status"]),
                s(&e["size"]),
                subs,
            ]
        })
        .collect();
    let (more, cut) = (v["more"] == true, v["cut"] == true);
    let next = format!("--before {} for the next page", s(&v["next_before"]));
    if rows.is_empty() {
        // A walk stopped before the log's oldest (10,000 events left out; in
        // cluster mode 10,000 messages a route), none matching in it.
        return match more {
            true => format!("no events in this page; older ones may match ({next})\n"),
            false => "no events\n".into(),
        };
    }
    let mut out = table(
        &["ID", "RECEIVED", "ROUTE", "TASK", "STATUS", "BYTES", "SUBSCRIBERS"],
        &rows,
    );
    // Say so when older ones match too; `before` is the page asked for (the CLI adds it).
    if more {
        let shown = match v["before"].as_str() {
            Some(b) => format!("showing {} events older than {b}", rows.len()),
            None => format!("showing the newest {} events", rows.len()),
        };
        // A walk stopped at the store's budget: a larger --limit does not reach further.
        match cut {
            true => out.push_str(&format!("{shown}; older ones may match ({next})\n")),
            false => out.push_str(&format!("{shown}; older ones match too ({next}, or --limit N)\n")),
        }
    }
    out
}

/// Bytes of a body `hookrelay event` prints; `--json` prints it whole.
const BODY_SHOWN: usize = 16 * 1024;

pub fn render_event(v: &Value) -> String {
    // A result recovered by polling the provider has no sender: say where it came from.
    let source = match v["origin"].as_str() {
        Some("poll") => "polled from the provider (origin: poll)".to_string(),
        _ => s(&v["source"]),
    };
    let mut out = format!(
        "id:        {}\nroute:     {}\ntask:      {}\nreceived:  {}\nsource:    {}\nstatus:    {}\ntype:      {}\n",
        s(&v["id"]),
        s(&v["route"]),
        s(&v["task_id"]),
        s(&v["received_at"]),
        source,
        s(&v["status"]),
        s(&v["content_type"])
    );
    // As received, its lines kept (every other control character escaped);
    // a large one in part (a video job's result may carry megabytes).
    let body = match v["body"].as_str() {
        Some(b) if b.len() > BODY_SHOWN => {
            let cut = (0..=BODY_SHOWN).rev().find(|i| b.is_char_boundary(*i)).unwrap_or(0);
            let unit = match v["body_encoding"].as_str() {
                Some("base64") => "base64 characters",
                _ => "bytes",
            };
            format!(
                "{}\n… ({} {unit} in all, the first {BODY_SHOWN} shown: `hookrelay --json event {}` prints it whole)",
                super::terminal::lines(&b[..cut]),
                b.len(),
                s(&v["id"])
            )
        }
        Some(b) => super::terminal::lines(b).into_owned(),
        None => s(&v["body"]),
    };
    // A body that is not UTF-8 comes as base64: said, with its own size.
    let label = match (v["body_encoding"].as_str(), v["body"].as_str()) {
        (Some("base64"), Some(b)) => {
            use base64::Engine;
            let size = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_or(0, |d| d.len());
            format!("body (base64, not UTF-8 text; {size} bytes as received):\n           ")
        }
        _ => "body:      ".to_string(),
    };
    out.push_str(&format!("{label}{body}\n\n"));
    let mut rows = Vec::new();
    for sub in v["subscribers"].as_array().into_iter().flatten() {
        let attempts = sub["attempts"].as_array().cloned().unwrap_or_default();
        let state = match sub["waiting_for_media"].as_bool() {
            Some(true) => format!("{} (waiting for its media)", s(&sub["state"])),
            _ => s(&sub["state"]),
        };
        if attempts.is_empty() {
            rows.push(vec![
                s(&sub["name"]),
                state.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        // The delivery's state once, on its first row: it is not each attempt's.
        for (i, a) in attempts.into_iter().enumerate() {
            let result = if a["status"].is_null() && a["error"].is_null() {
                // A pull subscriber's acknowledgement: the relay made no request.
                "acknowledged by the pull client".to_string()
            } else if a["status"].is_null() {
                s(&a["error"])
            } else if !a["error"].is_null() {
                // A pull hand-back with the private service's status: the
                // relay sent nothing itself.
                format!("{} (local HTTP {})", s(&a["error"]), s(&a["status"]))
            } else {
                format!("HTTP {}", s(&a["status"]))
            };
            rows.push(vec![
                if i == 0 { s(&sub["name"]) } else { String::new() },
                if i == 0 { state.clone() } else { String::new() },
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

/// `hookrelay media ID --retry`
pub fn render_media_retry(v: &Value) -> String {
    let n = v["retried"].as_u64().unwrap_or(0);
    let head = match n {
        0 => format!("{}: no failed media URL to retry\n", s(&v["event"])),
        1 => format!(
            "{}: 1 failed media URL archived again; once it is final, `hookrelay replay {}` sends the event to its after_archive subscribers with the new result\n",
            s(&v["event"]),
            s(&v["event"])
        ),
        n => format!(
            "{}: {n} failed media URLs archived again; once they are final, `hookrelay replay {}` sends the event to its after_archive subscribers with the new results\n",
            s(&v["event"]),
            s(&v["event"])
        ),
    };
    head + &render_event_media(v)
}

/// `hookrelay media`
pub fn render_media(v: &Value) -> String {
    // The queue counts the URLs being downloaded too.
    let mut out = format!(
        "store:     {}\npending:   {} ({} downloading now)\n\nrecent:\n",
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
    if rows.is_empty() {
        return "no dead letters\n".into();
    }
    let mut out = table(&["EVENT", "SUBSCRIBER", "GAVE UP", "ATTEMPTS", "LAST ERROR"], &rows);
    // The newest are listed; say so when there are more.
    if let Some(total) = v["total"].as_u64().filter(|t| *t > rows.len() as u64) {
        out.push_str(&format!(
            "showing the newest {} of {total} dead letters (--limit N for more)\n",
            rows.len()
        ));
    }
    out
}

/// Where a subscriber's messages go: its URL, or for a pull subscriber when
/// and from where it last pulled.
fn target(x: &Value) -> String {
    if x["kind"] != "pull" {
        return s(&x["url"]);
    }
    match (&x["last_pull_at"], &x["last_pull_from"]) {
        (Value::Null, _) => "pull: never pulled since start".into(),
        (_, from) if x["state"] == "pulling" => format!("pull: waiting now (from {})", s(from)),
        (_, from) => format!("pull: {}s ago from {}", s(&x["seconds_since_pull"]), s(from)),
    }
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
                s(&x["kind"]),
                s(&x["state"]),
                s(&x["queue_depth"]),
                s(&x["in_flight"]),
                s(&x["oldest_pending_seconds"]),
                s(&x["dead_letters"]),
                target(x),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ROUTE",
            "KIND",
            "STATE",
            "QUEUED",
            "IN FLIGHT/LEASED",
            "OLDEST(S)",
            "DEAD",
            "URL / LAST PULL",
        ],
        &rows,
    )
}

/// A replay's answer: whom it was queued for, and for whom it already was
/// (still to be sent, or being sent: not sent twice).
pub fn render_replay(v: &Value) -> String {
    let names = |k: &str| {
        v[k].as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let id = v["id"].as_str().unwrap_or("?");
    let (queued, pending) = (names("queued"), names("already_pending"));
    let mut out = match queued.is_empty() {
        false => format!("queued {id} for {queued}\n"),
        true => format!("nothing queued for {id}\n"),
    };
    if !pending.is_empty() {
        out += &format!("already pending for {pending}: being sent or due now, not queued twice\n");
    }
    let filtered = names("filtered");
    if !filtered.is_empty() {
        out += &format!("skipped again for {filtered}: its filter does not match this event\n");
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
