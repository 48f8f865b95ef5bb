//! An alert for the error notification function (エラー通知).

use serde::{Deserialize, Serialize};

use crate::{OffsetTimestamp, Severity};

/// The JSON body of an alert on `shirase.alert.<severity>.<component>` (stream
/// `SHIRASE_ALERTS`), which the relay's notifier delivers by e-mail, webhook and command.
///
/// `provider` and `interface_id` are written as `null` when not relevant and read as `None`
/// when absent; `runbook` is left out when empty (alerts written before it existed lack it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Severity (also the subject's severity token).
    pub severity: Severity,
    /// The component that raised it (also the subject's last token), e.g. `agent`.
    pub component: String,
    /// Machine-readable code, e.g. `provider_unreachable`, `uncovered`, `bisect_exhausted`.
    pub code: String,
    /// What happened and what to check, for an operator.
    pub message: String,
    /// Subscriber.
    pub subscriber: String,
    /// Provider business id, when relevant.
    #[serde(default)]
    pub provider: Option<String>,
    /// Interface id, when relevant.
    #[serde(default)]
    pub interface_id: Option<String>,
    /// When it was raised (RFC 3339 as written; the agent writes `+09:00`).
    pub time: OffsetTimestamp,
    /// What an operator should do, when the component knows better than the notifier's
    /// built-in hints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}
