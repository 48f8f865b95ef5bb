//! The I/O a failure calls for: the remedy [`settle::on_failure`] chose (announcing a
//! maintenance window to the guard and the limiter, publishing dead letters), and alerts.

use jiff::Timestamp;
use shirase_proto::{InterfaceId, Severity};

use super::settle::{self, Remedy};
use super::{Decision, Failure, Item, SWEEP_IDX, Worker};
use crate::coalesce::Plan;
use crate::dlq::{self, DeadLetter};
use crate::pull_client::Outcome;

impl Worker {
    /// Decide the notices of a plan whose pull failed with `f`.
    pub(super) async fn settle_failure(
        &self,
        iface: &InterfaceId,
        plan: &Plan,
        items: &[Item],
        f: Failure,
    ) -> Vec<(usize, Decision)> {
        let covers: Vec<&Item> = plan
            .pull
            .iter()
            .flat_map(|p| &p.covers)
            .chain(plan.narrow.iter().flat_map(|n| &n.covers))
            .map(|&i| &items[i])
            .collect();
        log_failure(iface, &f);
        let (remedy, alert) = settle::on_failure(
            f,
            &self.provider().business_id,
            self.cfg.pull.bisect_max_depth,
            self.cfg.retry.max,
        );
        if let Some(a) = alert {
            self.alert(a.severity, a.code, Some(iface), a.message).await;
        }
        let mut out = match remedy {
            Remedy::Retry { retry_after } => settle::retry(&covers, retry_after, &self.cfg.retry),
            Remedy::Maintenance { wait } => {
                // The provider's own signal (E0900), or the calendar caught by `request`: keep
                // every interface of this provider away until the window ends.
                let d = self.guard.announce(wait);
                self.client
                    .limiter()
                    .close_until(tokio::time::Instant::now() + d);
                tracing::info!(interface = %iface, secs = d.as_secs(), "provider in maintenance");
                covers
                    .iter()
                    .map(|it| (it.idx, Decision::Wait(d)))
                    .collect()
            }
            Remedy::DeadLetter {
                reason,
                status,
                code,
                message,
            } => {
                self.dead_letter(iface, &covers, &reason, status, code, message)
                    .await
            }
        };
        settle::after_failure(&mut out, plan, items, &self.cfg.retry);
        out
    }

    /// Dead-letter all `items` of an interface with one alert, and count them.
    pub(super) async fn dead_letter_all(
        &self,
        iface: &InterfaceId,
        items: &[Item],
        reason: &str,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Vec<(usize, Decision)> {
        let refs: Vec<&Item> = items.iter().collect();
        self.alert(
            Severity::Warning,
            "dead_letter",
            Some(iface),
            format!("{reason}; {} notices dead-lettered", items.len()),
        )
        .await;
        let out = self
            .dead_letter(iface, &refs, reason, status, code, message)
            .await;
        self.count(&self.labels(iface), &out);
        out
    }

    /// Publish a dead letter for each of `items` and term it; a notice whose dead letter could
    /// not be published is kept (nak'ed with backoff).
    pub(super) async fn dead_letter(
        &self,
        iface: &InterfaceId,
        items: &[&Item],
        reason: &str,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Vec<(usize, Decision)> {
        let mut out = Vec::new();
        let now = Timestamp::now();
        for it in items {
            // A sweep's synthetic item is no notice: nothing to dead-letter (the alert says why).
            if it.idx == SWEEP_IDX {
                out.push((it.idx, Decision::Nak(std::time::Duration::ZERO)));
                continue;
            }
            let id = it.notice.id.to_string();
            let first = self
                .states
                .with(iface, |s| *s.first_failure.entry(id.clone()).or_insert(now));
            let dl = DeadLetter {
                subscriber: self.cfg.subscriber.to_string(),
                interface_id: iface.to_string(),
                reason: reason.to_owned(),
                http_status: status,
                code: code.clone(),
                message: message.clone(),
                attempts: it.delivered,
                first_failure: shirase_proto::OffsetTimestamp::from_instant_jst(first).to_string(),
                last_failure: shirase_proto::OffsetTimestamp::from_instant_jst(now).to_string(),
                notice: it.raw.clone(),
            };
            let subject = shirase_proto::subject::dlq_subject(
                &self.cfg.subscriber,
                &it.notice.data.municipality_code,
                &it.notice.data.provider,
                iface,
            );
            match dlq::publish(&self.js, subject, &id, &dl).await {
                Ok(()) => {
                    self.states.with(iface, |s| s.first_failure.remove(&id));
                    out.push((it.idx, Decision::Term));
                }
                Err(e) => {
                    tracing::error!(notice = %id, "{e}; keeping the notice");
                    out.push((it.idx, Decision::Nak(self.backoff(it.delivered))));
                }
            }
        }
        out
    }

    pub(super) async fn alert(
        &self,
        sev: Severity,
        code: &str,
        iface: Option<&InterfaceId>,
        message: String,
    ) {
        let p = self.provider().business_id.to_string();
        let i = iface.map(|i| i.to_string());
        if self
            .alerter
            .raise(sev, code, Some(&p), i.as_deref(), message)
            .await
        {
            self.metrics
                .alerts
                .get_or_create(&crate::metrics::CodeLabels { code: code.into() })
                .inc();
        }
    }
}

/// Log what an alert does not say.
fn log_failure(iface: &InterfaceId, f: &Failure) {
    match f {
        Failure::Outcome(Outcome::Transient { code, .. }) => {
            tracing::info!(interface = %iface, code = code.as_deref().unwrap_or("-"), "transient provider error");
        }
        Failure::Outcome(Outcome::Connect(reason)) => {
            tracing::warn!(interface = %iface, "provider unreachable: {reason}");
        }
        Failure::Sink(e) => tracing::warn!(interface = %iface, "sink refused: {e}"),
        _ => {}
    }
}
