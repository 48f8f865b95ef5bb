//! The service shell the relay (`shirase-relay serve`) and the agent (`shirase-agent`) share:
//! what a Shirase process needs to run as a service, written once so both behave the same.
//!
//! - [`https`]: serving an axum router over plain HTTP or HTTPS (rustls, ring), certificate
//!   and key files named in errors by their configuration field.
//! - [`nats`]: NATS connection options from plain settings (identity, TLS), errors naming the
//!   configuration field to fix; refused vs unreachable servers told apart.
//! - [`kv`]: a lost compare-and-set race on a key-value bucket told apart from a failure
//!   (single server and clustered error codes alike).
//! - [`signals`]: waiting for SIGTERM or Ctrl-C.
//! - [`logging`]: the `tracing` subscriber (text or JSON, `SHIRASE_LOG` / `RUST_LOG`, no
//!   async-nats TRACE lines).
//! - [`crypto`]: the one process-wide rustls crypto provider (ring).

pub mod config;
pub mod crypto;
pub mod https;
pub mod kv;
pub mod logging;
pub mod nats;
pub mod signals;
