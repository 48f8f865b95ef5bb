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
    /// A request's headers must arrive within this time.
    pub header_read_timeout: String,
    /// A request's body must arrive within this time once its headers are in.
    pub body_timeout: String,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: String,
    /// Connections served at once.
    pub max_connections: usize,
    /// Requests per second each provider may send (token bucket refill).
    pub provider_rate_per_sec: f64,
    /// Requests a provider may send at once above its rate (token bucket size).
    pub provider_burst: u32,
    /// Start with committed dev credentials even when listening beyond loopback.
    pub allow_dev_credentials: bool,
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
    /// Header read timeout, idle timeout and connection cap of every listener.
    pub limits: shirase_service::https::ConnLimits,
    /// Longest time to receive a request body once its headers are in.
    pub body_timeout: Duration,
    /// Each provider's request rate (token bucket refill per second).
    pub provider_rate_per_sec: f64,
    /// Each provider's burst (token bucket size).
    pub provider_burst: u32,
    /// Start with committed dev credentials even when listening beyond loopback (dev and demo
    /// setups in containers only).
    pub allow_dev_credentials: bool,
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
        let limits = shirase_service::https::ConnLimits {
            header_read_timeout: positive(p, "http.header_read_timeout", &raw.header_read_timeout),
            idle_timeout: positive(p, "http.idle_timeout", &raw.idle_timeout),
            max_connections: raw.max_connections,
        };
        let body_timeout = positive(p, "http.body_timeout", &raw.body_timeout);
        if raw.max_connections == 0 {
            p.push(
                "http.max_connections",
                "must be at least 1 (connections served at once)",
            );
        }
        if !(raw.provider_rate_per_sec.is_finite() && raw.provider_rate_per_sec > 0.0) {
            p.push(
                "http.provider_rate_per_sec",
                "must be a positive number of requests per second",
            );
        }
        if raw.provider_burst == 0 {
            p.push(
                "http.provider_burst",
                "must be at least 1 (requests a provider may send at once)",
            );
        }
        Some(Self {
            listen: listen?,
            body_limit_bytes: raw.body_limit_bytes,
            max_batch_notices: raw.max_batch_notices,
            retry_after: retry_after.unwrap_or_default(),
            tls,
            limits,
            body_timeout,
            provider_rate_per_sec: raw.provider_rate_per_sec,
            provider_burst: raw.provider_burst,
            allow_dev_credentials: raw.allow_dev_credentials,
        })
    }
}

/// A duration that must be above zero (a zero timeout would close every connection at once).
fn positive(p: &mut Problems, path: &str, value: &str) -> Duration {
    match p.duration(path, value) {
        Some(d) if d.is_zero() => {
            p.push(path, "must be longer than 0s");
            d
        }
        Some(d) => d,
        None => Duration::ZERO,
    }
}
