//! The state every HTTP handler shares (ingest, health, metrics, operator API), and how it is
//! built. Its own module so that the handlers' modules and the server that routes to them do
//! not import each other.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::connection::{self, ConnectError};
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::rate_limit::ProviderRateLimit;

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Provider credentials.
    pub auth: Authenticator,
    /// Publishes notices.
    pub publisher: Publisher,
    /// Each provider's request rate.
    pub rate_limit: ProviderRateLimit,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The NATS client (for readiness).
    pub client: async_nats::Client,
    /// JetStream (for readiness).
    pub js: async_nats::jetstream::Context,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// NATS connection setup failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// The HTTPS certificate or key (`http.tls_cert_file` / `http.tls_key_file`) is unusable.
    #[error("HTTPS listener: {0}")]
    Tls(#[from] shirase_service::https::TlsFileError),
}

/// Build the state: connect to NATS (in the background if it is down) and set up publishing.
pub async fn state(config: Config) -> Result<Arc<AppState>, ServeError> {
    let client = connection::connect_lazily(&config.nats).await?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(config.nats.publish_timeout)
        .build(client.clone());
    let metrics = Arc::new(Metrics::new());
    let publisher = Publisher::new(
        client.clone(),
        config.nats.publish_attempts,
        config.nats.publish_timeout,
        config.nats.atomic_batches,
        config.nats.max_notices_in_flight,
        metrics.clone(),
    );
    let auth = Authenticator::from_config(&config);
    let rate_limit = ProviderRateLimit::new(
        config.http.provider_rate_per_sec,
        config.http.provider_burst,
    );
    Ok(Arc::new(AppState {
        config,
        auth,
        publisher,
        rate_limit,
        metrics,
        client,
        js,
    }))
}
