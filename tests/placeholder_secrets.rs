//! The shipped `config.toml` runs as it is on loopback; copied to a server
//! and given a public `listen`, its example route token (`change-me`, also in
//! the README) and its example signing secret would authenticate nothing.
//! `check-config` (and so `run` and a reload, which validate the same way)
//! refuses them there, naming the file, the key and the line, never the value.

use crate::common;

use common::*;

const SHIPPED: &str = include_str!("../config.toml");

fn check(dir: &std::path::Path, text: &str) -> std::process::Output {
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    cli_output(&["check-config", "-c", file.to_str().unwrap()])
}

#[test]
fn the_shipped_example_secrets_are_refused_on_a_public_listener() {
    let dir = tempfile::tempdir().unwrap();
    let local = "listen = [\"127.0.0.1:8080\"]";
    assert!(SHIPPED.contains(local));
    let public = SHIPPED.replace(local, "listen = [\"127.0.0.1:8080\", \"0.0.0.0:8443\"]");

    let out = check(dir.path(), &public);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("config.toml")
            && err.contains("routes[0].tokens[0]")
            && err.contains("line 70")
            && err.contains("example token")
            && err.contains("0.0.0.0:8443")
            && !err.contains("change-me"),
        "{err}"
    );

    let (ok, token, _) = cli(&["gen-token"]);
    assert!(ok);
    let public = public.replace("\"change-me\"", &format!("{:?}", token.trim()));
    let out = check(dir.path(), &public);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("routes[0].subscribers[0].secret")
            && err.contains("line 91")
            && err.contains("example signing secret")
            && !err.contains("MfKQ9r8"),
        "{err}"
    );

    let (ok, secret, _) = cli(&["gen-secret"]);
    assert!(ok);
    let public = public.replace("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", secret.trim());
    let out = check(dir.path(), &public);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // On loopback only, as shipped, they stay allowed.
    let out = check(dir.path(), SHIPPED);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
