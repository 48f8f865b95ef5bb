//! The audit record of one operator action.

use serde::{Deserialize, Serialize};

/// How an operator action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// Done.
    Ok,
    /// Tried and failed (`detail.error` says why).
    Error,
    /// Refused: the actor lacks the role.
    Denied,
}

impl AuditResult {
    /// The JSON value (`ok`, `error`, `denied`), also a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Error => "error",
            AuditResult::Denied => "denied",
        }
    }
}

impl std::fmt::Display for AuditResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message on `shirase.audit.<action>` (stream `SHIRASE_AUDIT`): who did what, with which
/// parameters, and how it ended (counts and ids, never row contents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id (UUID v7), also the `Nats-Msg-Id`.
    pub id: uuid::Uuid,
    /// When (RFC 3339, UTC `Z`).
    pub time: jiff::Timestamp,
    /// Operator name from `[[operators]]`.
    pub actor: String,
    /// `replay`, `resync`, `dlq-redrive`, `dlq-purge`, `pause`, `resume`, ...
    pub action: String,
    /// The request as the operator sent it.
    pub parameters: serde_json::Value,
    /// `ok`, `error` or `denied`.
    pub result: AuditResult,
    /// What happened (counts, from/to, ...) or `{"error": ...}`.
    pub detail: serde_json::Value,
}
