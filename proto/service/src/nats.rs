//! Connecting to NATS with a process's identity and TLS settings.
//!
//! The relay (`[nats]` of relay.toml) and the agent (`[nats]` of agent.toml) name their files a
//! little differently and keep them in different types; both convert theirs into
//! [`NatsSettings`], whose [`NatsFields`] say which configuration field each setting came from,
//! so every error names the field to fix.
//!
//! Each identity replies under its own inbox prefix ([`NatsSettings::inbox_prefix`]), so the
//! server's permissions can keep one identity from receiving another's replies.
//!
//! A server that refuses the identity (wrong nkey seed, unknown user, a certificate that is not
//! trusted) is a configuration mistake, not an outage: [`classify`] tells it apart from a
//! server that is merely unreachable, [`connect_lazily`] fails at once for the first and keeps
//! retrying in the background for the second.

use std::path::{Path, PathBuf};

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};

/// The configuration field of each setting, as error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatsFields {
    /// Server URLs, e.g. `nats.urls`.
    pub urls: &'static str,
    /// The `.creds` file, e.g. `nats.credentials_file` (the agent's is `nats.creds_file`).
    pub credentials_file: &'static str,
    /// The nkey seed file, e.g. `nats.nkey_seed_file`.
    pub nkey_seed_file: &'static str,
    /// The CA file, e.g. `nats.tls_ca_file`.
    pub tls_ca_file: &'static str,
    /// The client certificate file, e.g. `nats.tls_cert_file`.
    pub tls_cert_file: &'static str,
    /// The client key file, e.g. `nats.tls_key_file`.
    pub tls_key_file: &'static str,
    /// The TLS requirement, e.g. `nats.tls_required`.
    pub tls_required: &'static str,
}

impl Default for NatsFields {
    /// The fields of a `[nats]` table (the relay's names).
    fn default() -> Self {
        Self {
            urls: "nats.urls",
            credentials_file: "nats.credentials_file",
            nkey_seed_file: "nats.nkey_seed_file",
            tls_ca_file: "nats.tls_ca_file",
            tls_cert_file: "nats.tls_cert_file",
            tls_key_file: "nats.tls_key_file",
            tls_required: "nats.tls_required",
        }
    }
}

/// How to reach NATS and as whom: the parts of a process's configuration that make a
/// connection. Paths are as the process will open them (already resolved against the
/// configuration file's directory, where that applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URLs (`nats://`, `tls://`, ...).
    pub urls: Vec<String>,
    /// Connection name, shown by the server (`shirase-relay`, `shirase-agent-<subscriber>`).
    pub name: String,
    /// `.creds` file (JWT and nkey seed).
    pub credentials_file: Option<PathBuf>,
    /// File holding an nkey seed.
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted for the servers' certificates; `None` = system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; together with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub tls_required: bool,
    /// The subject prefix of this client's replies (`<prefix>.<unique id>`): every request,
    /// JetStream API call and pull fetch replies under it. `None` = the client library's
    /// `_INBOX`, which an identity may read only on a server without per-identity permissions.
    pub inbox_prefix: Option<String>,
    /// Which configuration field each setting came from.
    pub fields: NatsFields,
}

impl NatsSettings {
    /// Settings with `urls` and `name` only: no identity, no TLS, the `[nats]` field names.
    pub fn new(urls: Vec<String>, name: impl Into<String>) -> Self {
        Self {
            urls,
            name: name.into(),
            credentials_file: None,
            nkey_seed_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            inbox_prefix: None,
            fields: NatsFields::default(),
        }
    }
}

