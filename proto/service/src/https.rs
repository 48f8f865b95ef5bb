//! HTTPS for the relay's and the agent's HTTP listeners.
//!
//! Both binaries serve an axum router on a listener they were given (tests bind port 0). With
//! a certificate and key configured ([`ServerTls`]) the same router is served over TLS only
//! (rustls with the ring provider, the workspace's single crypto backend); without, over plain
//! HTTP. The relay and the agent share it, so both load and reject certificates the same way.
//!
//! The accept loop is our own (hyper-util's connection builder), so every connection is bounded
//! ([`ConnLimits`]): a header read timeout (slowloris), an inactivity timeout, and a cap on
//! connections served at once.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// Bounds on every connection of a listener, so a client that opens connections and sends
/// nothing (or dribbles) cannot hold the server's memory and sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// A request's headers (and, with TLS, the handshake) must arrive within this time, or the
    /// connection is closed (slowloris).
    pub header_read_timeout: Duration,
    /// A connection on which nothing was read or written for this long is closed (an idle
    /// keep-alive connection, a stalled body, a client that stopped reading the answer).
    pub idle_timeout: Duration,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serve `app` on `listener` with [`ConnLimits::default`]; see [`serve_with_limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with_limits(listener, app, tls, ConnLimits::default(), shutdown).await
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then stop accepting, let in-flight
/// requests finish and return. `tls`: HTTPS only (a plain-HTTP client fails the handshake);
/// `None`: plain HTTP. Every connection is bounded by `limits`.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut last_refusal_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once costs nothing; queueing would let a flood hold the sockets anyway.
            if last_refusal_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_refusal_warning = Some(Instant::now());
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; closing new connections (logged once a minute)"
                );
            }
            drop(stream);
            continue;
        };
        tracing::trace!(%peer, "connection accepted");
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let io = match acceptor {
                None => Idle::boxed(stream, limits.idle_timeout),
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(tls)) => Idle::boxed(tls, limits.idle_timeout),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake not done within the header read timeout");
                            return;
                        }
                    }
                }
            };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Every request body of `app` must arrive within `timeout` of its handler starting to read
/// it; a body still incomplete then fails the read (a client dribbling a body slowly enough to
/// defeat the idle timeout is cut off).
pub fn body_deadline(app: axum::Router, timeout: Duration) -> axum::Router {
    app.layer(axum::middleware::map_request(
        move |req: axum::extract::Request| async move {
            req.map(|body| {
                axum::body::Body::new(DeadlineBody {
                    inner: body,
                    timeout,
                    deadline: None,
                })
            })
        },
    ))
}

/// A request body that fails once `timeout` has passed since its first poll.
struct DeadlineBody {
    inner: axum::body::Body,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "request body not received within {}s",
                    timeout.as_secs_f64()
                ),
            )))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accept errors: a connection reset before it was accepted is the client's business; anything
/// else (out of file descriptors) is waited out briefly instead of spinning.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!("accept failed: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A connection's I/O behind an inactivity deadline: each read or write that moves bytes pushes
/// the deadline `timeout` into the future; a read or write still pending once it has passed
/// fails with `TimedOut`, which ends the connection.
struct Idle {
    io: Box<dyn IoStream>,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

impl Idle {
    fn boxed(io: impl IoStream + 'static, timeout: Duration) -> Self {
        Self {
            io: Box::new(io),
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn touch(&mut self) {
        let next = tokio::time::Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle longer than the idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
