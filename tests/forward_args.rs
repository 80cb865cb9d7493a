//! `hookrelay forward --wait` is a long-poll: `0s` (or any wait under a
//! second) would make an idle forwarder ask the relay again at once, in a
//! loop. It is refused before anything is sent, naming the flag.

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
