use clap::CommandFactory;

/// Every option and argument of every subcommand says what it is in `--help`.
#[test]
fn every_argument_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if !matches!(id, "help" | "version") && a.get_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&super::Cli::command(), "hookrelay", &mut missing);
    assert!(missing.is_empty(), "without help: {missing:?}");
}
