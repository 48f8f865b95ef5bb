//! The worker of one (subscriber, provider) consumer: the I/O around a batch's decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use jiff::Timestamp;
use shirase_proto::{InterfaceId, Notice, Severity};
use tokio_util::sync::CancellationToken;

use super::{
    Decision, Failure, Item, Pulled, RECENT_ROWS_CAP, SWEEP_IDX, Streamed, sleep_or_cancel,
};
use crate::alert::Alerter;
use crate::checkpoint::Checkpoints;
use crate::coalesce::{self, PlanInput, PlanSettings, PullKind};
use crate::config::{Config, ProviderConfig};
use crate::coverage::Reach;
use crate::dlq::{self, DeadLetter};
use crate::maintenance::Guard;
use crate::metrics::{IfaceLabels, Metrics};
use crate::pull_client::{Outcome, PullClient, PullRequest, Row};
use crate::sink::{Delivery, Record, Sink};

pub(crate) struct Worker {
    pub(super) guard: Arc<Guard>,
    pub(super) stop: CancellationToken,
    pub(super) cfg: Arc<Config>,
    pub(super) js: jetstream::Context,
    pub(super) client: Arc<PullClient>,
    pub(super) sink: Arc<dyn Sink>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) alerter: Arc<Alerter>,
    // Per-interface highest sequence seen by this process, for gap detection.
    pub(super) last_seq: std::sync::Mutex<HashMap<InterfaceId, u64>>,
    pub(super) connect_failures: AtomicU32,
    // Continuous failure of the provider, for the operating-status alert and recovery message.
    pub(super) outage: crate::outage::OutageTracker,
    // Interfaces with a sequence gap, waiting for the sweeper's immediate sweep.
    pub(super) gapped: std::sync::Mutex<Vec<InterfaceId>>,
    // Wakes the sweeper when a gap is seen.
    pub(crate) gap_seen: tokio::sync::Notify,
    // Notice id → first failure time, for the dead letter's `first_failure`.
    pub(super) first_failure: std::sync::Mutex<HashMap<String, Timestamp>>,
    // Per interface: DB timestamps of rows received by recent window pulls (sorted, pruned to
    // the overlap below the checkpoint). They say how many rows an overlap re-read will meet,
    // so the window can be cut before the provider refuses it.
    pub(super) recent_rows: std::sync::Mutex<HashMap<InterfaceId, Vec<Timestamp>>>,
    // Per interface: when this process last re-read the overlap below the checkpoint.
    pub(super) last_overlap: std::sync::Mutex<HashMap<InterfaceId, tokio::time::Instant>>,
    // The checkpoint bucket's handle, looked up once instead of per batch (a lookup is a
    // stream-info request to the server); dropped after a store error so it is looked up again.
    pub(super) checkpoints: std::sync::Mutex<Option<Checkpoints>>,
}

impl Worker {
    pub(super) fn provider(&self) -> &ProviderConfig {
        self.client.config()
    }

    pub(super) fn labels(&self, i: &InterfaceId) -> IfaceLabels {
        IfaceLabels {
            provider: self.provider().business_id.to_string(),
            interface: i.to_string(),
        }
    }

