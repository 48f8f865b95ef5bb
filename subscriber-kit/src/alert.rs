//! Alerts (エラー通知機能): published to `shirase.alert.<severity>.agent.<subscriber>`, where the
//! relay's notifier turns them into e-mail, webhooks and job-management hooks. The subscriber
//! is in the subject so the server's permissions can let each subscriber publish its own alerts
//! only (the notifier takes the subscriber from the subject, not from the body).
//!
//! The same alert (code + subject of the alert) is sent at most once per `repeat_after`, so a
//! provider outage does not flood the operators. Publishing is best effort: an alert that
//! cannot be published is logged, never allowed to block the data path.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use shirase_proto::{OffsetTimestamp, Severity, SubscriberId};
use tokio::time::Instant;

/// The JSON body of an alert: [`shirase_proto::record::Alert`], shared with the relay's
/// notifier and status.
pub use shirase_proto::record::Alert;

/// Publishes alerts with de-duplication.
#[derive(Debug)]
pub struct Alerter {
    js: jetstream::Context,
    subscriber: SubscriberId,
    repeat_after: Duration,
    // A std mutex: held only for a map lookup, never across an await.
    last: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Alerter {
    /// An alerter for `subscriber`.
    pub fn new(js: jetstream::Context, subscriber: SubscriberId, repeat_after: Duration) -> Self {
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
        let alert = record(
            self.subscriber.as_str(),
            severity,
            code,
            provider,
            interface,
            message,
            runbook,
            jiff::Timestamp::now(),
        );
        let subject = shirase_proto::subject::agent_alert_subject(severity, &self.subscriber);
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

/// The alert the agent publishes (component `agent`, time in `+09:00`).
#[allow(clippy::too_many_arguments)]
fn record(
    subscriber: &str,
    severity: Severity,
    code: &str,
    provider: Option<&str>,
    interface: Option<&str>,
    message: String,
    runbook: Option<String>,
    now: jiff::Timestamp,
) -> Alert {
    Alert {
        severity,
        component: "agent".into(),
        code: code.into(),
        message,
        subscriber: subscriber.to_owned(),
        provider: provider.map(str::to_owned),
        interface_id: interface.map(str::to_owned),
        time: OffsetTimestamp::from_instant_jst(now),
        runbook,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_published_alert_is_what_the_schema_describes() {
        let schema: serde_json::Value =
            serde_json::from_str(shirase_proto::record::schema::ALERT).unwrap();
        let v = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let now: jiff::Timestamp = "2026-11-25T01:30:00.000512Z".parse().unwrap();
        for (provider, interface, runbook) in [
            (Some("001"), None, Some("check the provider".to_owned())),
            (Some("001"), Some("001o05-00"), None),
            (None, None, None),
        ] {
            let a = record(
                "tax",
                Severity::Critical,
                "provider_unreachable",
                provider,
                interface,
                "m".into(),
                runbook,
                now,
            );
            let json = serde_json::to_value(&a).unwrap();
            assert!(v.is_valid(&json), "{json}");
            assert_eq!(json["time"], "2026-11-25T10:30:00.000512+09:00");
            assert_eq!(json["component"], "agent");
            // Written as null, as it always was, when not relevant.
            assert!(json.as_object().unwrap().contains_key("interface_id"));
        }
    }
}
