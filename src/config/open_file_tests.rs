//! The warning about a config file every user can read holding a secret
//! inline (`validate/open_file.rs`): which secrets count, which files.

use super::tests::{minimal, SHIPPED};
use super::Config;

#[test]
fn a_file_every_user_can_read_with_a_secret_inline_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let secret = "a-real-route-token-4f8e1c0b9d7a";
    let check = |text: &str, mode: u32| {
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let c = Config::load(&file).unwrap();
        c.warnings
            .into_iter()
            .find(|w| w.contains("every user of this machine can read"))
    };
    let inline = minimal(&format!("tokens = [\"{secret}\"]")).replace("allow_anyone = true\n", "");
    let w = check(&inline, 0o644).expect("warned");
    assert!(
        w.contains("key `routes[0].tokens[0]`") && w.contains("mode 644") && !w.contains(secret),
        "{w}"
    );
    assert_eq!(check(&inline, 0o640), None, "not for others");
    // The shipped config as it is (its examples are known to everyone
    // anyway), and secrets from elsewhere: nothing to warn about.
    assert_eq!(check(SHIPPED, 0o644), None);
    std::env::set_var("HOOKRELAY_TEST_OPEN_FILE", secret);
    let from_env = minimal("tokens = [{ env = \"HOOKRELAY_TEST_OPEN_FILE\" }]").replace("allow_anyone = true\n", "");
    assert_eq!(check(&from_env, 0o644), None);
}

#[test]
fn open_file_warning_covers_headers_and_url_passwords_not_filters_or_closed_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = inner.join("c.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&file).unwrap();
        c.warnings
            .into_iter()
            .find(|w| w.contains("every user of this machine can read"))
    };
    let sub = |extra: &str| {
        minimal("tokens = [{ env = \"HOME\" }]")
            .replace("allow_anyone = true\n", "")
            .replace("url = \"http://127.0.0.1:9000/\"", extra)
    };
    let w = check(&sub(
        "url = \"http://127.0.0.1:9000/\"\nheaders = { Authorization = \"Bearer sk-live-9f3e\" }",
    ));
    let w = w.expect("a header's value");
    assert!(
        w.contains("key `routes[0].subscribers[0].headers.Authorization`") && !w.contains("sk-live"),
        "{w}"
    );
    let w = check(&sub("url = \"http://app:pw-7c1d@127.0.0.1:9000/\"")).expect("a password in the URL");
    assert!(
        w.contains("key `routes[0].subscribers[0].url`") && !w.contains("pw-7c1d"),
        "{w}"
    );
    assert_eq!(
        check(&sub(
            "url = \"http://127.0.0.1:9000/\"\nfilter = { \"/token\" = \"x\" }"
        )),
        None
    );
    assert_eq!(
        check(&sub("url = \"http://a@127.0.0.1:9000/\"")),
        None,
        "a user, no password"
    );
    // A directory on the way that others cannot pass keeps them out.
    let text = sub("url = \"http://app:pw-7c1d@127.0.0.1:9000/\"");
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(check(&text), None);
}
