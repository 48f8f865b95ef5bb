//! The agent loop, one worker per (subscriber, provider) durable consumer:
//!
//! fetch a batch → group by interface → coalesce into one plan each → pull (bisecting the
//! FROM–TO window on E0004 or a bare 503, bounded depth) → sink → checkpoint compare-and-set →
//! ack the covered notices; nak the uncovered ones with a delay; nak failures with backoff
//! (honouring `Retry-After`); dead-letter and terminate permanent failures.
//!
//! Maintenance ([`crate::maintenance`]): inside a provider's window (its calendar, or an E0900
//! answer) the worker fetches nothing and no request leaves (`Worker::request` refuses before
//! the token cache is touched). Notices already in hand are handed back with a nak delayed to
//! the window end ([`Decision::Wait`]). Such naks never fire the "last delivery → dead letter"
//! rule. JetStream counts them as deliveries all the same (`max_deliver` applies to every
//! redelivery), so the agent keeps maintenance from spending that budget: it does not fetch
//! during a window (zero deliveries), a notice in hand at a window's start spends one delivery
//! per window, and a notice already at the consumer's last delivery is not nak'ed at all: it
//! is held (progress heartbeats keep it ours) until the window ends and then processed, since
//! a nak would make JetStream drop it silently.
//!
//! Layout: [`run`](self::run) starts the agent and runs one worker per consumer (bind, fetch,
//! watchdog, shutdown); `nats` fetches batches and sends acks, naks and terms; `http` serves
//! `/healthz` and `/metrics`; `worker` is the thin I/O around one interface's notices of a batch
//! (`pull` makes the requests, `failure` dead-letters and alerts); `state` is what a worker
//! remembers per interface. The decisions themselves are pure functions on plain data: `plan`
//! (may the notices be worked on, which pulls: windows, keyed pulls, bisection) and `settle`
//! (which notices to ack, nak with what delay or dead-letter, and the new checkpoint).
//!
//! File-ready notices (格納完了通知) of file integration are decided by `files`: the announced
//! file is read through this host's mount of the provider's share, verified and handed to the
//! sink, then acked; missing or changed files are retried, then dead-lettered with the reason.
//!
//! Invariants:
//! - A notice is acked only after the sink accepted the data and the checkpoint was stored.
//!   Acks happen in one place (`Worker::apply`), after all work of the batch is done; work that is
//!   cut short (shutdown grace over, task aborted) never reaches it.
//! - The agent never creates streams, consumers or buckets: it waits for the relay's
//!   provisioning and re-binds to the consumer after it is deleted or the server restarts.
//! - Row contents are never logged; logs carry counts, ids and interface ids.

mod failure;
mod files;
mod http;
#[cfg(test)]
mod model;
mod nats;
mod plan;
mod pull;
mod rewind;
mod run;
mod settle;
mod state;
#[cfg(test)]
mod test_support;
mod worker;

use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::Notice;
use tokio_util::sync::CancellationToken;

use crate::pull_client::{Outcome, Row};

pub use run::{Agent, run};
pub(crate) use worker::Worker;

/// What stopped the agent from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentErrorKind {
    /// NATS connection options (credentials file).
    Nats,
    /// A provider's client (secret file, TLS backend).
    Client,
    /// The sink could not be built.
    Sink,
    /// The HTTP listener.
    Http,
}

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    kind: AgentErrorKind,
    message: String,
}

impl AgentError {
    fn new(kind: AgentErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// What failed.
    pub fn kind(&self) -> AgentErrorKind {
        self.kind
    }
}

/// What to do with one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Ack,
    Nak(Duration),
    /// Nak until a maintenance window ends: not a failure, never dead-lettered.
    Wait(Duration),
    /// Nak because the provider's data does not show the notice yet (uncovered): not a
    /// failure, so the watchdog does not count the delay as a stall.
    Later(Duration),
    Term,
}

#[derive(Debug, Clone)]
struct Item {
    idx: usize,
    notice: Notice,
    replay: bool,
    delivered: u64,
    raw: serde_json::Value,
    /// When JetStream stored the message (the server's clock); `None` for a sweep's synthetic
    /// item.
    published: Option<Timestamp>,
}

/// The index of a sweep's synthetic item (no real message has it): never counted as a notice,
/// never dead-lettered.
const SWEEP_IDX: usize = usize::MAX;

/// Whether `items` are a sweep (its one synthetic item).
fn is_sweep(items: &[Item]) -> bool {
    matches!(items, [it] if it.idx == SWEEP_IDX)
}

async fn sleep_or_cancel(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

/// What a pull brought: a window pull's rows are already delivered (a summary remains); a
/// keyed pull's rows are still to be delivered.
#[derive(Debug)]
enum Pulled {
    Window(Streamed),
    Keyed(Vec<Row>),
}

/// What a streamed window pull delivered.
#[derive(Debug, Default)]
struct Streamed {
    /// Rows delivered.
    count: usize,
    /// DB timestamps of the rows, at most about `2 × state::RECENT_ROWS_CAP` of the newest (so the
    /// newest of all is always among them).
    times: Vec<Timestamp>,
    /// FROM of the first piece: the window's FROM.
    from: Option<Timestamp>,
    /// (DB timestamp, addressee-number hash) of the rows, capped like `times`.
    keys: Vec<(Timestamp, u64)>,
    /// The window ended before its TO (an instant over the provider's threshold that no
    /// notice names): it did not read the whole window.
    stopped: bool,
}

/// Why a planned pull produced no rows.
enum Failure {
    Outcome(Outcome),
    /// The sink refused a piece of a streamed window pull.
    Sink(String),
    BisectExhausted {
        last: Outcome,
        from: Timestamp,
        to: Timestamp,
    },
    /// One instant (`at`, at the provider's precision) holds more rows than the provider
    /// answers at once, and keyed pulls cannot read it: a notice there names no addressee
    /// number (`keyless`), or one addressee number's rows alone are refused.
    Burst {
        last: Outcome,
        at: Timestamp,
        keyless: bool,
    },
}
