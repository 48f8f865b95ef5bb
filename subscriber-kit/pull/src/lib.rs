//! Shirase's client of a provider's PULL API (docs/pull-api.md), shared by the agent
//! (`shirase-subscriber-kit`) and the relay's watcher.
//!
//! Module map:
//! - [`config`]: [`PullClientConfig`] (what the client needs to reach one provider) and the
//!   per-interface additions [`InterfaceApi`].
//! - [`profile`]: [`ApiProfile`], how a provider spells requests and answers
//!   (`[providers.api]`): request building, answer parsing, precision.
//! - [`client`]: [`PullClient`]: OAuth 2.0 client_credentials with a client_secret_jwt
//!   assertion, GET requests, and the [`Outcome`] classes of every answer.
//! - [`outcome`]: the [`Outcome`] classes of an answer.
//! - [`limiter`]: [`Limiter`], per-provider concurrency and request-rate limits.
//! - [`wire`]: the JSON bodies on the wire (data rows, error bodies, token answers) and the
//!   parsed [`Row`].
//!
//! Row contents are personal data: this crate never logs them.

mod capped;
pub mod client;
pub mod config;
pub mod limiter;
pub mod outcome;
pub mod profile;
pub mod wire;

pub use client::{
    ClientError, Outcome, PullClient, PullRequest, classify, error_without_url, http_client,
    token_answer,
};
pub use config::{CaFile, InterfaceApi, PullClientConfig};
pub use limiter::Limiter;
pub use profile::{ApiProfile, RawApi, RowsOrder};
pub use wire::Row;
