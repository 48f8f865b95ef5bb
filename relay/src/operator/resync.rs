//! Resync: rewind a subscriber's checkpoint for one interface in the `shirase_checkpoints`
//! bucket. The agent watches its checkpoint keys: it sees the value move backwards and sweeps
//! the interface at once, from there (minus its overlap), re-reading the provider's own
//! differential API — a replay that follows the provider's semantics even when the notices
//! themselves have expired. The record written names no pull (`read_at` absent), so the agent
//! takes no notice at or below it as read without pulling its rows. It counts the key's
//! resyncs (`resyncs`, one more than it found): an agent batch that read the key before the
//! resync keeps the key instead of writing over it, even after other batches have moved the
//! rewound value past what that batch read.
//!
//! The write is a compare-and-set on the revision just read: if an agent advanced the
//! checkpoint in between, the operator gets 409 and retries, instead of silently losing either
//! value. A resync only moves a checkpoint back; moving it forward would skip rows.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use shirase_proto::OffsetTimestamp;
use shirase_proto::subject::{CHECKPOINT_BUCKET, checkpoint_key};

use super::error::OpsError;
use super::replay::subscriber_subjects;
use crate::config::Config;

/// `POST /v1/ops/resync`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    /// Subscriber.
    pub subscriber: String,
    /// Interface (連携ID).
    pub interface: String,
    /// The new checkpoint (RFC 3339): the agent re-pulls rows updated after it.
    pub to: String,
}

/// What a resync did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResyncResult {
    /// The KV key.
    pub key: String,
    /// The checkpoint before (RFC 3339), if there was one.
    pub from: Option<String>,
    /// The checkpoint now.
    pub to: String,
    /// KV revision written.
    pub revision: u64,
}

/// The JSON the agent stores: [`shirase_proto::record::Checkpoint`] (the agent's
/// `checkpoint::Stored`).
pub use shirase_proto::record::Checkpoint as StoredCheckpoint;

/// Rewind the checkpoint.
pub async fn run(
    js: &jetstream::Context,
    config: &Config,
    r: &ResyncRequest,
) -> Result<ResyncResult, OpsError> {
    let (sid, picked) = subscriber_subjects(config, &r.subscriber, None, Some(&r.interface))?;
    let Some((_, iface)) = picked.into_iter().next() else {
        return Err(OpsError::invalid(
            "interface",
            "subscriber reads no such interface",
        ));
    };
    let to: jiff::Timestamp = r.to.parse().map_err(|_| {
        OpsError::invalid(
            "to",
            format!(
                "{:?} is not an RFC 3339 time (e.g. 2026-11-25T03:00:00+09:00)",
                r.to
            ),
        )
    })?;
    let kv = js
        .get_key_value(CHECKPOINT_BUCKET)
        .await
        .map_err(|e| OpsError::nats("opening the checkpoint bucket", e))?;
    let key = checkpoint_key(&sid, &config.municipality, &iface);
    let entry = kv
        .entry(key.clone())
        .await
        .map_err(|e| OpsError::nats("reading the checkpoint", e))?;
    let current = entry
        .as_ref()
        .filter(|e| e.operation == kv::Operation::Put)
        .and_then(|e| serde_json::from_slice::<StoredCheckpoint>(&e.value).ok());
    if let Some(c) = &current
        && to > c.updated_at.instant()
    {
        return Err(OpsError::invalid(
            "to",
            format!(
                "{to} is after the current checkpoint {}; a resync only rewinds (moving forward would skip rows)",
                c.updated_at
            ),
        ));
    }
    // One more resync than the key has seen: a batch that read the key before this write keeps
    // it, however far agents move the rewound value before that batch stores.
    let resyncs = current.as_ref().map_or(0, |c| c.resyncs) + 1;
    let value = serde_json::to_vec(
        &StoredCheckpoint::jst(to, jiff::Timestamp::now()).with_resyncs(resyncs),
    )
    .map_err(|e| OpsError::nats("encoding the checkpoint", e))?;
    let revision = match &entry {
        Some(e) => kv.update(&key, value.into(), e.revision).await.map_err(|x| match x {
            x if shirase_service::kv::update_conflict(&x) => {
                OpsError::conflict(format!("checkpoint {key} changed while resyncing (an agent advanced it); run the resync again"))
            }
            _ => OpsError::nats("writing the checkpoint", x),
        })?,
        None => kv.create(&key, value.into()).await.map_err(|x| match x {
            x if shirase_service::kv::create_conflict(&x) => {
                OpsError::conflict(format!("checkpoint {key} was created while resyncing; run the resync again"))
            }
            _ => OpsError::nats("writing the checkpoint", x),
        })?,
    };
    tracing::info!(key = %key, revision, "checkpoint rewound");
    Ok(ResyncResult {
        key,
        from: current.map(|c| c.updated_at.to_string()),
        to: OffsetTimestamp::from_instant_jst(to).to_string(),
        revision,
    })
}