/// A path setting written as a string where empty means unset (the agent's configuration).
pub fn optional_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// Why a connection could not be set up or made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials or nkey seed file could not be read.
    #[error("{field}: reading {path}: {source}")]
    Credentials {
        /// The setting, e.g. `nats.nkey_seed_file`.
        field: &'static str,
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
    /// A client certificate without its key, or a key without its certificate.
    #[error("{field}: must be set together with {other} (a client certificate and its key)")]
    TlsPair {
        /// The setting that is missing.
        field: &'static str,
        /// The setting that is given.
        other: &'static str,
    },
    /// A server URL does not parse.
    #[error("{field}: {url:?} is not a NATS server URL: {message}")]
    Url {
        /// The setting, e.g. `nats.urls`.
        field: &'static str,
        /// The URL as configured.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The server refused the identity or the TLS handshake failed: retrying will not help.
    #[error("connecting to NATS at {urls}: {source}; check {fields}")]
    Refused {
        /// The URLs tried.
        urls: String,
        /// The settings to check.
        fields: String,
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

impl ConnectError {
    /// Whether retrying cannot help: the settings are wrong or the server refused them.
    /// `false` only for [`ConnectError::Connect`] (no server answered).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Connect { .. })
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Connection options from the settings: name, identity (credentials file or nkey seed), TLS,
/// reconnecting for ever. Reads the identity files now and checks that the TLS files exist,
/// so a mistake is reported naming its field before any connection attempt.
pub async fn options(s: &NatsSettings) -> Result<ConnectOptions, ConnectError> {
    let f = &s.fields;
    let mut opts = ConnectOptions::new().name(&s.name).max_reconnects(None);
    if let Some(prefix) = &s.inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix);
    }
    if let Some(path) = &s.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|source| ConnectError::Credentials {
                field: f.credentials_file,
                path: display(path),
                source,
            })?;
    }
    if let Some(path) = &s.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|source| ConnectError::Credentials {
            field: f.nkey_seed_file,
            path: display(path),
            source,
        })?;
        opts = opts.nkey(seed.trim().to_owned());
    }
    for (field, path) in [
        (f.tls_ca_file, &s.tls_ca_file),
        (f.tls_cert_file, &s.tls_cert_file),
        (f.tls_key_file, &s.tls_key_file),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(ConnectError::TlsFile {
                field,
                path: display(path),
            });
        }
    }
    if let Some(ca) = &s.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(cert), Some(key)) => {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        (Some(_), None) => {
            return Err(ConnectError::TlsPair {
                field: f.tls_key_file,
                other: f.tls_cert_file,
            });
        }
        (None, Some(_)) => {
            return Err(ConnectError::TlsPair {
                field: f.tls_cert_file,
                other: f.tls_key_file,
            });
        }
        (None, None) => {}
    }
    if s.tls_required {
        opts = opts.require_tls(true);
    }
    Ok(opts)
}

