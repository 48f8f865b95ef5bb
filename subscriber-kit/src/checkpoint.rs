//! Checkpoints in the JetStream KV bucket `shirase_checkpoints` (created by the relay's
//! provisioning, never by the agent), keyed by `checkpoint_key(subscriber, municipality,
//! interface)`.
//!
//! A checkpoint is the largest DB update timestamp actually received by a window pull — never
//! the wall clock — and it never moves backwards: [`Checkpoints::advance`] is a compare-and-set
//! loop on the entry's revision that keeps the larger value when agent replicas race.
//!
//! Besides the timestamp, a checkpoint stored by a window pull says when that pull started and
//! where its window began ([`LastRead`]): the agent judges from them whether a notice at or
//! below the checkpoint was read by that pull (`coalesce`).

use async_nats::jetstream::kv;
use jiff::Timestamp;
use shirase_proto::{InterfaceId, MunicipalityCode, SubscriberId};

pub use crate::coalesce::LastRead;

/// What a checkpoint operation failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointErrorKind {
    /// The KV bucket could not be read or written.
    Store,
    /// The stored value is not a checkpoint (someone wrote something else under the key).
    Corrupt,
    /// Too many compare-and-set conflicts in a row.
    Contended,
}

/// A checkpoint read or write failed.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {key}: {message}")]
pub struct CheckpointError {
    kind: CheckpointErrorKind,
    key: String,
    message: String,
}

impl CheckpointError {
    /// What failed.
    pub fn kind(&self) -> CheckpointErrorKind {
        self.kind
    }
}

/// The stored JSON value: [`shirase_proto::record::Checkpoint`], shared with the relay's
/// resync and status (kept under this name for existing callers).
pub use shirase_proto::record::Checkpoint as Stored;

/// A checkpoint as read, with the KV revision to compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The checkpoint instant.
    pub updated_at: Timestamp,
    /// KV revision of the entry.
    pub revision: u64,
    /// The window pull that stored it, if the record says (none for records written before
    /// it was recorded, and for an operator's resync).
    pub read: Option<LastRead>,
    /// How many resyncs rewound the key (`Stored::resyncs`).
    pub resyncs: u64,
}

/// What one read of a checkpoint key found: the checkpoint (none when the key is absent,
/// deleted or purged) and the revision a compare-and-set must name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Read {
    /// The checkpoint, if one is stored.
    pub current: Option<Checkpoint>,
    /// KV revision of the key's latest entry (also of a delete marker), none when absent.
    pub revision: Option<u64>,
}

/// The checkpoints of one subscriber in one municipality.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    kv: kv::Store,
    subscriber: SubscriberId,
    municipality: MunicipalityCode,
}

const MAX_CAS_ATTEMPTS: usize = 16;

impl Checkpoints {
    /// Wrap the bucket.
    pub fn new(kv: kv::Store, subscriber: SubscriberId, municipality: MunicipalityCode) -> Self {
        Self {
            kv,
            subscriber,
            municipality,
        }
    }

    /// The key of `interface`.
    pub fn key(&self, interface: &InterfaceId) -> String {
        shirase_proto::subject::checkpoint_key(&self.subscriber, &self.municipality, interface)
    }

