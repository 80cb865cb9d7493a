//! Log set-up: human lines on a terminal, plain (journald-friendly: no
//! timestamps, no colours) when not, JSON on request. `RUST_LOG` overrides
//! the configured level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
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
}
