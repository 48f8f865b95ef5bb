//! The relay file watcher's memory of one announced file.

use serde::{Deserialize, Serialize};

use crate::notice::NoticeId;
use crate::notice::file::{Sha256Hex, SharePath};

/// The value of a key `_files.<business id>.<first 32 hex digits of SHA-256(path)>` in the KV
/// bucket `shirase_checkpoints`: a file the watcher announced, so that a restarted watcher (or
/// another replica) neither hashes it again while it is unchanged nor announces it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWatchEntry {
    /// Path relative to the provider's share.
    pub path: SharePath,
    /// Size announced, in bytes.
    pub size: u64,
    /// Modification time seen when it was announced, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// SHA-256 announced.
    pub sha256: Sha256Hex,
    /// The file-ready notice's id.
    pub id: NoticeId,
}
