//! Re-reading at once after an operator's resync: the worker watches its interfaces'
//! checkpoint keys in the KV bucket, and when one moves backwards (`shirase-relay resync`) or
//! disappears (a reset), it asks the sweeper for an immediate sweep of that interface, the
//! same path a sequence gap takes. Without it, nothing would re-read the rewound range until
//! the next notice or the scheduled sweep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use shirase_proto::InterfaceId;
use tokio_util::sync::CancellationToken;

use super::{Worker, sleep_or_cancel};
use crate::checkpoint::{checkpoint_of, rewound};

impl Worker {
    /// Watch this worker's checkpoint keys until `stop`; a rewound key triggers an immediate
    /// sweep of its interface. The watch is opened again after an error (the values last seen
    /// are kept, so a rewind during the interruption is still noticed).
    pub(super) async fn watch_rewinds(self: Arc<Self>, stop: CancellationToken) {
        let interfaces: Vec<InterfaceId> =
            self.provider().interfaces.iter().map(|i| i.id).collect();
        let mut seen: HashMap<InterfaceId, Option<Timestamp>> = HashMap::new();
        let mut attempt = 0u64;
        while !stop.is_cancelled() {
            let watch = match self.checkpoints().await {
                Ok(kv) => kv
                    .watch(&interfaces)
                    .await
                    .map(|w| (kv, w))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let (kv, mut watch) = match watch {
                Ok(w) => w,
                Err(e) => {
                    attempt += 1;
                    tracing::debug!(attempt, "watching the checkpoints: {e}");
                    self.forget_checkpoints();
                    if !sleep_or_cancel(self.backoff(attempt).max(Duration::from_secs(1)), &stop)
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            attempt = 0;
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = watch.next() => n,
                };
                let entry = match next {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        tracing::debug!("checkpoint watch interrupted: {e}");
                        break;
                    }
                    None => break,
                };
                let Some(iface) = kv.interface_of(&entry.key, &interfaces) else {
                    continue;
                };
                let after = checkpoint_of(&entry);
                let before = seen.insert(iface, after).flatten();
                if rewound(before, after) {
                    tracing::info!(interface = %iface, "checkpoint rewound (operator resync or reset): sweeping at once");
                    self.states.with(&iface, |s| s.gapped = true);
                    self.gap_seen.notify_one();
                }
            }
        }
    }
}
