//! What a [`PullClient`](crate::PullClient) needs to reach one provider's PULL API. Callers
//! build it from their own configuration (the agent's `[[providers]]`, the relay's
//! `[providers.watch]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The settings of one provider's PULL API client.
#[derive(Debug, Clone, PartialEq)]
pub struct PullClientConfig {
    /// Base URL; data requests go to `<base>/api/<interface id>`.
    pub base_url: String,
    /// Token endpoint URL (also the `aud` of the client assertion).
    pub token_url: String,
    /// OAuth 2.0 client id (`iss` and `sub` of the client assertion).
    pub client_id: String,
    /// File holding the client secret (trailing newline ignored), read by
    /// [`PullClient::new`](crate::PullClient::new).
    pub client_secret_file: PathBuf,
    /// The configuration field that names `client_secret_file`, for the error when it cannot
    /// be read (e.g. `providers[001].client_secret_file`).
    pub client_secret_field: String,
    /// Query parameter names.
    pub params: ParamNames,
    /// Client timeout per request (a little over the provider's 30 s).
    pub timeout: Duration,
}

/// Names of the PULL API query parameters (the standard does not fix them).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ParamNames {
    /// Inclusive lower bound of the DB update timestamp.
    pub updated_from: String,
    /// Exclusive upper bound.
    pub updated_to: String,
    /// Comma-separated addressee numbers.
    pub atena_no: String,
}

impl Default for ParamNames {
    fn default() -> Self {
        Self {
            updated_from: "updated_from".into(),
            updated_to: "updated_to".into(),
            atena_no: "atena_no".into(),
        }
    }
}
