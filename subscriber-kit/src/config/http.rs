//! `[http]`: the agent's `/healthz` and `/metrics` listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::common::Problems;

/// `[http]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `host:port`, or empty for no listener.
    #[serde(default)]
    pub listen: String,
    /// Server certificate chain (PEM); with `tls_key_file` the listener serves HTTPS only.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address; `None` = no HTTP listener.
    pub listen: Option<SocketAddr>,
    /// Certificate and key of the HTTPS listener; `None` = plain HTTP. The files are read when
    /// the agent starts (errors there name `http.tls_cert_file` / `http.tls_key_file`).
    pub tls: Option<shirase_service::https::ServerTls>,
}

impl HttpConfig {
    /// Validate `[http]`. The certificate files must exist.
    pub(super) fn validate(raw: &RawHttp, p: &mut Problems) -> Self {
        let listen = if raw.listen.is_empty() {
            None
        } else {
            let a = raw.listen.parse::<SocketAddr>().ok();
            if a.is_none() {
                p.push(
                    "http.listen",
                    format!(
                        "must be host:port (e.g. 127.0.0.1:9464) or empty, got {:?}",
                        raw.listen
                    ),
                );
            }
            a
        };
        let mut file = |name: &str, f: &Option<PathBuf>| {
            let path = format!("http.{name}");
            let f = p.optional_path(&path, f)?;
            if !f.is_file() {
                p.push(
                    path,
                    format!("file {} does not exist or is not a file", f.display()),
                );
            }
            Some(f)
        };
        let cert = file("tls_cert_file", &raw.tls_cert_file);
        let key = file("tls_key_file", &raw.tls_key_file);
        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (Some(_), None) | (None, Some(_)) => {
                let (field, other) = if raw.tls_key_file.is_none() {
                    ("http.tls_key_file", "http.tls_cert_file")
                } else {
                    ("http.tls_cert_file", "http.tls_key_file")
                };
                p.push(
                    field,
                    format!(
                        "required with {other}: http.tls_cert_file and http.tls_key_file go together (certificate chain and its private key, PEM)"
                    ),
                );
                None
            }
            _ => cert
                .zip(key)
                .map(|(cert_file, key_file)| shirase_service::https::ServerTls {
                    cert_file,
                    key_file,
                    cert_field: "http.tls_cert_file",
                    key_field: "http.tls_key_file",
                }),
        };
        Self { listen, tls }
    }
}
