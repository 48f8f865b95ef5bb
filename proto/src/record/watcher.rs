//! The relay watcher's checkpoint of one watched interface.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A window written down before it is read, so a restarted watcher (or a second replica)
/// redoes exactly the same window and derives the same notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWindow {
    /// Exclusive end of the window (UTC `Z`).
    pub to: Timestamp,
    /// Sequence of the window's first notice.
    pub first_sequence: u64,
}

/// The value of a watcher key in the KV bucket `shirase_checkpoints`
/// (`_watcher.<municipality>.<interface>`). Timestamps are written in UTC (`Z`).
///
/// `pending` and `last_poll` are left out when empty; `pending`, `last_poll`, `rows_seen` and
/// `notices_emitted` read as empty / zero when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherCheckpoint {
    /// Every change with a DB update timestamp before this instant has been announced.
    pub cursor: Timestamp,
    /// Sequence of the next notice (the per-interface counter, from 1).
    pub next_sequence: u64,
    /// The window being read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingWindow>,
    /// When the last poll finished (any outcome with an answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<Timestamp>,
    /// Rows read in total (counts only; rows themselves are never kept).
    #[serde(default)]
    pub rows_seen: u64,
    /// Notices published in total.
    #[serde(default)]
    pub notices_emitted: u64,
}
