//! The agent's checkpoint of one interface.

use serde::{Deserialize, Serialize};

use crate::OffsetTimestamp;

/// The value of an agent's key in the KV bucket `shirase_checkpoints`
/// (`<subscriber>.<municipality>.<interface>`).
///
/// ```json
/// {"updated_at":"2026-11-25T10:15:30.123+09:00","stored_at":"2026-11-25T10:15:31.5+09:00"}
/// ```
///
/// The agent moves it forward only (compare-and-set on the KV revision); an operator's resync
/// moves it back. Both members have always been written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpoint: the largest DB update timestamp received by a window pull (never the
    /// wall clock), RFC 3339 as written (`+09:00` by Shirase's writers).
    pub updated_at: OffsetTimestamp,
    /// When it was stored (wall clock, for the checkpoint-age view).
    pub stored_at: OffsetTimestamp,
}

impl Checkpoint {
    /// A checkpoint at `updated_at`, stored at `stored_at`, both written in Japan Standard
    /// Time (`+09:00`), the form every writer uses.
    pub fn jst(updated_at: jiff::Timestamp, stored_at: jiff::Timestamp) -> Self {
        Self {
            updated_at: OffsetTimestamp::from_instant_jst(updated_at),
            stored_at: OffsetTimestamp::from_instant_jst(stored_at),
        }
    }
}
