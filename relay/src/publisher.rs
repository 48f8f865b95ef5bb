//! Publishing validated notices into JetStream, with bounded retries of transient errors.
//!
//! Each notice goes to its subject with `Nats-Msg-Id` = notice id (the headers of
//! [`shirase_proto::publish::headers`]), so a retry — ours after a lost PubAck, or the
//! provider's after a 503 — is stored at most once inside the stream's duplicate window.
//! A batch is published concurrently: every message is sent before any PubAck is awaited.
//! HTTP ingest publishes each notice's bytes as received ([`Publisher::publish_all_raw`]: they
//! validated as exactly that notice, members named twice refused), so the stored JSON is the
//! validated notice without the cost of encoding it again.
//!
//! # Room for notices in flight
//! Every publish holds a place among at most `max_in_flight` notices awaiting a PubAck, and a
//! batch takes all its places at once before it sends anything. Concurrent batches therefore
//! queue for room instead of each holding part of it while waiting for the rest: that partial
//! holding is a deadlock (each batch waits for a PubAck permit that only another batch's
//! awaited PubAck would free), which left requests unanswered for as long as their clients
//! waited. The async-nats context below the queue never waits for a permit (it has twice the
//! room and errors instead of blocking), and every wait (room, send, PubAck, retry back-off)
//! ends at one deadline per request, [`Publisher::answer_bound`] after it arrived.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use shirase_proto::{Envelope, Notice};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::metrics::{Metrics, ProviderLabel};

/// A publish sent to the server, its PubAck not yet awaited.
type Sent = Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>;

/// A notice to publish and its JSON payload: the bytes received for it when they validated as
/// exactly this notice, else its encoding ([`Notice::to_json`]).
pub type Outgoing<'a, N = Notice> = (&'a N, Bytes);

/// A PubAck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Stream sequence (of the first copy for a duplicate).
    pub stream_seq: u64,
    /// Whether the id was already stored.
    pub duplicate: bool,
}

/// Why a notice got no PubAck.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notice {id} was not acknowledged by JetStream after {attempts} attempt(s): {last}")]
pub struct PublishFailure {
    /// Notice id.
    pub id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last: String,
    /// Whether a later retry may succeed (false for e.g. a message over max_payload).
    pub transient: bool,
}

/// Publishes notices.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    attempts: u32,
    timeout: Duration,
    atomic: bool,
    metrics: Arc<Metrics>,
    /// Places for notices awaiting a PubAck (see the module docs).
    room: Arc<Semaphore>,
    max_in_flight: usize,
}

fn transient(kind: PublishErrorKind) -> bool {
    // No responders (StreamNotFound) happens while a stream leader is being elected or the
    // server restarts; the others are timeouts and connection loss. Expected-last-* and
    // payload size errors would fail again the same way.
    matches!(
        kind,
        PublishErrorKind::StreamNotFound
            | PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending
            | PublishErrorKind::Other
    )
}

impl Publisher {
    /// A publisher on `client` trying each notice up to `attempts` times, waiting `timeout`
    /// for each PubAck, with at most `max_in_flight` notices awaiting a PubAck at once (at
    /// least one batch: callers pass a value >= the largest batch). With `atomic`, a batch is
    /// first tried as one JetStream atomic batch (see [`Publisher::publish_all`]).
    pub fn new(
        client: async_nats::Client,
        attempts: u32,
        timeout: Duration,
        atomic: bool,
        max_in_flight: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS / 4);
        // Twice our own room, never waiting: a PubAck future dropped unawaited (a request
        // whose client went away) keeps its async-nats permit until `ack_timeout`, after
        // ours was released; a full context answers MaxAckPending (retried) instead of
        // blocking a send without a deadline.
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .ack_timeout(timeout)
            .max_ack_inflight(max_in_flight * 2)
            .backpressure_on_inflight(false)
            .build(client.clone());
        Self {
            client,
            js,
            attempts: attempts.max(1),
            timeout,
            atomic,
            metrics,
            room: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }

