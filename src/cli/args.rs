//! The command line's own value checks (clap value parsers): each refuses a
//! bad value before anything is sent, naming what it expects.

/// `hookrelay forward --wait`: 1s to 55s. Below 1s (`0s`) every pull of an
/// idle subscriber is answered at once and the forwarder asks again at once:
/// a loop of requests against the relay instead of a long-poll.
pub(super) fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s)"))?;
    if d > crate::pull::wire::MAX_WAIT {
        return Err("at most 55s".into());
    }
    if d < std::time::Duration::from_secs(1) {
        return Err("at least 1s (a shorter long-poll asks the relay again and again while it has nothing)".into());
    }
    Ok(d)
}

/// `--subscriber`: one subscriber's name. An empty value (a script's unset
/// variable) is refused here rather than sent, where it could only be read as
/// "every subscriber" (the API refuses it too).
pub(super) fn parse_subscriber(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty: name one subscriber, or leave out --subscriber for all".into());
    }
    if !crate::config::valid_name(s) {
        return Err("not a subscriber name (1 to 64 letters, digits, '-', '_' or '.')".into());
    }
    Ok(s.to_string())
}

/// An id or a filter's value (an event id, a task id, a route name, a
/// task's text): an empty one (a script's unset variable) is refused here,
/// where it would fetch a list in place of one record, or filter on
/// nothing.
pub(super) fn parse_nonempty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty (an unset variable?)".into());
    }
    Ok(s.to_string())
}

/// A list's `--limit`: what the admin API takes (1 to 10000), refused here
/// rather than sent for a `400`.
pub(super) fn parse_limit(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| "use a number from 1 to 10000".to_string())
}

pub(super) fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s)"))?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    // It must stay below the subscriber's lease, which is at most an hour
    // (`lease`); a longer one is a typo (`30m` for `30s`).
    if d >= crate::config::MAX_PULL_LEASE {
        return Err(format!(
            "must be under {} (below the subscriber's lease, which is at most that)",
            humantime::format_duration(crate::config::MAX_PULL_LEASE)
        ));
    }
    Ok(d)
}

/// An empty HOOKRELAY_CONFIG is taken as unset (clap would blame
/// `--config`, a flag the user did not pass); whether it was, so that the
/// caller refuses it where no `--config` says which file (a script's unset
/// variable would otherwise run the daemon on ./config.toml unawares).
pub(super) fn take_blank_config_env() -> bool {
    let blank = std::env::var_os("HOOKRELAY_CONFIG").is_some_and(|v| v.to_string_lossy().trim().is_empty());
    if blank {
        std::env::remove_var("HOOKRELAY_CONFIG");
    }
    blank
}

/// `--json` typed for a subcommand that prints no API answer would be
/// ignored, and a script would parse text: why it is refused. (`--admin`,
/// `--token` and `--config` stay harmless there: a wrapper may pass them to
/// every command.)
pub(super) fn json_refused(matches: &clap::ArgMatches, admin_command: bool) -> Option<String> {
    let typed = matches.value_source("json") == Some(clap::parser::ValueSource::CommandLine);
    (typed && !admin_command).then(|| {
        format!(
            "--json is not for `{}`: it is for the admin subcommands (status, events, replay, …), which print \
             the running daemon's answers",
            matches.subcommand_name().unwrap_or("this subcommand")
        )
    })
}
