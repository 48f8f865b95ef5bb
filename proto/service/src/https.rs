//! HTTPS for the relay's and the agent's HTTP listeners.
//!
//! Both binaries serve an axum router on a listener they were given (tests bind port 0). With
//! a certificate and key configured ([`ServerTls`]) the same router is served over TLS only
//! (rustls with the ring provider, the workspace's single crypto backend); without, over plain
//! HTTP. The relay and the agent share it, so both load and reject certificates the same way.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// What is wrong with a configured certificate or key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFileErrorKind {
    /// The file could not be read.
    Read,
    /// The file holds no PEM certificate / private key, or one rustls refuses.
    Invalid,
}

/// A certificate or key file could not be used; names the configuration field and the path.
#[derive(Debug, thiserror::Error)]
#[error("{field} = {path:?}: {message}")]
pub struct TlsFileError {
    kind: TlsFileErrorKind,
    /// The configuration field, e.g. `http.tls_key_file`.
    pub field: String,
    /// The file as configured.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub message: String,
}

impl TlsFileError {
    /// Whether the file was unreadable or its content unusable.
    pub fn kind(&self) -> TlsFileErrorKind {
        self.kind
    }
}

/// The server certificate chain and key of an HTTPS listener, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: PathBuf,
    /// Field name of `cert_file` in error messages (e.g. `http.tls_cert_file`).
    pub cert_field: &'static str,
    /// Field name of `key_file` in error messages (e.g. `http.tls_key_file`).
    pub key_field: &'static str,
}

fn pem_error(
    field: &str,
    path: &Path,
    e: rustls::pki_types::pem::Error,
    what: &str,
) -> TlsFileError {
    let (kind, message) = match e {
        rustls::pki_types::pem::Error::Io(e) => {
            (TlsFileErrorKind::Read, format!("cannot read: {e}"))
        }
        rustls::pki_types::pem::Error::NoItemsFound => {
            (TlsFileErrorKind::Invalid, format!("holds no PEM {what}"))
        }
        other => (
            TlsFileErrorKind::Invalid,
            format!("is not a PEM {what}: {other}"),
        ),
    };
    TlsFileError {
        kind,
        field: field.to_owned(),
        path: path.to_owned(),
        message,
    }
}

impl ServerTls {
    /// Read both files and build the rustls server configuration (HTTP/2 and HTTP/1.1 by ALPN).
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .map_err(|e| pem_error(self.cert_field, &self.cert_file, e, "certificate"))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_error(self.cert_field, &self.cert_file, e, "certificate"))?;
        if certs.is_empty() {
            return Err(pem_error(
                self.cert_field,
                &self.cert_file,
                rustls::pki_types::pem::Error::NoItemsFound,
                "certificate",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| pem_error(self.key_field, &self.key_file, e, "private key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError {
                kind: TlsFileErrorKind::Invalid,
                field: self.cert_field.to_owned(),
                path: self.cert_file.clone(),
                message: format!("no TLS protocol version available: {e}"),
            })?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsFileError {
                kind: TlsFileErrorKind::Invalid,
                field: self.key_field.to_owned(),
                path: self.key_file.clone(),
                message: format!(
                    "does not match the certificate in {} or is not usable: {e}",
                    self.cert_file.display()
                ),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then stop accepting, let in-flight
/// requests finish and return. `tls`: HTTPS only (a plain-HTTP client fails the handshake);
/// `None`: plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    };
    let handle = axum_server::Handle::new();
    let on_stop = handle.clone();
    // The handle latches the request, so a shutdown cancelled before the server is polled is
    // not lost. `None`: wait for in-flight requests however long they take, as axum::serve does.
    let watcher = tokio::spawn(async move {
        shutdown.cancelled().await;
        on_stop.graceful_shutdown(None);
    });
    let result = axum_server::from_tcp_rustls(
        listener.into_std()?,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?
    .handle(handle)
    .serve(app.into_make_service())
    .await;
    watcher.abort();
    result
}
