//! `hookrelay forward --wait` is a long-poll: `0s` (or any wait under a
//! second) would make an idle forwarder ask the relay again at once, in a
//! loop. It is refused before anything is sent, naming the flag, as is a
//! `--timeout` no subscriber's lease can cover. So is a URL
//! with a fragment (`#…`), which would be dropped silently.

use crate::common;

use common::*;

#[test]
fn forward_refuses_a_wait_that_would_poll_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    for wait in ["0s", "0", "200ms"] {
        let out = cli_output(&[
            "forward",
            "http://127.0.0.1:9/pull/laptop",
            "--to",
            "http://127.0.0.1:9/",
            "--token-file",
            token.to_str().unwrap(),
            "--wait",
            wait,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--wait {wait}: {err}");
        assert!(err.contains("--wait") && err.contains("at least 1s"), "{err}");
    }
}

/// `--timeout` must stay below the subscriber's lease (at most an hour):
/// `0s` and an hour or more are refused, naming the flag; before, any
/// length was taken (a `30m` typed for `30s` held each message that long).
#[test]
fn forward_refuses_a_timeout_no_lease_can_cover() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    for (timeout, says) in [
        ("0s", "greater than 0"),
        ("1h", "must be under 1h"),
        ("3days", "must be under 1h"),
    ] {
        // Accepted, it would run (against a relay that is not there) for
        // good: waited on for 10 s at most.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args([
                "forward",
                "http://127.0.0.1:9/pull/laptop",
                "--to",
                "http://127.0.0.1:9/",
                "--token-file",
                token.to_str().unwrap(),
                "--timeout",
                timeout,
            ])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > std::time::Duration::from_secs(10) {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("--timeout {timeout} was taken");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--timeout {timeout}: {err}");
        assert!(err.contains("--timeout") && err.contains(says), "{err}");
    }
}

#[test]
fn forward_refuses_a_url_with_a_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    for (url, to, which) in [
        ("http://127.0.0.1:9/pull/laptop#x", "http://127.0.0.1:9/", "relay URL"),
        (
            "http://127.0.0.1:9/pull/laptop",
            "http://127.0.0.1:9/hooks#x",
            "--to URL",
        ),
    ] {
        // A forwarder that accepted it would run until stopped: give it 10 s.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["forward", url, "--to", to, "--token-file", token.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
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
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{url} --to {to}: {err}");
        assert!(err.contains(which) && err.contains("no fragment"), "{err}");
    }
}
