//! Shirase relay: validates, authorizes and publishes change notices into NATS JetStream, and
//! provisions the JetStream state the topology needs.
//!
//! Module map:
//! - [`config`]: layered configuration (embedded defaults → file → `SHIRASE_*` env), validated
//!   into typed topology with errors naming the field path.
//! - [`topology`]: the desired JetStream state derived from the configuration.
//! - [`provision`]: diff of desired vs actual state, create-or-update, dry-run, refusal of
//!   changes JetStream cannot make in place.
//! - [`nats_auth`]: nats-server authorization generated from the topology.
//! - [`connection`]: connecting to NATS with the relay's identity (through `shirase-service`).
//! - [`dev_credentials`]: the credentials committed for dev and tests; `serve` refuses them
//!   beyond loopback.
//! - [`auth`]: provider bearer-token authentication (hashes, constant-time compare).
//! - [`publisher`]: publishing notices with `Nats-Msg-Id`, bounded retries, concurrency.
//! - [`rate_limit`]: the per-provider token bucket of HTTP ingest (429 + `Retry-After`).
//! - [`ingest`]: `POST /v1/notices` and its response bodies.
//! - [`api_error`]: the error type every handler answers with.
//! - [`metrics`]: Prometheus metrics.
//! - [`serve`]: `run(config, listener, shutdown)`, health, readiness, metrics routes.
//! - [`operator`]: operator API (`/v1/ops/`), status page (`/status`), CLI client, audit.
//! - [`scheduler`]: pauses consumers during providers' maintenance windows.
//! - [`lease`]: the KV lease that makes one relay replica the scheduler.
//! - [`notifier`]: the error notification function (alerts by e-mail, webhook, command).
//! - [`file_watcher`]: announces completed files on providers' file-server folders with
//!   file-ready notices (格納完了通知), behind a KV lease per provider.
//! - [`watcher`]: polls providers that cannot publish notices yet and publishes notices for
//!   them (one poller per interface, deterministic ids, KV checkpoint, hand-over to native).
//! - [`backup`]: `backup` / `restore` of every stream and KV bucket through JetStream's
//!   snapshot and restore API.
//! - [`cli`]: the commands of the `shirase-relay` binary (serve, provision, check-config,
//!   backup, restore, nkey and the operator commands); the binary only parses arguments.
//!
//! Invariant: only the relay creates streams, consumers and buckets (in [`provision`]).

pub mod api_error;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod connection;
pub mod dev_credentials;
pub mod file_watcher;
pub mod ingest;
pub mod lease;
pub mod metrics;
pub mod nats_auth;
pub mod notifier;
pub mod operator;
pub mod provision;
pub mod publisher;
pub mod rate_limit;
pub mod scheduler;
pub mod serve;
pub mod topology;
pub mod watcher;

pub use config::Config;
pub use serve::run;
