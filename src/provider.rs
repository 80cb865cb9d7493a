//! The upstream provider platform (kie.ai's product family): what its products
//! look like on the wire, and a client for its API.
//!
//! Owns: product facts (status endpoints, states, task-id locations, rate
//! limits), the mapping of a polled record to the callback the provider would
//! have sent, verification of a received callback against the provider's
//! record, and the HTTP client (key, timeouts, error codes, rate limits).
//! Does not own: presets as route configuration, expected-task records, the
//! reconciler loop or the submit-proxy endpoint (they call into this module).
//!
//! Sub-modules, one concern each:
//! - [`product`]: per-product facts and state classification.
//! - [`loose`]: tolerant JSON reading for the provider's inconsistent shapes.
//! - [`record`]: a polled status record, parsed once.
//! - [`shape`]: terminal record → that product's callback body.
//! - [`verify`]: a received callback compared with the provider's record.
//! - [`outcome`]: answer codes → retry later / give up, back-off, the error type.
//! - [`limits`]: per-key and per-task request pacing on tokio's clock.
//! - [`client`]: the HTTP client (`record`, `submit`, `download_url`).
//! - `create`: each product's create endpoints (what the submit proxy may call).
//! - `transport`: the wire under it (key header, TLS, timeouts, base URL rules).

pub mod client;
mod create;
pub mod limits;
pub mod loose;
pub mod outcome;
pub mod product;
pub mod record;
pub mod shape;
mod transport;
pub mod verify;

pub use client::{ApiKey, ClientConfig, CreateCall, ProviderClient, SubmitAnswer, DEFAULT_BASE_URL};
pub use create::usable_task_id;
pub use outcome::{Action, BackoffPolicy, ErrorKind, ProviderError};
pub use product::{CallbackStage, Product, Stage};
pub use record::Record;
pub use shape::to_callback;
pub use transport::check_base_url;
pub use verify::{verify, verify_archiving, Verdict};
