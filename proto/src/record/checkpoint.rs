//! The agent's checkpoint of one interface.

use serde::{Deserialize, Serialize};

use crate::OffsetTimestamp;

/// The value of an agent's key in the KV bucket `shirase_checkpoints`
/// (`<subscriber>.<municipality>.<interface>`).
///
/// ```json
/// {"updated_at":"2026-11-25T10:15:30.123+09:00","stored_at":"2026-11-25T10:15:31.5+09:00",
///  "read_at":"2026-11-25T10:15:31.2+09:00","read_from":"2026-11-25T10:15:02.004+09:00"}
/// ```
///
/// The agent moves it forward only (compare-and-set on the KV revision); an operator's resync
/// moves it back. `updated_at` and `stored_at` have always been written; `read_at` and
/// `read_from` describe the window pull that produced `updated_at` and are absent from records
/// written before they existed and from a resync's record (they read as unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpoint: the largest DB update timestamp received by a window pull (never the
    /// wall clock), RFC 3339 as written (`+09:00` by Shirase's writers).
    pub updated_at: OffsetTimestamp,
    /// When it was stored (wall clock, for the checkpoint-age view).
    pub stored_at: OffsetTimestamp,
    /// When the window pull that received `updated_at` started (the agent's wall clock, taken
    /// before its first request). A change whose notice JetStream stored before this instant
    /// was committed before the pull read the provider, so the pull saw it if its timestamp
    /// lies in `[read_from, updated_at]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<OffsetTimestamp>,
    /// FROM (inclusive) of that window pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<OffsetTimestamp>,
    /// How many times an operator's resync has rewound this key: a resync writes one more than
    /// it found, an agent copies the count of the checkpoint its compare-and-set replaces. A
    /// batch that read a smaller count than the key holds when it stores was overtaken by a
    /// resync (whatever value the key holds now), and keeps the key as it is. Absent (0) in
    /// records written before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resyncs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Checkpoint {
    /// A checkpoint at `updated_at`, stored at `stored_at`, both written in Japan Standard
    /// Time (`+09:00`), the form every writer uses; no pull described (a resync's record).
    pub fn jst(updated_at: jiff::Timestamp, stored_at: jiff::Timestamp) -> Self {
        Self {
            updated_at: OffsetTimestamp::from_instant_jst(updated_at),
            stored_at: OffsetTimestamp::from_instant_jst(stored_at),
            read_at: None,
            read_from: None,
            resyncs: 0,
        }
    }

    /// The same checkpoint with the resync count `resyncs`.
    pub fn with_resyncs(mut self, resyncs: u64) -> Self {
        self.resyncs = resyncs;
        self
    }

    /// The same checkpoint, produced by a window pull that started at `read_at` (wall clock)
    /// with FROM `read_from`, both written in Japan Standard Time.
    pub fn read_by(mut self, read_at: jiff::Timestamp, read_from: jiff::Timestamp) -> Self {
        self.read_at = Some(OffsetTimestamp::from_instant_jst(read_at));
        self.read_from = Some(OffsetTimestamp::from_instant_jst(read_from));
        self
    }
}