/// The configured URLs as server addresses, an unparsable one named.
pub fn server_addrs(s: &NatsSettings) -> Result<Vec<ServerAddr>, ConnectError> {
    s.urls
        .iter()
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| ConnectError::Url {
                field: s.fields.urls,
                url: u.clone(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Sort a failed connection into "fix the configuration" ([`ConnectError::Refused`], naming the
/// settings to check) and "the server is not there" ([`ConnectError::Connect`]).
pub fn classify(s: &NatsSettings, source: async_nats::ConnectError) -> ConnectError {
    let f = &s.fields;
    let urls = s.urls.join(",");
    // rustls reports a refused handshake (unknown issuer, bad signature, a peer that does not
    // speak TLS) as an I/O error of kind InvalidData; a server that is down is a different kind.
    let tls_io = std::error::Error::source(&source)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::InvalidData);
    let tls_fields = || {
        format!(
            "{} / {} / {} / {} against the server's certificate",
            f.tls_ca_file, f.tls_cert_file, f.tls_key_file, f.tls_required
        )
    };
    match source.kind() {
        ConnectErrorKind::Io if tls_io => ConnectError::Refused {
            urls,
            fields: tls_fields(),
            source,
        },
        ConnectErrorKind::Tls => ConnectError::Refused {
            urls,
            fields: tls_fields(),
            source,
        },
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ConnectError::Refused {
                urls,
                fields: format!(
                    "{} / {} against the server's authorization",
                    f.nkey_seed_file, f.credentials_file
                ),
                source,
            }
        }
        _ => ConnectError::Connect { urls, source },
    }
}

/// Connect, failing if no server answers (provisioning, tools).
pub async fn connect(s: &NatsSettings) -> Result<async_nats::Client, ConnectError> {
    let opts = options(s).await?;
    opts.connect(server_addrs(s)?)
        .await
        .map_err(|e| classify(s, e))
}

/// Connect in the background (serving): returns a client at once when a server is reachable,
/// otherwise logs a warning and returns a client that keeps trying (the caller reports "not
/// ready" meanwhile). A server that answers but refuses the identity or certificate fails at
/// once with [`ConnectError::Refused`].
pub async fn connect_lazily(s: &NatsSettings) -> Result<async_nats::Client, ConnectError> {
    let opts = options(s).await?;
    let addrs = server_addrs(s)?;
    match opts.connect(addrs.clone()).await {
        Ok(c) => return Ok(c),
        Err(e) => match classify(s, e) {
            refused @ ConnectError::Refused { .. } => return Err(refused),
            other => tracing::warn!("{other}; retrying in the background"),
        },
    }
    let opts = options(s).await?.retry_on_initial_connect();
    opts.connect(addrs).await.map_err(|e| classify(s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NatsSettings {
        NatsSettings::new(vec!["nats://127.0.0.1:4222".into()], "test")
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    fn options_err(s: &NatsSettings) -> String {
        match block_on(options(s)) {
            Ok(_) => panic!("options accepted {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_settings_make_options() {
        assert!(block_on(options(&settings())).is_ok());
    }

    #[test]
    fn a_missing_tls_file_is_named_by_its_field() {
        let mut s = settings();
        s.tls_ca_file = Some("/nonexistent/ca.pem".into());
        assert_eq!(
            options_err(&s),
            "nats.tls_ca_file: file /nonexistent/ca.pem does not exist or is not a file"
        );
    }

    #[test]
    fn an_unreadable_identity_file_is_named_by_its_field_and_path() {
        let mut s = settings();
        s.nkey_seed_file = Some("/nonexistent/relay.nk".into());
        let msg = options_err(&s);
        assert!(
            msg.starts_with("nats.nkey_seed_file: reading /nonexistent/relay.nk: "),
            "{msg}"
        );

        // The agent calls its credentials file `creds_file`.
        let mut s = settings();
        s.fields.credentials_file = "nats.creds_file";
        s.credentials_file = Some("/nonexistent/agent.creds".into());
        let msg = options_err(&s);
        assert!(
            msg.starts_with("nats.creds_file: reading /nonexistent/agent.creds: "),
            "{msg}"
        );
    }

    #[test]
    fn a_certificate_needs_its_key_and_the_reverse() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pem = dir.path().join("client.pem");
        std::fs::write(&pem, "not checked here").unwrap_or_else(|e| panic!("{e}"));
        let mut s = settings();
        s.tls_cert_file = Some(pem.clone());
        assert!(
            options_err(&s)
                .starts_with("nats.tls_key_file: must be set together with nats.tls_cert_file"),
        );
        let mut s = settings();
        s.tls_key_file = Some(pem);
        assert!(
            options_err(&s)
                .starts_with("nats.tls_cert_file: must be set together with nats.tls_key_file"),
        );
    }

    #[test]
    fn an_unparsable_url_is_named() {
        let mut s = settings();
        s.urls.push("nats://[::1".into());
        let err = server_addrs(&s).map(|_| ()).unwrap_err();
        assert!(
            err.to_string().starts_with("nats.urls: \"nats://[::1\""),
            "{err}"
        );
        s.urls.pop();
        assert_eq!(server_addrs(&s).map(|a| a.len()).ok(), Some(1));
    }

    #[test]
    fn refusals_name_the_settings_to_check_and_outages_do_not() {
        let mut s = settings();
        s.fields.credentials_file = "nats.creds_file";
        let auth = classify(
            &s,
            async_nats::ConnectError::new(ConnectErrorKind::AuthorizationViolation),
        );
        assert!(auth.is_permanent());
        let msg = auth.to_string();
        assert!(
            msg.contains(
                "check nats.nkey_seed_file / nats.creds_file against the server's authorization"
            ),
            "{msg}"
        );

        let tls = classify(&s, async_nats::ConnectError::new(ConnectErrorKind::Tls));
        assert!(matches!(tls, ConnectError::Refused { .. }));
        assert!(tls.to_string().contains(
            "nats.tls_ca_file / nats.tls_cert_file / nats.tls_key_file / nats.tls_required"
        ));

        let handshake = classify(
            &s,
            async_nats::ConnectError::with_source(
                ConnectErrorKind::Io,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown issuer"),
            ),
        );
        assert!(matches!(handshake, ConnectError::Refused { .. }));

        let down = classify(
            &s,
            async_nats::ConnectError::with_source(
                ConnectErrorKind::Io,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
            ),
        );
        assert!(matches!(down, ConnectError::Connect { .. }));
        assert!(!down.is_permanent());
        assert!(!down.to_string().contains("check"), "{down}");
    }
}
