//! The command line as parsed and documented (`--help`, the man pages, the
//! completions): the admin options `--admin`, `--token` and `--json` are
//! global, so that they may come before the subcommand's name, and are
//! shown only by the admin subcommands, which use them (the others ignore
//! or refuse them: listed in their help, they said otherwise); `--config`
//! is not shown by those that read no config file.

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
    let admin: Vec<String> = AdminCommand::augment_subcommands(clap::Command::new("admin"))
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let hidden = |ids: &[&str]| -> Vec<clap::Arg> {
        let args: Vec<clap::Arg> = cmd
            .get_arguments()
            .filter(|a| ids.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        assert_eq!(args.len(), ids.len(), "options of Cli: {ids:?}");
        args
    };
    let (admin_only, and_config) = (hidden(&ADMIN_OPTIONS), hidden(&["config"]));
    let others: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|name| !admin.contains(name))
        .collect();
    for name in others {
        let config = NO_CONFIG.contains(&name.as_str()).then_some(&and_config);
        cmd = cmd.mut_subcommand(name, |sub| {
            sub.args(admin_only.iter().chain(config.into_iter().flatten()).cloned())
        });
    }
    cmd
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
