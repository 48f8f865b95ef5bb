//! Shirase subscriber kit: the agent that turns change notices into coalesced PULL API calls.
//! Embed it in a Rust consumer system (implement [`sink::Sink`]) or run the `shirase-agent`
//! binary.
//!
//! Module map:
//! - [`config`]: layered, validated configuration (`agent.default.toml` → file → `SHIRASE_AGENT__*`
//!   environment variables, e.g. `SHIRASE_AGENT__BATCH__SIZE=500`).
//! - [`agent`]: the loop: fetch → plan (coalesce) → pull → sink → checkpoint → settle → ack;
//!   [`run`].
//! - [`coalesce`]: one plan per interface per batch (FROM/TO, keyed pulls, bisection points).
//! - [`coverage`]: which notices a pull satisfied.
//! - [`pull_client`]: the provider's PULL API (OAuth2 client_secret_jwt, outcome classes); the
//!   `shirase-pull` crate's `client` module, re-exported under this path.
//! - [`limiter`]: per-provider concurrency and request-rate limits (`shirase-pull`'s `limiter`).
//! - [`maintenance`]: no request to a provider inside its maintenance window; the [`maintenance::Clock`].
//! - [`checkpoint`]: compare-and-set checkpoints in the JetStream KV bucket.
//! - [`sink`]: JSON Lines files, HTTP POST, command, and the embedding trait; files named by
//!   file-ready notices go to the same sinks ([`sink::Sink::deliver_file`]).
//! - [`files`]: file integration: the announced file read through the agent's mount of the
//!   share, verified (size, SHA-256) while streamed, copied atomically; never written to.
//! - [`dlq`]: dead letters of permanent failures.
//! - [`alert`]: alerts (エラー通知) to `shirase.alert.<severity>.agent`.
//! - [`metrics`]: Prometheus metrics.
//! - [`watchdog`]: when unfinished notices count as a stalled consumer.
//! - [`outage`]: one "check the operating status" alert per provider outage, one recovery message.
//! - [`sweep`]: scheduled and gap-triggered differential pulls of every interface.
//!
//! Invariants: the agent never creates streams, consumers or buckets (only the relay does);
//! it acks a notice only after the sink accepted the data and the checkpoint was stored; it
//! never logs row contents.

pub mod agent;
pub mod alert;
pub mod checkpoint;
pub mod coalesce;
pub mod config;
pub mod coverage;
pub mod dlq;
pub mod files;
pub mod maintenance;
pub mod metrics;
pub mod probe;
pub mod read_log;
pub mod sink;
pub mod watchdog;

pub use shirase_pull::client as pull_client;
pub use shirase_pull::limiter;

pub use agent::{Agent, AgentError, AgentErrorKind, run};
pub use config::{Config, ConfigError};
pub mod outage;
pub mod sweep;
