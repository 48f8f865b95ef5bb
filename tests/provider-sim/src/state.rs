//! The state every handler and the handle share.

use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::http::{Method, StatusCode};
use shirase_proto::Notice;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::auth::AuthState;
use super::clock::{SimClock, format_db_timestamp};
use super::config::Config;
use super::db::{ChangeSpec, CommittedChange, Db};
use super::emit::EmitStats;
use super::error::SimError;
use super::faults::Faults;
use super::log::{Outcome, RequestLog, RequestLogEntry};

/// Lock a std mutex, ignoring poisoning: every critical section here leaves the data consistent
/// (no await, no partial updates), so a panicked holder is no reason to stop serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// std mutexes, not tokio's: the sections are short and never hold across an await.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub base_url: String,
    pub token_url: String,
    pub clock: SimClock,
    pub db: Mutex<Db>,
    pub faults: Mutex<Faults>,
    pub auth: Mutex<AuthState>,
    pub log: Mutex<RequestLog>,
    /// To the emitter task; `None` when the target is `NoticeTarget::None`.
    pub emit: Option<mpsc::UnboundedSender<Notice>>,
    pub emit_stats: EmitStats,
}

impl Shared {
    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub(crate) fn commit(&self, spec: &ChangeSpec) -> Result<Vec<CommittedChange>, SimError> {
        let now = self.clock.now();
        let mut db = lock(&self.db);
        let out = db.commit(spec, now)?;
        // Sent under the DB lock so the emitter sees notices in sequence order.
        if let Some(tx) = &self.emit {
            for (_, n) in &out {
                // A closed channel means shutdown: the notice stays recorded.
                let _ = tx.send(n.clone());
            }
        }
        drop(db);
        tracing::debug!(count = out.len(), "changes committed");
        Ok(out.into_iter().map(|(c, _)| c).collect())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_request(
        &self,
        method: &Method,
        path: &str,
        query: Option<String>,
        status: StatusCode,
        outcome: Outcome,
        code: Option<&str>,
        rows: Option<usize>,
        started: Instant,
        client: Option<String>,
    ) {
        let entry = RequestLogEntry {
            at: format_db_timestamp(self.clock.now()),
            method: method.to_string(),
            path: path.to_owned(),
            query,
            status: status.as_u16(),
            outcome,
            code: code.map(str::to_owned),
            rows,
            duration_ms: started.elapsed().as_millis() as u64,
            client,
        };
        lock(&self.log).record(entry);
    }
}
