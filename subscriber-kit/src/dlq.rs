//! Dead letters: notices whose pull failed permanently (400 other than E0004, bisection depth
//! exhausted, an interface this agent is not configured for) are published to
//! `shirase.dlq.<subscriber>.<m>.<b>.<i>` (stream `SHIRASE_DLQ`, provisioned by the relay) with
//! the reason, and only then terminated. If the publish fails the notice is nak'ed instead, so
//! nothing is dropped.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;

/// The JSON body of a dead letter: [`shirase_proto::record::DeadLetter`], shared with the
/// relay's `dlq` operator commands.
pub use shirase_proto::record::DeadLetter;

/// Publishing a dead letter failed.
#[derive(Debug, thiserror::Error)]
#[error("publishing dead letter to {subject}: {message}")]
pub struct DlqError {
    /// The subject.
    pub subject: String,
    /// What failed.
    pub message: String,
}

/// Publish one dead letter and wait for the stream's ack. `dedup_id` (the notice id) with the
/// subject (subscriber, provider, interface) makes a re-publish after a crash a duplicate, while
/// another subscriber's dead letter of the same notice, or another provider's notice with the
/// same id, is stored on its own.
pub async fn publish(
    js: &jetstream::Context,
    subject: String,
    dedup_id: &str,
    dl: &DeadLetter,
) -> Result<(), DlqError> {
    let err = |m: String| DlqError {
        subject: subject.clone(),
        message: m,
    };
    let body = serde_json::to_vec(dl).map_err(|e| err(e.to_string()))?;
    let mut h = HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("dlq-{subject}:{dedup_id}").as_str(),
    );
    let ack = js
        .publish_with_headers(subject.clone(), h, body.into())
        .await
        .map_err(|e| err(e.to_string()))?;
    tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .map_err(|_| err("no ack within 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_dead_letter_as_the_agent_builds_it_is_what_the_schema_describes() {
        let schema: serde_json::Value =
            serde_json::from_str(shirase_proto::record::schema::DEAD_LETTER).unwrap();
        let v = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let now = shirase_proto::OffsetTimestamp::from_instant_jst(jiff::Timestamp::now());
        let dl = DeadLetter {
            subscriber: "tax".into(),
            interface_id: "001o05-00".into(),
            reason: "bisection depth 2 exhausted".into(),
            http_status: Some(503),
            code: None,
            message: None,
            attempts: 3,
            first_failure: now.to_string(),
            last_failure: now.to_string(),
            notice: serde_json::json!({"id": "0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0e"}),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&dl).unwrap()).unwrap();
        assert!(v.is_valid(&json), "{json}");
        assert_eq!(json["code"], serde_json::Value::Null, "written as null");
        assert_eq!(dl.notice_id(), Some("0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0e"));
    }
}