    fn err(
        &self,
        kind: CheckpointErrorKind,
        key: &str,
        message: impl Into<String>,
    ) -> CheckpointError {
        CheckpointError {
            kind,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// The stored checkpoint, if any. A deleted or purged key reads as none (an operator's
    /// reset), with the revision kept for the next compare-and-set.
    pub async fn get(
        &self,
        interface: &InterfaceId,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self.entry(interface).await?.1)
    }

    /// Read the checkpoint with the revision to pass to [`Checkpoints::advance_from`], so a
    /// batch that read it before pulling needs no second read to store the next one.
    pub async fn read(&self, interface: &InterfaceId) -> Result<Read, CheckpointError> {
        let (_, current, revision) = self.entry(interface).await?;
        Ok(Read { current, revision })
    }

    async fn entry(
        &self,
        interface: &InterfaceId,
    ) -> Result<(String, Option<Checkpoint>, Option<u64>), CheckpointError> {
        let key = self.key(interface);
        let e = self
            .kv
            .entry(key.clone())
            .await
            .map_err(|e| self.err(CheckpointErrorKind::Store, &key, e.to_string()))?;
        let Some(e) = e else {
            return Ok((key, None, None));
        };
        if e.operation != kv::Operation::Put {
            return Ok((key, None, Some(e.revision)));
        }
        let s: Stored = serde_json::from_slice(&e.value).map_err(|x| {
            self.err(
                CheckpointErrorKind::Corrupt,
                &key,
                format!("value is not a checkpoint: {x}"),
            )
        })?;
        let read = s.read_at.zip(s.read_from).map(|(at, from)| LastRead {
            at: at.instant(),
            from: from.instant(),
        });
        Ok((
            key,
            Some(Checkpoint {
                updated_at: s.updated_at.instant(),
                revision: e.revision,
                read,
                resyncs: s.resyncs,
            }),
            Some(e.revision),
        ))
    }

    /// Watch the checkpoints of `interfaces`: each key's latest entry first, then every change
    /// (the agents' own writes, an operator's resync or reset). Read the entries with
    /// [`Checkpoints::interface_of`] and [`checkpoint_of`].
    pub async fn watch(&self, interfaces: &[InterfaceId]) -> Result<kv::Watch, CheckpointError> {
        let keys: Vec<String> = interfaces.iter().map(|i| self.key(i)).collect();
        self.kv
            .watch_many_with_history(keys)
            .await
            .map_err(|e| self.err(CheckpointErrorKind::Store, "(watch)", e.to_string()))
    }

    /// The interface among `interfaces` whose key a watched entry names.
    pub fn interface_of(&self, key: &str, interfaces: &[InterfaceId]) -> Option<InterfaceId> {
        interfaces.iter().find(|i| self.key(i) == key).copied()
    }

    /// Move the checkpoint of `interface` up to `to`, never down. Returns the value stored
    /// afterwards (which is larger than `to` when another replica got further first).
    pub async fn advance(
        &self,
        interface: &InterfaceId,
        to: Timestamp,
    ) -> Result<Timestamp, CheckpointError> {
        self.advance_from(interface, to, None).await
    }

    /// [`Checkpoints::advance`] whose first compare-and-set names the revision of an earlier
    /// [`Checkpoints::read`] instead of reading again (one round trip instead of two). If the
    /// key changed since (another replica, an operator's reset), the write is refused and the
    /// loop reads and decides again, exactly as without the hint.
    pub async fn advance_from(
        &self,
        interface: &InterfaceId,
        to: Timestamp,
        known: Option<Read>,
    ) -> Result<Timestamp, CheckpointError> {
        self.advance_read(interface, to, None, known).await
    }

    /// [`Checkpoints::advance_from`] recording the window pull that received `to` (`read`:
    /// when it started and its FROM), so that later notices can be judged against it. The
    /// record is written only together with a larger `to`: a checkpoint left in place keeps
    /// the description of the pull that stored it.
    pub async fn advance_read(
        &self,
        interface: &InterfaceId,
        to: Timestamp,
        read: Option<LastRead>,
        mut known: Option<Read>,
    ) -> Result<Timestamp, CheckpointError> {
        // What the batch saw when it started: a checkpoint found below it later was moved
        // backwards since, which only an operator's resync does.
        let baseline = known
            .as_ref()
            .and_then(|r| r.current.as_ref().map(|c| c.updated_at));
        // The batch read the key and found no checkpoint (not: it did not read).
        let found_none = known.as_ref().is_some_and(|r| r.current.is_none());
        // How many resyncs the key had seen when the batch read it.
        let resyncs_read = known
            .as_ref()
            .map(|r| r.current.as_ref().map_or(0, |c| c.resyncs));
        for _ in 0..MAX_CAS_ATTEMPTS {
            // A hint is only used to write: "already that far" is confirmed by a fresh read,
            // so the returned value is what is stored now (a reset since the hint reads as none).
            let (key, current, revision) = match known.take() {
                Some(r) if r.current.as_ref().is_none_or(|c| c.updated_at < to) => {
                    (self.key(interface), r.current, r.revision)
                }
                _ => self.entry(interface).await?,
            };
            if let Some(c) = &current
                && c.updated_at >= to
            {
                return Ok(c.updated_at);
            }
            // A resync rewound the checkpoint while this batch was working: keep the rewind
            // (the re-read it asks for includes this batch's rows) instead of writing over it.
            if let (Some(b), Some(c)) = (baseline, &current)
                && c.updated_at < b
            {
                return Ok(c.updated_at);
            }
            // A resync came after the batch read the key (however far agents have moved the
            // rewound value since): keep the key, the re-read it asks for is under way.
            if let (Some(k), Some(c)) = (resyncs_read, &current)
                && c.resyncs > k
            {
                return Ok(c.updated_at);
            }
            // No checkpoint when the batch started, and now one no pull describes: every agent
            // write describes its pull, so this is an operator's resync (or a record older than
            // pull records): keep it too. Keeping a lower checkpoint only costs a re-read.
            if let (true, Some(c)) = (found_none, &current)
                && c.read.is_none()
            {
                return Ok(c.updated_at);
            }
            // The count of the checkpoint this write replaces (the compare-and-set names it).
            let mut stored = Stored::jst(to, Timestamp::now())
                .with_resyncs(current.as_ref().map_or(0, |c| c.resyncs));
            if let Some(r) = read {
                stored = stored.read_by(r.at, r.from);
            }
            let value = serde_json::to_vec(&stored)
                .map_err(|e| self.err(CheckpointErrorKind::Store, &key, e.to_string()))?;
            let res = match revision {
                Some(rev) => self.kv.update(&key, value.into(), rev).await.map_err(|e| {
                    (!shirase_service::kv::update_conflict(&e)).then(|| e.to_string())
                }),
                None => self.kv.create(&key, value.into()).await.map_err(|e| {
                    (!shirase_service::kv::create_conflict(&e)).then(|| e.to_string())
                }),
            };
            match res {
                Ok(_) => return Ok(to),
                // Another replica wrote first: read again and keep the larger value.
                Err(None) => continue,
                Err(Some(m)) => return Err(self.err(CheckpointErrorKind::Store, &key, m)),
            }
        }
        Err(self.err(
            CheckpointErrorKind::Contended,
            &self.key(interface),
            "too many compare-and-set conflicts",
        ))
    }
}

/// The checkpoint a watched entry holds: none for a delete or purge marker (an operator's
/// reset) or a value that is not a checkpoint.
pub fn checkpoint_of(e: &kv::Entry) -> Option<Timestamp> {
    if e.operation != kv::Operation::Put {
        return None;
    }
    serde_json::from_slice::<Stored>(&e.value)
        .ok()
        .map(|s| s.updated_at.instant())
}

/// Did a checkpoint move backwards from `before` to `after`? Agents only move it forward, so
/// a lower value, or none after one, is an operator's resync or reset: re-read from there.
pub fn rewound(before: Option<Timestamp>, after: Option<Timestamp>) -> bool {
    match (before, after) {
        (Some(b), Some(a)) => a < b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_a_lower_or_missing_value_after_one_is_a_rewind() {
        let t = |s| Timestamp::from_second(s).unwrap();
        assert!(rewound(Some(t(10)), Some(t(9))));
        assert!(rewound(Some(t(10)), None), "deleted or purged: a reset");
        assert!(!rewound(Some(t(10)), Some(t(10))));
        assert!(!rewound(Some(t(10)), Some(t(11))));
        assert!(!rewound(None, Some(t(1))), "first value seen");
        assert!(!rewound(None, None));
    }

    #[test]
    fn the_stored_value_is_what_the_schema_describes() {
        let schema: serde_json::Value =
            serde_json::from_str(shirase_proto::record::schema::CHECKPOINT).unwrap();
        let v = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let to: Timestamp = "2026-11-25T01:15:30.123Z".parse().unwrap();
        let json = serde_json::to_value(Stored::jst(to, Timestamp::now())).unwrap();
        assert!(v.is_valid(&json), "{json}");
        assert_eq!(json["updated_at"], "2026-11-25T10:15:30.123+09:00");
    }
}
