//! Connecting to NATS with the relay's identity (`[nats]` settings).

use async_nats::ConnectOptions;

use crate::config::NatsConfig;

/// Why the relay could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials or nkey seed file could not be read.
    #[error("reading {path}: {source}")]
    Credentials {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached.
    #[error("connecting to NATS at {urls}: {source}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The error.
        #[source]
        source: async_nats::ConnectError,
    },
}

/// Connection options from the configuration.
pub async fn options(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    let mut opts = ConnectOptions::new().name("shirase-relay");
    if let Some(f) = &config.credentials_file {
        opts = ConnectOptions::with_credentials_file(f.clone())
            .await
            .map_err(|source| ConnectError::Credentials { path: f.display().to_string(), source })?
            .name("shirase-relay");
    }
    if let Some(f) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(f)
            .map_err(|source| ConnectError::Credentials { path: f.display().to_string(), source })?;
        opts = opts.nkey(seed.trim().to_owned());
    }
    Ok(opts)
}

/// Connect, failing if no server answers (provisioning, tools).
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    let opts = options(config).await?;
    opts.connect(addrs(config))
        .await
        .map_err(|source| ConnectError::Connect { urls: config.urls.join(","), source })
}

/// Connect in the background (serving): the relay starts, answers `/readyz` with 503 and
/// ingest with 503 until a server is reachable.
pub async fn connect_lazily(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    let opts = options(config).await?.retry_on_initial_connect();
    opts.connect(addrs(config))
        .await
        .map_err(|source| ConnectError::Connect { urls: config.urls.join(","), source })
}

/// The configured URLs as server addresses (validated when the configuration was loaded).
fn addrs(config: &NatsConfig) -> Vec<async_nats::ServerAddr> {
    config.urls.iter().filter_map(|u| u.parse().ok()).collect()
}
