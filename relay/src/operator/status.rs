//! The operator status: per (subscriber, provider) consumer its backlog and state, per
//! interface the checkpoint, per provider its maintenance windows of the next 24 hours, dead
//! letter counts with the latest reasons, and recent alerts. The same snapshot feeds
//! `GET /v1/ops/status`, the status page and the relay's consumer gauges.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use shirase_proto::InterfaceId;
use shirase_proto::record::Alert;
use shirase_proto::subject::{
    ALERT_STREAM, CHECKPOINT_BUCKET, NOTICE_STREAM, checkpoint_key, consumer_name,
};

use super::dlq::{self, DlqEntry, DlqFilter};
use super::error::OpsError;
use super::pause::{META_AT, META_BY, META_REASON};
use super::resync::StoredCheckpoint;
use crate::config::{Config, Provider, Subscriber};

/// The whole snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// When it was taken (RFC 3339).
    pub generated_at: String,
    /// 市区町村コード.
    pub municipality: String,
    /// One per (subscriber, provider).
    pub consumers: Vec<ConsumerStatus>,
    /// One per provider.
    pub providers: Vec<ProviderStatus>,
    /// Dead letters.
    pub dlq: DlqSummary,
    /// Latest alerts (newest first), as the agents wrote them.
    pub alerts: Vec<Alert>,
    /// One per watched (provider, interface): the watcher's checkpoint.
    #[serde(default)]
    pub watched: Vec<WatchedStatus>,
}

/// One watched interface, from the watcher's checkpoint in KV (any replica can tell).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchedStatus {
    /// Provider business id.
    pub provider: String,
    /// Interface id.
    pub interface: String,
    /// Changes before this instant are announced (absent before the first poll).
    pub cursor: Option<String>,
    /// Now minus the cursor, seconds: how far behind the provider the watcher is.
    pub lag_secs: Option<f64>,
    /// The last answered poll.
    pub last_poll: Option<String>,
    /// Rows read in total.
    pub rows_seen: u64,
    /// Notices published in total.
    pub notices_emitted: u64,
    /// A window was written down and not finished (in progress, or interrupted).
    pub window_pending: bool,
    /// The hand-over instant to native notices.
    pub until: Option<String>,
    /// Whether the cursor reached `until`.
    pub handed_over: bool,
}

/// One consumer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerStatus {
    /// Durable name.
    pub name: String,
    /// Subscriber.
    pub subscriber: String,
    /// Provider.
    pub provider: String,
    /// Whether it exists on the server.
    pub exists: bool,
    /// Notices not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acked.
    pub ack_pending: u64,
    /// Redelivered, not yet acked.
    pub redelivered: u64,
    /// Age in seconds of the oldest notice not yet acked.
    pub oldest_pending_age_secs: Option<f64>,
    /// Last delivery to an agent (RFC 3339).
    pub last_delivery: Option<String>,
    /// Paused by an operator.
    pub paused: bool,
    /// Until when.
    pub paused_until: Option<String>,
    /// Why.
    pub pause_reason: Option<String>,
    /// Who paused it.
    pub paused_by: Option<String>,
    /// When it was paused.
    pub paused_at: Option<String>,
    /// Checkpoints of this subscriber's interfaces of this provider.
    pub checkpoints: Vec<CheckpointStatus>,
}

/// One checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointStatus {
    /// Interface.
    pub interface: String,
    /// The checkpoint (RFC 3339), if stored.
    pub updated_at: Option<String>,
    /// When it was written.
    pub stored_at: Option<String>,
    /// Now minus the checkpoint, seconds.
    pub age_secs: Option<f64>,
}

/// One maintenance window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowStatus {
    /// Start (RFC 3339).
    pub start: String,
    /// End (RFC 3339).
    pub end: String,
}

/// One provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// 業務ID.
    pub business_id: String,
    /// Name.
    pub name: String,
    /// In a maintenance window now.
    pub in_maintenance: bool,
    /// Windows overlapping the next 24 hours.
    pub windows: Vec<WindowStatus>,
    /// The latest alert naming this provider.
    pub last_alert: Option<Alert>,
}

/// Dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DlqSummary {
    /// All dead letters.
    pub total: u64,
    /// Per subscriber.
    pub per_subscriber: BTreeMap<String, u64>,
    /// The latest (newest first, at most 10).
    pub latest: Vec<DlqEntry>,
}

fn ts(t: time::OffsetDateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).ok()
}

