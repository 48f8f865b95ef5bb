//! `provider-sim`: the reference implementation of the standard's PULL API as Shirase speaks it
//! (docs/pull-api.md), over a generated, seeded population, with a change generator that emits a
//! notice for every change it commits, like a real provider system (提供側業務システム).
//!
//! It is the tests' and the demo's provider. Start one with [`ProviderSim::start`] on a listener
//! bound to port 0 and drive it through the returned [`SimHandle`] (or over HTTP `/admin/*`).
//!
//! Module map:
//! - `config`: [`Config`] (provider, interfaces, population, clients, limits, notice target).
//! - `data`: the fake population and the data items of history rows.
//! - `db`: history tables, the change generator's commits, differential/keyed queries, the
//!   lagging-replica view.
//! - `auth`: `POST /oauth/token` (client_secret_jwt, verified for real) and bearer tokens.
//! - `api`: `GET /api/<interface id>` (and `/api/<version>/<interface id>`) with the faults applied.
//! - `dialect`: the standard and the romaji dialect of the data endpoint.
//! - `admin`: `/admin/*` JSON endpoints (loopback only).
//! - `faults`, `log`, `clock`: injected faults, request log and counters, the DB clock.
//! - `emit`, `generator`: notice delivery to the relay or NATS; the background change rate.
//! - `handle`: [`ProviderSim`] and [`SimHandle`].

mod admin;
mod api;
mod auth;
mod clock;
mod config;
mod data;
mod db;
mod dialect;
mod emit;
mod error;
mod faults;
mod generator;
mod handle;
mod log;
mod state;

pub use auth::ASSERTION_TYPE;
pub use clock::ClockMode;
pub use config::{AnswerOrder, Config, Dialect, InterfaceSpec, NoticeTarget, ParamNames, Secret};
pub use db::{ChangeSpec, CommittedChange, MAX_CHANGES_PER_CALL, Row};
pub use error::{SimError, SimErrorKind};
pub use faults::{Faults, FaultsUpdate};
pub use handle::{ProviderSim, SimHandle};
pub use log::{Counters, Outcome, RequestLogEntry};
