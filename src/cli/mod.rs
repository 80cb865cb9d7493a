//! The command line: clap definitions and what each subcommand does. `run`
//! starts the daemon ([`crate::supervise`]); `forward` runs the private side
//! of a pull subscriber ([`crate::forward`]); the admin subcommands are a
//! client of the running daemon's admin API ([`admin`], [`render`], their
//! output made terminal-safe by `terminal`); `init`
//! writes a first config ([`init`]); `check-config` validates and
//! summarises one ([`check`]); `apply-cluster-settings` changes what the
//! relays of a cluster share ([`cluster`]); the hidden `generate-assets` writes the
//! man pages, completions and packaged config for the .deb ([`assets`]); the
//! flags' own value checks are in [`args`], which options each subcommand's
//! help shows in [`help`], which config file and credentials a command from
//! a shell reads in `config_path`.

pub mod admin;
mod args;
pub mod assets;
mod check;
mod cluster;
mod config_path;
mod generate;
pub mod help;
pub mod init;
mod init_steps;
mod migrate;
pub mod render;
pub mod render_status;
pub mod render_tasks;
mod terminal;

pub use generate::{gen_secret, gen_token};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use http::Method;

#[derive(Parser)]
#[command(
    name = "hookrelay",
    version,
    about = "Public callback endpoint for private services",
    long_about = "Public callback endpoint for private services: hookrelay accepts provider webhooks, \
                  authenticates them (a token, an IP allowlist or the provider's signature), stores each one \
                  durably before it answers, drops duplicates and delivers it to every subscriber with its own \
                  retries and a Standard Webhooks signature.\n\n\
                  Start with `hookrelay init` (a config with fresh random secrets), then `hookrelay run`. The \
                  admin subcommands ask the running daemon."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, env = "HOOKRELAY_CONFIG", default_value = "config.toml")]
    pub config: PathBuf,
    /// Admin API base URL for the admin subcommands (default: from the config's admin.listen).
    #[arg(long, global = true, env = "HOOKRELAY_ADMIN", hide_env_values = true)]
    pub admin: Option<String>,
    /// Admin API token (default: the config's admin.token).
    #[arg(long, global = true, env = "HOOKRELAY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
    /// Whether `--config` or `HOOKRELAY_CONFIG` named the file (not the default).
    #[arg(skip)]
    pub config_given: bool,
    /// Where `token` came from, for messages: `--token` or `HOOKRELAY_ADMIN_TOKEN`.
    #[arg(skip)]
    pub token_from: &'static str,
}