    /// The longest a publish call takes before it answers, whatever the load: `timeout x
    /// attempts`, plus one `timeout` for an atomic batch's commit. Waiting for room, sending,
    /// PubAcks and retries all end at this deadline; what is not acknowledged by then fails
    /// as transient (the relay answers 503 with Retry-After).
    pub fn answer_bound(&self) -> Duration {
        let atomic = if self.atomic {
            self.timeout
        } else {
            Duration::ZERO
        };
        self.timeout * self.attempts + atomic
    }

    fn record<N: Envelope>(&self, notice: &N, stored: &Stored) {
        let label = ProviderLabel {
            provider: notice.provider().to_string(),
        };
        self.metrics.accepted.get_or_create(&label).inc();
        if stored.duplicate {
            self.metrics.duplicates.get_or_create(&label).inc();
        }
    }

    /// Publish one notice and wait for its PubAck, retrying transient errors with the same id.
    pub async fn publish<N: Envelope + Sync>(&self, notice: &N) -> Result<Stored, PublishFailure> {
        self.publish_raw(notice, notice.to_json().into()).await
    }

    /// [`Publisher::publish`] with the notice's JSON as received (`payload`: bytes that
    /// validated as exactly `notice`), stored without re-encoding.
    pub async fn publish_raw<N: Envelope + Sync>(
        &self,
        notice: &N,
        payload: Bytes,
    ) -> Result<Stored, PublishFailure> {
        let mut results = self.publish_all_raw(&[(notice, payload)]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(busy(notice, "no result")))
    }

    /// Send `notice` (its JSON: `payload`) without waiting for its PubAck.
    async fn send<N: Envelope + Sync>(&self, notice: &N, payload: &Bytes) -> Sent {
        self.js
            .publish_with_headers(
                notice.subject(),
                shirase_proto::publish::headers(notice),
                payload.clone(),
            )
            .await
    }

