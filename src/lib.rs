//! hookrelay: the public callback endpoint for private services.
//!
//! Providers POST results to it; it answers in milliseconds, keeps every
//! accepted callback durably, drops duplicates, and delivers each callback to
//! every subscriber with its own retries, backoff and Standard Webhooks
//! signature.
//!
//! Modules, each owning one concern:
//! - [`config`]: the only module that knows TOML; raw → validated config.
//! - [`tls`]: rustls server and client configurations (ring provider).
//! - [`server`]: listeners, connection limits, timeouts, graceful drain.
//! - [`ingest`]: one provider request → one answer (the status mapping).
//! - [`auth`]: tokens, allowlists, provider signatures, delivery signatures.
//! - [`store`]: the only module that knows sled; group-committed writes.
//! - [`delivery`]: per-subscriber lanes, retries, circuit, dead letters.
//! - [`admin`]: health, readiness, metrics and the JSON API.
//! - [`metrics`]: the Prometheus registry.
//! - [`app`]: wiring, reload and shutdown.
//! - [`cli`]: the admin subcommands (a client of the admin API).
//! - [`logging`]: tracing set-up.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod store;
pub mod tls;

pub use app::{start, Handle};
pub use config::Config;
