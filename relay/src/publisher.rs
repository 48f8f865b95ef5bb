//! Publishing validated notices into JetStream, with bounded retries of transient errors.
//!
//! Each notice goes to its subject with `Nats-Msg-Id` = notice id (the headers of
//! [`shirase_proto::publish::headers`]), so a retry — ours after a lost PubAck, or the
//! provider's after a 503 — is stored at most once inside the stream's duplicate window.
//! A batch is published concurrently: every message is sent before any PubAck is awaited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind};
use shirase_proto::Notice;

use crate::metrics::{Metrics, ProviderLabel};

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
    js: jetstream::Context,
    attempts: u32,
    metrics: Arc<Metrics>,
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
    /// A publisher over `js` (whose timeout is the PubAck timeout) trying each notice up to
    /// `attempts` times.
    pub fn new(js: jetstream::Context, attempts: u32, metrics: Arc<Metrics>) -> Self {
        Self { js, attempts: attempts.max(1), metrics }
    }

    /// Publish one notice and wait for its PubAck, retrying transient errors with the same id.
    pub async fn publish(&self, notice: &Notice) -> Result<Stored, PublishFailure> {
        let subject = notice.subject();
        let payload: bytes::Bytes = notice.to_json().into();
        let headers = shirase_proto::publish::headers(notice);
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let res = match self.js.publish_with_headers(subject.clone(), headers.clone(), payload.clone()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match res {
                Ok(ack) => break Ok(Stored { stream_seq: ack.sequence, duplicate: ack.duplicate }),
                Err(e) => {
                    let retry = transient(e.kind()) && attempt < self.attempts;
                    tracing::debug!(notice = %notice.id, attempt, error = %e, retry, "publish failed");
                    if !retry {
                        break Err(PublishFailure {
                            id: notice.id.to_string(),
                            attempts: attempt,
                            last: e.to_string(),
                            transient: transient(e.kind()),
                        });
                    }
                    self.metrics.publish_retries.inc();
                    let backoff = Duration::from_millis(100u64 << (attempt - 1).min(4)).min(Duration::from_secs(1));
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        self.metrics.in_flight.dec();
        self.metrics.publish_latency.observe(started.elapsed().as_secs_f64());
        if let Ok(s) = &result {
            let label = ProviderLabel { provider: notice.data.provider.to_string() };
            self.metrics.accepted.get_or_create(&label).inc();
            if s.duplicate {
                self.metrics.duplicates.get_or_create(&label).inc();
            }
        }
        result
    }

    /// Publish several notices concurrently (all sent before any PubAck is awaited); one
    /// result per notice, in order.
    pub async fn publish_all(&self, notices: &[&Notice]) -> Vec<Result<Stored, PublishFailure>> {
        futures::future::join_all(notices.iter().map(|n| self.publish(n))).await
    }
}
