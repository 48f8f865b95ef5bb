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

impl Alert {
    /// Read a stored alert, trusting its subject over its body for who raised it: on an agent's
    /// subject `shirase.alert.<severity>.agent.<subscriber>` (which the generated NATS
    /// authorization lets only that subscriber publish) the subscriber and the component are
    /// the subject's, so one subscriber cannot raise an alert in another's name by writing
    /// another name into the body. Other subjects (the relay's own, which no subscriber may
    /// publish) are read as written.
    pub fn from_stored(subject: &str, payload: &[u8]) -> Result<Self, serde_json::Error> {
        let mut alert: Self = serde_json::from_slice(payload)?;
        if let Ok(crate::subject::SubjectKind::Alert {
            component,
            subscriber: Some(s),
            ..
        }) = crate::subject::parse_subject(subject)
        {
            alert.subscriber = s.to_string();
            alert.component = component;
        }
        Ok(alert)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const BODY: &str = r#"{"severity":"critical","component":"relay","code":"c","message":"m","subscriber":"delinquency","provider":null,"interface_id":null,"time":"2026-11-25T10:30:00+09:00"}"#;

    #[test]
    fn an_agent_subject_names_the_subscriber_whatever_the_body_says() {
        let a = Alert::from_stored("shirase.alert.critical.agent.tax", BODY.as_bytes()).unwrap();
        assert_eq!(
            (a.subscriber.as_str(), a.component.as_str()),
            ("tax", "agent")
        );
        // The relay's own subjects are read as written.
        let r = Alert::from_stored("shirase.alert.critical.relay", BODY.as_bytes()).unwrap();
        assert_eq!(
            (r.subscriber.as_str(), r.component.as_str()),
            ("delinquency", "relay")
        );
        assert!(Alert::from_stored("shirase.alert.critical.agent.tax", b"{}").is_err());
    }
}
