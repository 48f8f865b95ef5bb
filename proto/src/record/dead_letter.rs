//! A notice the agent gave up on.

use serde::{Deserialize, Serialize};

/// The JSON body of a dead letter on `shirase.dlq.<subscriber>.<m>.<b>.<i>` (stream
/// `SHIRASE_DLQ`): a notice whose pull failed permanently (400 other than E0004, bisection
/// depth exhausted, an interface the agent is not configured for), with the reason.
///
/// The subject names subscriber, municipality, provider and interface; the body repeats
/// subscriber and interface. `http_status`, `code` and `message` are written as `null` when
/// there was no provider answer, and read as `None` when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Subscriber.
    pub subscriber: String,
    /// Interface id (連携ID).
    pub interface_id: String,
    /// Why the notice could not be processed.
    pub reason: String,
    /// HTTP status of the provider's answer, when there was one.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Provider error code (`E0001`...), when there was one.
    #[serde(default)]
    pub code: Option<String>,
    /// The provider's message (names the parameter; never personal data by contract).
    #[serde(default)]
    pub message: Option<String>,
    /// Deliveries of the notice so far.
    pub attempts: u64,
    /// First failure seen (RFC 3339, `+09:00`, as the agent formats it).
    pub first_failure: String,
    /// This failure (RFC 3339, `+09:00`).
    pub last_failure: String,
    /// The notice as received (no personal data by construction). Kept as JSON, not as a
    /// [`crate::Notice`]: a dead letter must hold whatever was delivered.
    pub notice: serde_json::Value,
}

impl DeadLetter {
    /// The `id` of the notice inside, if it has one.
    pub fn notice_id(&self) -> Option<&str> {
        self.notice.get("id").and_then(serde_json::Value::as_str)
    }
}
