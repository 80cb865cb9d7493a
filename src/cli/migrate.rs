//! `hookrelay migrate`: bring a 0.1 store to this version's layout offline and
//! say what was carried over (or that there was nothing to migrate); with
//! `--discard-0.1-rows`, drop what 0.1 wrote to a store already migrated.

use std::process::ExitCode;

use super::Cli;
use crate::config::Config;

pub(super) fn run(cli: &Cli, discard_v1_rows: bool) -> ExitCode {
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init_command(&config.log);
    let path = &config.store.path;
    // A relay in cluster mode never reads `store.path`: a migration there
    // would report deliveries carried over that nobody makes (and leave a
    // store 0.1 can no longer read).
    if matches!(config.store.backend, crate::config::StoreBackend::Nats(_)) {
        eprintln!(
            "error: {}: store.backend = \"nats\": a relay in cluster mode keeps its events in NATS and never \
             reads store.path ({}); there is no migration from the embedded store to NATS, nothing was changed. \
             Let the backlog drain first (hookrelay 0.1, or this version with the embedded store: without \
             store.backend, where it migrates on start), then switch to NATS",
            config.file.display(),
            path.display()
        );
        return ExitCode::from(2);
    }
    // sled's files: without them there is nothing to migrate (and opening
    // would create an empty store where a mistyped path points).
    if !path.join("conf").is_file() {
        eprintln!(
            "error: {}: no store at {} (key `store.path`): nothing to migrate",
            config.file.display(),
            path.display()
        );
        return ExitCode::from(2);
    }
    let rt = super::runtime();
    let result = rt.block_on(async {
        let opts = crate::store::Options {
            discard_v1_rows,
            ..crate::store::Options::of(&config)
        };
        let store = crate::store::Store::open_sled(&opts)?;
        store.register(&crate::store::Topology::of(&config)).await?;
        let opened = store.opened();
        store.close().await;
        Ok::<_, crate::store::StoreError>(opened)
    });
    use crate::store::sled::Opened;
    match result {
        Ok(Some(Opened::FromV1(m))) => {
            println!(
                "{}: migrated from 0.1: {} events, {} deliveries pending, {} dead letters",
                path.display(),
                m.events,
                m.pending,
                m.dead_letters
            );
            ExitCode::SUCCESS
        }
        Ok(Some(Opened::Created)) => {
            println!(
                "{}: held no events (no 0.1 data, no version 2 layout): now in this version's layout; \
                 nothing to migrate",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Some(Opened::Current) | None) => {
            println!(
                "{}: already in this version's layout; nothing to migrate",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Named once: some store errors name the path already.
            let (path, msg) = (config.store.path.display().to_string(), e.to_string());
            if msg.contains(&format!("({path})")) {
                eprintln!("error: {msg}");
            } else {
                eprintln!("error: {path}: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}
