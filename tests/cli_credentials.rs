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
    let credentials = credentials.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
        cmd.args(&args).env_remove("CREDENTIALS_DIRECTORY");
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

fn secret_file(dir: &Path, value: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin-token"), format!("{value}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_credential_is_read_from_the_secrets_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token(TOKEN)
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
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
