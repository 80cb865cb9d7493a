//! The command line as parsed and documented (`--help`, the man pages, the
//! completions): the admin options `--admin`, `--token` and `--json` are
//! global, so that they may come before the subcommand's name, and are
//! shown only by the admin subcommands, which use them (the others ignore
//! or refuse them: listed in their help, they said otherwise); `--config`
//! is not shown by those that read no config file. The completions offer
//! the same ([`for_completions`]).

use clap::{CommandFactory, Subcommand};

use super::{AdminCommand, Cli};

/// The options only the admin subcommands use.
const ADMIN_OPTIONS: [&str; 3] = ["admin", "token", "json"];

/// The subcommands that read no config file (`init` writes one into
/// `--dir`): `--config` hidden too, and an empty `HOOKRELAY_CONFIG` not
/// refused.
pub(super) const NO_CONFIG: [&str; 5] = ["forward", "gen-secret", "gen-token", "init", "generate-assets"];

/// [`Cli`]'s command, built (its global options given to every
/// subcommand), the admin options hidden where they do not apply.
pub fn command() -> clap::Command {
    admin_options_hidden(Cli::command())
}

/// `cmd` ([`Cli`]'s, set up further) with the admin options hidden from
/// the subcommands that do not use them: each gets a hidden copy of its
/// own (global too, for subcommands of its own), which clap takes in place
/// of the global one (the value read the same way, from the same flag or
/// environment variable).
pub fn admin_options_hidden(mut cmd: clap::Command) -> clap::Command {
    let options = shared_options(&cmd);
    let admin = admin_subcommands();
    for name in subcommands(&cmd) {
        let hidden: Vec<clap::Arg> = options
            .iter()
            .filter(|a| !uses(&name, a.get_id().as_str(), &admin))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd = cmd.mut_subcommand(name, |sub| sub.args(hidden));
    }
    cmd
}

/// `cmd` ([`Cli`]'s, not built) as the shell completions describe it:
/// the admin options and `--config` offered before the subcommand and after
/// the subcommands that use them only (the completion generators list
/// hidden options too, so those of [`admin_options_hidden`] would be
/// offered where the help hides them), and without the hidden subcommands
/// (`generate-assets`: the bash generator offers hidden ones too).
pub fn for_completions(cmd: clap::Command) -> clap::Command {
    let shown: Vec<clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let mut cmd = clap::Command::new("hookrelay")
        .version(env!("CARGO_PKG_VERSION"))
        .about(cmd.get_about().cloned().unwrap_or_default())
        .long_about(cmd.get_long_about().cloned().unwrap_or_default())
        .disable_help_subcommand(cmd.is_disable_help_subcommand_set())
        .args(cmd.get_arguments().cloned().collect::<Vec<_>>())
        .subcommands(shown);
    let options = shared_options(&cmd);
    for a in &options {
        cmd = cmd.mut_arg(a.get_id().clone(), |a| a.global(false));
    }
    let admin = admin_subcommands();
    for name in subcommands(&cmd) {
        let own: Vec<clap::Arg> = options
            .iter()
            .filter(|a| uses(&name, a.get_id().as_str(), &admin))
            .cloned()
            .collect();
        cmd = cmd.mut_subcommand(name, |sub| sub.args(own));
    }
    cmd
}

/// Whether subcommand `name` uses global option `option`: the admin options
/// the admin subcommands (`admin`), `--config` all but [`NO_CONFIG`].
fn uses(name: &str, option: &str, admin: &[String]) -> bool {
    match option {
        "config" => !NO_CONFIG.contains(&name),
        _ => admin.iter().any(|a| a == name),
    }
}

/// The global options some subcommands do not use: the admin ones and `--config`.
fn shared_options(cmd: &clap::Command) -> Vec<clap::Arg> {
    let ids: Vec<&str> = ADMIN_OPTIONS.iter().copied().chain(["config"]).collect();
    let options: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| ids.contains(&a.get_id().as_str()))
        .cloned()
        .collect();
    assert_eq!(options.len(), ids.len(), "options of Cli: {ids:?}");
    options
}

/// The names of the admin subcommands.
fn admin_subcommands() -> Vec<String> {
    subcommands(&AdminCommand::augment_subcommands(clap::Command::new("admin")))
}

fn subcommands(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands().map(|c| c.get_name().to_string()).collect()
}

#[cfg(test)]
mod tests {
    /// Whether `help` has an option line for `flag` (`-c, --config <CONFIG>`,
    /// `--json`: the line's first words).
    fn lists(help: &str, flag: &str) -> bool {
        help.lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .any(|l| l.split_whitespace().take(2).any(|w| w.trim_end_matches(',') == flag))
    }

