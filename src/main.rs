//! The `hookrelay` binary: argument parsing, signals and systemd notification;
//! everything else lives in the library.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hookrelay::cli::{self, AdminTarget};
use hookrelay::config::Config;
use http::Method;
use sd_notify::NotifyState;

#[derive(Parser)]
#[command(name = "hookrelay", version, about = "Public callback endpoint for private services")]
struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, env = "HOOKRELAY_CONFIG", default_value = "config.toml")]
    config: PathBuf,
    /// Admin API base URL for the admin subcommands (default: from the config's admin.listen).
    #[arg(long, global = true, env = "HOOKRELAY_ADMIN")]
    admin: Option<String>,
    /// Admin API token (default: the config's admin.token).
    #[arg(long, global = true, env = "HOOKRELAY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run,
    /// Validate the configuration file without starting anything.
    CheckConfig,
    /// List recent events, newest first.
    Events {
        #[arg(long)]
        route: Option<String>,
        /// pending, delivered or dead
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one event with every delivery attempt.
    Event { id: String },
    /// List deliveries that gave up.
    DeadLetters {
        #[arg(long)]
        subscriber: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Deliver an event again (to all its subscribers, or one).
    Replay {
        id: String,
        #[arg(long)]
        subscriber: Option<String>,
    },
    /// Re-queue dead letters (all, or one subscriber's).
    ReplayDeadLetters {
        #[arg(long)]
        subscriber: Option<String>,
    },
    /// Show subscribers with their backlog and state.
    Subscribers,
    /// Print a new Standard Webhooks signing secret (whsec_...).
    GenSecret,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run => run(&cli.config),
        Command::CheckConfig => match Config::load(&cli.config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                let subs: usize = c.routes.iter().map(|r| r.subscribers.len()).sum();
                println!(
                    "{}: OK ({} routes, {} subscribers)",
                    cli.config.display(),
                    c.routes.len(),
                    subs
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::GenSecret => {
            use base64::Engine;
            let bytes: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
            println!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
            ExitCode::SUCCESS
        }
        ref other => admin_command(&cli, other),
    }
}

/// Where the admin API is: `--admin`/`--token` first; the config file only for
/// what they leave open, and then only its `admin.listen` / `admin.token`.
fn admin_target(cli: &Cli) -> Result<AdminTarget, String> {
    if let (Some(base), Some(token)) = (&cli.admin, &cli.token) {
        return Ok(AdminTarget {
            base: base.clone(),
            token: Some(token.clone()),
        });
    }
    let from_config = if cli.config.exists() {
        Some(
            hookrelay::config::admin_client(&cli.config, cli.admin.is_none(), cli.token.is_none())
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let base = match (&cli.admin, &from_config) {
        (Some(a), _) => a.clone(),
        (None, Some((Some(listen), _))) => format!("http://{listen}"),
        (None, _) => "http://127.0.0.1:9090".into(),
    };
    let token = cli.token.clone().or_else(|| from_config.and_then(|(_, t)| t));
    Ok(AdminTarget { base, token })
}

fn admin_command(cli: &Cli, cmd: &Command) -> ExitCode {
    let target = match admin_target(cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (method, path, render): (Method, String, fn(&serde_json::Value) -> String) = match cmd {
        Command::Events { route, status, limit } => {
            let mut p = format!("/api/events?limit={limit}");
            if let Some(r) = route {
                p.push_str(&format!("&route={}", enc(r)));
            }
            if let Some(s) = status {
                p.push_str(&format!("&status={}", enc(s)));
            }
            (Method::GET, p, cli::render_events)
        }
        Command::Event { id } => (Method::GET, format!("/api/events/{}", enc(id)), cli::render_event),
        Command::DeadLetters { subscriber, limit } => {
            let mut p = format!("/api/dead-letters?limit={limit}");
            if let Some(s) = subscriber {
                p.push_str(&format!("&subscriber={}", enc(s)));
            }
            (Method::GET, p, cli::render_dead_letters)
        }
        Command::Replay { id, subscriber } => {
            let mut p = format!("/api/events/{}/replay", enc(id));
            if let Some(s) = subscriber {
                p.push_str(&format!("?subscriber={}", enc(s)));
            }
            (Method::POST, p, |v| {
                format!("queued {} for {}\n", v["id"].as_str().unwrap_or("?"), v["queued"])
            })
        }
        Command::ReplayDeadLetters { subscriber } => {
            let mut p = "/api/dead-letters/replay".to_string();
            if let Some(s) = subscriber {
                p.push_str(&format!("?subscriber={}", enc(s)));
            }
            (Method::POST, p, |v| {
                format!("re-queued {} dead letters\n", v["requeued"])
            })
        }
        Command::Subscribers => (Method::GET, "/api/subscribers".into(), cli::render_subscribers),
        Command::Run | Command::CheckConfig | Command::GenSecret => unreachable!("handled in main"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(cli::call(&target, method, &path)) {
        Ok(v) => {
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    hookrelay::logging::init(&config.log);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookrelay")
        .build()
        .expect("runtime");
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The watchdog interval systemd asks for, as libsystemd's sd_watchdog_enabled
/// reads it: `WATCHDOG_USEC`, unless `WATCHDOG_PID` names another process.
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let handle = hookrelay::start(config).await?;
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status("serving")]);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "hookrelay ready");

    if let Some(usec) = watchdog_usec() {
        let app = handle.app.clone();
        let period = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                // Ping only while the store writer and the store answer: a
                // daemon that cannot persist should be restarted, not kept.
                let store = app.store.clone();
                let healthy = tokio::time::timeout(period, tokio::task::spawn_blocking(move || store.check_writable()))
                    .await
                    .is_ok_and(|r| matches!(r, Ok(Ok(()))));
                app.store_ok.store(healthy, Ordering::Relaxed);
                if healthy {
                    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
                } else {
                    tracing::error!("store check failed; withholding the watchdog ping");
                }
            }
        });
    }

    let mut health = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = health.tick() => {
                if handle.app.store.has_failed() {
                    // sled cannot recover from a write error in-process; what was
                    // acknowledged is on disk. Exit so the supervisor restarts us.
                    let _ = sd_notify::notify(false, &[NotifyState::Status("store failed; restarting")]);
                    tracing::error!("the store failed a write; exiting so that hookrelay is restarted");
                    std::process::exit(75);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let mut states = vec![NotifyState::Reloading];
                if let Ok(m) = NotifyState::monotonic_usec_now() {
                    states.push(m);
                }
                let _ = sd_notify::notify(false, &states);
                match handle.reload() {
                    Ok(()) => {}
                    Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                }
                let _ = sd_notify::notify(false, &[NotifyState::Ready]);
            }
        }
    }
    tracing::info!("shutting down");
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    if tokio::time::timeout(Duration::from_secs(8), handle.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown took too long; exiting");
    }
    tracing::info!("stopped");
    Ok(())
}
