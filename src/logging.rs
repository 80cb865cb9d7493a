//! Log set-up: human lines on a terminal, plain (journald-friendly: no
//! timestamps, no colours) when not, JSON on request. `RUST_LOG` overrides
//! the configured level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The level names a filter may use.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Whether `filter` is a level (`warn`) or a list of `target=level`
/// directives, each level one of [`LEVELS`]. `EnvFilter` reads a bare word
/// such as `warning` as a target name and turns every other log line off,
/// errors included: that is refused here with what to write instead.
pub fn check_filter(filter: &str) -> Result<(), String> {
    match filter_problem(filter) {
        None => Ok(()),
        Some(FilterProblem::NotALevel { part, .. }) => Err(format!("{part:?} is not a level: {}", what_to_write())),
        Some(FilterProblem::Syntax(e)) => Err(e),
    }
}

/// [`check_filter`] for the config file's `log.level`, quoting none of the
/// value: it may be a secret written under the wrong key, and the error is
/// printed by `check-config` and logged to the journal.
pub fn check_configured_filter(filter: &str) -> Result<(), String> {
    match filter_problem(filter) {
        None => Ok(()),
        Some(FilterProblem::NotALevel { at, .. }) => Err(format!("directive {at} is not a level: {}", what_to_write())),
        Some(FilterProblem::Syntax(_)) => Err(format!("not a filter: {}", what_to_write())),
    }
}

/// What a filter may say, for the errors above.
fn what_to_write() -> String {
    format!("use one of {} (or target=level, comma-separated)", LEVELS.join(", "))
}

enum FilterProblem {
    /// Directive `at` (from 1, after blank ones are dropped) names no level.
    NotALevel { at: usize, part: String },
    /// `EnvFilter` refuses it (its message may quote the filter).
    Syntax(String),
}

fn filter_problem(filter: &str) -> Option<FilterProblem> {
    // Level names, or tracing's numbers for them (0 = off … 5 = trace).
    let is_level = |l: &str| {
        LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim())) || matches!(l.trim(), "0" | "1" | "2" | "3" | "4" | "5")
    };
    let filter = normalized(filter);
    for (i, part) in filter.split(',').enumerate() {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        if !is_level(level) {
            return Some(FilterProblem::NotALevel {
                at: i + 1,
                part: part.to_string(),
            });
        }
    }
    EnvFilter::try_new(&filter)
        .err()
        .map(|e| FilterProblem::Syntax(e.to_string()))
}

/// The filter without blanks around its parts: `EnvFilter` reads the space
/// in `x=trace, warn` as part of a target name (and turns the rest off).
fn normalized(filter: &str) -> String {
    let parts: Vec<&str> = filter.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    parts.join(",")
}

/// The filter to use: `RUST_LOG` when set and valid, else the configured
/// level; and why `RUST_LOG` was ignored, if it was.
fn choose(env: Option<&str>, configured: &str) -> (String, Option<String>) {
    match env {
        Some(e) if !e.trim().is_empty() => match check_filter(e) {
            Ok(()) => (e.to_string(), None),
            Err(why) => (configured.to_string(), Some(why)),
        },
        _ => (configured.to_string(), None),
    }
}

/// The libraries whose log lines a command that runs to completion leaves
/// out: the NATS client logs every connection attempt (`event: client error:
/// nats: IO error`, a dozen lines before a command against an unreachable
/// cluster gives up), and the command's own error says what went wrong.
const QUIET_IN_COMMANDS: [&str; 1] = ["async_nats"];

/// `filter` with the [`QUIET_IN_COMMANDS`] libraries turned off, each
/// unless the filter names it (`RUST_LOG=async_nats=debug` still shows it).
fn command_filter(filter: &str) -> String {
    let filter = normalized(filter);
    let quiet = QUIET_IN_COMMANDS
        .iter()
        .filter(|t| !filter.contains(**t))
        .map(|t| format!("{t}=off"));
    std::iter::once(filter.clone())
        .filter(|f| !f.is_empty())
        .chain(quiet)
        .collect::<Vec<_>>()
        .join(",")
}

/// The libraries whose `trace` lines the daemon leaves out unless the
/// filter names them: at `trace` the NATS client logs every message it
/// receives, callback bodies (and the result URLs in them) included.
const DEBUG_AT_MOST: [&str; 1] = ["async_nats"];

