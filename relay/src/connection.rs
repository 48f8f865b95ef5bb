//! Connecting to NATS with the relay's identity and TLS settings (`[nats]`).
//!
//! The work is the service shell's ([`shirase_service::nats`]); this module only turns the
//! relay's [`NatsConfig`] into its settings. A server that refuses the relay (wrong nkey seed,
//! unknown user, a certificate the relay does not trust) is a configuration mistake, not an
//! outage: [`connect_lazily`] reports it at once, naming the settings to check, instead of
//! retrying in silence the way it does for a server that is merely unreachable.

use async_nats::ConnectOptions;
use shirase_service::nats::{self, NatsSettings};

pub use shirase_service::nats::ConnectError;

use crate::config::NatsConfig;

/// The connection name the relay shows the server.
pub const CONNECTION_NAME: &str = "shirase-relay";

/// The service shell's settings from `[nats]` (field names as in relay.toml).
pub fn settings(config: &NatsConfig) -> NatsSettings {
    NatsSettings {
        credentials_file: config.credentials_file.clone(),
        nkey_seed_file: config.nkey_seed_file.clone(),
        tls_ca_file: config.tls_ca_file.clone(),
        tls_cert_file: config.tls_cert_file.clone(),
        tls_key_file: config.tls_key_file.clone(),
        tls_required: config.tls_required,
        inbox_prefix: Some(config.inbox_prefix.clone()),
        ..NatsSettings::new(config.urls.clone(), CONNECTION_NAME)
    }
}

/// Connection options from the configuration.
pub async fn options(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    nats::options(&settings(config)).await
}

/// Connect, failing if no server answers (provisioning, tools).
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    nats::connect(&settings(config)).await
}

/// Connect in the background (serving): the relay starts, answers `/readyz` with 503 and
/// ingest with 503 until a server is reachable. A server that answers but refuses the relay's
/// identity or certificate fails at once with [`ConnectError::Refused`].
pub async fn connect_lazily(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    nats::connect_lazily(&settings(config)).await
}
