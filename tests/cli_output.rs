//! What the admin subcommands print. It cannot act on the operator's
//! terminal: a callback from the public internet puts ESC sequences (OSC 52
//! clipboard write, window title, line erase and carriage return to forge a
//! row), a C1 CSI and a bidirectional override in its task id and in its
//! body; the real binary's `events`, `event` and `--json` output shows them
//! escaped. And a daemon it cannot reach is named with the reason (refused,
//! no such host), not only "client error (Connect)".

use crate::common;

use std::time::Duration;

use common::*;

/// Characters a terminal acts on (or that reorder what it shows), other
/// than the line breaks and tabs of the output's own layout.
fn acting(out: &str) -> Vec<char> {
    out.chars()
        .filter(|&c| {
            (c.is_control() && !matches!(c, '\n' | '\t'))
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callbacks_control_characters_reach_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    // Bodies are taken as they come (JSON or not).
    let cfg = TestConfig::new(dir.path())
        .edit_route("t", |r| r.dedupe_key([]).json(false))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let (ingest, a) = (h.ingest_addrs[0], h.admin_addr);
    let hostile = "t1\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}]0;pwned\u{7}\u{1b}[2K\r\u{9b}2J\u{202e}FORGED";
    // JSON: the task id holds the characters once parsed.
    let in_json = serde_json::json!({"code": 200, "data": {"task_id": hostile}}).to_string();
    let by_task = accepted(ingest, &in_json).await;
    // Raw in the body itself (not JSON then, shown as received).
    let raw = format!("{{\"code\":200,\n\"note\":\"{hostile}\"}}");
    let (s, _, b) = post(ingest, "/hooks/t?token=tok", &[("content-type", "text/plain")], raw).await;
    assert_eq!(s, 200, "{b:?}");
    let by_body = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    sub.wait_for(Duration::from_secs(5), "the deliveries", |r| r.len() == 2)
        .await;
    let base = format!("http://{a}");
    for args in [
        vec!["events"],
        vec!["event", &by_task],
        vec!["event", &by_body],
        vec!["events", "--json"],
        vec!["event", &by_body, "--json"],
    ] {
        let mut all = vec!["--admin", base.as_str()];
        all.extend(args.iter().copied());
        let (ok, out, err) = cli_async(all.iter().map(|s| s.to_string()).collect()).await;
        assert!(ok, "{args:?}: {err}");
        assert!(acting(&out).is_empty(), "{args:?} prints {:?}:\n{out}", acting(&out));
        assert!(acting(&err).is_empty(), "{args:?}: {err:?}");
        // Shown, escaped: the operator sees what the callback tried.
        let shown = ["\\u{1b}]52;c;cHduZWQ=\\u{7}", "\\u001b]52;c;cHduZWQ=\\u0007"];
        assert!(shown.iter().any(|s| out.contains(s)), "{args:?}:\n{out}");
        assert!(out.contains("FORGED"), "{args:?}:\n{out}");
        if args.contains(&"--json") {
            assert!(out.contains("\\u009b2J\\u202eFORGED"), "{out}");
        } else {
            // Not a row of its own: the carriage return is shown, not obeyed.
            assert!(out.contains("\\r\\u{9b}2J\\u{202e}FORGED"), "{out}");
        }
    }
    // The body keeps its own lines.
    let (_, out, _) = cli_async(vec!["--admin".into(), base.clone(), "event".into(), by_body]).await;
    assert!(out.contains("body:      {\"code\":200,\n\"note\""), "{out}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_admin_api_is_named_with_the_reason() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let (ok, _, err) = cli_async(vec!["--admin".into(), base.clone(), "status".into()]).await;
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("cannot reach the daemon's admin API at {base}")),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    let (ok, _, err) = cli_async(vec![
        "--admin".into(),
        "http://no-such-host.invalid:9090".into(),
        "status".into(),
    ])
    .await;
    assert!(
        !ok && err.contains("cannot reach") && err.contains("dns error"),
        "{err}"
    );
}
