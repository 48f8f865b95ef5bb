//! The records besides notices that Shirase writes to JetStream: one type per record, used by
//! the component that writes it and by every component that reads it.
//!
//! | record | where | written by | read by |
//! | --- | --- | --- | --- |
//! | [`Checkpoint`] | KV `shirase_checkpoints`, key `<subscriber>.<municipality>.<interface>` | agent (and the relay's resync) | agent, relay (resync, status) |
//! | [`DeadLetter`] | stream `SHIRASE_DLQ`, `shirase.dlq.<subscriber>.<m>.<b>.<i>` | agent | relay (`dlq` list, show, redrive) |
//! | [`Alert`] | stream `SHIRASE_ALERTS`, `shirase.alert.<severity>.<component>` | agent | relay (notifier, status) |
//! | [`AuditRecord`] | stream `SHIRASE_AUDIT`, `shirase.audit.<action>` | relay (operator API) | operators, tests |
//! | [`WatcherCheckpoint`] | KV `shirase_checkpoints`, key `_watcher.<municipality>.<interface>` | relay (watcher) | relay (watcher, status) |
//! | [`FileWatchEntry`] | KV `shirase_checkpoints`, key `_files.<business id>.<path hash>` | relay (file watcher) | relay (file watcher) |
//!
//! Each type is pure data; the JSON it (de)serializes to is the wire format stored in
//! JetStream, described for other languages by a JSON Schema (draft 2020-12) in `schema/`
//! ([`schema`] holds their text) with golden examples in `examples/records/`, kept in step with
//! these types by `tests/records.rs`.
//!
//! Compatibility rules:
//! - A member the type marks optional may be absent from a stored record (records written
//!   before it existed, e.g. an alert's `runbook`); it reads as `None`, zero or empty
//!   (`serde(default)`). Optional members a writer always wrote are written as `null` when
//!   empty (a dead letter's `code`, an alert's `provider`), exactly as before.
//! - Unknown members are ignored when reading, so a newer writer may add a member without
//!   breaking an older reader (the schemas allow additional properties for the same reason).
//! - Timestamps keep the form each record has always used: [`OffsetTimestamp`] values are kept
//!   as written (writers use `+09:00`), `jiff::Timestamp` values are written in UTC (`Z`).
//!
//! [`OffsetTimestamp`]: crate::OffsetTimestamp

mod alert;
mod audit;
mod checkpoint;
mod dead_letter;
mod file_watch;
mod watcher;

pub use alert::Alert;
pub use audit::{AuditRecord, AuditResult};
pub use checkpoint::Checkpoint;
pub use dead_letter::DeadLetter;
pub use file_watch::FileWatchEntry;
pub use watcher::{PendingWindow, WatcherCheckpoint};

/// The JSON Schemas of the records (draft 2020-12), as shipped in `schema/`.
pub mod schema {
    /// `schema/checkpoint.v1.json`: [`super::Checkpoint`].
    pub const CHECKPOINT: &str = include_str!("../schema/checkpoint.v1.json");
    /// `schema/dead-letter.v1.json`: [`super::DeadLetter`].
    pub const DEAD_LETTER: &str = include_str!("../schema/dead-letter.v1.json");
    /// `schema/alert.v1.json`: [`super::Alert`].
    pub const ALERT: &str = include_str!("../schema/alert.v1.json");
    /// `schema/audit.v1.json`: [`super::AuditRecord`].
    pub const AUDIT: &str = include_str!("../schema/audit.v1.json");
    /// `schema/watcher-checkpoint.v1.json`: [`super::WatcherCheckpoint`].
    pub const WATCHER_CHECKPOINT: &str = include_str!("../schema/watcher-checkpoint.v1.json");
    /// `schema/file-watch-entry.v1.json`.
    pub const FILE_WATCH_ENTRY: &str = include_str!("../schema/file-watch-entry.v1.json");
}