/// The libraries whose warnings a peer sets off, one line per frame or
/// connection, unthrottled: the HTTP/2 library logs a stray PING
/// acknowledgement (17 bytes from anyone: 900k lines, 137 MB of log in
/// 10 s) and each connection that resets too many streams; rustls each TLS
/// warning alert received. Capped at `error` in the daemon (a stranger
/// filled the log at will; resources review, stop 67): what such a peer
/// does to the server (refused requests, connections it ends) is still
/// warned about once a minute (`server::flood`).
const ERRORS_AT_MOST: [&str; 2] = ["h2", "rustls"];

/// `filter` with the [`DEBUG_AT_MOST`] libraries capped at `debug` when a
/// bare `trace` turns everything on, each unless the filter names it
/// (`log.level = "trace,async_nats=trace"` still shows its messages). Only
/// the library itself counts as named: a directive for one of its modules
/// (`async_nats::connector=info`) still applies to that module, the cap to
/// the rest.
///
/// And the libraries whose warnings any stranger can set off at will
/// ([`ERRORS_AT_MOST`]) capped at `error` whatever the level, each unless
/// the filter names it.
fn daemon_filter(filter: &str) -> String {
    let filter = normalized(filter);
    // `trace` however written (`TRACE`, `5`: `5` was taken for a level
    // and uncapped, NATS payloads logged; observability review, stop 62).
    let everything_at_trace = filter.split(',').any(|d| {
        d.trim()
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .is_ok_and(|l| l == tracing_subscriber::filter::LevelFilter::TRACE)
    });
    let target = |d: &str| d.split(['=', '[']).next().unwrap_or_default().trim().to_string();
    // `h2::` names `h2` too (the cap's own spelling: appended after it, the
    // cap replaced the operator's directive; review, stop 67).
    let named = |t: &str| filter.split(',').any(|d| target(d).trim_end_matches("::") == t);
    let capped = DEBUG_AT_MOST
        .iter()
        .filter(|t| everything_at_trace && !named(t))
        .map(|t| format!("{t}=debug"));
    let quieted = ERRORS_AT_MOST
        .iter()
        .filter(|t| !named(t))
        // `h2::`, not `h2`: a directive matches targets by prefix, and
        // `rustls` would take `rustls_acme` (its ACME progress) along.
        .map(|t| format!("{t}::=error"));
    std::iter::once(filter.clone())
        .chain(capped)
        .chain(quieted)
        .collect::<Vec<_>>()
        .join(",")
}

/// Log set-up for the daemon (`hookrelay run`): every library's lines at
/// the configured level ([`DEBUG_AT_MOST`] at `debug` under a bare `trace`).
pub fn init(cfg: &LogConfig) {
    init_as(cfg, false)
}

/// Log set-up for a command that runs to completion and prints its own
/// result or error (`apply-cluster-settings`, `migrate`): as [`init`],
/// without the client libraries' lines ([`QUIET_IN_COMMANDS`]).
pub fn init_command(cfg: &LogConfig) {
    init_as(cfg, true)
}

fn init_as(cfg: &LogConfig, command: bool) {
    let env = std::env::var("RUST_LOG").ok();
    let (chosen, ignored) = choose(env.as_deref(), &cfg.level);
    let chosen = match command {
        true => command_filter(&chosen),
        false => daemon_filter(&chosen),
    };
    let filter = EnvFilter::try_new(normalized(&chosen)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let terminal = std::io::stderr().is_terminal();
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
        LogFormat::Auto if terminal => builder.try_init(),
        // journald adds its own timestamps.
        LogFormat::Auto if under_systemd => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto => builder.with_ansi(false).try_init(),
    };
    if let Some(why) = ignored {
        tracing::warn!("RUST_LOG ignored, logging at log.level {:?}: {why}", cfg.level);
    }
}

#[cfg(test)]
mod tests {
    use super::{check_filter, choose};

