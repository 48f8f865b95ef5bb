//! File-ready notices (格納完了通知) in a batch: each names one file on the provider's share,
//! which the worker reads through this host's mount (`[[files.shares]]`), checks against the
//! notice (size, SHA-256) and hands to the sink ([`crate::sink::Sink::deliver_file`]) before
//! the notice is acked. No checkpoint: each file stands alone, and its id is derived from its
//! path, size and hash, so a redelivery or replay delivers the same file again (sinks replace
//! it atomically).
//!
//! The rules, decided by [`decide`] (pure) from what happened:
//! - inside the provider's maintenance window: handed back until it ends, like change notices;
//! - the share cannot be read at all (mount gone): one `share_unavailable` alert, nak with
//!   backoff, never a dead letter (at the consumer's last delivery the notice is held until
//!   the share returns): nothing is lost, files are delivered when it is back;
//! - the file is missing or differs from its notice (deleted, replaced, still being copied by
//!   a slow mount): retried with backoff, dead-lettered with the reason after `files.attempts`
//!   deliveries (or the consumer's last one);
//! - the sink failed: retried with backoff, dead-lettered at the consumer's last delivery.
//!
//! The agent never writes, moves or deletes anything on the share.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::{FileNotice, Severity};

use super::{Decision, Worker, sleep_or_cancel};
use crate::dlq::{self, DeadLetter};
use crate::files::{FileDelivery, FileErrorKind};

