//! Starting a simulator and the handle tests drive it with.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use shirase_proto::{AtenaNo, InterfaceId, Notice};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::AuthState;
use super::clock::SimClock;
use super::config::{Config, NoticeTarget};
use super::db::{ChangeSpec, CommittedChange, Db, Row};
use super::emit::{self, EmitStats};
use super::error::{SimError, SimErrorKind};
use super::faults::{Faults, FaultsUpdate};
use super::log::{Counters, RequestLog, RequestLogEntry};
use super::state::{Shared, lock};
use super::{admin, api, auth, generator};

/// The reference PULL API simulator. See [`ProviderSim::start`].
#[derive(Debug)]
pub struct ProviderSim;

impl ProviderSim {
    /// Generate the data set, start serving on `listener` and return a handle. Everything
    /// (server, notice emitter, background generator) stops when `shutdown` is cancelled;
    /// [`SimHandle::stopped`] waits for that.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<SimHandle, SimError> {
        config.validate()?;
        let addr = listener.local_addr().map_err(|e| {
            SimError::new(
                SimErrorKind::Io,
                format!("listener has no local address: {e}"),
            )
        })?;
        let base_url = config
            .public_base_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{addr}"));
        let token_url = format!("{base_url}/oauth/token");
        let clock = SimClock::new(config.clock);
        let db = Db::generate(&config, clock.now());
        let (tx, rx) = match config.notice_target {
            NoticeTarget::None => (None, None),
            _ => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
        };
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults {
                maintenance: config.maintenance,
                ..Faults::default()
            }),
            log: Mutex::new(RequestLog::new(config.request_log_capacity)),
            auth: Mutex::new(AuthState::default()),
            db: Mutex::new(db),
            clock,
            base_url: base_url.clone(),
            token_url,
            emit: tx,
            emit_stats: EmitStats::default(),
            config,
        });
        let app = Router::new()
            .route("/oauth/token", post(auth::token))
            .route("/api/{interface}", get(api::get_rows))
            .route("/api/{version}/{interface}", get(api::get_versioned_rows))
            .merge(admin::router())
            .with_state(shared.clone());

        let tracker = TaskTracker::new();
        if let Some(rx) = rx {
            tracker.spawn(emit::run(shared.clone(), rx, shutdown.clone()));
        }
        if shared.config.change_rate > 0.0 {
            tracker.spawn(generator::run(
                shared.clone(),
                shared.config.change_rate,
                shutdown.clone(),
            ));
        }
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "provider-sim server failed");
            }
        });
        tracker.close();
        tracing::info!(
            %base_url,
            business = %shared.config.business,
            interfaces = shared.config.interfaces.len(),
            population = shared.config.population,
            "provider-sim serving"
        );
        Ok(SimHandle {
            shared,
            addr,
            tracker,
            shutdown,
        })
    }
}

/// A running simulator: its URLs and direct, in-process access to the admin operations.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl SimHandle {
    /// The base URL clients use, e.g. `http://127.0.0.1:9001` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The token endpoint URL: the `aud` every client assertion must carry.
    pub fn token_url(&self) -> &str {
        &self.shared.token_url
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Change some faults (like `POST /admin/faults`); returns the faults now in force.
    pub fn set_faults(&self, update: FaultsUpdate) -> Result<Faults, SimError> {
        let mut f = lock(&self.shared.faults);
        f.apply(&update)?;
        Ok(f.clone())
    }

    /// The request log, oldest first (bounded by `Config::request_log_capacity`).
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        lock(&self.shared.log).entries()
    }

    /// The counters since start.
    pub fn counters(&self) -> Counters {
        counters_of(&self.shared)
    }

    /// Commit changes now (like `POST /admin/changes`); each gets a notice sent to the target.
    pub fn commit_changes(&self, spec: ChangeSpec) -> Result<Vec<CommittedChange>, SimError> {
        self.shared.commit(&spec)
    }

    /// Every change committed since start, in commit order.
    pub fn changes(&self) -> Vec<CommittedChange> {
        lock(&self.shared.db).changes().to_vec()
    }

    /// Every notice produced since start, in commit order (whatever the target).
    pub fn notices(&self) -> Vec<Notice> {
        lock(&self.shared.db).notices().to_vec()
    }

    /// The current live rows of an interface, in the API's order (the DB, not a replica).
    pub fn rows(&self, interface: &InterfaceId) -> Result<Vec<Row>, SimError> {
        lock(&self.shared.db)
            .rows(interface)
            .ok_or_else(|| super::db::unknown_interface(interface))
    }

    /// The generated addressee numbers.
    pub fn atena_numbers(&self) -> Vec<AtenaNo> {
        lock(&self.shared.db).atena_numbers()
    }

    /// The DB clock's current instant.
    pub fn now(&self) -> jiff::Timestamp {
        self.shared.clock.now()
    }

    /// Move the DB clock forward (works for the real clock too: it adds an offset).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.shared.clock.advance(by);
    }

    /// Forget every issued access token: the next data request gets 401 `E0401`.
    pub fn expire_tokens(&self) {
        lock(&self.shared.auth).expire_all();
    }

    /// Cancel the shutdown token this simulator was started with.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until the server, emitter and generator have stopped (after shutdown).
    pub async fn stopped(&self) {
        self.tracker.wait().await;
    }
}

pub(crate) fn counters_of(s: &Shared) -> Counters {
    let mut c = lock(&s.log).counters;
    c.changes_committed = lock(&s.db).changes().len() as u64;
    let e = &s.emit_stats;
    c.notices_delivered = e.delivered.load(Ordering::Relaxed);
    c.notices_duplicate = e.duplicate.load(Ordering::Relaxed);
    c.notice_retries = e.retries.load(Ordering::Relaxed);
    c.notices_failed = e.failed.load(Ordering::Relaxed);
    c
}
