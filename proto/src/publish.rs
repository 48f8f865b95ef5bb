//! Publisher helper for providers that speak NATS directly (feature `nats`).
//!
//! It publishes a validated [`Notice`] on its subject with `Nats-Msg-Id` set to the notice id,
//! waits for JetStream's PubAck, and returns the stream sequence and whether JetStream had seen
//! the id before (inside the stream's duplicate window). Re-sending after a timeout with the same
//! notice is therefore safe.
//!
//! It lives behind the `nats` feature so that `shirase-proto` itself stays free of I/O and of
//! an async runtime; enable it with `shirase-proto = { ..., features = ["nats"] }`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use shirase_proto::{ChangeKind, Notice, Sequence};
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let js = async_nats::jetstream::new(client);
//! let notice = Notice::new(
//!     "131016".parse()?,
//!     "001o05-00".parse()?,
//!     "1.0".parse()?,
//!     Sequence(42),
//!     "2026-11-25T10:15:30+09:00".parse()?,
//!     ChangeKind::Update,
//!     None,
//! );
//! let published = shirase_proto::publish::publish(&js, &notice).await?;
//! // Re-sending the same notice (same id) after a timeout stores nothing new.
//! let again = shirase_proto::publish::publish(&js, &notice).await?;
//! assert!(again.duplicate && again.sequence == published.sequence);
//! # Ok(())
//! # }
//! ```

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
pub fn headers<N: crate::Envelope + ?Sized>(notice: &N) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        notice.notice_id().to_string().as_str(),
    );
    h.insert("Content-Type", CONTENT_TYPE);
    h
}

/// Publish one notice and wait for its PubAck.
pub async fn publish(js: &jetstream::Context, notice: &Notice) -> Result<Published, PublishError> {
    let wrap = |source| PublishError {
        id: notice.id.to_string(),
        source,
    };
    let ack = js
        .publish_with_headers(notice.subject(), headers(notice), notice.to_json().into())
        .await
        .map_err(wrap)?
        .await
        .map_err(wrap)?;
    Ok(Published {
        stream: ack.stream,
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{ChangeKind, Sequence};

    #[test]
    fn headers_carry_the_notice_id_and_the_cloudevents_content_type() {
        let n = Notice::new(
            "131016".parse().unwrap(),
            "001o05-00".parse().unwrap(),
            "1.0".parse().unwrap(),
            Sequence(1),
            "2026-11-25T10:15:30+09:00".parse().unwrap(),
            ChangeKind::Update,
            None,
        );
        let h = headers(&n);
        let id = n.id.to_string();
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            h.get("Content-Type").map(|v| v.as_str()),
            Some("application/cloudevents+json")
        );
    }
}
