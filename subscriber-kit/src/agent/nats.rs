//! NATS I/O of a batch: fetching it, progress heartbeats while it is worked on, decoding its
//! messages, and sending the acks, naks and terms decided for it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{AckKind, consumer::PullConsumer, message::Message};
use futures::StreamExt;
use shirase_proto::subject::{SubjectKind, parse_subject};
use shirase_proto::{InterfaceId, Severity};
use tokio_util::sync::CancellationToken;

use super::files::FileItem;
use super::{Decision, Item, Worker};
use crate::watchdog::Watchdog;

impl Worker {
    pub(super) async fn fetch(&self, consumer: &PullConsumer) -> Result<Vec<Message>, String> {
        let mut batch = consumer
            .fetch()
            .max_messages(self.cfg.batch.size)
            .expires(self.cfg.batch.max_wait)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => out.push(m),
                // Keep what arrived: those messages are ours until acked or nak'ed.
                Err(e) if out.is_empty() => return Err(e.to_string()),
                Err(e) => {
                    tracing::debug!("fetch ended early: {e}");
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Process one batch with progress heartbeats, under the shutdown grace rule, then apply
    /// the decisions.
    pub(super) async fn handle_batch(
        &self,
        msgs: Vec<Message>,
        max_deliver: i64,
        ack_wait: Duration,
        stop: &CancellationToken,
        watchdog: &mut Watchdog,
    ) {
        let work = self.process(&msgs, max_deliver);
        tokio::pin!(work);
        let grace = self.cfg.shutdown.grace;
        // Three heartbeats per ack_wait, so one lost heartbeat never causes a redelivery.
        let mut tick = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(500)));
        tick.tick().await;
        let stop_after_grace = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(stop_after_grace);
        let decisions = loop {
            tokio::select! {
                d = &mut work => break Some(d),
                _ = tick.tick() => {
                    // Long pulls (bisection, 30 s provider timeouts) must not let ack_wait
                    // expire and hand the notices to another replica meanwhile.
                    for m in &msgs {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                }
                _ = &mut stop_after_grace => break None,
            }
        };
        match decisions {
            Some(d) => self.apply(&msgs, d, watchdog).await,
            None => {
                tracing::warn!(
                    notices = msgs.len(),
                    "shutdown grace over: handing in-flight notices back"
                );
                for m in &msgs {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
    }

    /// Send the decisions; tells the watchdog what they mean.
    pub(super) async fn apply(
        &self,
        msgs: &[Message],
        decisions: Vec<Decision>,
        watchdog: &mut Watchdog,
    ) {
        let now = tokio::time::Instant::now();
        for (m, d) in msgs.iter().zip(decisions) {
            let kind = match d {
                Decision::Ack => AckKind::Ack,
                Decision::Nak(delay) | Decision::Wait(delay) | Decision::Later(delay) => {
                    AckKind::Nak(Some(delay))
                }
                Decision::Term => AckKind::Term,
            };
            match m.ack_with(kind).await {
                Ok(()) => match d {
                    Decision::Ack | Decision::Term => watchdog.progressed(now),
                    Decision::Wait(delay) | Decision::Later(delay) => watchdog.parked(now + delay),
                    Decision::Nak(_) => {}
                },
                // The server will redeliver after ack_wait; the work is idempotent.
                Err(e) => tracing::warn!("ack/nak failed: {e}"),
            }
        }
    }

    /// Replicas sharing the consumer each see part of its deliveries: a notice sequence
    /// missing here may have gone to another one. Gaps count only in a batch that follows this
    /// worker's previous one without a hole in the consumer's delivery sequence.
    fn note_deliveries(&self, msgs: &[Message]) {
        let delivery_seqs: Vec<u64> = msgs
            .iter()
            .filter_map(|m| m.info().ok().map(|i| i.consumer_sequence))
            .collect();
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .follow(&delivery_seqs);
    }

    /// Decide every message of the batch. Does not ack anything itself.
    pub(super) async fn process(&self, msgs: &[Message], max_deliver: i64) -> Vec<Decision> {
        let mut decisions = vec![Decision::Nak(self.backoff(1)); msgs.len()];
        // `pending` of the last message: notices still waiting on the consumer after this batch.
        let more_pending = msgs
            .last()
            .and_then(|m| m.info().ok())
            .is_some_and(|i| i.pending > 0);
        self.note_deliveries(msgs);
        let mut groups: BTreeMap<InterfaceId, Vec<Item>> = BTreeMap::new();
        // File-ready notices (格納完了通知) go their own way (`files`): no pull, no checkpoint.
        let mut files: Vec<FileItem> = Vec::new();
        for (idx, m) in msgs.iter().enumerate() {
            let info = m.info().ok();
            let delivered = info.as_ref().map_or(1, |i| i.delivered.max(1) as u64);
            // The server's clock when the notice was stored: whether the pull behind the
            // checkpoint can have read its row (`coalesce::already_read`).
            let published = info.as_ref().and_then(|i| {
                jiff::Timestamp::from_nanosecond(i.published.unix_timestamp_nanos()).ok()
            });
            let replay = matches!(parse_subject(&m.subject), Ok(SubjectKind::Replay { .. }));
            if let Ok(file) =
                shirase_proto::parse_file_notice(&m.payload, &shirase_proto::Limits::default())
            {
                let raw = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
                self.metrics
                    .notices_received
                    .get_or_create(&self.labels(&file.data.interface_id))
                    .inc();
                files.push(FileItem {
                    idx,
                    notice: file,
                    delivered,
                    raw,
                });
                continue;
            }
            let notice = match shirase_proto::parse_notice(
                &m.payload,
                &shirase_proto::Limits::default(),
            ) {
                Ok(n) => n,
                Err(v) => {
                    // The relay validated it, so this is not a notice at all: it can never
                    // succeed. Term it and tell the operators (subject only, no payload).
                    tracing::error!(subject = %m.subject, violations = v.len(), "undecodable message on the notice stream");
                    self.alert(
                        Severity::Warning,
                        "undecodable_notice",
                        None,
                        format!("undecodable message on {} terminated", m.subject),
                    )
                    .await;
                    decisions[idx] = Decision::Term;
                    continue;
                }
            };
            let raw = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
            let iface = notice.data.interface_id;
            self.metrics
                .notices_received
                .get_or_create(&self.labels(&iface))
                .inc();
            groups.entry(iface).or_default().push(Item {
                idx,
                notice,
                replay,
                delivered,
                raw,
                published,
            });
        }
        for iface in groups.keys() {
            self.metrics
                .batches
                .get_or_create(&self.labels(iface))
                .inc();
        }
        let futs = groups
            .into_iter()
            .map(|(iface, items)| self.process_interface(iface, items, max_deliver, more_pending));
        let (changes, files) = futures::future::join(
            futures::future::join_all(futs),
            self.process_files(files, max_deliver),
        )
        .await;
        for (idx, d) in changes.into_iter().flatten().chain(files) {
            decisions[idx] = d;
        }
        decisions
    }
}
