//! Reading a stream range with an ephemeral, unacknowledged consumer: what replay and the
//! dead-letter tools use to look at stored messages without disturbing any durable consumer.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use super::error::OpsError;

/// One stored message.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Stream sequence.
    pub seq: u64,
    /// When JetStream stored it.
    pub stored_at: jiff::Timestamp,
    /// Subject.
    pub subject: String,
    /// `Nats-Msg-Id`, if any.
    pub msg_id: Option<String>,
    /// Payload.
    pub payload: bytes::Bytes,
}

/// Where a scan starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// From the first stored message.
    All,
    /// From this stream sequence.
    Sequence(u64),
    /// From the first message stored at or after this time.
    Time(jiff::Timestamp),
}

/// A running scan; [`Scanner::next_batch`] until it returns an empty batch.
pub struct Scanner {
    consumer: consumer::PullConsumer,
    /// Highest stream sequence present when the scan started; later messages are not read,
    /// so a scan of a busy stream ends.
    last_seq: u64,
    done: bool,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Scanner(up to sequence {}, done: {})",
            self.last_seq, self.done
        )
    }
}

impl Scanner {
    /// Start scanning `stream` over `filters` from `start`.
    pub async fn start(
        js: &jetstream::Context,
        stream: &str,
        filters: Vec<String>,
        start: Start,
    ) -> Result<Self, OpsError> {
        let mut s = js
            .get_stream(stream)
            .await
            .map_err(|e| OpsError::nats(&format!("reading stream {stream}"), e))?;
        let info = s
            .info()
            .await
            .map_err(|e| OpsError::nats(&format!("reading stream {stream}"), e))?;
        let last_seq = info.state.last_sequence;
        let deliver_policy = match start {
            Start::All => consumer::DeliverPolicy::All,
            Start::Sequence(seq) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seq.max(1),
            },
            Start::Time(t) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
                    .map_err(|e| OpsError::invalid("from_time", e.to_string()))?,
            },
        };
        let done = info.state.messages == 0 || filters.is_empty();
        let consumer = s
            .create_consumer(consumer::pull::Config {
                deliver_policy,
                ack_policy: consumer::AckPolicy::None,
                filter_subjects: filters,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| OpsError::nats(&format!("reading stream {stream}"), e))?;
        Ok(Self {
            consumer,
            last_seq,
            done,
        })
    }

    /// The next messages (up to 256); empty when the range is exhausted.
    pub async fn next_batch(&mut self) -> Result<Vec<Stored>, OpsError> {
        if self.done {
            return Ok(Vec::new());
        }
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(256)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| OpsError::nats("fetching stored messages", e))?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| OpsError::nats("fetching stored messages", e))?;
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            let pending = info.pending;
            let stored_at = jiff::Timestamp::from_nanosecond(info.published.unix_timestamp_nanos())
                .unwrap_or_default();
            if seq > self.last_seq {
                self.done = true;
                break;
            }
            let msg_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.to_string());
            out.push(Stored {
                seq,
                stored_at,
                subject: m.subject.to_string(),
                msg_id,
                payload: m.payload.clone(),
            });
            if pending == 0 || seq >= self.last_seq {
                self.done = true;
                break;
            }
        }
        if out.is_empty() {
            self.done = true;
        }
        Ok(out)
    }

    /// Read everything.
    pub async fn collect(mut self, limit: usize) -> Result<Vec<Stored>, OpsError> {
        let mut out = Vec::new();
        loop {
            let b = self.next_batch().await?;
            if b.is_empty() || out.len() >= limit {
                break;
            }
            out.extend(b);
        }
        out.truncate(limit);
        Ok(out)
    }
}
