//! What a [`PullClient`](crate::PullClient) needs to reach one provider's PULL API. Callers
//! build it from their own configuration (the agent's `[[providers]]`, the relay's
//! `[providers.watch]`).

use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use shirase_proto::InterfaceId;

use crate::profile::ApiProfile;

/// The settings of one provider's PULL API client.
#[derive(Debug, Clone, PartialEq)]
pub struct PullClientConfig {
    /// Base URL; data requests go to `<base><api.path>`.
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
    /// How this provider's API spells requests and answers (`[providers.api]`).
    pub api: ApiProfile,
    /// Per interface: the version (版数) for `{version}` and an own path template.
    pub interfaces: BTreeMap<InterfaceId, InterfaceApi>,
    /// The municipality code for `{municipality}`.
    pub municipality: Option<String>,
    /// Client timeout per request (a little over the provider's 30 s).
    pub timeout: Duration,
    /// Who this client talks to, in errors (e.g. `provider 001`).
    pub provider: String,
    /// A private CA to trust (besides the system roots) for the PULL API and token endpoint.
    pub ca_file: Option<CaFile>,
}

/// A CA certificate file (PEM, one or more certificates) to trust, and the configuration field
/// naming it (for the error when it cannot be used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The file.
    pub path: PathBuf,
    /// Its configuration field, e.g. `providers[0].ca_file`.
    pub field: String,
}

/// What an interface adds to its provider's profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceApi {
    /// The version (版数) the subscriber reads, for `{version}`.
    pub version: Option<String>,
    /// The interface's own path template, overriding the profile's.
    pub path: Option<String>,
}
