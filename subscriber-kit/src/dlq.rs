//! Dead letters: notices whose pull failed permanently (400 other than E0004, bisection depth
//! exhausted, an interface this agent is not configured for) are published to
//! `shirase.dlq.<subscriber>.<m>.<b>.<i>` (stream `SHIRASE_DLQ`, provisioned by the relay) with
//! the reason, and only then terminated. If the publish fails the notice is nak'ed instead, so
//! nothing is dropped.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};

/// The JSON body of a dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// Subscriber.
    pub subscriber: String,
    /// Interface id.
    pub interface_id: String,
    /// Why the notice could not be processed.
    pub reason: String,
    /// HTTP status of the provider's answer, when there was one.
    pub http_status: Option<u16>,
    /// Provider error code (`E0001`...), when there was one.
    pub code: Option<String>,
    /// The provider's message (names the parameter; never personal data by contract).
    pub message: Option<String>,
    /// Deliveries of the notice so far.
    pub attempts: u64,
    /// First failure seen (RFC 3339).
    pub first_failure: String,
    /// This failure (RFC 3339).
    pub last_failure: String,
    /// The notice as received (no personal data by construction).
    pub notice: serde_json::Value,
}

/// Publishing a dead letter failed.
#[derive(Debug, thiserror::Error)]
#[error("publishing dead letter to {subject}: {message}")]
pub struct DlqError {
    /// The subject.
    pub subject: String,
    /// What failed.
    pub message: String,
}

/// Publish one dead letter and wait for the stream's ack. `dedup_id` (the notice id) makes a
/// re-publish after a crash a duplicate.
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
        format!("dlq-{dedup_id}").as_str(),
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
