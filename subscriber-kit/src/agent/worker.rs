//! The worker of one (subscriber, provider) consumer: the I/O around the pure decisions of
//! [`super::plan`] and [`super::settle`]. For one interface's notices of a batch:
//! admit → hold under the interface's `min_interval` → read the checkpoint → plan → narrow
//! pull and pull ([`super::pull`]) → sink → store the checkpoint (with when the window pull started and its FROM) → settle; failures go to
//! [`super::failure`].

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use async_nats::jetstream;
use jiff::Timestamp;
use shirase_proto::{InterfaceId, Notice, Severity};
use tokio_util::sync::CancellationToken;

use super::plan::{self, Admission};
use super::settle::{self, Received};
use super::state::States;
use super::{Decision, Item, SWEEP_IDX, is_sweep, sleep_or_cancel};
use crate::alert::Alerter;
use crate::checkpoint::{Checkpoints, Read};
use crate::coalesce::{LastRead, PlanSettings, ReadThrough, minus};
use crate::config::{Config, ProviderConfig};
use crate::maintenance::Guard;
use crate::metrics::{IfaceLabels, Metrics};
use crate::pull_client::PullClient;
use crate::sink::{Delivery, Record, Sink};

pub(crate) struct Worker {
    pub(super) guard: Arc<Guard>,
    pub(super) stop: CancellationToken,
    pub(super) cfg: Arc<Config>,
    pub(super) js: jetstream::Context,
    // The provider this worker reads (its interfaces and business id).
    pub(super) provider: ProviderConfig,
    pub(super) client: Arc<PullClient>,
    pub(super) sink: Arc<dyn Sink>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) alerter: Arc<Alerter>,
    pub(super) connect_failures: AtomicU32,
    // Continuous failure of the provider, for the operating-status alert and recovery message.
    pub(super) outage: crate::outage::OutageTracker,
    // Wakes the sweeper when a gap is seen.
    pub(super) gap_seen: tokio::sync::Notify,
    // Everything remembered per interface between batches.
    pub(super) states: States,
    // The consumer's delivery sequences received, and whether the batch being decided
    // followed the one before without a hole (gap detection is exact only then).
    pub(super) deliveries: std::sync::Mutex<super::state::Deliveries>,
    // The checkpoint bucket's handle, looked up once instead of per batch (a lookup is a
    // stream-info request to the server); dropped after a store error so it is looked up again.
    pub(super) checkpoints: std::sync::Mutex<Option<Checkpoints>>,
}

impl Worker {
    pub(super) fn provider(&self) -> &ProviderConfig {
        &self.provider
    }

    pub(super) fn labels(&self, i: &InterfaceId) -> IfaceLabels {
        IfaceLabels {
            provider: self.provider().business_id.to_string(),
            interface: i.to_string(),
        }
    }

    pub(super) fn backoff(&self, attempt: u64) -> Duration {
        settle::backoff(&self.cfg.retry, attempt)
    }

    /// Decide one interface's notices; a nak on the consumer's last allowed delivery becomes a
    /// dead letter, because JetStream would otherwise drop the notice silently.
    pub(super) async fn process_interface(
        &self,
        iface: InterfaceId,
        items: Vec<Item>,
        max_deliver: i64,
        more_pending: bool,
    ) -> Vec<(usize, Decision)> {
        let mut out = self.decide_interface(iface, &items, more_pending).await;
        // A maintenance nak on the consumer's last delivery would make JetStream drop the
        // notice: hold the batch instead (handle_batch keeps sending progress heartbeats; the
        // worker would not fetch during the window anyway) and decide again when it ends.
        while let Some(wait) = settle::maintenance_hold(&items, &out, max_deliver) {
            tracing::info!(interface = %iface, secs = wait.as_secs(), "holding notices at their last delivery until the maintenance window ends");
            if !sleep_or_cancel(wait, &self.stop).await {
                return out;
            }
            out = self.decide_interface(iface, &items, more_pending).await;
        }
        // A provider outage never dead-letters: hold notices at their last delivery (progress
        // heartbeats keep them ours) and try again while the provider keeps failing.
        while self.outage.failing() && settle::failure_at_last(&items, &out, max_deliver) {
            if !sleep_or_cancel(self.cfg.retry.max, &self.stop).await {
                return out;
            }
            out = self.decide_interface(iface, &items, more_pending).await;
        }
        let last = settle::dead_at_last(&items, &out, max_deliver);
        if last.is_empty() {
            return out;
        }
        let reason =
            format!("still failing at the consumer's last delivery (max_deliver {max_deliver})");
        self.alert(
            Severity::Warning,
            "max_deliver",
            Some(&iface),
            format!("{} notices {reason}; dead-lettered", last.len()),
        )
        .await;
        let dl = self
            .dead_letter(&iface, &last, &reason, None, None, None)
            .await;
        settle::replace(&mut out, dl);
        out
    }