/// Take a snapshot.
pub async fn collect(js: &jetstream::Context, config: &Config) -> Result<Status, OpsError> {
    let now = jiff::Timestamp::now();
    let stream = js
        .get_stream(NOTICE_STREAM)
        .await
        .map_err(|e| OpsError::nats("reading SHIRASE_NOTICES", e))?;
    let kv = js.get_key_value(CHECKPOINT_BUCKET).await.ok();
    let mut consumers = Vec::new();
    for s in &config.subscribers {
        for p in &config.providers {
            let ifs: Vec<_> = s
                .interfaces
                .iter()
                .filter(|i| i.business_id() == p.business_id)
                .collect();
            if ifs.is_empty() {
                continue;
            }
            let mut cs = consumer_status(&stream, s, p, now).await;
            for i in ifs {
                cs.checkpoints
                    .push(checkpoint_status(kv.as_ref(), config, s, i, now).await);
            }
            consumers.push(cs);
        }
    }
    let alerts = recent_alerts(js, 20).await;
    let providers = config
        .providers
        .iter()
        .map(|p| provider_status(p, &alerts, now))
        .collect();
    let dlq = dlq_summary(js, config).await;
    let watched = watched_status(js, config, now).await;
    Ok(Status {
        watched,
        generated_at: now.to_string(),
        municipality: config.municipality.to_string(),
        consumers,
        providers,
        dlq,
        alerts,
    })
}

/// The consumer of subscriber `s` for provider `p`, without its checkpoints.
async fn consumer_status(
    stream: &jetstream::stream::Stream,
    s: &Subscriber,
    p: &Provider,
    now: jiff::Timestamp,
) -> ConsumerStatus {
    let name = consumer_name(&s.id, &p.business_id);
    let mut cs = ConsumerStatus {
        name: name.clone(),
        subscriber: s.id.to_string(),
        provider: p.business_id.to_string(),
        exists: false,
        pending: 0,
        ack_pending: 0,
        redelivered: 0,
        oldest_pending_age_secs: None,
        last_delivery: None,
        paused: false,
        paused_until: None,
        pause_reason: None,
        paused_by: None,
        paused_at: None,
        checkpoints: Vec::new(),
    };
    let Ok(info) = stream.consumer_info(&name).await else {
        return cs;
    };
    cs.exists = true;
    cs.pending = info.num_pending;
    cs.ack_pending = info.num_ack_pending as u64;
    cs.redelivered = info.num_redelivered as u64;
    cs.last_delivery = info
        .delivered
        .last_active
        .and_then(ts)
        .map(|t| t.to_string());
    cs.paused = info.paused;
    cs.paused_until = if info.paused {
        info.config.pause_until.and_then(ts).map(|t| t.to_string())
    } else {
        None
    };
    if info.paused {
        cs.pause_reason = info.config.metadata.get(META_REASON).cloned();
        cs.paused_by = info.config.metadata.get(META_BY).cloned();
        cs.paused_at = info.config.metadata.get(META_AT).cloned();
        // No operator reason: the maintenance scheduler paused it for the window.
        if cs.pause_reason.is_none() && p.maintenance.is_in_maintenance(now).is_some() {
            cs.pause_reason = Some("maintenance window (scheduler)".to_owned());
        }
    }
    if cs.pending + cs.ack_pending > 0 {
        cs.oldest_pending_age_secs = oldest_pending_age(stream, &info, now).await;
    }
    cs
}

/// Age in seconds of the oldest notice after the consumer's ack floor on any of its subjects.
async fn oldest_pending_age(
    stream: &jetstream::stream::Stream,
    info: &jetstream::consumer::Info,
    now: jiff::Timestamp,
) -> Option<f64> {
    let from = info.ack_floor.stream_sequence + 1;
    let mut oldest: Option<(u64, jiff::Timestamp)> = None;
    let mut filters = info.config.filter_subjects.clone();
    if !info.config.filter_subject.is_empty() {
        filters.push(info.config.filter_subject.clone());
    }
    for f in filters {
        if let Ok(m) = stream.direct_get_next_for_subject(f, Some(from)).await
            && oldest.is_none_or(|(seq, _)| m.sequence < seq)
            && let Some(t) = ts(m.time)
        {
            oldest = Some((m.sequence, t));
        }
    }
    oldest.map(|(_, t)| now.duration_since(t).as_secs_f64().max(0.0))
}

