//! Operator tools: the operator API under `/v1/ops/` on the relay's listener, the status page
//! (`GET /status`), and the CLI client the `shirase-relay status|replay|resync|dlq|pause|resume`
//! commands use.
//!
//! The API shares the relay's listener (one port to open on a closed network, one process to
//! run) but has its own credentials (`[[operators]]`, roles `operator` and `viewer`): a provider
//! token is never accepted here. Every change (replay, resync, redrive, purge, pause, resume),
//! and every refused attempt, is written to the `SHIRASE_AUDIT` stream.
//!
//! - [`config`]: the `operators` tables of relay.toml.
//! - [`auth`]: bearer tokens → [`auth::Actor`].
//! - [`error`]: [`error::OpsError`], answered in the relay's error shape.
//! - [`api`]: the routes.
//! - [`scan`]: reading a stream range without touching durable consumers.
//! - [`replay`], [`resync`], [`dlq`], [`pause`], [`status`]: the operations.
//! - [`audit`]: the audit stream.
//! - [`client`]: the CLI's HTTP client and table printing.

pub mod api;
pub mod audit;
pub mod auth;
pub mod client;
pub mod dlq;
pub mod error;
pub mod pause;
pub mod replay;
pub mod resync;
pub mod scan;
pub mod status;

pub use api::router;