    pub(super) fn backoff(&self, attempt: u64) -> Duration {
        let r = &self.cfg.retry;
        let exp = attempt.saturating_sub(1).min(20) as u32;
        Duration::from_millis(r.base_ms.saturating_mul(1u64 << exp).min(r.max_ms))
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
        if max_deliver <= 0 {
            return out;
        }
        // A maintenance nak on the consumer's last delivery would make JetStream drop the
        // notice: hold the batch instead (handle_batch keeps sending progress heartbeats; the
        // worker would not fetch during the window anyway) and decide again when it ends.
        while let Some(wait) = items
            .iter()
            .filter(|it| it.delivered >= max_deliver as u64)
            .find_map(|it| {
                out.iter().find_map(|(i, d)| match d {
                    Decision::Wait(w) if *i == it.idx => Some(*w),
                    _ => None,
                })
            })
        {
            tracing::info!(interface = %iface, secs = wait.as_secs(), "holding notices at their last delivery until the maintenance window ends");
            if !sleep_or_cancel(wait, &self.stop).await {
                return out;
            }
            out = self.decide_interface(iface, &items, more_pending).await;
        }
        // A provider outage never dead-letters: hold notices at their last delivery (progress
        // heartbeats keep them ours) and try again while the provider keeps failing.
        while self.outage.failing()
            && items.iter().any(|it| {
                it.delivered >= max_deliver as u64
                    && out
                        .iter()
                        .any(|(i, d)| *i == it.idx && matches!(d, Decision::Nak(_)))
            })
        {
            if !sleep_or_cancel(Duration::from_millis(self.cfg.retry.max_ms), &self.stop).await {
                return out;
            }
            out = self.decide_interface(iface, &items, more_pending).await;
        }
        let last: Vec<&Item> = items
            .iter()
            .filter(|it| it.delivered >= max_deliver as u64)
            .filter(|it| {
                out.iter().any(|(i, d)| {
                    *i == it.idx && matches!(d, Decision::Nak(_) | Decision::Later(_))
                })
            })
            .collect();
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
        for (idx, d) in dl {
            if let Some(slot) = out.iter_mut().find(|(i, _)| *i == idx) {
                slot.1 = d;
            }
        }
        out
    }