    /// [`Publisher::publish`] whose first attempt may already have been sent; every attempt,
    /// its PubAck and the back-off before the next end at `deadline`.
    async fn publish_sent<N: Envelope + Sync>(
        &self,
        (notice, payload): &Outgoing<'_, N>,
        mut first: Option<Sent>,
        deadline: Instant,
    ) -> Result<Stored, PublishFailure> {
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let sent = match first.take() {
                Some(s) => s,
                None => tokio::time::timeout_at(deadline, self.send(notice, payload))
                    .await
                    .unwrap_or_else(|_| Err(timed_out())),
            };
            let res = match sent {
                Ok(ack) => tokio::time::timeout_at(deadline, ack.into_future())
                    .await
                    .unwrap_or_else(|_| Err(timed_out())),
                Err(e) => Err(e),
            };
            match res {
                Ok(ack) => {
                    break Ok(Stored {
                        stream_seq: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) => {
                    let backoff = Duration::from_millis(100u64 << (attempt - 1).min(4))
                        .min(Duration::from_secs(1));
                    let retry = transient(e.kind())
                        && attempt < self.attempts
                        && Instant::now() + backoff < deadline;
                    tracing::debug!(notice = %notice.notice_id(), attempt, error = %e, retry, "publish failed");
                    if !retry {
                        break Err(PublishFailure {
                            id: notice.notice_id().to_string(),
                            attempts: attempt,
                            last: e.to_string(),
                            transient: transient(e.kind()),
                        });
                    }
                    self.metrics.publish_retries.inc();
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        self.metrics.in_flight.dec();
        self.metrics
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        if let Ok(s) = &result {
            self.record(notice, s);
        }
        result
    }

    /// Wait for room for `n` notices in flight (all at once), until `until`.
    async fn room_for(
        &self,
        n: usize,
        until: Instant,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let want = u32::try_from(n.clamp(1, self.max_in_flight)).unwrap_or(u32::MAX);
        self.metrics.publish_waiting.inc();
        let permit =
            tokio::time::timeout_at(until, self.room.clone().acquire_many_owned(want)).await;
        self.metrics.publish_waiting.dec();
        match permit {
            Ok(Ok(p)) => Some(p),
            _ => {
                self.metrics.publish_busy.inc();
                None
            }
        }
    }

    /// Publish several notices; one result per notice, in order, within
    /// [`Publisher::answer_bound`].
    ///
    /// Normally every notice is published concurrently (all sent before any PubAck is
    /// awaited). With atomic batches on, the notices first go as one JetStream atomic batch,
    /// which costs one PubAck (and with `sync_interval: always` one fsync) for the whole batch.
    /// JetStream refuses a whole atomic batch when any `Nats-Msg-Id` in it is already stored,
    /// so a refused or unanswered batch falls back to per-notice publishing with the same
    /// ids: per-notice de-duplication (`duplicate: true`) is kept either way.
    pub async fn publish_all<N: Envelope + Sync>(
        &self,
        notices: &[&N],
    ) -> Vec<Result<Stored, PublishFailure>> {
        let out: Vec<Outgoing<'_, N>> = notices.iter().map(|n| (*n, n.to_json().into())).collect();
        self.publish_all_raw(&out).await
    }

    /// [`Publisher::publish_all`] with each notice's JSON as received (bytes that validated as
    /// exactly that notice), stored without re-encoding.
    pub async fn publish_all_raw<N: Envelope + Sync>(
        &self,
        notices: &[Outgoing<'_, N>],
    ) -> Vec<Result<Stored, PublishFailure>> {
        if notices.is_empty() {
            return Vec::new();
        }
        let deadline = Instant::now() + self.answer_bound();
        // Leave at least one publish_timeout of the budget for publishing itself.
        let Some(_room) = self.room_for(notices.len(), deadline - self.timeout).await else {
            let why = format!(
                "the relay had no room among its {} notices in flight within {:?}",
                self.max_in_flight,
                self.answer_bound() - self.timeout
            );
            return notices.iter().map(|(n, _)| Err(busy(n, &why))).collect();
        };
        if self.atomic
            && notices.len() > 1
            && notices.len() <= 1000
            && let Some(stored) = self.try_atomic(notices).await
        {
            return stored;
        }
        // Sent one after another on the one connection, so the stream stores them in the order
        // given (a provider's sequence order: an agent would otherwise see a reordering at a
        // batch boundary as a sequence gap and sweep); the PubAcks are awaited together.
        let mut sent = Vec::with_capacity(notices.len());
        for (n, payload) in notices {
            let s = tokio::time::timeout_at(deadline, self.send(n, payload))
                .await
                .unwrap_or_else(|_| Err(timed_out()));
            sent.push(s);
        }
        futures::future::join_all(
            notices
                .iter()
                .zip(sent)
                .map(|(n, s)| self.publish_sent(n, Some(s), deadline)),
        )
        .await
    }

    /// One atomic batch, at most one `timeout` long; `None` when it was not committed as a
    /// whole (the caller publishes per notice).
    async fn try_atomic<N: Envelope + Sync>(
        &self,
        notices: &[Outgoing<'_, N>],
    ) -> Option<Vec<Result<Stored, PublishFailure>>> {
        let started = Instant::now();
        self.metrics.in_flight.inc_by(notices.len() as i64);
        let res = tokio::time::timeout(
            self.timeout,
            publish_atomic_raw(&self.client, notices, self.timeout),
        )
        .await
        .unwrap_or_else(|_| {
            Err(AtomicError::Unknown(format!(
                "not sent and committed within {:?}",
                self.timeout
            )))
        });
        self.metrics.in_flight.dec_by(notices.len() as i64);
        match res {
            Ok(AtomicAck {
                last_seq,
                count: Some(count),
            }) if count == notices.len() as u64 && last_seq >= count => {
                let first = last_seq + 1 - count;
                let elapsed = started.elapsed().as_secs_f64();
                Some(
                    notices
                        .iter()
                        .enumerate()
                        .map(|(i, (n, _))| {
                            let s = Stored {
                                stream_seq: first + i as u64,
                                duplicate: false,
                            };
                            self.record(n, &s);
                            self.metrics.publish_latency.observe(elapsed);
                            Ok(s)
                        })
                        .collect(),
                )
            }
            // A server without atomic batches stores the messages one by one and answers
            // the last with a plain PubAck: the per-notice pass finds them all as duplicates
            // and reports their real sequences.
            Ok(ack) => {
                tracing::warn!(count = ?ack.count, "atomic batch PubAck without the expected count; publishing per notice");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "atomic batch not committed; publishing per notice");
                None
            }
        }
    }
}

fn timed_out() -> jetstream::context::PublishError {
    jetstream::context::PublishError::new(PublishErrorKind::TimedOut)
}

/// A transient failure of `notice` before it was sent.
fn busy<N: Envelope>(notice: &N, why: &str) -> PublishFailure {
    PublishFailure {
        id: notice.notice_id().to_string(),
        attempts: 0,
        last: why.to_owned(),
        transient: true,
    }
}

/// The PubAck of a committed atomic batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicAck {
    /// Sequence of the batch's last message.
    pub last_seq: u64,
    /// Messages stored, as the PubAck reports it (`None` from a server that does not know
    /// atomic batches and stored the messages one by one).
    pub count: Option<u64>,
}

/// Why an atomic batch was not committed. Nothing of the batch is stored in either case
/// (except after [`AtomicError::Unknown`], where the commit may or may not have happened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtomicError {
    /// JetStream refused the batch (e.g. a duplicate `Nats-Msg-Id` inside it, atomic publish
    /// not enabled on the stream, too many batches in flight).
    #[error("JetStream refused the atomic batch: {description} (err_code {err_code})")]
    Refused {
        /// JetStream's error code.
        err_code: u64,
        /// JetStream's description.
        description: String,
    },
    /// No answer to the commit (timeout, connection loss): the outcome is unknown.
    #[error("atomic batch commit got no answer: {0}")]
    Unknown(String),
}

/// Publish `notices` as one JetStream atomic batch (ADR-50, nats-server ≥ 2.12, stream with
/// `allow_atomic`): every message carries `Nats-Batch-Id` and `Nats-Batch-Sequence` besides
/// its `Nats-Msg-Id`; the last one carries `Nats-Batch-Commit: 1` and is sent as a request
/// whose answer is the batch's only PubAck. At most 1,000 notices.
pub async fn publish_atomic<N: Envelope + Sync>(
    client: &async_nats::Client,
    notices: &[&N],
    timeout: Duration,
) -> Result<AtomicAck, AtomicError> {
    let out: Vec<Outgoing<'_, N>> = notices.iter().map(|n| (*n, n.to_json().into())).collect();
    publish_atomic_raw(client, &out, timeout).await
}

/// [`publish_atomic`] with each notice's JSON as received.
pub async fn publish_atomic_raw<N: Envelope + Sync>(
    client: &async_nats::Client,
    notices: &[Outgoing<'_, N>],
    timeout: Duration,
) -> Result<AtomicAck, AtomicError> {
    let batch_id = uuid::Uuid::now_v7().simple().to_string();
    let last = notices.len().saturating_sub(1);
    for (i, (n, payload)) in notices.iter().enumerate() {
        let mut h = shirase_proto::publish::headers(n);
        h.insert("Nats-Batch-Id", batch_id.as_str());
        h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        let payload = payload.clone();
        if i < last {
            client
                .publish_with_headers(n.subject(), h, payload)
                .await
                .map_err(|e| AtomicError::Unknown(e.to_string()))?;
            continue;
        }
        h.insert("Nats-Batch-Commit", "1");
        let reply = tokio::time::timeout(
            timeout,
            client.request_with_headers(n.subject(), h, payload),
        )
        .await
        .map_err(|_| AtomicError::Unknown(format!("no PubAck within {timeout:?}")))?
        .map_err(|e| AtomicError::Unknown(e.to_string()))?;
        let resp: jetstream::response::Response<jetstream::publish::PublishAck> =
            serde_json::from_slice(&reply.payload)
                .map_err(|e| AtomicError::Unknown(format!("unreadable PubAck: {e}")))?;
        return match resp {
            jetstream::response::Response::Ok(ack) => Ok(AtomicAck {
                last_seq: ack.sequence,
                count: ack.batch_size,
            }),
            jetstream::response::Response::Err { error } => Err(AtomicError::Refused {
                err_code: error.error_code().0,
                description: error.to_string(),
            }),
        };
    }
    Err(AtomicError::Unknown("empty batch".into()))
}
