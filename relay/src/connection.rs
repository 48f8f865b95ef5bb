//! Connecting to NATS with the relay's identity and TLS settings (`[nats]`).
//!
//! A server that refuses the relay (wrong nkey seed, unknown user, a certificate the relay does
//! not trust) is a configuration mistake, not an outage: [`connect_lazily`] reports it at once,
//! naming the settings to check, instead of retrying in silence the way it does for a server
//! that is merely unreachable.

use async_nats::{ConnectErrorKind, ConnectOptions};

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
    /// A configured TLS file is missing.
    #[error("{field}: file {path} does not exist or is not a file")]
    TlsFile {
        /// The setting, e.g. `nats.tls_ca_file`.
        field: &'static str,
        /// The file.
        path: String,
    },
    /// The server refused the relay's identity or the TLS handshake failed: retrying will not
    /// help.
    #[error("connecting to NATS at {urls}: {source}; check {fields}")]
    Refused {
        /// The URLs tried.
        urls: String,
        /// The settings to check.
        fields: &'static str,
        /// The error.
        #[source]
        source: async_nats::ConnectError,
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
            .map_err(|source| ConnectError::Credentials {
                path: f.display().to_string(),
                source,
            })?
            .name("shirase-relay");
    }
    if let Some(f) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(f).map_err(|source| ConnectError::Credentials {
            path: f.display().to_string(),
            source,
        })?;
        opts = opts.nkey(seed.trim().to_owned());
    }
    for (field, f) in [
        ("nats.tls_ca_file", &config.tls_ca_file),
        ("nats.tls_cert_file", &config.tls_cert_file),
        ("nats.tls_key_file", &config.tls_key_file),
    ] {
        if let Some(f) = f
            && !f.is_file()
        {
            return Err(ConnectError::TlsFile {
                field,
                path: f.display().to_string(),
            });
        }
    }
    if let Some(ca) = &config.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if config.tls_required {
        opts = opts.require_tls(true);
    }
    Ok(opts)
}

/// The settings a failed TLS handshake points at.
const TLS_FIELDS: &str = "nats.tls_ca_file / nats.tls_cert_file / nats.tls_key_file / nats.tls_required against the server's certificate";

/// Sort a failed connection into "fix the configuration" and "the server is not there".
fn classify(config: &NatsConfig, source: async_nats::ConnectError) -> ConnectError {
    let urls = config.urls.join(",");
    // rustls reports a refused handshake (unknown issuer, bad signature, a peer that does not
    // speak TLS) as an I/O error of kind InvalidData; a server that is down is a different kind.
    let tls_io = std::error::Error::source(&source)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::InvalidData);
    match source.kind() {
        ConnectErrorKind::Io if tls_io => ConnectError::Refused {
            urls,
            fields: TLS_FIELDS,
            source,
        },
        ConnectErrorKind::Tls => ConnectError::Refused {
            urls,
            fields: TLS_FIELDS,
            source,
        },
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ConnectError::Refused {
                urls,
                fields: "nats.nkey_seed_file / nats.credentials_file against the server's authorization",
                source,
            }
        }
        _ => ConnectError::Connect { urls, source },
    }
}

/// Connect, failing if no server answers (provisioning, tools).
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    let opts = options(config).await?;
    opts.connect(addrs(config))
        .await
        .map_err(|e| classify(config, e))
}

/// Connect in the background (serving): the relay starts, answers `/readyz` with 503 and
/// ingest with 503 until a server is reachable. A server that answers but refuses the relay's
/// identity or certificate fails at once with [`ConnectError::Refused`].
pub async fn connect_lazily(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    match options(config).await?.connect(addrs(config)).await {
        Ok(c) => return Ok(c),
        Err(e) => match classify(config, e) {
            refused @ ConnectError::Refused { .. } => return Err(refused),
            other => tracing::warn!("{other}; retrying in the background"),
        },
    }
    let opts = options(config).await?.retry_on_initial_connect();
    opts.connect(addrs(config))
        .await
        .map_err(|e| classify(config, e))
}

/// The configured URLs as server addresses (validated when the configuration was loaded).
fn addrs(config: &NatsConfig) -> Vec<async_nats::ServerAddr> {
    config.urls.iter().filter_map(|u| u.parse().ok()).collect()
}
