//! `hookrelay forward --wait` is a long-poll: `0s` (or any wait under a
//! second) would make an idle forwarder ask the relay again at once, in a
//! loop. It is refused before anything is sent, naming the flag, as is a
//! `--timeout` no subscriber's lease can cover. So is a URL
//! with a fragment (`#…`), which would be dropped silently.

/// `hookrelay forward URL --to TO` with a token file and `extra`
/// arguments: its exit code and what it wrote to stderr. A forwarder that
/// took them would run until stopped: waited on for 10 s at most, then
/// killed (`None`).
fn forward_run(url: &str, to: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["forward", url, "--to", to, "--token-file", token.to_str().unwrap()])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    (
        status.and_then(|s| s.code()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `forward` to a relay that is not there with `flag value`.
fn forward_with(flag: &str, value: &str) -> (Option<i32>, String) {
    forward_run("http://127.0.0.1:9/pull/laptop", "http://127.0.0.1:9/", &[flag, value])
}

#[test]
fn forward_refuses_a_wait_that_would_poll_in_a_loop() {
    for wait in ["0s", "0", "200ms"] {
        let (code, err) = forward_with("--wait", wait);
        assert_eq!(code, Some(2), "--wait {wait}: {err}");
        assert!(err.contains("--wait") && err.contains("at least 1s"), "{err}");
    }
}

/// `--timeout` must stay below the subscriber's lease (at most an hour):
/// `0s` and an hour or more are refused, naming the flag; before, any
/// length was taken (a `30m` typed for `30s` held each message that long).
#[test]
fn forward_refuses_a_timeout_no_lease_can_cover() {
    for (timeout, says) in [
        ("0s", "greater than 0"),
        ("1h", "must be under 1h"),
        ("3days", "must be under 1h"),
    ] {
        let (code, err) = forward_with("--timeout", timeout);
        assert_eq!(code, Some(2), "--timeout {timeout}: {err}");
        assert!(err.contains("--timeout") && err.contains(says), "{err}");
    }
}

#[test]
fn forward_refuses_a_url_with_a_fragment() {
    for (url, to, which) in [
        ("http://127.0.0.1:9/pull/laptop#x", "http://127.0.0.1:9/", "relay URL"),
        (
            "http://127.0.0.1:9/pull/laptop",
            "http://127.0.0.1:9/hooks#x",
            "--to URL",
        ),
    ] {
        let (code, err) = forward_run(url, to, &[]);
        assert_eq!(code, Some(2), "{url} --to {to}: {err}");
        assert!(err.contains(which) && err.contains("no fragment"), "{err}");
    }
}
