//! `hookrelay generate-assets DIR` (hidden): what the .deb ships besides the
//! binary and the unit, generated rather than checked in so it never goes stale:
//! - `DIR/man/hookrelay.1` and one page per subcommand (`hookrelay-run.1`, …),
//!   from the clap definition ([`super::Cli`]) with `clap_mangen`;
//! - `DIR/completions/{hookrelay.bash,_hookrelay,hookrelay.fish}` with `clap_complete`;
//! - `DIR/config.toml`: the packaged `/etc/hookrelay/config.toml`, the
//!   `init --systemd` layout ([`super::init::render`]) with no secret in it.
//!
//! Everything comes from `Cli::command()`, so a new subcommand is documented and
//! completed without touching this file. `packaging/build-deb.sh` runs it.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::init::{render, Settings};
use super::Cli;

/// Where the packaged service keeps its files, for the main page.
const FILES_SECTION: &str = r#".SH FILES
.TP
\fI/etc/hookrelay/config.toml\fR
The packaged service's configuration (a conffile). Its secrets are systemd
credentials: \fB{ credential = "NAME" }\fR reads \fI$CREDENTIALS_DIRECTORY/NAME\fR,
and so does a file path \fI/run/credentials/UNIT/NAME\fR (the TLS files) when
\fBCREDENTIALS_DIRECTORY\fR is set (or, from a shell, the secrets directory
below stands for it).
.TP
\fI/etc/hookrelay/secrets/\fR
One file per secret (route-token, subscriber-secret, admin-token), mode 0600,
made on installation and passed to the service with \fBLoadCredential=\fR.
From a shell, \fBcheck-config\fR, \fBmigrate\fR, \fBapply-cluster-settings\fR
and the admin subcommands (not \fBrun\fR) read them from there while
\fBCREDENTIALS_DIRECTORY\fR is not set, and read
\fI/etc/hookrelay/config.toml\fR when neither \fB--config\fR nor
\fBHOOKRELAY_CONFIG\fR names a file and the working directory has no
\fIconfig.toml\fR (\fBsudo hookrelay status\fR). Its admin token is then sent
only to its own \fBadmin.listen\fR: another \fB--admin\fR needs \fB--token\fR.
.TP
\fI/var/lib/hookrelay/\fR
The store (the unit's \fBStateDirectory=\fR).
.TP
\fI/usr/lib/systemd/system/hookrelay.service\fR
The unit: \fBsystemctl reload hookrelay\fR re-reads the configuration.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd.exec\fR(5)
"#;

pub fn run(dir: &Path) -> ExitCode {
    match generate(dir) {
        Ok(()) => {
            println!(
                "wrote man pages, completions and the packaged config.toml to {}",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Write every asset into `dir`.
pub fn generate(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let mut cmd = super::help::admin_options_hidden(Cli::command().disable_help_subcommand(true));
    cmd.build();
    man_pages(&cmd, &man, true)?;

    // `help` and `help SUBCOMMAND` offered too (the man pages have none).
    let mut offered = super::help::for_completions(Cli::command());
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut offered, "hookrelay", &completions)?;
    }

    let config = render(&Settings::packaged(), None);
    std::fs::write(dir.join("config.toml"), config)
}

/// `cmd`'s page and one per visible subcommand (`hookrelay-run.1`, …); the
/// main page also gets FILES and SEE ALSO, which clap knows nothing about.
fn man_pages(cmd: &clap::Command, dir: &Path, main: bool) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, false)?;
    }
    let page = clap_mangen::Man::new(cmd.clone())
        .source(format!("hookrelay {}", env!("CARGO_PKG_VERSION")))
        .manual("hookrelay manual");
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    let mut text = String::from_utf8(roff).map_err(std::io::Error::other)?;
    let mut extra = environment_section(cmd);
    if main {
        extra.push_str(FILES_SECTION);
    }
    let at = text.find("\n.SH VERSION").map_or(text.len(), |i| i + 1);
    text.insert_str(at, &extra);
    std::fs::write(dir.join(page.get_filename()), text)
}

/// Variables a command reads that no option names: (command, variable, what).
const MORE_ENVIRONMENT: [(&str, &str, &str); 5] = [
    (
        "forward",
        crate::forward::TOKEN_ENV,
        "The pull subscriber's token, when --token-file is not given",
    ),
    ("run", "RUST_LOG", RUST_LOG),
    ("forward", "RUST_LOG", RUST_LOG),
    ("migrate", "RUST_LOG", RUST_LOG),
    ("apply-cluster-settings", "RUST_LOG", RUST_LOG),
];

/// What `RUST_LOG` does for the commands that log.
const RUST_LOG: &str =
    "A log filter that overrides the config's log.level (one that is not such a filter is ignored, with a warning)";

/// ENVIRONMENT: the variables `cmd`'s options read (`HOOKRELAY_CONFIG`,
/// `HOOKRELAY_ADMIN`, …), which clap_mangen leaves out, and those it reads
/// otherwise ([`MORE_ENVIRONMENT`]); empty without any.
fn environment_section(cmd: &clap::Command) -> String {
    let mut out = String::new();
    for (_, name, what) in MORE_ENVIRONMENT.iter().filter(|(c, _, _)| *c == cmd.get_name()) {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff_text(name), roff_text(what)));
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(name) = arg.get_env() else { continue };
        let option = arg
            .get_long()
            .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{} (read when \\fB{}\\fR is not given)\n",
            roff_text(&name.to_string_lossy()),
            roff_text(help.trim_end_matches('.')),
            roff_text(&option)
        ));
    }
    if out.is_empty() {
        return out;
    }
    format!(".SH ENVIRONMENT\n{out}")
}

/// Text safe in a roff line: backslashes and hyphens escaped, a leading
/// dot or quote kept from being read as a request.
fn roff_text(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}