    pub(super) async fn decide_interface(
        &self,
        iface: InterfaceId,
        items: &[Item],
        more_pending: bool,
    ) -> Vec<(usize, Decision)> {
        let labels = self.labels(&iface);
        if let Some(wait) = self.guard.remaining() {
            let out: Vec<_> = items
                .iter()
                .map(|it| (it.idx, Decision::Wait(wait)))
                .collect();
            self.count(&labels, &out);
            return out;
        }
        let Some(icfg) = self.provider().interface(&iface).cloned() else {
            let reason = format!(
                "interface {iface} is not configured for this agent (providers.interfaces)"
            );
            return self
                .dead_letter_all(&iface, items, &reason, None, None, None)
                .await;
        };
        if items
            .iter()
            .any(|it| it.notice.data.municipality_code != self.cfg.municipality)
        {
            let reason = format!(
                "notice for a municipality other than {}",
                self.cfg.municipality
            );
            return self
                .dead_letter_all(&iface, items, &reason, None, None, None)
                .await;
        }
        let gap = self.detect_gap(&iface, items);

        let kv = match self.checkpoints().await {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(interface = %iface, "checkpoint bucket unavailable: {e}");
                return self.nak_all(&labels, items);
            }
        };
        // Read once; the store below names this read's revision (compare-and-set), so it needs
        // no second read unless the key changed meanwhile.
        let read = match kv.read(&iface).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(interface = %iface, "reading checkpoint: {e}");
                self.forget_checkpoints();
                return self.nak_all(&labels, items);
            }
        };
        let checkpoint = read.current.as_ref().map(|c| c.updated_at);
        let now = Timestamp::now();
        if let Some(c) = checkpoint {
            self.metrics
                .checkpoint_age_seconds
                .get_or_create(&labels)
                .set(now.duration_since(c).as_secs_f64());
        }
        let inputs: Vec<PlanInput> = items
            .iter()
            .map(|it| PlanInput {
                updated_at: it.notice.data.updated_at.instant(),
                change: it.notice.data.change,
                keys: it
                    .notice
                    .data
                    .keys
                    .as_ref()
                    .map(|k| k.atena_no.clone())
                    .unwrap_or_default(),
                replay: it.replay,
            })
            .collect();
        // The overlap below the checkpoint is re-read at most once per
        // `pull.overlap_reread_secs` of a continuous run: between re-reads the windows chain
        // from the checkpoint itself (still without holes), so a burst delivered in many
        // batches does not re-read all its earlier rows in every batch.
        let reread = checkpoint.is_none()
            || self
                .last_overlap
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&iface)
                .is_none_or(|t| t.elapsed() >= self.cfg.overlap_reread());
        let overlap = if reread {
            self.cfg.overlap()
        } else {
            Duration::ZERO
        };
        let settings = PlanSettings {
            overlap,
            keyed_pull_max_keys: icfg.keyed_pull_max_keys,
            gap,
            more_pending,
        };
        let plan = coalesce::plan(&inputs, checkpoint, now, settings);
        let mut hints: Vec<Timestamp> = inputs.iter().map(|i| i.updated_at).collect();
        hints.sort_unstable();
        // Where the rows are, for cutting windows: each notice may bring 2 rows (its own and the
        // previous latest row it demotes), each row already received 1.
        // Both lists are sorted; only the part inside the window being cut is merged (profiled:
        // sorting all remembered rows on every batch was the agent's top CPU cost at 2,000/s).
        let budget = 2 * self.cfg.pull.max_notices_per_window as u64;
        let windows = |from: Timestamp, to: Timestamp| {
            let recent = self.recent_rows.lock().unwrap_or_else(|e| e.into_inner());
            let rows: &[Timestamp] = recent.get(&iface).map_or(&[], Vec::as_slice);
            let rows =
                &rows[rows.partition_point(|t| *t < from)..rows.partition_point(|t| *t < to)];
            let notes =
                &hints[hints.partition_point(|t| *t < from)..hints.partition_point(|t| *t < to)];
            let mut points: Vec<(Timestamp, u64)> = Vec::with_capacity(rows.len() + notes.len());
            let (mut i, mut j) = (0, 0);
            while i < rows.len() || j < notes.len() {
                if j >= notes.len() || (i < rows.len() && rows[i] <= notes[j]) {
                    points.push((rows[i], 1));
                    i += 1;
                } else {
                    points.push((notes[j], 2));
                    j += 1;
                }
            }
            drop(recent);
            coalesce::cut_windows(from, to, &points, budget)
        };

        // Pull. A window pull delivers its rows piece by piece as they arrive; a keyed pull's
        // rows (bounded by its keys) go to the sink below with the tombstones.
        let mut rows: Vec<Row> = Vec::new();
        let mut window_times: Vec<Timestamp> = Vec::new();
        let mut row_count = 0usize;
        let mut window_reach: Option<Reach> = None;
        let mut keyed_reach: Option<Reach> = None;
        if let Some(pull) = &plan.pull {
            let result = match &pull.kind {
                PullKind::Window { from, to } => self
                    .pull_window(&iface, windows(*from, *to), &hints, now)
                    .await
                    .map(Pulled::Window),
                PullKind::Keyed { from, keys } => {
                    let req = PullRequest {
                        interface: iface,
                        from: Some(*from),
                        to: None,
                        keys: keys.clone(),
                    };
                    match self.request(&req).await {
                        Outcome::Data(r) => Ok(Pulled::Keyed(r)),
                        // Too many rows for the keys: fall back to the window.
                        Outcome::TooMany | Outcome::TimeoutSplit { .. } => {
                            let p = coalesce::plan(
                                &inputs,
                                checkpoint,
                                now,
                                PlanSettings {
                                    keyed_pull_max_keys: 0,
                                    ..settings
                                },
                            );
                            match p.pull.map(|p| p.kind) {
                                Some(PullKind::Window { from, to }) => self
                                    .pull_window(&iface, windows(from, to), &hints, now)
                                    .await
                                    .map(Pulled::Window),
                                _ => Err(Failure::Outcome(Outcome::TooMany)),
                            }
                        }
                        o => Err(Failure::Outcome(o)),
                    }
                }
            };
            match result {
                Ok(Pulled::Window(got)) => {
                    window_reach = Some(Reach {
                        max: got.times.iter().max().copied(),
                        per_key: Default::default(),
                    });
                    row_count = got.count;
                    window_times = got.times;
                }
                Ok(Pulled::Keyed(r)) => {
                    keyed_reach = Some(Reach::of(&r));
                    row_count = r.len();
                    rows = r;
                }
                Err(f) => {
                    let covers: Vec<&Item> = pull.covers.iter().map(|&i| &items[i]).collect();
                    let mut out = self.on_failure(&iface, &covers, f).await;
                    // Notices that needed no pull are still done.
                    for &i in &plan.already_covered {
                        out.push((items[i].idx, Decision::Ack));
                    }
                    // Tombstones wait for the next round with the failed ones (until the end of
                    // a maintenance window, if that is what stopped the pull).
                    let wait = out.iter().find_map(|(_, d)| match d {
                        Decision::Wait(w) => Some(*w),
                        _ => None,
                    });
                    for &i in &plan.tombstones {
                        let d = wait.map_or_else(
                            || Decision::Nak(self.backoff(items[i].delivered)),
                            Decision::Wait,
                        );
                        out.push((items[i].idx, d));
                    }
                    self.count(&labels, &out);
                    return out;
                }
            }
        }

        // Sink: rows of a keyed pull, then tombstones.
        let mut records: Vec<Record> = rows.into_iter().map(Record::Row).collect();
        for &i in &plan.tombstones {
            let n = &items[i].notice;
            records.push(Record::Tombstone {
                notice_id: n.id.to_string(),
                atena_no: n
                    .data
                    .keys
                    .as_ref()
                    .map(|k| k.atena_no.iter().map(|a| a.to_string()).collect())
                    .unwrap_or_default(),
                updated_at: n.data.updated_at.clone(),
            });
        }
        if !records.is_empty()
            && let Err(e) = self.deliver(iface, now, records).await
        {
            tracing::warn!(interface = %iface, "sink refused: {e}");
            return self.nak_all(&labels, items);
        }

        // Checkpoint: only a window pull proves everything up to its max row was received.
        if let Some(max) = window_reach.as_ref().and_then(|r| r.max)
            && let Err(e) = kv.advance_from(&iface, max, Some(read)).await
        {
            tracing::warn!(interface = %iface, "storing checkpoint: {e}");
            self.forget_checkpoints();
            return self.nak_all(&labels, items);
        }
        if window_reach.is_some() {
            if reread && !overlap.is_zero() {
                self.last_overlap
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(iface, tokio::time::Instant::now());
            }
            self.remember_rows(
                &iface,
                window_times,
                window_reach.as_ref().and_then(|r| r.max),
            );
        }

        // Decide.
        let mut out = Vec::with_capacity(items.len());
        for &i in plan.tombstones.iter().chain(&plan.already_covered) {
            out.push((items[i].idx, Decision::Ack));
        }
        if let Some(pull) = &plan.pull {
            for &i in &pull.covers {
                let it = &items[i];
                let ts = it.notice.data.updated_at.instant();
                let covered = match (&window_reach, &keyed_reach) {
                    (Some(r), _) => r.covers_window(ts),
                    (None, Some(r)) => r.covers_keys(
                        ts,
                        it.notice
                            .data
                            .keys
                            .iter()
                            .flat_map(|k| k.atena_no.iter().map(|a| a.as_str())),
                    ),
                    (None, None) => false,
                };
                if covered {
                    out.push((it.idx, Decision::Ack));
                } else {
                    self.metrics.uncovered.get_or_create(&labels).inc();
                    if it.delivered >= self.cfg.coverage.uncovered_alert_after {
                        self.alert(
                            Severity::Warning,
                            "uncovered",
                            Some(&iface),
                            format!("notice {} (updated_at {}) is still not covered by the PULL API after {} deliveries; the provider's API may read a lagging replica", it.notice.id, it.notice.data.updated_at, it.delivered),
                        )
                        .await;
                    }
                    out.push((
                        it.idx,
                        Decision::Later(Duration::from_millis(
                            self.cfg.coverage.uncovered_retry_delay_ms,
                        )),
                    ));
                }
            }
        }
        let oldest = items
            .iter()
            .filter(|it| out.iter().any(|(i, d)| *i == it.idx && *d == Decision::Ack))
            .map(|it| it.notice.time.instant())
            .min();
        if let Some(t) = oldest {
            self.metrics
                .lag_seconds
                .get_or_create(&labels)
                .set(Timestamp::now().duration_since(t).as_secs_f64());
        }
        tracing::debug!(interface = %iface, notices = items.len(), rows = row_count, "batch done");
        self.count(&labels, &out);
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

    pub(super) fn nak_all(&self, labels: &IfaceLabels, items: &[Item]) -> Vec<(usize, Decision)> {
        let out: Vec<_> = items
            .iter()
            .map(|it| (it.idx, Decision::Nak(self.backoff(it.delivered))))
            .collect();
        self.count(labels, &out);
        out
    }

    pub(super) fn detect_gap(&self, iface: &InterfaceId, items: &[Item]) -> bool {
        let mut seqs: Vec<u64> = items
            .iter()
            .filter(|it| !it.replay)
            .map(|it| it.notice.sequence.0)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut last = self.last_seq.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing = 0u64;
        let mut prev = last.get(iface).copied();
        for s in seqs {
            if let Some(p) = prev
                && s > p + 1
            {
                missing += s - p - 1;
            }
            prev = Some(prev.map_or(s, |p| p.max(s)));
        }
        if let Some(p) = prev {
            last.insert(*iface, p);
        }
        drop(last);
        if missing > 0 {
            self.metrics
                .sequence_gaps
                .get_or_create(&self.labels(iface))
                .inc_by(missing);
            tracing::info!(interface = %iface, missing, "sequence gap: forcing a differential pull and a sweep");
            {
                let mut g = self.gapped.lock().unwrap_or_else(|e| e.into_inner());
                if !g.contains(iface) {
                    g.push(*iface);
                }
            }
            self.gap_seen.notify_one();
        }
        missing > 0
    }

    pub(super) async fn request(&self, req: &PullRequest) -> Outcome {
        // Checked before every request (bisection can run into a window's start); the token
        // request happens inside `pull`, so it is not sent either.
        if let Some(wait) = self.guard.remaining() {
            self.outage.in_maintenance();
            return Outcome::Maintenance {
                retry_after: Some(wait),
            };
        }
        let o = self.client.pull(req).await;
        self.metrics
            .pulls
            .get_or_create(&crate::metrics::PullLabels {
                provider: self.provider().business_id.to_string(),
                interface: req.interface.to_string(),
                outcome: o.label().into(),
            })
            .inc();
        self.track_outage(&o).await;
        o
    }

    /// Sweep one interface (issue 5 item 6): a differential pull from its checkpoint (minus
    /// the overlap) to now, delivered to the sink and checkpointed (CAS) exactly like a
    /// notice-triggered pull, so changes whose notices were never published still arrive.
    /// It runs as a synthetic replay item through [`Worker::decide_interface`]: replay keeps it
    /// out of gap detection and forces a window pull (never keyed). Returns whether it pulled.
    pub(crate) async fn sweep(&self, iface: InterfaceId) -> bool {
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

    /// `sweep.interval_secs` (0 = gap-triggered sweeps only).
    pub(crate) fn sweep_interval_secs(&self) -> u64 {
        self.cfg.sweep.interval_secs
    }

    /// The interfaces this worker's provider serves.
    pub(crate) fn interfaces(&self) -> Vec<InterfaceId> {
        self.provider().interfaces.iter().map(|i| i.id).collect()
    }

    /// Interfaces whose notices showed a sequence gap since the last call.
    pub(crate) fn take_gaps(&self) -> Vec<InterfaceId> {
        std::mem::take(&mut *self.gapped.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Feed the outage tracker; raise its one alert and its one recovery message. The alert
    /// bypasses the alerter's repeat suppression: the tracker already says it exactly once.
    pub(super) async fn track_outage(&self, o: &Outcome) {
        let p = self.provider().business_id.to_string();
        let now = tokio::time::Instant::now();
        let event = match o {
            Outcome::Connect(_) | Outcome::Transient { .. } | Outcome::TimeoutSplit { .. } => {
                if matches!(o, Outcome::Connect(_)) {
                    self.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
                self.outage.failure(now)
            }
            Outcome::Maintenance { .. } => {
                self.outage.in_maintenance();
                crate::outage::OutageEvent::None
            }
            _ => {
                self.connect_failures.store(0, Ordering::Relaxed);
                self.outage.success(now)
            }
        };
        let (sev, code, message, runbook) = match event {
            crate::outage::OutageEvent::None => return,
            crate::outage::OutageEvent::Alert { failing_for } => (
                Severity::Critical,
                "provider_unreachable",
                format!(
                    "check the operating status of provider {p}: its PULL API has failed for {} s outside its maintenance windows ({} connection failures in a row, last: {}); notices wait in JetStream",
                    failing_for.as_secs(),
                    self.connect_failures.load(Ordering::Relaxed),
                    o.label()
                ),
                "Ask the provider's vendor about its operating status (稼働状況). Nothing is lost: notices wait in JetStream and the agent pulls them when the provider answers; a recovery message follows.",
            ),
            crate::outage::OutageEvent::Recovered { lasted } => (
                Severity::Info,
                "provider_recovered",
                format!(
                    "provider {p} answers again after {} s; the agent is catching up",
                    lasted.as_secs()
                ),
                "Nothing to do; watch num_pending of the consumer go back to 0.",
            ),
        };
        if self
            .alerter
            .raise_now(sev, code, Some(&p), None, message, Some(runbook.into()))
            .await
        {
            self.metrics
                .alerts
                .get_or_create(&crate::metrics::CodeLabels { code: code.into() })
                .inc();
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

    /// Remember the DB timestamps of rows a window pull received, pruned to the overlap below
    /// the newest one.
    pub(super) fn remember_rows(
        &self,
        iface: &InterfaceId,
        mut new: Vec<Timestamp>,
        max: Option<Timestamp>,
    ) {
        let mut all = self.recent_rows.lock().unwrap_or_else(|e| e.into_inner());
        let v = all.entry(*iface).or_default();
        new.sort_unstable();
        // Rows come in time order, so appending keeps the list sorted; sort only otherwise.
        let in_order = v.last().zip(new.first()).is_none_or(|(a, b)| a <= b);
        v.extend(new);
        if !in_order {
            v.sort_unstable();
        }
        if let Some(m) = max.or(v.last().copied()) {
            let floor = m
                .checked_sub(
                    jiff::SignedDuration::try_from(self.cfg.overlap())
                        .unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MIN);
            let keep = v.partition_point(|t| *t < floor);
            v.drain(..keep);
        }
        if v.len() > RECENT_ROWS_CAP {
            let extra = v.len() - RECENT_ROWS_CAP;
            v.drain(..extra);
        }
    }

    /// Pull the consecutive `windows` (planned by [`coalesce::cut_windows`]), bisecting a piece
    /// on E0004 / bare 503 down to `bisect_max_depth`, and hand each piece's rows to the sink as
    /// soon as it arrives, so the agent holds one piece (about `2 × max_notices_per_window`
    /// rows, or the provider's row threshold) at a time, not the whole burst. Pieces run in
    /// time order; on any failure the checkpoint stays where it was, so the pieces already
    /// delivered are pulled and delivered again later (at least once, as inside the overlap).
    /// Returns what was delivered: the count and the newest DB timestamps.
    pub(super) async fn pull_window(
        &self,
        iface: &InterfaceId,
        windows: Vec<(Timestamp, Timestamp)>,
        hints: &[Timestamp],
        pulled_at: Timestamp,
    ) -> Result<Streamed, Failure> {
        let mut got = Streamed::default();
        let mut stack: Vec<(Timestamp, Timestamp, u32)> = windows
            .into_iter()
            .rev()
            .map(|(f, t)| (f, t, 0u32))
            .collect();
        while let Some((f, t, depth)) = stack.pop() {
            let req = PullRequest {
                interface: *iface,
                from: Some(f),
                to: Some(t),
                keys: vec![],
            };
            match self.request(&req).await {
                Outcome::Data(r) => {
                    got.count += r.len();
                    got.times.extend(r.iter().map(|row| row.updated_at));
                    // Only the newest timestamps are remembered for cutting windows
                    // (`remember_rows`): a sweep over a day's backlog must not hold them all.
                    if got.times.len() > 2 * RECENT_ROWS_CAP {
                        got.times.sort_unstable();
                        let extra = got.times.len() - RECENT_ROWS_CAP;
                        got.times.drain(..extra);
                    }
                    if !r.is_empty() {
                        self.deliver(*iface, pulled_at, r.into_iter().map(Record::Row).collect())
                            .await
                            .map_err(Failure::Sink)?;
                    }
                }
                o @ (Outcome::TooMany | Outcome::TimeoutSplit { .. }) => {
                    match (depth < self.cfg.pull.bisect_max_depth)
                        .then(|| coalesce::split_point(f, t, hints))
                        .flatten()
                    {
                        Some(mid) => {
                            stack.push((mid, t, depth + 1));
                            stack.push((f, mid, depth + 1));
                        }
                        None => {
                            return Err(Failure::BisectExhausted {
                                last: o,
                                from: f,
                                to: t,
                            });
                        }
                    }
                }
                o => return Err(Failure::Outcome(o)),
            }
        }
        Ok(got)
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

    pub(super) async fn on_failure(
        &self,
        iface: &InterfaceId,
        covers: &[&Item],
        f: Failure,
    ) -> Vec<(usize, Decision)> {
        let nak = |d: &dyn Fn(&Item) -> Duration| {
            covers
                .iter()
                .map(|it| (it.idx, Decision::Nak(d(it))))
                .collect::<Vec<_>>()
        };
        match f {
            Failure::Outcome(Outcome::Transient { retry_after, code }) => {
                tracing::info!(interface = %iface, code = code.as_deref().unwrap_or("-"), "transient provider error");
                nak(&|it| retry_after.unwrap_or_else(|| self.backoff(it.delivered)))
            }
            Failure::Outcome(Outcome::TimeoutSplit { retry_after }) => {
                nak(&|it| retry_after.unwrap_or_else(|| self.backoff(it.delivered)))
            }
            Failure::Outcome(Outcome::Connect(reason)) => {
                tracing::warn!(interface = %iface, "provider unreachable: {reason}");
                nak(&|it| self.backoff(it.delivered))
            }
            Failure::Outcome(Outcome::Maintenance { retry_after }) => {
                // The provider's own signal (E0900), or the calendar caught by `request`: keep
                // every interface of this provider away until the window ends.
                let d = self
                    .guard
                    .announce(retry_after.unwrap_or(Duration::from_millis(self.cfg.retry.max_ms)));
                self.client
                    .limiter()
                    .close_until(tokio::time::Instant::now() + d);
                tracing::info!(interface = %iface, secs = d.as_secs(), "provider in maintenance");
                covers
                    .iter()
                    .map(|it| (it.idx, Decision::Wait(d)))
                    .collect()
            }
            Failure::Outcome(Outcome::Unauthorized { message }) => {
                self.alert(
                    Severity::Critical,
                    "unauthorized",
                    Some(iface),
                    format!("provider {} refused our credentials ({message}); check providers.client_id / client_secret_file", self.provider().business_id),
                )
                .await;
                nak(&|_| Duration::from_millis(self.cfg.retry.max_ms))
            }
            Failure::Outcome(Outcome::Permanent {
                status,
                code,
                message,
            }) => {
                let reason = format!(
                    "the PULL API refused the request permanently ({status} {})",
                    code.as_deref().unwrap_or("-")
                );
                self.alert(
                    Severity::Warning,
                    "permanent_error",
                    Some(iface),
                    format!("{reason}: {message}; notices dead-lettered"),
                )
                .await;
                self.dead_letter(iface, covers, &reason, Some(status), code, Some(message))
                    .await
            }
            Failure::BisectExhausted { last, from, to } => {
                let reason = format!(
                    "bisection depth {} exhausted at window [{}, {}) with {}",
                    self.cfg.pull.bisect_max_depth,
                    shirase_proto::OffsetTimestamp::from_instant_jst(from),
                    shirase_proto::OffsetTimestamp::from_instant_jst(to),
                    last.label()
                );
                self.alert(Severity::Warning, "bisect_exhausted", Some(iface), format!("{reason}; raise the provider's threshold or pull.bisect_max_depth; notices dead-lettered")).await;
                let status = match last {
                    Outcome::TooMany => Some(400),
                    _ => Some(503),
                };
                self.dead_letter(iface, covers, &reason, status, None, None)
                    .await
            }
            Failure::Sink(e) => {
                tracing::warn!(interface = %iface, "sink refused: {e}");
                nak(&|it| self.backoff(it.delivered))
            }
            // Data and TooMany never reach here as failures of a window.
            Failure::Outcome(o) => nak(&|it| {
                let _ = &o;
                self.backoff(it.delivered)
            }),
        }
    }

    pub(super) async fn dead_letter_all(
        &self,
        iface: &InterfaceId,
        items: &[Item],
        reason: &str,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Vec<(usize, Decision)> {
        let refs: Vec<&Item> = items.iter().collect();
        self.alert(
            Severity::Warning,
            "dead_letter",
            Some(iface),
            format!("{reason}; {} notices dead-lettered", items.len()),
        )
        .await;
        let out = self
            .dead_letter(iface, &refs, reason, status, code, message)
            .await;
        self.count(&self.labels(iface), &out);
        out
    }

    pub(super) async fn dead_letter(
        &self,
        iface: &InterfaceId,
        items: &[&Item],
        reason: &str,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Vec<(usize, Decision)> {
        let mut out = Vec::new();
        let now = Timestamp::now();
        for it in items {
            // A sweep's synthetic item is no notice: nothing to dead-letter (the alert says why).
            if it.idx == SWEEP_IDX {
                out.push((it.idx, Decision::Nak(Duration::ZERO)));
                continue;
            }
            let id = it.notice.id.to_string();
            let first = *self
                .first_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.clone())
                .or_insert(now);
            let dl = DeadLetter {
                subscriber: self.cfg.subscriber.to_string(),
                interface_id: iface.to_string(),
                reason: reason.to_owned(),
                http_status: status,
                code: code.clone(),
                message: message.clone(),
                attempts: it.delivered,
                first_failure: shirase_proto::OffsetTimestamp::from_instant_jst(first).to_string(),
                last_failure: shirase_proto::OffsetTimestamp::from_instant_jst(now).to_string(),
                notice: it.raw.clone(),
            };
            let subject = shirase_proto::subject::dlq_subject(
                &self.cfg.subscriber,
                &it.notice.data.municipality_code,
                &it.notice.data.provider,
                iface,
            );
            match dlq::publish(&self.js, subject, &id, &dl).await {
                Ok(()) => {
                    self.first_failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    out.push((it.idx, Decision::Term));
                }
                Err(e) => {
                    tracing::error!(notice = %id, "{e}; keeping the notice");
                    out.push((it.idx, Decision::Nak(self.backoff(it.delivered))));
                }
            }
        }
        out
    }

    pub(super) async fn alert(
        &self,
        sev: Severity,
        code: &str,
        iface: Option<&InterfaceId>,
        message: String,
    ) {
        let p = self.provider().business_id.to_string();
        let i = iface.map(|i| i.to_string());
        if self
            .alerter
            .raise(sev, code, Some(&p), i.as_deref(), message)
            .await
        {
            self.metrics
                .alerts
                .get_or_create(&crate::metrics::CodeLabels { code: code.into() })
                .inc();
        }
    }
}
