//! The watcher's checkpoint per interface, in the KV bucket `shirase_checkpoints` under
//! `_watcher.<municipality>.<interface>` (a leading `_` cannot start a subscriber id, so the key
//! never meets an agent's checkpoint).
//!
//! Every write is a compare-and-set on the revision read, and a window is written down
//! (`pending`) *before* its PULL request. So a restarted watcher, or a second replica, redoes
//! exactly the same window `[cursor, pending.to)` and derives exactly the same notices with the
//! same ids instead of choosing its own end: JetStream's duplicate window then drops what the
//! first attempt already stored, and [`super::Watcher`] skips what the stream already holds.

use async_nats::jetstream::kv;
use shirase_proto::{InterfaceId, MunicipalityCode};

/// A window written down before it is read: [`shirase_proto::record::PendingWindow`].
pub use shirase_proto::record::PendingWindow as Pending;
/// What the watcher keeps about one interface: [`shirase_proto::record::WatcherCheckpoint`],
/// also read by the operator status.
pub use shirase_proto::record::WatcherCheckpoint as WatchState;

/// What kind of state failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateErrorKind {
    /// The bucket is missing (run `shirase-relay provision`).
    NoBucket,
    /// Another replica wrote in between: read again.
    Conflict,
    /// The stored value is not a watcher state.
    Corrupt,
    /// JetStream could not be asked.
    Store,
}

/// A checkpoint read or write failed.
#[derive(Debug, thiserror::Error)]
#[error("watcher checkpoint {key}: {message}")]
pub struct StateError {
    kind: StateErrorKind,
    key: String,
    message: String,
}

impl StateError {
    /// The kind, for callers that branch.
    pub fn kind(&self) -> StateErrorKind {
        self.kind
    }
}

/// The prefix of watcher keys in the checkpoint bucket.
pub const KEY_PREFIX: &str = "_watcher";

/// The key of one interface's watcher state.
pub fn key(m: &MunicipalityCode, i: &InterfaceId) -> String {
    format!("{KEY_PREFIX}.{m}.{i}")
}

/// Watcher states in the checkpoint bucket.
#[derive(Debug, Clone)]
pub struct StateStore {
    kv: kv::Store,
    municipality: MunicipalityCode,
}

impl StateStore {
    /// Open the bucket.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        municipality: MunicipalityCode,
    ) -> Result<Self, StateError> {
        let bucket = shirase_proto::subject::CHECKPOINT_BUCKET;
        let kv = js.get_key_value(bucket).await.map_err(|e| StateError {
            kind: StateErrorKind::NoBucket,
            key: bucket.into(),
            message: format!("{e}; run `shirase-relay provision` to create it"),
        })?;
        Ok(Self { kv, municipality })
    }

    fn err(&self, kind: StateErrorKind, i: &InterfaceId, message: impl Into<String>) -> StateError {
        StateError {
            kind,
            key: key(&self.municipality, i),
            message: message.into(),
        }
    }

    /// The state and its revision (`None` = never written, or deleted by an operator to
    /// restart the watcher from its `start`).
    pub async fn load(
        &self,
        i: &InterfaceId,
    ) -> Result<(Option<WatchState>, Option<u64>), StateError> {
        let e = self
            .kv
            .entry(key(&self.municipality, i))
            .await
            .map_err(|e| self.err(StateErrorKind::Store, i, e.to_string()))?;
        let Some(e) = e else { return Ok((None, None)) };
        if e.operation != kv::Operation::Put {
            return Ok((None, Some(e.revision)));
        }
        let s = serde_json::from_slice(&e.value).map_err(|x| {
            self.err(
                StateErrorKind::Corrupt,
                i,
                format!("value is not a watcher state: {x}; delete the key to start over"),
            )
        })?;
        Ok((Some(s), Some(e.revision)))
    }

    /// Write `s` if the key is still at `revision` (`None` = absent). Returns the new revision.
    pub async fn save(
        &self,
        i: &InterfaceId,
        s: &WatchState,
        revision: Option<u64>,
    ) -> Result<u64, StateError> {
        let k = key(&self.municipality, i);
        let value =
            serde_json::to_vec(s).map_err(|e| self.err(StateErrorKind::Store, i, e.to_string()))?;
        match revision {
            Some(rev) => self.kv.update(&k, value.into(), rev).await.map_err(|e| {
                let kind = if shirase_service::kv::update_conflict(&e) {
                    StateErrorKind::Conflict
                } else {
                    StateErrorKind::Store
                };
                self.err(kind, i, e.to_string())
            }),
            None => self.kv.create(&k, value.into()).await.map_err(|e| {
                let kind = if shirase_service::kv::create_conflict(&e) {
                    StateErrorKind::Conflict
                } else {
                    StateErrorKind::Store
                };
                self.err(kind, i, e.to_string())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_state_is_what_the_schema_describes() {
        let schema: serde_json::Value =
            serde_json::from_str(shirase_proto::record::schema::WATCHER_CHECKPOINT).unwrap();
        let v = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let now = jiff::Timestamp::now();
        let mut s = WatchState {
            cursor: now,
            next_sequence: 1,
            pending: None,
            last_poll: None,
            rows_seen: 0,
            notices_emitted: 0,
        };
        let json = serde_json::to_value(&s).unwrap();
        assert!(v.is_valid(&json), "{json}");
        assert!(json.get("pending").is_none(), "left out when empty: {json}");
        s.pending = Some(Pending {
            to: now,
            first_sequence: 1,
        });
        s.last_poll = Some(now);
        let json = serde_json::to_value(&s).unwrap();
        assert!(v.is_valid(&json), "{json}");
        assert_eq!(serde_json::from_value::<WatchState>(json).unwrap(), s);
    }
}
