//! Alerts (エラー通知機能, DOMAIN.md 1.2.15): published to `shirase.alert.<severity>.agent`,
//! where the relay's notifier turns them into e-mail, webhooks and job-management hooks.
//!
//! The same alert (code + subject of the alert) is sent at most once per `repeat_after`, so a
//! provider outage does not flood the operators. Publishing is best effort: an alert that
//! cannot be published is logged, never allowed to block the data path.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use shirase_proto::{OffsetTimestamp, Severity};
use tokio::time::Instant;

/// The JSON body of an alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alert {
    /// Severity.
    pub severity: Severity,
    /// Always `agent`.
    pub component: String,
    /// Machine-readable code, e.g. `provider_unreachable`, `uncovered`, `bisect_exhausted`.
    pub code: String,
    /// What happened and what to check, for an operator.
    pub message: String,
    /// Subscriber.
    pub subscriber: String,
    /// Provider business id, when relevant.
    pub provider: Option<String>,
    /// Interface id, when relevant.
    pub interface_id: Option<String>,
    /// When (RFC 3339).
    pub time: String,
    /// What an operator should do, when the component knows better than the notifier's
    /// built-in hints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

/// Publishes alerts with de-duplication.
#[derive(Debug)]
pub struct Alerter {
    js: jetstream::Context,
    subscriber: String,
    repeat_after: Duration,
    // A std mutex: held only for a map lookup, never across an await.
    last: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Alerter {
    /// An alerter for `subscriber`.
    pub fn new(js: jetstream::Context, subscriber: String, repeat_after: Duration) -> Self {
        Self {
            js,
            subscriber,
            repeat_after,
            last: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Send an alert unless the same one was sent within `repeat_after`. Returns whether it
    /// was sent.
    pub async fn raise(
        &self,
        severity: Severity,
        code: &str,
        provider: Option<&str>,
        interface: Option<&str>,
        message: String,
    ) -> bool {
        let dedup = format!(
            "{code}/{}/{}",
            provider.unwrap_or("-"),
            interface.unwrap_or("-")
        );
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if last
                .get(&dedup)
                .is_some_and(|t| now.duration_since(*t) < self.repeat_after)
            {
                return false;
            }
            last.insert(dedup, now);
        }
        self.publish(severity, code, provider, interface, message, None)
            .await
    }

    /// Send an alert now, without the repeat suppression (for callers that already decide
    /// "exactly once", like the outage tracker). Returns whether it was published.
    pub async fn raise_now(
        &self,
        severity: Severity,
        code: &str,
        provider: Option<&str>,
        interface: Option<&str>,
        message: String,
        runbook: Option<String>,
    ) -> bool {
        self.publish(severity, code, provider, interface, message, runbook)
            .await
    }

    async fn publish(
        &self,
        severity: Severity,
        code: &str,
        provider: Option<&str>,
        interface: Option<&str>,
        message: String,
        runbook: Option<String>,
    ) -> bool {
        tracing::warn!(
            code,
            provider,
            interface,
            severity = severity.as_str(),
            "alert: {message}"
        );
        let alert = Alert {
            severity,
            component: "agent".into(),
            code: code.into(),
            message,
            subscriber: self.subscriber.clone(),
            provider: provider.map(str::to_owned),
            interface_id: interface.map(str::to_owned),
            time: OffsetTimestamp::from_instant_jst(jiff::Timestamp::now()).to_string(),
            runbook,
        };
        let subject = shirase_proto::subject::alert_subject(severity, "agent");
        let Ok(body) = serde_json::to_vec(&alert) else {
            return false;
        };
        match self.js.publish(subject, body.into()).await {
            Ok(ack) => {
                // No SHIRASE_ALERTS stream (not provisioned) only loses the stored copy; core
                // subscribers still got it.
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), ack).await {
                    tracing::debug!("alert not stored in JetStream: {e}");
                }
                true
            }
            Err(e) => {
                tracing::error!("could not publish alert {code}: {e}");
                false
            }
        }
    }
}