    #[test]
    fn a_filter_is_levels_or_target_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "hookrelay=debug,info",
            "hookrelay::delivery=trace, warn",
            "hookrelay=3",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        // The blank after the comma is not part of a target: `warn` stays a level.
        assert_eq!(
            super::normalized("hookrelay::delivery=trace, warn"),
            "hookrelay::delivery=trace,warn"
        );
        let filter = tracing_subscriber::EnvFilter::try_new(super::normalized("hookrelay=trace, warn")).unwrap();
        assert!(!filter.to_string().contains(" warn"), "{filter}");
        for bad in ["warning", "verbose", "trace1", "hookrelay=loud", "info,quiet"] {
            let e = check_filter(bad).unwrap_err();
            assert!(e.contains("is not a level") && e.contains("warn"), "{bad}: {e}");
            // The config file's value is never quoted (it may be a misplaced secret).
            let e = super::check_configured_filter(bad).unwrap_err();
            let word = bad.rsplit([',', '=']).next().unwrap();
            assert!(
                e.contains("is not a level") && e.contains("warn") && !e.contains(word),
                "{bad}: {e}"
            );
        }
        assert!(super::check_configured_filter("info, hookrelay=debug").is_ok());
        assert!(super::check_configured_filter("info,sk-7d41")
            .unwrap_err()
            .starts_with("directive 2 "));
    }

    #[test]
    fn commands_leave_the_nats_client_out_unless_asked_for() {
        use super::command_filter;
        assert_eq!(command_filter("info"), "info,async_nats=off");
        assert_eq!(
            command_filter("hookrelay=debug, warn"),
            "hookrelay=debug,warn,async_nats=off"
        );
        assert_eq!(command_filter("info,async_nats=debug"), "info,async_nats=debug");
        assert!(check_filter(&command_filter("warn")).is_ok());
    }

    #[test]
    fn the_daemon_keeps_the_nats_clients_messages_out_of_a_bare_trace() {
        use super::daemon_filter;
        let q = |f: &str| format!("{f},h2::=error,rustls::=error");
        assert_eq!(daemon_filter("trace"), q("trace,async_nats=debug"));
        assert_eq!(daemon_filter("5"), q("5,async_nats=debug"));
        assert_eq!(daemon_filter("info,5"), q("info,5,async_nats=debug"));
        assert_eq!(daemon_filter("4"), q("4"));
        assert_eq!(
            daemon_filter("hookrelay=debug, TRACE"),
            q("hookrelay=debug,TRACE,async_nats=debug")
        );
        assert_eq!(daemon_filter("trace,async_nats=trace"), q("trace,async_nats=trace"));
        assert_eq!(daemon_filter("trace,async_nats"), q("trace,async_nats"));
        // One of its modules named: the rest of it is still capped.
        assert_eq!(
            daemon_filter("trace,async_nats::connector=info"),
            q("trace,async_nats::connector=info,async_nats=debug")
        );
        assert_eq!(daemon_filter("info"), q("info"));
        assert_eq!(daemon_filter("hookrelay=trace,info"), q("hookrelay=trace,info"));
        assert!(check_filter(&daemon_filter("trace")).is_ok());
    }

    /// The cap is the library's own lines: `rustls_acme`'s (whose target
    /// begins with `rustls` too: a directive matches targets by prefix) keep
    /// the level (change review, stop 67: its ACME progress was gone).
    #[test]
    fn the_cap_on_rustls_leaves_rustls_acme_at_the_level() {
        use tracing_subscriber::prelude::*;
        let filter = tracing_subscriber::EnvFilter::try_new(super::daemon_filter("info")).unwrap();
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: "rustls_acme::state", tracing::Level::INFO));
            assert!(!tracing::enabled!(target: "rustls::common_state", tracing::Level::WARN));
            assert!(tracing::enabled!(target: "rustls::common_state", tracing::Level::ERROR));
            assert!(!tracing::enabled!(target: "h2::proto::ping_pong", tracing::Level::WARN));
            assert!(tracing::enabled!(target: "hookrelay::app", tracing::Level::INFO));
        });
    }

    /// Libraries a stranger can make log a line per frame are capped at
    /// `error`, unless named (resources review, stop 67).
    #[test]
    fn the_daemon_caps_the_libraries_strangers_can_make_loud() {
        use super::daemon_filter;
        assert_eq!(daemon_filter("info"), "info,h2::=error,rustls::=error");
        assert_eq!(daemon_filter("info,h2=debug"), "info,h2=debug,rustls::=error");
        assert_eq!(daemon_filter("warn,rustls"), "warn,rustls,h2::=error");
        // Named as the cap spells it: the operator's directive stands.
        assert_eq!(daemon_filter("info,h2::=warn"), "info,h2::=warn,rustls::=error");
        assert!(check_filter(&daemon_filter("info")).is_ok());
    }

    #[test]
    fn an_unusable_rust_log_falls_back_to_the_configured_level() {
        assert_eq!(choose(Some("debug"), "info"), ("debug".to_string(), None));
        assert_eq!(choose(None, "warn"), ("warn".to_string(), None));
        assert_eq!(choose(Some(""), "warn"), ("warn".to_string(), None));
        let (f, why) = choose(Some("verbose"), "info");
        assert_eq!(f, "info");
        assert!(why.unwrap().contains("\"verbose\" is not a level"));
    }
}
