//! `[nats]` and `[nats_auth]`: the relay's NATS identity and TLS, publishing, and the
//! authorization it generates. The agent's `[nats]` uses the same keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::common::{Problems, check_nkey, rebase};

/// `[nats]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Server URLs.
    pub urls: Vec<String>,
    /// Optional `.creds` file.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Optional nkey seed file.
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the servers' certificates.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// Subject prefix of the relay's replies; absent = `_INBOX_relay`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
    /// PubAck timeout.
    pub publish_timeout: String,
    /// Attempts per notice.
    pub publish_attempts: u32,
    /// Try each HTTP batch as one JetStream atomic batch.
    pub atomic_batches: bool,
    /// Notices awaiting a PubAck at once, across all requests.
    pub max_notices_in_flight: usize,
}

/// `[nats_auth]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNatsAuth {
    /// Public nkey of the relay/operator identity.
    #[serde(default)]
    pub relay_nkey: Option<String>,
}

/// Validated `[nats]`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs.
    pub urls: Vec<String>,
    /// `.creds` file.
    pub credentials_file: Option<PathBuf>,
    /// nkey seed file.
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted for the servers' certificates; `None` = system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (always together with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub tls_required: bool,
    /// Subject prefix of the relay's replies (default
    /// [`shirase_proto::subject::relay_inbox_prefix`]); the generated authorization lets the
    /// relay identity subscribe under it only.
    pub inbox_prefix: String,
    /// PubAck timeout per attempt.
    pub publish_timeout: Duration,
    /// Attempts per notice.
    pub publish_attempts: u32,
    /// Try each HTTP batch as one JetStream atomic batch (ADR-50) before falling back to
    /// per-notice publishing; provisioning then sets `allow_atomic` on the notice stream.
    pub atomic_batches: bool,
    /// Notices awaiting a PubAck at once, across all requests; a batch waits for room for
    /// all its notices before it sends any.
    pub max_notices_in_flight: usize,
}

impl NatsConfig {
    /// Validate `[nats]` (`max_batch_notices` is `http.max_batch_notices`). The files are read
    /// when connecting (a container mounts them at run time, so a configuration check on another
    /// host must not require them); errors there name the field.
    pub(super) fn validate(
        raw: &RawNats,
        max_batch_notices: usize,
        base_dir: Option<&Path>,
        p: &mut Problems,
    ) -> Self {
        if raw.urls.is_empty() {
            p.push("nats.urls", "at least one NATS server URL is required");
        }
        for (i, u) in raw.urls.iter().enumerate() {
            if u.parse::<async_nats::ServerAddr>().is_err() {
                p.push(
                    format!("nats.urls[{i}]"),
                    format!("{u:?} is not a NATS URL (e.g. nats://127.0.0.1:4222)"),
                );
            }
        }
        let publish_timeout = p.duration("nats.publish_timeout", &raw.publish_timeout);
        if raw.publish_attempts == 0 || raw.publish_attempts > 20 {
            p.push("nats.publish_attempts", "must be between 1 and 20");
        }
        if raw.max_notices_in_flight < max_batch_notices || raw.max_notices_in_flight > 100_000 {
            p.push(
                "nats.max_notices_in_flight",
                format!(
                    "must be between http.max_batch_notices ({}) and 100000, got {}",
                    max_batch_notices, raw.max_notices_in_flight
                ),
            );
        }
        if raw.credentials_file.is_some() && raw.nkey_seed_file.is_some() {
            p.push(
                "nats.nkey_seed_file",
                "give either nats.credentials_file or nats.nkey_seed_file, not both",
            );
        }
        if raw.tls_cert_file.is_some() != raw.tls_key_file.is_some() {
            p.push(
                "nats.tls_key_file",
                "nats.tls_cert_file and nats.tls_key_file go together (client certificate and its key)",
            );
        }
        let inbox_prefix = match &raw.inbox_prefix {
            Some(prefix) => {
                if let Err(e) = shirase_proto::subject::check_inbox_prefix(prefix) {
                    p.push("nats.inbox_prefix", e.message);
                }
                prefix.clone()
            }
            None => shirase_proto::subject::relay_inbox_prefix(),
        };
        let mut file = |name: &str, f: &Option<PathBuf>| {
            p.optional_path(&format!("nats.{name}"), f)
                .map(|f| rebase(&f, base_dir))
        };
        Self {
            urls: raw.urls.clone(),
            credentials_file: file("credentials_file", &raw.credentials_file),
            nkey_seed_file: file("nkey_seed_file", &raw.nkey_seed_file),
            tls_ca_file: file("tls_ca_file", &raw.tls_ca_file),
            tls_cert_file: file("tls_cert_file", &raw.tls_cert_file),
            tls_key_file: file("tls_key_file", &raw.tls_key_file),
            tls_required: raw.tls_required,
            inbox_prefix,
            publish_timeout: publish_timeout.unwrap_or_default(),
            publish_attempts: raw.publish_attempts,
            atomic_batches: raw.atomic_batches,
            max_notices_in_flight: raw.max_notices_in_flight,
        }
    }
}

impl RawNatsAuth {
    /// Validate `[nats_auth]`: the relay's public nkey, if given.
    pub(super) fn validate(&self, p: &mut Problems) -> Option<String> {
        if let Some(k) = &self.relay_nkey {
            check_nkey(p, "nats_auth.relay_nkey", k);
        }
        self.relay_nkey.clone()
    }
}