    fn help_of(name: &str) -> String {
        let mut cmd = super::command();
        cmd.build();
        let sub = cmd.find_subcommand_mut(name).expect("a subcommand");
        sub.render_long_help().to_string()
    }

    /// Stop 53's operator review: `hookrelay run --help` listed `--admin`,
    /// `--token` and `--json`, which `run` ignores (and `forward` refuses).
    #[test]
    fn only_the_admin_subcommands_list_the_admin_options() {
        for name in [
            "run",
            "check-config",
            "init",
            "migrate",
            "forward",
            "gen-token",
            "gen-secret",
            "apply-cluster-settings",
        ] {
            let help = help_of(name);
            for flag in ["--admin", "--token", "--json"] {
                assert!(!lists(&help, flag), "{name} lists {flag}:\n{help}");
            }
            let no_config = super::NO_CONFIG.contains(&name);
            assert_eq!(lists(&help, "--config"), !no_config, "{name}:\n{help}");
        }
        for name in ["status", "events", "replay", "dead-letters"] {
            let help = help_of(name);
            for flag in ["--admin", "--token", "--json", "--config"] {
                assert!(lists(&help, flag), "{name} does not list {flag}:\n{help}");
            }
        }
    }

    /// A hidden subcommand is offered by no shell's completion.
    #[test]
    fn completions_offer_no_hidden_subcommand() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut cmd = super::for_completions(<super::Cli as clap::CommandFactory>::command());
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "hookrelay", &mut out);
            let out = String::from_utf8(out).unwrap();
            assert!(!out.contains("generate-assets"), "{shell}:\n{out}");
            assert!(
                out.contains("check-config") && out.contains("dead-letters"),
                "{shell}:\n{out}"
            );
        }
    }

    /// The options a subcommand's completion offers (bash: its `opts="…"` line).
    fn completes(name: &str) -> Vec<String> {
        let mut cmd = super::for_completions(<super::Cli as clap::CommandFactory>::command());
        let mut bash = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "hookrelay", &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        let case = match name {
            "" => "hookrelay)".to_string(),
            _ => format!("hookrelay__subcmd__{})", name.replace('-', "__subcmd__")),
        };
        let block = bash
            .split(&case)
            .nth(1)
            .unwrap_or_else(|| panic!("no {case} in:\n{bash}"));
        let opts = block.lines().find(|l| l.trim_start().starts_with("opts=")).unwrap();
        opts.split(['"', ' '])
            .filter(|w| w.starts_with("--"))
            .map(String::from)
            .collect()
    }

    /// Stop 54 left: the completions offered the options the help hides.
    #[test]
    fn the_completions_offer_what_the_help_lists() {
        for name in ["run", "check-config", "init", "forward", "gen-token", "migrate"] {
            let opts = completes(name);
            for flag in ["--admin", "--token", "--json"] {
                assert!(!opts.iter().any(|o| o == flag), "{name} completes {flag}: {opts:?}");
            }
            let no_config = super::NO_CONFIG.contains(&name);
            assert_eq!(opts.iter().any(|o| o == "--config"), !no_config, "{name}: {opts:?}");
        }
        for name in ["status", "events", "replay", "dead-letters"] {
            let opts = completes(name);
            for flag in ["--admin", "--token", "--json", "--config"] {
                assert!(
                    opts.iter().any(|o| o == flag),
                    "{name} does not complete {flag}: {opts:?}"
                );
            }
        }
        // Before the subcommand, all of them.
        let top = completes("");
        for flag in ["--admin", "--token", "--json", "--config"] {
            assert!(top.iter().any(|o| o == flag), "{flag}: {top:?}");
        }
    }

    /// The lists name subcommands that exist (one renamed would quietly
    /// show its options again).
    #[test]
    fn the_lists_name_real_subcommands() {
        let cmd = super::command();
        for name in super::NO_CONFIG {
            assert!(cmd.find_subcommand(name).is_some(), "no subcommand {name}");
        }
    }

    /// Hidden from the help, still taken where it comes (and refused with
    /// a reason where it does not apply).
    #[test]
    fn the_admin_options_still_parse_before_and_after_the_subcommand() {
        for args in [
            &["hookrelay", "--json", "status"][..],
            &[
                "hookrelay",
                "status",
                "--json",
                "--admin",
                "http://127.0.0.1:1",
                "--token",
                "t",
            ],
            &["hookrelay", "run", "--json"],
            &["hookrelay", "gen-token", "--config", "x.toml"],
            &[
                "hookrelay",
                "--token",
                "t",
                "forward",
                "http://127.0.0.1:1/pull/x",
                "--to",
                "http://127.0.0.1:2/",
            ],
        ] {
            super::command()
                .try_get_matches_from(args)
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