/// The stored checkpoint of subscriber `s` for interface `i` (all `None` when absent).
async fn checkpoint_status(
    kv: Option<&kv::Store>,
    config: &Config,
    s: &Subscriber,
    i: &InterfaceId,
    now: jiff::Timestamp,
) -> CheckpointStatus {
    let mut c = CheckpointStatus {
        interface: i.to_string(),
        updated_at: None,
        stored_at: None,
        age_secs: None,
    };
    if let Some(kv) = kv
        && let Ok(Some(e)) = kv
            .entry(checkpoint_key(&s.id, &config.municipality, i))
            .await
        && e.operation == kv::Operation::Put
        && let Ok(v) = serde_json::from_slice::<StoredCheckpoint>(&e.value)
    {
        c.age_secs = Some(now.duration_since(v.updated_at.instant()).as_secs_f64());
        c.updated_at = Some(v.updated_at.to_string());
        c.stored_at = Some(v.stored_at.to_string());
    }
    c
}

/// Provider `p`: its maintenance windows overlapping the next 24 hours and its latest alert.
fn provider_status(p: &Provider, alerts: &[Alert], now: jiff::Timestamp) -> ProviderStatus {
    let horizon = now + jiff::SignedDuration::from_hours(24);
    let cal = &p.maintenance;
    let mut windows = Vec::new();
    let mut in_maintenance = false;
    if let Some(w) = cal.is_in_maintenance(now) {
        in_maintenance = true;
        windows.push(WindowStatus {
            start: w.start.to_string(),
            end: w.end.to_string(),
        });
    }
    for w in cal.next_windows(now, 8) {
        if w.start < horizon && !windows.iter().any(|x| x.start == w.start.to_string()) {
            windows.push(WindowStatus {
                start: w.start.to_string(),
                end: w.end.to_string(),
            });
        }
    }
    let last_alert = alerts
        .iter()
        .find(|a| a.provider.as_deref() == Some(p.business_id.as_str()))
        .cloned();
    ProviderStatus {
        business_id: p.business_id.to_string(),
        name: p.name.clone(),
        in_maintenance,
        windows,
        last_alert,
    }
}

/// Dead letters: the total, per subscriber, and the latest ten.
async fn dlq_summary(js: &jetstream::Context, config: &Config) -> DlqSummary {
    let all = dlq::list(js, config, &DlqFilter::default(), 100_000)
        .await
        .unwrap_or_default();
    let mut dlq = DlqSummary {
        total: all.len() as u64,
        ..Default::default()
    };
    for e in &all {
        *dlq.per_subscriber.entry(e.subscriber.clone()).or_default() += 1;
    }
    dlq.latest = all.iter().rev().take(10).cloned().collect();
    dlq
}

/// Every watched (provider, interface) with the watcher's checkpoint from KV.
async fn watched_status(
    js: &jetstream::Context,
    config: &Config,
    now: jiff::Timestamp,
) -> Vec<WatchedStatus> {
    let mut watched = Vec::new();
    let store = crate::watcher::state::StateStore::open(js, config.municipality)
        .await
        .ok();
    for p in &config.providers {
        let Some(w) = &p.watch else { continue };
        for i in &w.interfaces {
            let st = match &store {
                Some(s) => s.load(i).await.ok().and_then(|(s, _)| s),
                None => None,
            };
            watched.push(WatchedStatus {
                provider: p.business_id.to_string(),
                interface: i.to_string(),
                cursor: st.as_ref().map(|s| s.cursor.to_string()),
                lag_secs: st
                    .as_ref()
                    .map(|s| now.duration_since(s.cursor).as_secs_f64().max(0.0)),
                last_poll: st.as_ref().and_then(|s| s.last_poll).map(|t| t.to_string()),
                rows_seen: st.as_ref().map_or(0, |s| s.rows_seen),
                notices_emitted: st.as_ref().map_or(0, |s| s.notices_emitted),
                window_pending: st.as_ref().is_some_and(|s| s.pending.is_some()),
                until: w.until.map(|u| u.to_string()),
                handed_over: match (&st, w.until) {
                    (Some(s), Some(u)) => s.cursor >= u,
                    _ => false,
                },
            });
        }
    }
    watched
}

/// The last `n` alerts, newest first (empty when the stream is missing). Messages that are not
/// alerts are skipped.
pub async fn recent_alerts(js: &jetstream::Context, n: u64) -> Vec<Alert> {
    let Ok(mut s) = js.get_stream(ALERT_STREAM).await else {
        return Vec::new();
    };
    let Ok(info) = s.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    if info.state.messages == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut seq = last;
    while seq >= first.max(1) && (out.len() as u64) < n {
        if let Ok(m) = s.get_raw_message(seq).await
            && let Ok(v) = Alert::from_stored(&m.subject, &m.payload)
        {
            out.push(v);
        }
        if seq == 0 || last - seq >= 4 * n {
            break;
        }
        seq -= 1;
    }
    out
}