impl Cli {
    /// Parse the command line, noting where the config and token came from.
    fn parse_noting_sources() -> Cli {
        use clap::parser::ValueSource;
        use clap::FromArgMatches;
        let blank_env = args::take_blank_config_env();
        let matches = help::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let reads_config = matches.subcommand_name().is_some_and(|c| !help::NO_CONFIG.contains(&c));
        if blank_env && reads_config && matches.value_source("config") != Some(ValueSource::CommandLine) {
            eprintln!("error: HOOKRELAY_CONFIG is set but empty: name the config file in it, or unset it");
            std::process::exit(2);
        }
        cli.config_given = matches!(
            matches.value_source("config"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if reads_config && !matches!(cli.command, Command::Run) {
            config_path::settle(&mut cli);
        }
        cli.token_from = match matches.value_source("token") {
            Some(ValueSource::EnvVariable) => "HOOKRELAY_ADMIN_TOKEN",
            _ => "--token",
        };
        // An empty token (a script's unset variable) was sent as a wrong
        // guess, where the config's admin.token was meant.
        if matches!(cli.command, Command::Admin(_)) && cli.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            match cli.token_from {
                "--token" => eprintln!("error: --token is empty: give the admin token, or leave --token out to use the config's admin.token"),
                from => eprintln!("error: {from} is set but empty: put the admin token in it, or unset it to use the config's admin.token"),
            }
            std::process::exit(2);
        }
        if let Some(why) = args::json_refused(&matches, matches!(cli.command, Command::Admin(_))) {
            eprintln!("error: {why}");
            std::process::exit(2);
        }
        cli
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run,
    /// Validate the configuration file without starting anything.
    CheckConfig,
    /// Print a new Standard Webhooks signing secret (whsec_...).
    GenSecret,
    /// Print a new random token for a route's `tokens` or `admin.token` (64 hex
    /// digits, safe in a URL).
    GenToken,
    /// Write a working config with fresh random secrets, then print the next steps.
    Init(init::InitArgs),
    /// Write the man pages, shell completions and the packaged config into DIR
    /// (used when building the .deb).
    #[command(hide = true)]
    GenerateAssets {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Cluster mode: change store.retention, store.nats.replicas and
    /// store.nats.takeover of the cluster's existing streams, buckets and
    /// consumers to this config's values (relays never change them
    /// themselves), then exit.
    ApplyClusterSettings,
    /// Upgrade the store to this version's layout, then exit (the daemon also
    /// does this on its first start).
    Migrate {
        /// Drop what hookrelay 0.1 wrote to an already migrated store (when 0.1
        /// was started on it again); without this such a store is refused.
        #[arg(long = "discard-0.1-rows")]
        discard_v1_rows: bool,
    },
    /// Run inside a private network: fetch a pull subscriber's messages from
    /// the relay and POST each to a local service (no config file, no store).
    #[command(
        after_help = "The token comes from --token-file or the environment variable HOOKRELAY_PULL_TOKEN; it is \
                      never printed. The admin options (--config, --admin, --token, --json) do not apply here (--token and --json are refused).\n\n\
                      Example:\n  HOOKRELAY_PULL_TOKEN=… hookrelay forward https://hooks.example.com/pull/laptop \\\n    \
                      --to http://127.0.0.1:3000/webhooks"
    )]
    Forward {
        /// The relay's pull URL, e.g. https://hooks.example.com/pull/laptop
        url: String,
        /// The local service each message is POSTed to, e.g. http://127.0.0.1:3000/webhooks
        #[arg(long)]
        to: String,
        /// A file holding the subscriber's pull token (default: $HOOKRELAY_PULL_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Messages delivered to the local service at once (1-100).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=100))]
        concurrency: u16,
        /// Trust this CA certificate (PEM) for the relay and the local service, besides the system roots.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// How long one long-poll waits for work (at most 55s).
        #[arg(long, default_value = "30s", value_parser = args::parse_wait)]
        wait: std::time::Duration,
        /// How long the local service may take per message to answer its status (keep it below the subscriber's lease).
        #[arg(long, default_value = "30s", value_parser = args::parse_timeout)]
        timeout: std::time::Duration,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

/// The subcommands that ask the running daemon.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Show version, uptime, listeners, routes, store and certificates (expiry, ACME renewal).
    Status,
    /// List recent events, newest first.
    Events {
        /// Only events of this route
        #[arg(long, value_parser = args::parse_nonempty)]
        route: Option<String>,
        /// Only events in this state
        #[arg(long, value_parser = ["pending", "delivered", "dead", "undelivered"])]
        status: Option<String>,
        /// Only events whose task id contains this text (any case)
        #[arg(long, value_parser = args::parse_nonempty)]
        task: Option<String>,
        /// How many events at most
        #[arg(long, default_value_t = 20, value_parser = args::parse_limit)]
        limit: usize,
        /// Only events older than this one (evt_…): the next page
        #[arg(long, value_parser = args::parse_nonempty)]
        before: Option<String>,
    },
    /// Show one event with every delivery attempt.
    Event {
        /// The event id (evt_…), as `events` lists it
        #[arg(value_parser = args::parse_nonempty)]
        id: String,
    },
    /// List deliveries that gave up, newest first.
    DeadLetters {
        /// Only this subscriber's dead letters
        #[arg(long, value_parser = args::parse_subscriber)]
        subscriber: Option<String>,
        /// How many to list (the newest); more are counted and said
        #[arg(long, default_value_t = 100, value_parser = args::parse_limit)]
        limit: usize,
    },
    /// Deliver an event again (to all its subscribers, or one).
    Replay {
        /// The event id (evt_…)
        #[arg(value_parser = args::parse_nonempty)]
        id: String,
        /// Only to this subscriber (without it: to every subscriber of its route)
        #[arg(long, value_parser = args::parse_subscriber)]
        subscriber: Option<String>,
        /// Only while that subscriber's delivery is a dead letter (else
        /// refused, nothing sent): for a list of dead letters read a while
        /// ago, which a replay of all may have delivered since
        #[arg(long, requires = "subscriber")]
        only_dead: bool,
    },
    /// Re-queue dead letters (all, or one subscriber's).
    ReplayDeadLetters {
        /// Only this subscriber's dead letters
        #[arg(long, value_parser = args::parse_subscriber)]
        subscriber: Option<String>,
    },
    /// Show subscribers with their backlog and state.
    Subscribers,
    /// List expected tasks (newest first), or show one.
    Tasks {
        /// A provider task id; without it, the list.
        #[arg(value_parser = args::parse_nonempty)]
        task_id: Option<String>,
        /// Only tasks of this route
        #[arg(long, value_parser = args::parse_nonempty)]
        route: Option<String>,
        /// Only tasks in this state (the list only)
        #[arg(long, value_parser = ["waiting", "called_back", "polling", "recovered", "gave_up"], conflicts_with = "task_id")]
        state: Option<String>,
        /// How many tasks at most (the list only)
        #[arg(long, default_value_t = 50, conflicts_with = "task_id", value_parser = args::parse_limit)]
        limit: usize,
    },
    /// Show the media of one event, or the archive's queue and recent files.
    Media {
        /// An event id (evt_…); without it, the archive at a glance.
        #[arg(value_parser = args::parse_nonempty)]
        event: Option<String>,
        /// How many recent files at most (the archive at a glance only)
        #[arg(long, default_value_t = 20, conflicts_with = "event", value_parser = args::parse_limit)]
        limit: usize,
        /// Archive the event's failed URLs again, from the start of
        /// media.retry (`hookrelay replay` then sends the event with the new
        /// result to its after_archive subscribers)
        #[arg(long, requires = "event")]
        retry: bool,
    },
}

/// Run the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_noting_sources();
    match &cli.command {
        Command::Run => crate::supervise::run(&cli.config),
        Command::CheckConfig => check::check_config(&cli),
        Command::GenSecret => {
            println!("{}", gen_secret());
            ExitCode::SUCCESS
        }
        Command::GenToken => {
            println!("{}", gen_token());
            ExitCode::SUCCESS
        }
        Command::Init(args) => init::run(args),
        Command::GenerateAssets { dir } => assets::run(dir),
        Command::Migrate { discard_v1_rows } => migrate::run(&cli, *discard_v1_rows),
        Command::ApplyClusterSettings => cluster::apply_cluster_settings(&cli),
        Command::Forward { .. } if cli.token.is_some() && cli.token_from == "--token" => {
            // A pull token given as --token would be silently taken for the
            // admin one (or ignored, HOOKRELAY_ADMIN_TOKEN set or not).
            eprintln!(
                "error: --token is the admin API's token; give the pull token with --token-file FILE or \
                 HOOKRELAY_PULL_TOKEN"
            );
            ExitCode::from(2)
        }
        Command::Forward {
            url,
            to,
            token_file,
            concurrency,
            ca_file,
            wait,
            timeout,
        } => crate::forward::main(&crate::forward::Options {
            url: url.clone(),
            to: to.clone(),
            token_file: token_file.clone(),
            concurrency: usize::from(*concurrency),
            ca_file: ca_file.clone(),
            wait: *wait,
            timeout: *timeout,
        }),
        Command::Admin(cmd) => admin_command(&cli, cmd),
    }
}

/// A one-thread runtime for a command that talks to a store or the daemon.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What a path segment keeps unencoded: RFC 3986's unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn admin_command(cli: &Cli, cmd: &AdminCommand) -> ExitCode {
    let target = match admin::target(cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A query value (form encoding: a space is `+`).
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // A path segment (an id): percent-encoded, `/` included; the API decodes it.
    let seg = |s: &str| percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string();
    let opt = |name: &str, v: &Option<String>| v.as_deref().map_or(String::new(), |v| format!("&{name}={}", enc(v)));
    let (method, path, render): (Method, String, fn(&serde_json::Value) -> String) = match cmd {
        AdminCommand::Events {
            route,
            status,
            task,
            limit,
            before,
        } => (
            Method::GET,
            format!(
                "/api/events?limit={limit}{}{}{}{}",
                opt("route", route),
                opt("status", status),
                opt("task", task),
                opt("before", before)
            ),
            render::render_events,
        ),
        AdminCommand::Event { id } => (Method::GET, format!("/api/events/{}", seg(id)), render::render_event),
        AdminCommand::DeadLetters { subscriber, limit } => (
            Method::GET,
            format!("/api/dead-letters?limit={limit}{}", opt("subscriber", subscriber)),
            render::render_dead_letters,
        ),
        AdminCommand::Replay {
            id,
            subscriber,
            only_dead,
        } => (
            Method::POST,
            format!(
                "/api/events/{}/replay?{}{}",
                seg(id),
                opt("subscriber", subscriber).trim_start_matches('&'),
                if *only_dead { "&only=dead" } else { "" }
            ),
            render::render_replay,
        ),
        AdminCommand::ReplayDeadLetters { subscriber } => (
            Method::POST,
            format!(
                "/api/dead-letters/replay?{}",
                opt("subscriber", subscriber).trim_start_matches('&')
            ),
            |v| match v["requeued"].as_u64() {
                Some(1) => "re-queued 1 dead letter\n".to_string(),
                _ => format!("re-queued {} dead letters\n", v["requeued"]),
            },
        ),
        AdminCommand::Subscribers => (Method::GET, "/api/subscribers".into(), render::render_subscribers),
        AdminCommand::Status => (Method::GET, "/api/status".into(), render_status::render_status),
        AdminCommand::Media {
            event: Some(id),
            retry: true,
            ..
        } => (
            Method::POST,
            format!("/api/events/{}/media/retry", seg(id)),
            render::render_media_retry,
        ),
        AdminCommand::Media { event: Some(id), .. } => (
            Method::GET,
            format!("/api/media?event={}", enc(id)),
            render::render_event_media,
        ),
        AdminCommand::Tasks {
            task_id: Some(id),
            route,
            ..
        } => (
            Method::GET,
            match route {
                Some(_) => format!("/api/tasks/{}?{}", seg(id), opt("route", route).trim_start_matches('&')),
                None => format!("/api/tasks/{}", seg(id)),
            },
            render_tasks::render_task,
        ),
        AdminCommand::Tasks {
            task_id: None,
            route,
            state,
            limit,
        } => (
            Method::GET,
            format!("/api/tasks?limit={limit}{}{}", opt("route", route), opt("state", state)),
            render_tasks::render_tasks,
        ),
        AdminCommand::Media { event: None, limit, .. } => {
            (Method::GET, format!("/api/media?limit={limit}"), render::render_media)
        }
    };
    let rt = runtime();
    match rt.block_on(admin::call(&target, method, &path)) {
        Ok(mut v) => {
            if cli.json {
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                println!("{}", terminal::json(&text));
            } else {
                // The page asked for, for the note under an older page.
                if let (AdminCommand::Events { before: Some(b), .. }, Some(o)) = (cmd, v.as_object_mut()) {
                    o.insert("before".into(), b.clone().into());
                }
                // Every cell is escaped already; this also covers what a renderer wrote as it came.
                print!("{}", terminal::lines(&render(&v)));
                if let Some(w) = v.get("warning").and_then(|w| w.as_str()) {
                    eprintln!("warning: {}", terminal::cell(w));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The API's message may quote what a callback sent.
            eprintln!("error: {}", terminal::lines(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
