//! `[nats]`: the agent's connection to the JetStream cluster. The same keys as the relay's
//! `[nats]` for the same things.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::common::Problems;

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
    /// CA certificate (PEM) of the servers.
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
    /// Subject prefix of this agent's replies; absent = `_INBOX_subscriber_<subscriber>`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
}

/// NATS connection settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs.
    pub urls: Vec<String>,
    /// `.creds` file of this subscriber's account user.
    pub credentials_file: Option<PathBuf>,
    /// File holding this subscriber's NATS nkey seed (`SU...`); not together with
    /// `credentials_file`.
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the servers' certificates; `None` = system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (always together with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub tls_required: bool,
    /// Subject prefix of this agent's replies as configured; `None` = the subscriber's own,
    /// [`shirase_proto::subject::subscriber_inbox_prefix`] (what the relay's generated
    /// authorization lets this subscriber read).
    pub inbox_prefix: Option<String>,
}

impl NatsConfig {
    /// Validate `[nats]`. The files must exist (paths are relative to the working directory).
    pub(super) fn validate(raw: &RawNats, p: &mut Problems) -> Self {
        if raw.urls.is_empty() {
            p.push("nats.urls", "give at least one server URL");
        }
        let mut file = |name: &str, f: &Option<PathBuf>| {
            let path = format!("nats.{name}");
            let f = p.optional_path(&path, f)?;
            if !Path::new(&f).is_file() {
                p.push(
                    path,
                    format!("file {} does not exist or is not a file", f.display()),
                );
            }
            Some(f)
        };
        let credentials_file = file("credentials_file", &raw.credentials_file);
        let nkey_seed_file = file("nkey_seed_file", &raw.nkey_seed_file);
        let tls_ca_file = file("tls_ca_file", &raw.tls_ca_file);
        let tls_cert_file = file("tls_cert_file", &raw.tls_cert_file);
        let tls_key_file = file("tls_key_file", &raw.tls_key_file);
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
        if let Some(prefix) = &raw.inbox_prefix
            && let Err(e) = shirase_proto::subject::check_inbox_prefix(prefix)
        {
            p.push("nats.inbox_prefix", e.message);
        }
        Self {
            urls: raw.urls.clone(),
            credentials_file,
            nkey_seed_file,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            tls_required: raw.tls_required,
            inbox_prefix: raw.inbox_prefix.clone(),
        }
    }
}
