//! The audit trail: every operator action (and every refused attempt) is one JSON message on
//! `shirase.audit.<action>` in the stream `SHIRASE_AUDIT`, created by provisioning.
//!
//! The record holds the actor, the action, its parameters and its result (counts and ids, never
//! row contents). Writing the record is part of the action: if JetStream does not take it, the
//! API answers 503 even though the action itself was done, so the operator sees the gap.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};

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
        max_bytes: config.stream.quotas.audit,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    }
}

/// One audit record: [`shirase_proto::record::AuditRecord`], with its result.
pub use shirase_proto::record::{AuditRecord, AuditResult};

/// Write one record and wait for the stream's ack.
pub async fn write(js: &jetstream::Context, record: &AuditRecord) -> Result<(), String> {
    let subject = format!("{AUDIT_PREFIX}.{}", record.action);
    let body = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    let mut h = HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        record.id.to_string().as_str(),
    );
    let ack = js
        .publish_with_headers(subject, h, body.into())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The actor of a refused login (no operator could be identified).
pub const UNKNOWN_ACTOR: &str = "(unknown)";

/// How many refused logins are still written to SHIRASE_AUDIT this minute: a fixed one-minute
/// window, so a flood of bad tokens writes at most `per_minute` records a minute (the rest are
/// only counted).
#[derive(Debug)]
pub struct LoginAuditBudget {
    per_minute: u32,
    // A std mutex: two fields updated together, never held across an await.
    window: std::sync::Mutex<Option<(std::time::Instant, u32)>>,
}

impl LoginAuditBudget {
    /// At most `per_minute` records a minute (0: none).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: std::sync::Mutex::new(None),
        }
    }

    /// Whether one more refused login at `now` is written.
    pub fn take(&self, now: std::time::Instant) -> bool {
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, used) = match *w {
            Some((start, used))
                if now.saturating_duration_since(start) < Duration::from_secs(60) =>
            {
                (start, used)
            }
            _ => (now, 0),
        };
        let ok = used < self.per_minute;
        *w = Some((start, used + u32::from(ok)));
        ok
    }
}

/// A record for `actor` doing `action` now.
pub fn record(
    actor: &str,
    action: &str,
    parameters: serde_json::Value,
    result: AuditResult,
    detail: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7(),
        time: jiff::Timestamp::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        parameters,
        result,
        detail,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_login_audit_budget_is_per_minute() {
        let b = LoginAuditBudget::new(2);
        let t0 = std::time::Instant::now();
        assert!(b.take(t0));
        assert!(b.take(t0 + Duration::from_secs(1)));
        assert!(!b.take(t0 + Duration::from_secs(2)));
        assert!(!b.take(t0 + Duration::from_secs(59)));
        assert!(b.take(t0 + Duration::from_secs(60)), "a new minute");
        assert!(!LoginAuditBudget::new(0).take(t0));
    }

    #[test]
    fn a_record_is_what_the_schema_describes() {
        let schema: serde_json::Value =
            serde_json::from_str(shirase_proto::record::schema::AUDIT).unwrap();
        let v = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        for result in [AuditResult::Ok, AuditResult::Error, AuditResult::Denied] {
            let r = record(
                "dev-operator",
                "resync",
                serde_json::json!({"subscriber": "tax"}),
                result,
                serde_json::json!({"error": "x"}),
            );
            let json = serde_json::to_value(&r).unwrap();
            assert!(v.is_valid(&json), "{json}");
            assert_eq!(json["result"], result.as_str());
            assert!(json["time"].as_str().unwrap().ends_with('Z'), "{json}");
            assert_eq!(json["id"], r.id.to_string());
        }
    }
}
