//! The admin subcommands from a shell, on a config whose admin token is a
//! systemd credential (the .deb's and `hookrelay init --systemd`'s layout):
//! without `CREDENTIALS_DIRECTORY`, read from the `secrets/` beside the
//! config file, the file the unit's `LoadCredential=` loads, so `sudo
//! hookrelay --config /etc/hookrelay/config.toml status` needs no
//! environment; `CREDENTIALS_DIRECTORY` still wins when set. (`check-config`
//! likewise: `packaging::init_systemd_keeps_the_secrets_out_of_the_config`.)

use std::path::Path;
use std::process::Command;

use crate::common::*;

const TOKEN: &str = "adm-credential-token-81f3";

/// The binary with `args` and `CREDENTIALS_DIRECTORY` as given; success,
/// stdout, stderr.
async fn run(args: Vec<String>, credentials: Option<&Path>) -> (bool, String, String) {
    run_in(None, args, credentials).await
}

/// [`run`] in the working directory `cwd`.
async fn run_in(cwd: Option<&Path>, args: Vec<String>, credentials: Option<&Path>) -> (bool, String, String) {
    let credentials = credentials.map(Path::to_path_buf);
    let cwd = cwd.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
        cmd.args(&args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("HOOKRELAY_CONFIG")
            .env_remove("HOOKRELAY_ADMIN_TOKEN");
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        if let Some(dir) = credentials {
            cmd.env("CREDENTIALS_DIRECTORY", dir);
        }
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

/// A relay whose admin API wants [`TOKEN`]: its directory, subscriber and handle.
async fn relay() -> (tempfile::TempDir, Sub, hookrelay::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token(TOKEN)
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    (dir, sub, h)
}

fn secret_file(dir: &Path, value: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin-token"), format!("{value}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_credential_is_read_from_the_secrets_beside_the_config() {
    let (_dir, _sub, h) = relay().await;
    // The operator's config: the admin API's address, its token a credential.
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"{}\"\ntoken = {{ credential = \"admin-token\" }}\n",
            h.admin_addr
        ),
    )
    .unwrap();
    let status = || vec!["--config".to_string(), config.display().to_string(), "status".into()];

    // No secrets/ beside it and no CREDENTIALS_DIRECTORY: how to set it.
    let (ok, _, err) = run(status(), None).await;
    assert!(
        !ok && err.contains("CREDENTIALS_DIRECTORY") && err.contains("admin.token"),
        "{err}"
    );

    // The secrets/ beside it: read without the environment (refused before).
    secret_file(&etc.path().join("secrets"), TOKEN);
    let (ok, out, err) = run(status(), None).await;
    assert!(ok, "{err}");
    assert!(out.contains("routes:") && out.contains("ready"), "{out}");

    // CREDENTIALS_DIRECTORY set but empty (a script's unset variable) is
    // unset: not the working directory (the change review, stop 63).
    let (ok, _, err) = run(status(), Some(Path::new(""))).await;
    assert!(ok, "{err}");

    // The token read is the one sent: a wrong one there is refused by the API.
    secret_file(&etc.path().join("secrets"), "not-the-admin-token");
    let (ok, _, err) = run(status(), None).await;
    assert!(!ok && err.contains("refused the token from admin.token"), "{err}");

    // CREDENTIALS_DIRECTORY, when set, is where credentials are read.
    let creds = etc.path().join("creds");
    secret_file(&creds, TOKEN);
    let (ok, _, err) = run(status(), Some(&creds)).await;
    assert!(ok, "{err}");
    h.shutdown().await;
}

/// The admin token of a config nobody named (here `./config.toml`; on a
/// packaged install `/etc/hookrelay/config.toml`, which a shell's command
/// falls back to) is not sent to another admin API named with `--admin`
/// (change review, stop 63: `sudo hookrelay --admin http://relay2:9090
/// status` sent this relay's token there); to its own, at its address, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_config_nobody_named_goes_only_to_its_own_admin_api() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, _sub, h) = relay().await;
    let here = tempfile::tempdir().unwrap();
    std::fs::write(
        here.path().join("config.toml"),
        format!("[admin]\nlisten = \"{}\"\ntoken = \"{TOKEN}\"\n", h.admin_addr),
    )
    .unwrap();
    // Another admin API: whatever it is sent is kept.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    let heard = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let keep = heard.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = other.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = c.read(&mut buf).await.unwrap_or(0);
            keep.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = c
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let status = |admin: &str| vec!["--admin".to_string(), admin.to_string(), "status".into()];
    let (ok, _, err) = run_in(Some(here.path()), status(&other_url), None).await;
    assert!(
        !ok && err.contains("is not the admin API of") && err.contains("--token"),
        "{err}"
    );
    assert!(
        !heard.lock().unwrap().contains(TOKEN),
        "the token was sent to {other_url}"
    );
    // With --token: that token, to where --admin says.
    let mut args = status(&other_url);
    args.splice(0..0, ["--token".to_string(), "other-token".into()]);
    let (ok, _, _) = run_in(Some(here.path()), args, None).await;
    assert!(!ok);
    let got = heard.lock().unwrap().clone();
    assert!(got.contains("Bearer other-token") && !got.contains(TOKEN), "{got}");
    // Its own admin API, at its address: the token goes; named otherwise
    // (`localhost` may resolve to another loopback listener first), refused.
    let (ok, out, err) = run_in(Some(here.path()), status(&format!("http://{}", h.admin_addr)), None).await;
    assert!(ok && out.contains("routes:"), "{err}");
    let port = h.admin_addr.port();
    let (ok, _, err) = run_in(Some(here.path()), status(&format!("http://localhost:{port}")), None).await;
    assert!(!ok && err.contains("is not the admin API of"), "{err}");
    h.shutdown().await;
}