    /// Decide one interface's notices of a batch: admit, plan, pull, deliver, store the
    /// checkpoint, settle. Acks nothing itself.
    pub(super) async fn decide_interface(
        &self,
        iface: InterfaceId,
        items: &[Item],
        more_pending: bool,
    ) -> Vec<(usize, Decision)> {
        let labels = self.labels(&iface);
        let icfg = self.provider().interface(&iface);
        let admission = plan::admit(
            self.guard.remaining(),
            &iface,
            icfg.is_some(),
            items,
            self.cfg.municipality,
        );
        match admission {
            Admission::Wait(wait) => return self.counted(&labels, settle::wait_all(items, wait)),
            Admission::DeadLetter(reason) => {
                return self
                    .dead_letter_all(&iface, items, &reason, None, None, None)
                    .await;
            }
            Admission::Proceed => {}
        }
        let keyed_pull_max_keys = icfg.map_or(0, |c| c.keyed_pull_max_keys);
        if let Some(c) = icfg {
            self.note_versions(&iface, items, &c.version);
        }
        let gap = self.note_sequences(&iface, items);
        // After the sequences are noted, so that held notices never look like a gap.
        let min_interval = icfg.and_then(|c| c.min_interval);
        let Some((wait, held)) = plan::min_interval_hold(items, min_interval, Timestamp::now())
        else {
            return self
                .decide_admitted(iface, items, gap, keyed_pull_max_keys, more_pending)
                .await;
        };
        // Held: a nak delayed until then (not a failure, not maintenance). The others
        // (delivered again, replayed) are decided now.
        let mut out: Vec<(usize, Decision)> = held
            .iter()
            .map(|&i| (items[i].idx, Decision::Later(wait)))
            .collect();
        self.count(&labels, &out);
        let rest: Vec<Item> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| !held.contains(i))
            .map(|(_, it)| it.clone())
            .collect();
        if !rest.is_empty() {
            out.extend(
                self.decide_admitted(iface, &rest, gap, keyed_pull_max_keys, more_pending)
                    .await,
            );
        }
        out
    }

    /// Decide admitted notices: read the checkpoint, plan, pull, deliver, store the
    /// checkpoint, settle.
    async fn decide_admitted(
        &self,
        iface: InterfaceId,
        items: &[Item],
        gap: bool,
        keyed_pull_max_keys: usize,
        more_pending: bool,
    ) -> Vec<(usize, Decision)> {
        let labels = self.labels(&iface);
        let Some((kv, read)) = self.read_checkpoint(&iface).await else {
            return self.counted(&labels, settle::nak_all(items, &self.cfg.retry));
        };
        let checkpoint = read.current.as_ref().map(|c| c.updated_at);
        let last = read.current.as_ref().and_then(|c| c.read);
        // Also the start of this plan's window pull (`read_at`): taken before any request.
        let now = Timestamp::now();
        if let Some(c) = checkpoint {
            self.metrics
                .checkpoint_age_seconds
                .get_or_create(&labels)
                .set(now.duration_since(c).as_secs_f64());
        }
        let overlap = self.cfg.overlap();
        // A sweep is one synthetic item; it may start above the rows known read (the record
        // of this checkpoint and of every one this replica read before, its whole sweeps).
        // Every batch reads the key, so the records of its own stores are learnt here too.
        let read_through = self.states.with(&iface, |s| {
            let c = checkpoint?;
            if let Some(l) = last {
                s.read_log.record(l.from, c, l.at, overlap);
            }
            s.read_log.forget_below(minus(c, overlap));
            s.read_log
                .around(minus(c, overlap))
                .filter(|_| is_sweep(items))
        });
        let settings = PlanSettings {
            // Applied by the planner to sweeps, replays and a first pull only.
            overlap,
            keyed_pull_max_keys,
            gap,
            more_pending,
            read_through,
        };
        let received: Vec<bool> = self.states.with(&iface, |s| {
            items
                .iter()
                .map(|it| {
                    let keys = it.notice.data.keys.as_ref().map(|k| &k.atena_no[..]);
                    s.received(it.notice.data.updated_at.instant(), keys.unwrap_or(&[]))
                })
                .collect()
        });
        let pulls = plan::plan_pulls_read(items, &received, checkpoint, last, now, settings);
        let narrow = match self.pull_narrow(&iface, &pulls).await {
            Ok(n) => n,
            Err(f) => {
                let out = self.settle_failure(&iface, &pulls.plan, items, f).await;
                return self.counted(&labels, out);
            }
        };
        let got = match self.pull(&iface, &pulls).await {
            Ok(p) => Received::of(p),
            Err(f) => {
                let out = self.settle_failure(&iface, &pulls.plan, items, f).await;
                return self.counted(&labels, out);
            }
        };
        let count = got.count;
        let Some(reached) = self
            .deliver_and_store(&iface, &pulls, items, got, kv, read)
            .await
        else {
            return self.counted(&labels, settle::nak_all(items, &self.cfg.retry));
        };
        let out = self
            .settle(&iface, &labels, &pulls, items, &reached, &narrow)
            .await;
        tracing::debug!(interface = %iface, notices = items.len(), rows = count, "batch done");
        self.counted(&labels, out)
    }

    /// The sink gets a keyed pull's rows and the tombstones; then the checkpoint moves to the
    /// newest row of a window pull (compare-and-set against `read`), and the interface's state
    /// remembers the pull. Returns what the rows reached; `None` when the sink or the store
    /// failed (the notices are nak'ed).
    async fn deliver_and_store(
        &self,
        iface: &InterfaceId,
        pulls: &plan::Pulls,
        items: &[Item],
        got: Received,
        kv: Checkpoints,
        read: Read,
    ) -> Option<settle::Reached> {
        let mut records: Vec<Record> = got.rows.into_iter().map(Record::Row).collect();
        records.extend(
            pulls
                .plan
                .tombstones
                .iter()
                .map(|&i| tombstone(&items[i].notice)),
        );
        if !records.is_empty()
            && let Err(e) = self.deliver(*iface, pulls.now, records).await
        {
            tracing::warn!(interface = %iface, "sink refused: {e}");
            return None;
        }
        let max = got.reached.checkpoint();
        let last = got.read_from.map(|from| LastRead {
            at: pulls.now,
            from,
        });
        if let Some(max) = max
            && let Err(e) = kv.advance_read(iface, max, last, Some(read)).await
        {
            tracing::warn!(interface = %iface, "storing checkpoint: {e}");
            self.forget_checkpoints();
            return None;
        }
        if let settle::Reached::Window(_) = got.reached {
            let overlap = self.cfg.overlap();
            // A sweep's whole window is pulled and in the sink: the next sweep may start
            // from it (coalesce::sweep_from).
            let swept = pulls
                .plan
                .blind_from
                .filter(|_| is_sweep(items) && got.read_whole)
                .map(|from| ReadThrough::swept(from, pulls.now, overlap));
            self.states.with(iface, |s| {
                s.remember_rows(got.window_times, max, overlap);
                s.remember_keys(got.window_keys, max, overlap);
                if let Some(span) = swept {
                    s.read_log.insert(span);
                }
            });
        }
        Some(got.reached)
    }

    /// Settle a batch whose pull, sink and checkpoint succeeded: ack what is covered, count
    /// and alert the uncovered, measure the lag.
    async fn settle(
        &self,
        iface: &InterfaceId,
        labels: &IfaceLabels,
        pulls: &plan::Pulls,
        items: &[Item],
        reached: &settle::Reached,
        narrow: &settle::NarrowReached,
    ) -> Vec<(usize, Decision)> {
        let delay = self.cfg.coverage.uncovered_retry_delay;
        let settled = settle::settle_pulled_narrow(&pulls.plan, items, reached, narrow, delay);
        for &i in &settled.uncovered {
            let it = &items[i];
            self.metrics.uncovered.get_or_create(labels).inc();
            if it.delivered >= self.cfg.coverage.uncovered_alert_after {
                self.alert(
                    Severity::Warning,
                    "uncovered",
                    Some(iface),
                    format!("notice {} (updated_at {}) is still not covered by the PULL API after {} deliveries; the provider's API may read a lagging replica", it.notice.id, it.notice.data.updated_at, it.delivered),
                )
                .await;
            }
        }
        if let Some(t) = settle::oldest_acked(items, &settled.out) {
            self.metrics
                .lag_seconds
                .get_or_create(labels)
                .set(Timestamp::now().duration_since(t).as_secs_f64());
        }
        settled.out
    }

    /// Count the decisions in the metrics and return them.
    pub(super) fn counted(
        &self,
        labels: &IfaceLabels,
        out: Vec<(usize, Decision)>,
    ) -> Vec<(usize, Decision)> {
        self.count(labels, &out);
        out
    }

    pub(super) fn count(&self, labels: &IfaceLabels, out: &[(usize, Decision)]) {
        // A sweep's synthetic item is not a notice: it is counted as a sweep only.
        for (_, d) in out.iter().filter(|(i, _)| *i != SWEEP_IDX) {
            match d {
                Decision::Ack => self.metrics.acked.get_or_create(labels).inc(),
                Decision::Nak(_) | Decision::Later(_) => {
                    self.metrics.naked.get_or_create(labels).inc()
                }
                Decision::Wait(_) => {
                    self.metrics.naked.get_or_create(labels).inc();
                    self.metrics
                        .maintenance_deferred
                        .get_or_create(labels)
                        .inc()
                }
                Decision::Term => self.metrics.dead_lettered.get_or_create(labels).inc(),
            };
        }
    }

    /// Count the notices naming another interface version than `configured` (they are pulled
    /// from the configured one); log each such version once per interface.
    fn note_versions(
        &self,
        iface: &InterfaceId,
        items: &[Item],
        configured: &shirase_proto::InterfaceVersion,
    ) {
        for (version, n) in plan::other_versions(items, configured) {
            self.metrics
                .version_mismatch
                .get_or_create(&self.labels(iface))
                .inc_by(n);
            if self.states.with(iface, |s| s.first_other_version(&version)) {
                tracing::warn!(interface = %iface, notice_version = %version, configured = %configured, "notices name another interface version than the configured one; pulling the configured version (counted in shirase_agent_version_mismatch_total, logged once)");
            }
        }
    }

    /// Record the fresh notices' sequences; on a suspected gap, wake the sweeper (it confirms
    /// the gap if the notices are still missing after `sweep.gap_grace`). Returns whether
    /// sequences went missing (it forces a window pull).
    fn note_sequences(&self, iface: &InterfaceId, items: &[Item]) -> bool {
        let seqs = plan::gap_sequences(items);
        let whole = self
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .whole();
        let now = Timestamp::now();
        let missing = self
            .states
            .with(iface, |s| s.observe_sequences(seqs, whole, now));
        if missing > 0 {
            tracing::debug!(interface = %iface, missing, "notice sequences missing: forcing a differential pull; a sweep unless they arrive within sweep.gap_grace");
            self.gap_seen.notify_one();
        }
        missing > 0
    }

    /// The checkpoint bucket and this interface's checkpoint, read once: the store names this
    /// read's revision (compare-and-set), so it needs no second read unless the key changed
    /// meanwhile. `None` (logged) when either is unavailable.
    async fn read_checkpoint(&self, iface: &InterfaceId) -> Option<(Checkpoints, Read)> {
        let kv = match self.checkpoints().await {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(interface = %iface, "checkpoint bucket unavailable: {e}");
                return None;
            }
        };
        match kv.read(iface).await {
            Ok(r) => Some((kv, r)),
            Err(e) => {
                tracing::warn!(interface = %iface, "reading checkpoint: {e}");
                self.forget_checkpoints();
                None
            }
        }
    }

    /// The checkpoint bucket, looked up on first use and kept.
    pub(super) async fn checkpoints(&self) -> Result<Checkpoints, String> {
        if let Some(c) = self
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let kv = self
            .js
            .get_key_value(shirase_proto::subject::CHECKPOINT_BUCKET)
            .await
            .map_err(|e| e.to_string())?;
        let c = Checkpoints::new(kv, self.cfg.subscriber.clone(), self.cfg.municipality);
        *self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Look the bucket up again next time (after a store error: it may have been re-created).
    pub(super) fn forget_checkpoints(&self) {
        *self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Hand `records` to the sink and count them.
    pub(super) async fn deliver(
        &self,
        iface: InterfaceId,
        pulled_at: Timestamp,
        records: Vec<Record>,
    ) -> Result<(), String> {
        let d = Delivery {
            interface: iface,
            provider: self.provider().business_id,
            pulled_at,
            records,
        };
        self.sink
            .deliver(&d)
            .await
            .map_err(|e| format!("{e} ({} records)", d.records.len()))?;
        self.metrics
            .rows_delivered
            .get_or_create(&self.labels(&iface))
            .inc_by(d.records.len() as u64);
        Ok(())
    }

    /// Sweep one interface: a differential pull from its checkpoint (minus the overlap) to
    /// now, delivered to the sink and checkpointed (compare-and-set) exactly like a
    /// notice-triggered pull, so changes whose notices were never published still arrive.
    /// It runs as a synthetic replay item through [`Worker::decide_interface`]: replay keeps it
    /// out of gap detection and forces a window pull (never keyed). Returns whether it pulled.
    pub(super) async fn sweep_interface(&self, iface: InterfaceId) -> bool {
        if self.guard.remaining().is_some() {
            return false;
        }
        let Some(icfg) = self.provider().interface(&iface).cloned() else {
            return false;
        };
        let at = shirase_proto::OffsetTimestamp::from_instant_jst(Timestamp::now());
        let notice = Notice::new(
            self.cfg.municipality,
            iface,
            icfg.version,
            shirase_proto::Sequence(0),
            at,
            shirase_proto::ChangeKind::Update,
            None,
        );
        let item = Item {
            idx: SWEEP_IDX,
            notice,
            replay: true,
            delivered: 1,
            raw: serde_json::Value::Null,
            published: None,
        };
        let out = self
            .decide_interface(iface, std::slice::from_ref(&item), false)
            .await;
        let ok = matches!(out.first(), Some((_, Decision::Ack | Decision::Later(_))));
        if ok {
            self.metrics
                .sweeps
                .get_or_create(&self.labels(&iface))
                .inc();
        }
        ok
    }
}

impl crate::sweep::Sweeper for Worker {
    fn sweep_interval(&self) -> Duration {
        self.cfg.sweep.interval
    }

    fn interfaces(&self) -> Vec<InterfaceId> {
        self.provider().interfaces.iter().map(|i| i.id).collect()
    }

    fn confirm_gaps(&self) -> Option<Duration> {
        let now = Timestamp::now();
        let (confirmed, next) = self.states.confirm_gaps(now, self.cfg.sweep.gap_grace);
        for (iface, missing) in confirmed {
            self.metrics
                .sequence_gaps
                .get_or_create(&self.labels(&iface))
                .inc_by(missing);
            tracing::info!(interface = %iface, missing, "sequence gap: notices still missing after sweep.gap_grace; sweeping");
        }
        next.map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO))
    }

    fn take_gaps(&self) -> Vec<InterfaceId> {
        self.states.take_gaps()
    }

    fn gap_seen(&self) -> &tokio::sync::Notify {
        &self.gap_seen
    }

    async fn sweep(&self, iface: InterfaceId) -> bool {
        self.sweep_interface(iface).await
    }
}

/// The tombstone record of a `delete` notice.
fn tombstone(n: &Notice) -> Record {
    Record::Tombstone {
        notice_id: n.id.to_string(),
        atena_no: n
            .data
            .keys
            .as_ref()
            .map(|k| k.atena_no.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default(),
        updated_at: n.data.updated_at.clone(),
    }
}
