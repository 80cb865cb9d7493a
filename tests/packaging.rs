//! Installing it (the design's "Console and packaging", packaging half):
//! `hookrelay init` with the real binary (a private config with fresh secrets
//! that runs, takes a callback at the printed URL and delivers it signed; the
//! `--systemd` layout with the secrets as credentials; no overwriting), and
//! `generate-assets` (man pages and completions covering every subcommand of
//! the clap definition, the packaged config). The .deb itself is built and
//! installed by packaging/check-deb.sh in `.ci/run`; the assets it ships are
//! checked here against Cargo.toml and build-deb.sh (the forward unit).

use crate::common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::CommandFactory;
use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn table(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

/// (route token, subscriber secret, admin token) of an inline config `init` wrote.
fn secrets(cfg: &toml::Table) -> (String, String, String) {
    let route = &cfg["routes"][0];
    (
        route["tokens"][0].as_str().unwrap().to_string(),
        route["subscribers"][0]["secret"].as_str().unwrap().to_string(),
        cfg["admin"]["token"].as_str().unwrap().to_string(),
    )
}

/// `init` on loopback port 0 with the subscriber at `url`; its stdout.
async fn init(dir: &Path, url: &str, more: &[&str]) -> String {
    let args: Vec<String> = ["init", "--dir", dir.to_str().unwrap()]
        .iter()
        .chain(&[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--subscriber-url",
            url,
        ])
        .chain(more)
        .map(|s| s.to_string())
        .collect();
    let (ok, out, err) = cli_async(args).await;
    assert!(ok, "init failed: {err}");
    out
}

/// The binary with extra environment; success, stdout, stderr.
fn cli_env(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    cmd.args(args).env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_private_config_that_takes_callbacks_and_delivers_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay"); // init creates it
    let sub = Sub::ok().await;
    let out = init(&dir, &sub.url(), &[]).await;
    let config = dir.join("config.toml");
    assert_eq!(mode(&config), 0o600, "the config holds secrets");
    let (token, secret, admin_token) = secrets(&table(&config));
    assert!(secret.starts_with("whsec_") && token.len() == 64 && admin_token.len() == 64);
    assert_ne!(token, admin_token);

    // The one secret printed is the route token, in the URL for the provider.
    let url = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http://"))
        .unwrap_or_else(|| panic!("no callback URL printed: {out}"));
    assert_eq!(url, format!("http://127.0.0.1:0/hooks/main?token={token}"));
    assert!(!out.contains(&secret) && !out.contains(&admin_token), "{out}");
    assert!(
        out.contains("hookrelay run --config") && out.contains("webhook-signature"),
        "{out}"
    );

    let (ok, checked, err) = cli(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(ok && checked.contains("OK"), "{err}");

    // The daemon runs with it, takes a callback at the printed URL, and the
    // subscriber gets it signed with the generated secret.
    let bin = Bin::start(&config, &[]);
    let path = url.trim_start_matches("http://127.0.0.1:0");
    let body = r#"{"data":{"task_id":"init-1"},"code":200}"#;
    let (status, _, answer) = post(bin.addr, path, &[("content-type", "application/json")], body).await;
    assert_eq!(status, 200, "{answer:?}");
    let (wrong, _, _) = post(bin.addr, "/hooks/main?token=nope", &[], body).await;
    assert_eq!(wrong, 401);
    let got = sub
        .wait_for(Duration::from_secs(15), "the delivery", |r| !r.is_empty())
        .await;
    let d = &got[0];
    assert_eq!(&d.body[..], body.as_bytes());
    assert!(
        oracle::standard_webhooks_verify(
            &secret,
            d.header("webhook-id"),
            d.header("webhook-timestamp"),
            &d.body,
            d.header("webhook-signature"),
        ),
        "not signed with the generated secret: {:?}",
        d.headers
    );

    // The admin token protects the admin API; the CLI reads it from the file
    // (the address too, but the file says port 0).
    let (s, _) = admin(bin.admin, "GET", "/api/subscribers").await;
    assert_eq!(s, 401);
    let base = format!("http://{}", bin.admin);
    let args = ["--config", config.to_str().unwrap(), "--admin", &base, "subscribers"];
    let (ok, listed, err) = cli_async(args.map(String::from).to_vec()).await;
    assert!(ok && listed.contains("app"), "{err}");
    assert!(!bin.log_text().contains(&token), "the route token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_to_overwrite_unless_forced_and_every_run_has_new_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    init(tmp.path(), "http://127.0.0.1:9/", &[]).await;
    let first = std::fs::read_to_string(&config).unwrap();

    let dir = tmp.path().to_str().unwrap().to_string();
    let out = cli_output(&["init", "--dir", &dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), first, "the file was touched");
    // A --dir that is a file is named as the problem (not store.path under it).
    let out = cli_output(&["init", "--dir", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--dir") && err.contains("it is a file, not a directory"),
        "{err}"
    );
    assert!(!err.contains("store.path"), "{err}");

    // --force replaces it, with new secrets and the private mode even when the
    // old file was readable by others.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    init(tmp.path(), "http://127.0.0.1:9/", &["--force"]).await;
    assert_eq!(mode(&config), 0o600);
    let (a, b) = (secrets(&first.parse().unwrap()), secrets(&table(&config)));
    assert!(a.0 != b.0 && a.1 != b.1 && a.2 != b.2, "the secrets were not renewed");

    let tokens: HashSet<String> = (0..3).map(|_| cli(&["gen-token"]).1.trim().to_string()).collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens
        .iter()
        .all(|t| t.len() == 64 && t.bytes().all(|c| c.is_ascii_hexdigit())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_systemd_keeps_the_secrets_out_of_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init(tmp.path(), "http://127.0.0.1:9/", &["--systemd"]).await;
    let (config, secrets_dir) = (tmp.path().join("config.toml"), tmp.path().join("secrets"));
    assert_eq!(mode(&config), 0o644, "a dynamic user must read it");
    assert_eq!(mode(&secrets_dir), 0o700);
    let text = std::fs::read_to_string(&config).unwrap();
    for name in ["route-token", "subscriber-secret", "admin-token"] {
        let file = secrets_dir.join(name);
        assert_eq!(mode(&file), 0o600);
        let value = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(value.trim()), "{name} is in the config");
        assert!(text.contains(&format!("{{ credential = \"{name}\" }}")), "{text}");
        assert!(
            out.contains(&format!("LoadCredential={name}:{}", file.display())),
            "{out}"
        );
    }
    let route_token = std::fs::read_to_string(secrets_dir.join("route-token")).unwrap();
    assert!(
        out.contains(&format!("/hooks/main?token={}", route_token.trim())),
        "{out}"
    );
    assert!(table(&config)["store"]["path"].as_str() == Some("/var/lib/hookrelay/data"));
    // Even its examples keep secrets out: the provider's signing secret is a
    // credential too (it was shown inline, packaging review, stop 62).
    assert!(!text.contains("secret = \"whsec_"), "{text}");
    assert!(
        text.contains("secret = { credential = \"provider-secret\" }")
            && text.contains(&format!(
                "LoadCredential=provider-secret:{}/secrets/provider-secret",
                tmp.path().display()
            )),
        "{text}"
    );
    // Its header tells how to check it where it was written, not under /etc.
    let dir = tmp.path().display();
    assert!(
        text.contains(&format!(
            "CREDENTIALS_DIRECTORY={dir}/secrets hookrelay check-config --config {dir}/config.toml"
        )),
        "{text}"
    );

    let c = config.to_str().unwrap();
    // From a shell without CREDENTIALS_DIRECTORY: the secrets/ beside the
    // config, the files the unit loads (stop 63; refused before).
    let (ok, out, err) = cli_env(&["check-config", "--config", c], &[]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{c}: OK")), "{out}");
    // Without that directory, saying how to set it from a shell (packaging
    // review, stop 62).
    let away = tmp.path().join("secrets-away");
    std::fs::rename(&secrets_dir, &away).unwrap();
    let (ok, _, err) = cli_env(&["check-config", "--config", c], &[]);
    assert!(
        !ok && err.contains("from a shell") && err.contains("CREDENTIALS_DIRECTORY=/etc/hookrelay/secrets"),
        "{err}"
    );
    std::fs::rename(&away, &secrets_dir).unwrap();
    let (ok, _, err) = cli_env(
        &["check-config", "--config", c],
        &[("CREDENTIALS_DIRECTORY", &secrets_dir)],
    );
    assert!(ok, "{err}");
    // Refused again: the secrets are not replaced either.
    let (ok, _, err) = cli_env(&["init", "--systemd", "--dir", tmp.path().to_str().unwrap()], &[]);
    assert!(
        !ok && err.contains("route-token") && err.contains("already exist: not overwriting them"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(secrets_dir.join("route-token")).unwrap(),
        route_token
    );
}

#[test]
fn generated_man_pages_and_completions_cover_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(&["generate-assets", tmp.path().to_str().unwrap()]);
    assert!(ok, "{err}");
    // Every visible subcommand of the clap definition, so one added on another
    // branch is checked here without editing this test.
    let subcommands: Vec<String> = hookrelay::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(subcommands.len() >= 10 && subcommands.contains(&"init".to_string()));

    let read = |p: &str| {
        std::fs::read_to_string(tmp.path().join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .replace("\\-", "-") // roff's hyphen
    };
    let main = read("man/hookrelay.1");
    assert!(main.contains(".TH hookrelay 1"), "not a man page: {main}");
    assert!(main.contains("/etc/hookrelay/config.toml"), "no FILES section");
    let completions = [
        "completions/hookrelay.bash",
        "completions/_hookrelay",
        "completions/hookrelay.fish",
    ]
    .map(|p| (p, read(p)));
    for name in &subcommands {
        assert!(main.contains(&format!("hookrelay-{name}")), "man page lacks {name}");
        let page = read(&format!("man/hookrelay-{name}.1"));
        assert!(page.contains(&format!(".TH hookrelay-{name} 1 ")), "{name}: {page}");
        for (file, text) in &completions {
            assert!(text.contains(name.as_str()), "{file} lacks {name}");
        }
    }
    assert!(!main.contains("generate-assets"), "the packaging command is hidden");
    for (file, text) in &completions {
        assert!(
            !text.contains("generate-assets"),
            "{file} offers the hidden packaging command"
        );
    }
    assert!(read("man/hookrelay-init.1").contains("--systemd"));
    // The environment variables the options read (clap_mangen leaves them
    // out): the main page and the admin commands' name them.
    for page in ["man/hookrelay.1", "man/hookrelay-status.1"] {
        let text = read(page);
        let env = text
            .split(".SH ENVIRONMENT")
            .nth(1)
            .unwrap_or_else(|| panic!("{page}: no ENVIRONMENT"));
        for var in ["HOOKRELAY_CONFIG", "HOOKRELAY_ADMIN", "HOOKRELAY_ADMIN_TOKEN"] {
            assert!(env.contains(var), "{page} lacks {var}");
        }
    }
    assert!(!read("man/hookrelay-gen-token.1").contains(".SH ENVIRONMENT"));

    // The packaged config: credentials only, valid with them.
    let config = tmp.path().join("config.toml");
    let t = table(&config);
    let credential = |v: &toml::Value| v["credential"].as_str().map(String::from);
    let route = &t["routes"][0];
    assert_eq!(credential(&route["tokens"][0]).as_deref(), Some("route-token"));
    assert_eq!(
        credential(&route["subscribers"][0]["secret"]).as_deref(),
        Some("subscriber-secret")
    );
    assert_eq!(credential(&t["admin"]["token"]).as_deref(), Some("admin-token"));
    let creds = tmp.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    for (name, cmd) in [
        ("route-token", "gen-token"),
        ("admin-token", "gen-token"),
        ("subscriber-secret", "gen-secret"),
    ] {
        std::fs::write(creds.join(name), cli(&[cmd]).1).unwrap();
    }
    let (ok, _, err) = cli_env(
        &["check-config", "--config", config.to_str().unwrap()],
        &[("CREDENTIALS_DIRECTORY", &creds)],
    );
    assert!(ok, "{err}");
}

/// Credentials in the subscriber's URL are the subscriber's: `init` writes
/// them to the private config but does not print them.
/// `init --listen 0.0.0.0:P`: the URL for the provider names no address it
/// cannot call (`YOUR-HOST`), the one to try it with is on loopback and
/// takes a callback, and the config says the listener is not loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_on_every_address_prints_a_callback_url_a_provider_can_use() {
    let tmp = tempfile::tempdir().unwrap();
    let port = 0;
    let dir = tmp.path().join("relay");
    let args: Vec<String> = [
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        &format!("0.0.0.0:{port}"),
        "--admin-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out, err) = cli_async(args).await;
    assert!(ok, "init failed: {err}");
    let config = dir.join("config.toml");
    let (token, _, _) = secrets(&table(&config));
    let path = format!("/hooks/main?token={token}");
    assert!(out.contains(&format!("http://YOUR-HOST:{port}{path}")), "{out}");
    assert!(!out.contains("0.0.0.0"), "{out}");
    let try_it = format!("curl -s -X POST 'http://127.0.0.1:{port}{path}'");
    assert!(out.contains(&try_it), "{out}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("# Not loopback: plain HTTP") && !text.contains("# Localhost"),
        "{text}"
    );

    let bin = Bin::start(&config, &[]);
    assert!(bin.addr.ip().is_unspecified(), "{}", bin.addr);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], bin.addr.port()));
    let (status, _, answer) = post(local, &path, &[("content-type", "application/json")], "{}").await;
    assert_eq!(status, 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_does_not_print_the_subscriber_urls_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    let out = init(&dir, "http://u:pw-s3cret@127.0.0.1:1/cb?key=k3y", &[]).await;
    assert!(!out.contains("pw-s3cret") && !out.contains("k3y"), "{out}");
    assert!(out.contains("http://127.0.0.1:1/…"), "{out}");
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("pw-s3cret") && config.contains("k3y"));
}

/// `hookrelay init --systemd` suggests the TLS files as credentials at the
/// absolute path `/run/credentials/hookrelay.service/…`, and its header
/// (like systemd/README.md) says to check the file "as the unit sees it" with
/// `CREDENTIALS_DIRECTORY=DIR/secrets hookrelay check-config`. That check
/// passes for the suggested setting before the restart that loads the
/// credentials: with `CREDENTIALS_DIRECTORY` set, a path under
/// `/run/credentials/UNIT/` is read from that directory. From review 26,
/// finding 3.
#[test]
fn the_documented_check_passes_for_the_suggested_tls_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    let (ok, _, err) = cli(&["init", "--systemd", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "init: {err}");
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // The operator's certificate files, placed where the unit's LoadCredential=
    // lines would read them from (as the secrets are in DIR/secrets).
    TestCert::write(&dir.join("secrets"), "tls");
    std::fs::rename(dir.join("secrets/tls.crt"), dir.join("secrets/tls-cert")).unwrap();
    std::fs::rename(dir.join("secrets/tls.key"), dir.join("secrets/tls-key")).unwrap();
    // Uncomment the suggested line, as the comment says to.
    let edited = text.replacen(
        "# tls = { cert = \"/run/credentials",
        "tls = { cert = \"/run/credentials",
        1,
    );
    assert_ne!(edited, text, "init suggests the TLS files as credentials");
    std::fs::write(&config, edited).unwrap();
    // The check the header documents ("as the unit sees it").
    let check = text
        .lines()
        .find(|l| l.contains("CREDENTIALS_DIRECTORY=") && l.contains("check-config"))
        .expect("the header documents the check");
    assert!(
        check.contains(&format!("CREDENTIALS_DIRECTORY={}/secrets", dir.display())),
        "{check}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .env("CREDENTIALS_DIRECTORY", dir.join("secrets"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the documented check of the suggested TLS credentials fails:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cargo.toml's `[package.metadata.deb]` assets: `[source, destination, mode]`.
fn deb_assets() -> Vec<toml::Value> {
    let cargo: toml::Table = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap()
        .clone()
}

/// The README the .deb installs links to the annotated reference config and
/// the systemd notes: they are installed where those links point (the
/// packaged config's comment names that directory too).
#[test]
fn the_deb_ships_what_its_readme_links_to_beside_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let assets = deb_assets();
    let installed = |source: &str| {
        assets
            .iter()
            .find(|a| a[0].as_str() == Some(source))
            .and_then(|a| a[1].as_str())
            .map(String::from)
    };
    const DOC: &str = "usr/share/doc/hookrelay/";
    assert_eq!(installed("README.md"), Some(format!("{DOC}README.md")));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for linked in ["config.toml", "systemd/README.md"] {
        assert!(
            readme.contains(&format!("]({linked})")),
            "the README no longer links {linked}"
        );
        assert_eq!(installed(linked), Some(format!("{DOC}{linked}")), "{linked}");
    }
}

/// The .deb ships the forwarder's unit (as an example: it needs the relay URL
/// and `--to`), made by packaging/build-deb.sh from systemd/ with the packaged
/// binary's path; a user on the private side installs the package and copies it.
#[test]
fn the_deb_ships_the_forward_unit_naming_the_packaged_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let assets = deb_assets();
    let shipped = assets.iter().find(|a| {
        a[1].as_str()
            .is_some_and(|d| d.ends_with("/examples/hookrelay-forward.service"))
    });
    let shipped = shipped.expect("Cargo.toml's deb assets lack the forward unit");
    let source = shipped[0].as_str().unwrap();
    assert!(
        source.starts_with("target/packaging/"),
        "the repository's unit names /usr/local: {source}"
    );
    let script = std::fs::read_to_string(root.join("packaging/build-deb.sh")).unwrap();
    let made = source.trim_start_matches("target/packaging/");
    assert!(script.contains(made), "build-deb.sh does not make {source}");
    assert!(
        script.contains("systemd/hookrelay-forward.service > \"$fwd\""),
        "build-deb.sh does not rewrite the forward unit"
    );
}

/// Review of stop 55: `init --systemd` wrote a subscriber URL's
/// `user:password@` into the 0644 config.toml whose header says no secret is
/// in it: refused, nothing written, the password not printed.
#[test]
fn init_systemd_refuses_a_subscriber_url_with_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    let url = "http://app:s3cret-pw@127.0.0.1:9000/cb";
    let (ok, out, err) = cli(&[
        "init",
        "--systemd",
        "--dir",
        dir.to_str().unwrap(),
        "--subscriber-url",
        url,
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("--subscriber-url") && err.contains("credential"), "{err}");
    assert!(!format!("{out}{err}").contains("s3cret-pw"), "{err}");
    assert!(!dir.join("config.toml").exists(), "written anyway");
    let keyed = "http://127.0.0.1:9000/cb?api_key=s3cret-k3y";
    let (ok, _, err) = cli(&[
        "init",
        "--systemd",
        "--dir",
        dir.to_str().unwrap(),
        "--subscriber-url",
        keyed,
    ]);
    assert!(!ok && !err.contains("s3cret-k3y"), "{err}");
    assert!(!dir.join("config.toml").exists(), "written anyway");
    // Without --systemd the config is 0600 with its secrets inline: taken.
    let (ok, _, err) = cli(&["init", "--dir", dir.to_str().unwrap(), "--subscriber-url", url]);
    assert!(ok, "{err}");
}
