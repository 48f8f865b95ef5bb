//! Publisher helper for providers that speak NATS directly (feature `nats`).
//!
//! It publishes a validated [`Notice`] on its subject with `Nats-Msg-Id` set to the notice id,
//! waits for JetStream's PubAck, and returns the stream sequence and whether JetStream had seen
//! the id before (inside the stream's duplicate window). Re-sending after a timeout with the same
//! notice is therefore safe.

use async_nats::HeaderMap;
use async_nats::jetstream;

use crate::notice::Notice;

/// What JetStream answered for a published notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence in the stream (for a duplicate: the sequence of the first copy).
    pub sequence: u64,
    /// `true` when the id was already stored and this publish stored nothing.
    pub duplicate: bool,
}

/// Why a publish did not get a PubAck.
#[derive(Debug, thiserror::Error)]
#[error("publishing notice {id} failed: {source}")]
pub struct PublishError {
    /// The notice id, for the caller's retry.
    pub id: String,
    /// The async-nats error; its `kind()` says whether a retry may help.
    #[source]
    pub source: jetstream::context::PublishError,
}

/// The CloudEvents NATS binding's content type for structured mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Headers a notice is published with: `Nats-Msg-Id` and `Content-Type`.
pub fn headers(notice: &Notice) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, notice.id.to_string().as_str());
    h.insert("Content-Type", CONTENT_TYPE);
    h
}

/// Publish one notice and wait for its PubAck.
pub async fn publish(js: &jetstream::Context, notice: &Notice) -> Result<Published, PublishError> {
    let wrap = |source| PublishError { id: notice.id.to_string(), source };
    let ack = js
        .publish_with_headers(notice.subject(), headers(notice), notice.to_json().into())
        .await
        .map_err(wrap)?
        .await
        .map_err(wrap)?;
    Ok(Published { stream: ack.stream, sequence: ack.sequence, duplicate: ack.duplicate })
}
