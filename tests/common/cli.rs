//! The `hookrelay` binary as a command-line tool (admin subcommands,
//! check-config, gen-secret): run to completion, output captured. The
//! long-running `run` command is `daemon::Bin`.

use std::process::Command;

/// Run the binary with `args`; success, stdout, stderr.
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = cli_output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Run the binary with `args`; its raw output (for the exit code).
pub fn cli_output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(args)
        .output()
        .unwrap()
}

/// `cli` off the async workers, for tests whose daemon runs in-process.
pub async fn cli_async(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// An admin subcommand (`cmd`, e.g. `["event", id]`) run against the relay
/// whose config file is `config` and whose admin API is `admin` (`http://…`).
pub async fn admin_cli(config: &str, admin: &str, cmd: &[&str]) -> (bool, String, String) {
    let mut args = vec!["--config".to_string(), config.into(), "--admin".into(), admin.into()];
    args.extend(cmd.iter().map(|s| s.to_string()));
    cli_async(args).await
}

/// The binary run as `nobody` when the tests run as root (as in CI: root
/// reads and writes anything), from where it was built or, where `nobody`
/// cannot reach that (a checkout under /root), a copy in `dir`; as the
/// tests' user otherwise.
pub fn as_nobody(dir: &std::path::Path) -> Command {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let built = std::path::Path::new(env!("CARGO_BIN_EXE_hookrelay"));
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        return Command::new(built);
    }
    let reachable = built
        .ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0));
    let bin = if reachable {
        built.to_path_buf()
    } else {
        let bin = dir.join("hookrelay");
        std::fs::copy(built, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    };
    let mut cmd = Command::new(bin);
    cmd.uid(65534).gid(65534);
    cmd
}
