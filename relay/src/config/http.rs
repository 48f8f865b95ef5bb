//! `[http]`: the relay's listener (ingest, health, metrics, operator API).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::common::{Problems, rebase};

/// `[http]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Listen address.
    pub listen: String,
    /// Largest body.
    pub body_limit_bytes: usize,
    /// Most notices per batch.
    pub max_batch_notices: usize,
    /// Retry-After on 503.
    pub retry_after: String,
    /// Server certificate chain (PEM): set with `tls_key_file` to serve HTTPS only.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest body in bytes.
    pub body_limit_bytes: usize,
    /// Most notices per batch.
    pub max_batch_notices: usize,
    /// Retry-After on 503.
    pub retry_after: Duration,
    /// Certificate and key of the HTTPS listener; `None` = plain HTTP. The files are read when
    /// `serve` starts (errors there name `http.tls_cert_file` / `http.tls_key_file`).
    pub tls: Option<shirase_service::https::ServerTls>,
}

impl HttpConfig {
    /// Validate `[http]`; `None` when the listen address is unusable.
    pub(super) fn validate(
        raw: &RawHttp,
        base_dir: Option<&Path>,
        p: &mut Problems,
    ) -> Option<Self> {
        let listen = raw.listen.parse::<SocketAddr>().ok();
        if listen.is_none() {
            p.push(
                "http.listen",
                format!(
                    "{:?} is not an address:port (e.g. 127.0.0.1:8080)",
                    raw.listen
                ),
            );
        }
        if raw.body_limit_bytes < 1024 {
            p.push("http.body_limit_bytes", "must be at least 1024");
        }
        let retry_after = p.duration("http.retry_after", &raw.retry_after);
        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (Some(cert), Some(key)) => Some(shirase_service::https::ServerTls {
                cert_file: rebase(cert, base_dir),
                key_file: rebase(key, base_dir),
                cert_field: "http.tls_cert_file",
                key_field: "http.tls_key_file",
            }),
            (None, None) => None,
            (Some(_), None) => {
                p.push(
                    "http.tls_key_file",
                    "required with http.tls_cert_file: the private key (PEM) of the certificate",
                );
                None
            }
            (None, Some(_)) => {
                p.push(
                    "http.tls_cert_file",
                    "required with http.tls_key_file: the certificate chain (PEM) of the key",
                );
                None
            }
        };
        if raw.max_batch_notices == 0 || raw.max_batch_notices > 1000 {
            p.push(
                "http.max_batch_notices",
                "must be between 1 and 1000 (the protocol's batch limit)",
            );
        }
        Some(Self {
            listen: listen?,
            body_limit_bytes: raw.body_limit_bytes,
            max_batch_notices: raw.max_batch_notices,
            retry_after: retry_after.unwrap_or_default(),
            tls,
        })
    }
}
