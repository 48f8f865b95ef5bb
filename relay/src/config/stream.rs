//! `[stream]`: retention, replicas and storage of the streams and buckets.

use std::time::Duration;

use serde::Deserialize;

use super::common::Problems;

/// `[stream]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    /// Replicas.
    pub replicas: usize,
    /// Notice retention.
    pub max_age: String,
    /// Dedup window.
    pub duplicate_window: String,
    /// `file` or `memory`.
    pub storage: String,
    /// DLQ retention.
    pub dlq_max_age: String,
    /// Alert retention.
    pub alert_max_age: String,
    /// Checkpoint history.
    pub checkpoint_history: i64,
    /// Quotas, e.g. `"2GiB"`.
    pub max_bytes: String,
    /// DLQ quota.
    pub dlq_max_bytes: String,
    /// Alert quota.
    pub alert_max_bytes: String,
    /// Audit quota.
    pub audit_max_bytes: String,
    /// Checkpoint bucket quota.
    pub checkpoint_max_bytes: String,
    /// Lease bucket quota.
    pub lease_max_bytes: String,
}

/// Storage of the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Files (durable).
    File,
    /// Memory (tests).
    Memory,
}

/// Validated `[stream]`.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Replicas.
    pub replicas: usize,
    /// Notice retention.
    pub max_age: Duration,
    /// Dedup window.
    pub duplicate_window: Duration,
    /// Storage.
    pub storage: Storage,
    /// DLQ retention.
    pub dlq_max_age: Duration,
    /// Alert retention.
    pub alert_max_age: Duration,
    /// Checkpoint history.
    pub checkpoint_history: i64,
    /// Most bytes of each stream and bucket: no identity can fill the store beyond them.
    pub quotas: Quotas,
}

/// `max_bytes` of every stream and bucket (`stream.*max_bytes`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// `SHIRASE_NOTICES` (`stream.max_bytes`); when full the oldest notices go first.
    pub notices: i64,
    /// `SHIRASE_DLQ` (`stream.dlq_max_bytes`); when full a new dead letter is refused (the
    /// agent keeps the notice and retries) rather than an older one dropped.
    pub dlq: i64,
    /// `SHIRASE_ALERTS` (`stream.alert_max_bytes`); when full the oldest alerts go first.
    pub alerts: i64,
    /// `SHIRASE_AUDIT` (`stream.audit_max_bytes`); when full the oldest records go first.
    pub audit: i64,
    /// The `shirase_checkpoints` bucket (`stream.checkpoint_max_bytes`).
    pub checkpoints: i64,
    /// The `shirase_leases` bucket (`stream.lease_max_bytes`).
    pub leases: i64,
}

/// The smallest quota accepted: a stream smaller than this could not hold one batch.
const MIN_QUOTA: u64 = 1 << 20;

fn quota(p: &mut Problems, field: &str, value: &str) -> i64 {
    let path = format!("stream.{field}");
    match p.size(&path, value) {
        Some(n) if n < MIN_QUOTA => {
            p.push(path, format!("must be at least 1MiB, got {value:?}"));
            0
        }
        // parse_size keeps sizes within i64.
        Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
        None => 0,
    }
}

impl StreamConfig {
    /// Validate `[stream]`.
    pub(super) fn validate(raw: &RawStream, p: &mut Problems) -> Self {
        if !(1..=5).contains(&raw.replicas) {
            p.push(
                "stream.replicas",
                "must be 1 to 5 (1 for dev, 3 or 5 in a cluster)",
            );
        }
        let max_age = p
            .duration("stream.max_age", &raw.max_age)
            .unwrap_or_default();
        let duplicate_window = p
            .duration("stream.duplicate_window", &raw.duplicate_window)
            .unwrap_or_default();
        if duplicate_window > max_age {
            p.push(
                "stream.duplicate_window",
                "must not be longer than stream.max_age",
            );
        }
        if duplicate_window < Duration::from_secs(60) {
            p.push(
                "stream.duplicate_window",
                "must be at least 1m so a provider's retry is de-duplicated",
            );
        }
        let storage = match raw.storage.as_str() {
            "file" => Storage::File,
            "memory" => Storage::Memory,
            other => {
                p.push(
                    "stream.storage",
                    format!("must be \"file\" or \"memory\", got {other:?}"),
                );
                Storage::File
            }
        };
        let dlq_max_age = p
            .duration("stream.dlq_max_age", &raw.dlq_max_age)
            .unwrap_or_default();
        let alert_max_age = p
            .duration("stream.alert_max_age", &raw.alert_max_age)
            .unwrap_or_default();
        if !(1..=64).contains(&raw.checkpoint_history) {
            p.push("stream.checkpoint_history", "must be 1 to 64");
        }
        let quotas = Quotas {
            notices: quota(p, "max_bytes", &raw.max_bytes),
            dlq: quota(p, "dlq_max_bytes", &raw.dlq_max_bytes),
            alerts: quota(p, "alert_max_bytes", &raw.alert_max_bytes),
            audit: quota(p, "audit_max_bytes", &raw.audit_max_bytes),
            checkpoints: quota(p, "checkpoint_max_bytes", &raw.checkpoint_max_bytes),
            leases: quota(p, "lease_max_bytes", &raw.lease_max_bytes),
        };
        Self {
            replicas: raw.replicas,
            max_age,
            duplicate_window,
            storage,
            dlq_max_age,
            alert_max_age,
            checkpoint_history: raw.checkpoint_history,
            quotas,
        }
    }
}
