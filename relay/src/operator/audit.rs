//! The audit trail: every operator action (and every refused attempt) is one JSON message on
//! `shirase.audit.<action>` in the stream `SHIRASE_AUDIT`, created by provisioning.
//!
//! The record holds the actor, the action, its parameters and its result (counts and ids, never
//! row contents). Writing the record is part of the action: if JetStream does not take it, the
//! API answers 503 even though the action itself was done, so the operator sees the gap.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Storage};

/// The audit stream.
pub const AUDIT_STREAM: &str = "SHIRASE_AUDIT";
/// Subject prefix of audit records (`shirase.audit.<action>`).
pub const AUDIT_PREFIX: &str = "shirase.audit";

/// The stream configuration provisioning creates. Audit records are kept a year: they answer
/// "who replayed what" long after the notices themselves expired.
pub fn stream_config(config: &Config) -> stream::Config {
    stream::Config {
        name: AUDIT_STREAM.to_owned(),
        description: Some("Shirase operator actions (who, what, parameters, result)".into()),
        subjects: vec![format!("{AUDIT_PREFIX}.>")],
        storage: match config.stream.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        num_replicas: config.stream.replicas,
        max_age: Duration::from_secs(366 * 86_400),
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    }
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// Unique id (UUID v7), also the `Nats-Msg-Id`.
    pub id: String,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Operator name from `[[operators]]`.
    pub actor: String,
    /// `replay`, `resync`, `dlq-redrive`, `dlq-purge`, `pause`, `resume`.
    pub action: String,
    /// The request as the operator sent it.
    pub parameters: serde_json::Value,
    /// `ok`, `error` or `denied`.
    pub result: String,
    /// What happened (counts, from/to, ...) or the error message.
    pub detail: serde_json::Value,
}

/// Write one record and wait for the stream's ack.
pub async fn write(js: &jetstream::Context, record: &AuditRecord) -> Result<(), String> {
    let subject = format!("{AUDIT_PREFIX}.{}", record.action);
    let body = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    let mut h = HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, record.id.as_str());
    let ack = js
        .publish_with_headers(subject, h, body.into())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())?;
    Ok(())
}

/// A record for `actor` doing `action` now.
pub fn record(
    actor: &str,
    action: &str,
    parameters: serde_json::Value,
    result: &str,
    detail: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        time: jiff::Timestamp::now().to_string(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        parameters,
        result: result.to_owned(),
        detail,
    }
}
