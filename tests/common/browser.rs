//! A real headless browser for the console tests: Debian's `chromium` driven by
//! npm `playwright-core` (installed in `tests/console/` by `npm ci`) from a
//! node script in `tests/console/`. Finds the three, or fails saying what to
//! install; runs a script with the test's URLs in its environment. Does not
//! start the daemon (see `daemon`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Where the scripts and their `node_modules` live.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The browser: `$CHROMIUM`, else `chromium` on PATH; panics with what to install.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return p.into();
    }
    on_path("chromium").unwrap_or_else(|| {
        panic!("chromium not found on PATH: install it (as root: apt-get install -y chromium), or set CHROMIUM")
    })
}

/// Node and playwright-core; panics with what to install.
fn node() -> PathBuf {
    let node = on_path("node")
        .unwrap_or_else(|| panic!("node not found on PATH: install it (as root: apt-get install -y nodejs npm)"));
    let module = scripts_dir().join("node_modules/playwright-core/package.json");
    assert!(
        module.is_file(),
        "playwright-core is not installed: run `npm ci` in {} (needs npm: apt-get install -y npm)",
        scripts_dir().display()
    );
    node
}

/// Run `tests/console/<script>` with `env` (and `CHROMIUM`), at most `limit`;
/// it must exit 0 having printed `done` (its last line on success). Its steps
/// are printed (seen with `--nocapture`); on failure they are in the panic.
pub async fn run_script(script: &str, env: &[(&str, String)], limit: Duration, done: &str) {
    let browser = chromium();
    let mut cmd = tokio::process::Command::new(node());
    cmd.arg(scripts_dir().join(script))
        .current_dir(scripts_dir())
        .env("CHROMIUM", browser)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn node");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?}"))
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(done),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