/// One file-ready notice of a batch.
pub(super) struct FileItem {
    pub(super) idx: usize,
    pub(super) notice: FileNotice,
    pub(super) delivered: u64,
    pub(super) raw: serde_json::Value,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Happened {
    Delivered,
    Maintenance(Duration),
    NoShare,
    ShareUnavailable,
    File(FileErrorKind, String),
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FileDecision {
    Settle(Decision),
    /// Hold the notice (the share is down at its last delivery): try again after the delay.
    Hold(Duration),
    DeadLetter(String),
}

/// The file rules (module docs). `backoff` is the delay for this delivery.
pub(super) fn decide(
    h: &Happened,
    delivered: u64,
    attempts: u64,
    max_deliver: i64,
    backoff: Duration,
) -> FileDecision {
    let last = max_deliver > 0 && delivered >= max_deliver as u64;
    match h {
        Happened::Delivered => FileDecision::Settle(Decision::Ack),
        Happened::Maintenance(d) => FileDecision::Settle(Decision::Wait(*d)),
        Happened::NoShare => FileDecision::DeadLetter(
            "no [[files.shares]] entry for this provider: the agent cannot read its files".into(),
        ),
        Happened::ShareUnavailable if last => FileDecision::Hold(backoff),
        Happened::ShareUnavailable => FileDecision::Settle(Decision::Nak(backoff)),
        Happened::File(FileErrorKind::Missing | FileErrorKind::Mismatch, why)
            if delivered >= attempts || last =>
        {
            FileDecision::DeadLetter(format!("{why} (after {delivered} deliveries)"))
        }
        Happened::File(FileErrorKind::Sink | FileErrorKind::Io, why) if last => {
            FileDecision::DeadLetter(format!("{why} (at the consumer's last delivery)"))
        }
        Happened::File(..) => FileDecision::Settle(Decision::Nak(backoff)),
    }
}

fn share_readable(root: &Path) -> bool {
    std::fs::read_dir(root).is_ok()
}

impl Worker {
    /// Decide every file-ready notice of a batch, one file after the other.
    pub(super) async fn process_files(
        &self,
        items: Vec<FileItem>,
        max_deliver: i64,
    ) -> Vec<(usize, Decision)> {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let d = self.process_file(&it, max_deliver).await;
            out.push((it.idx, d));
        }
        out
    }

    async fn process_file(&self, it: &FileItem, max_deliver: i64) -> Decision {
        loop {
            let happened = self.try_file(&it.notice).await;
            let backoff = self.backoff(it.delivered);
            match decide(
                &happened,
                it.delivered,
                self.cfg.files.attempts,
                max_deliver,
                backoff,
            ) {
                FileDecision::Settle(d) => {
                    if d == Decision::Ack {
                        tracing::info!(interface = %it.notice.data.interface_id, notice = %it.notice.id, size = it.notice.data.size, "file delivered");
                        self.outage_recovered_share(&it.notice).await;
                    }
                    return d;
                }
                FileDecision::Hold(wait) => {
                    if !sleep_or_cancel(wait.max(self.cfg.retry.base), &self.stop).await {
                        return Decision::Nak(Duration::ZERO);
                    }
                }
                FileDecision::DeadLetter(reason) => {
                    return self.dead_letter_file(it, &reason).await;
                }
            }
        }
    }

    async fn try_file(&self, n: &FileNotice) -> Happened {
        if let Some(wait) = self.guard.remaining() {
            return Happened::Maintenance(wait);
        }
        let Some(root) = self.cfg.files.share(&n.data.provider).cloned() else {
            return Happened::NoShare;
        };
        let r = root.clone();
        let readable = tokio::task::spawn_blocking(move || share_readable(&r))
            .await
            .unwrap_or(false);
        if !readable {
            self.share_down(n, &root).await;
            return Happened::ShareUnavailable;
        }
        let delivery = FileDelivery::of(n, &root);
        match self.sink.deliver_file(&delivery).await {
            Ok(()) => Happened::Delivered,
            Err(e) => {
                // A file that vanished because the whole mount did is the share's outage.
                let r = root.clone();
                let still = tokio::task::spawn_blocking(move || share_readable(&r))
                    .await
                    .unwrap_or(false);
                if !still {
                    self.share_down(n, &root).await;
                    return Happened::ShareUnavailable;
                }
                tracing::warn!(interface = %n.data.interface_id, notice = %n.id, "file not delivered: {e}");
                Happened::File(e.kind(), e.to_string())
            }
        }
    }

    async fn share_down(&self, n: &FileNotice, root: &Path) {
        let first = self.states.with(&n.data.interface_id, |s| {
            s.first_failure
                .insert("_share".into(), Timestamp::now())
                .is_none()
        });
        if first {
            tracing::warn!(provider = %n.data.provider, root = %root.display(), "file share unavailable");
            self.alert(
                Severity::Warning,
                "share_unavailable",
                Some(&n.data.interface_id),
                format!(
                    "the file share of provider {} ({}) cannot be read on this host; file-ready notices are kept and delivered when it returns",
                    n.data.provider,
                    root.display()
                ),
            )
            .await;
        }
    }

    async fn outage_recovered_share(&self, n: &FileNotice) {
        let was_down = self.states.with(&n.data.interface_id, |s| {
            s.first_failure.remove("_share").is_some()
        });
        if was_down {
            tracing::info!(provider = %n.data.provider, "file share available again");
        }
    }

    async fn dead_letter_file(&self, it: &FileItem, reason: &str) -> Decision {
        let n = &it.notice;
        let now = Timestamp::now();
        self.alert(
            Severity::Warning,
            "dead_letter",
            Some(&n.data.interface_id),
            format!("file-ready notice {} dead-lettered: {reason}", n.id),
        )
        .await;
        let dl = DeadLetter {
            subscriber: self.cfg.subscriber.to_string(),
            interface_id: n.data.interface_id.to_string(),
            reason: reason.to_owned(),
            http_status: None,
            code: None,
            message: None,
            attempts: it.delivered,
            first_failure: shirase_proto::OffsetTimestamp::from_instant_jst(now).to_string(),
            last_failure: shirase_proto::OffsetTimestamp::from_instant_jst(now).to_string(),
            notice: it.raw.clone(),
        };
        let subject = shirase_proto::subject::dlq_subject(
            &self.cfg.subscriber,
            &n.data.municipality_code,
            &n.data.provider,
            &n.data.interface_id,
        );
        match dlq::publish(&self.js, subject, &n.id.to_string(), &dl).await {
            Ok(()) => Decision::Term,
            Err(e) => {
                tracing::error!(notice = %n.id, "{e}; keeping the notice");
                Decision::Nak(self.backoff(it.delivered))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = Duration::from_secs(2);

    fn file(kind: FileErrorKind) -> Happened {
        Happened::File(kind, "015o02/a.csv: gone".into())
    }

    #[test]
    fn a_missing_or_changed_file_is_retried_then_dead_lettered_with_its_reason() {
        for kind in [FileErrorKind::Missing, FileErrorKind::Mismatch] {
            assert_eq!(
                decide(&file(kind), 1, 3, 20, B),
                FileDecision::Settle(Decision::Nak(B))
            );
            assert_eq!(
                decide(&file(kind), 3, 3, 20, B),
                FileDecision::DeadLetter("015o02/a.csv: gone (after 3 deliveries)".into())
            );
            // The consumer's last delivery comes first.
            assert!(matches!(
                decide(&file(kind), 2, 5, 2, B),
                FileDecision::DeadLetter(_)
            ));
        }
    }

    #[test]
    fn an_unavailable_share_never_dead_letters() {
        assert_eq!(
            decide(&Happened::ShareUnavailable, 50, 3, 20, B),
            FileDecision::Hold(B)
        );
        assert_eq!(
            decide(&Happened::ShareUnavailable, 1, 3, 20, B),
            FileDecision::Settle(Decision::Nak(B))
        );
        assert_eq!(
            decide(&Happened::ShareUnavailable, 9, 3, -1, B),
            FileDecision::Settle(Decision::Nak(B))
        );
    }

    #[test]
    fn sink_failures_wait_for_the_last_delivery_and_maintenance_waits_for_the_window() {
        assert_eq!(
            decide(&file(FileErrorKind::Sink), 9, 3, 20, B),
            FileDecision::Settle(Decision::Nak(B))
        );
        assert!(matches!(
            decide(&file(FileErrorKind::Sink), 20, 3, 20, B),
            FileDecision::DeadLetter(_)
        ));
        let w = Duration::from_secs(600);
        assert_eq!(
            decide(&Happened::Maintenance(w), 20, 3, 20, B),
            FileDecision::Settle(Decision::Wait(w))
        );
        assert_eq!(
            decide(&Happened::Delivered, 1, 3, 20, B),
            FileDecision::Settle(Decision::Ack)
        );
        assert!(matches!(
            decide(&Happened::NoShare, 1, 3, 20, B),
            FileDecision::DeadLetter(_)
        ));
    }
}
