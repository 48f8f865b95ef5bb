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
        Self {
            replicas: raw.replicas,
            max_age,
            duplicate_window,
            storage,
            dlq_max_age,
            alert_max_age,
            checkpoint_history: raw.checkpoint_history,
        }
    }
}
