//! The sweep: each provider worker pulls every interface differentially from its checkpoint
//! on a schedule (`sweep.interval`, hourly by default), so changes whose notices were
//! never published still arrive; a sequence gap seen in the notices (still missing after
//! `sweep.gap_grace`: a provider may re-send a notice after later ones), or a checkpoint
//! rewound by an operator's resync (the worker watches its checkpoint keys), triggers an
//! immediate sweep of that interface. A gap counts only where this replica received every delivery of its
//! consumer since its previous batch: replicas sharing a consumer each see part of the notices.
//!
//! A sweep is an ordinary window pull (the agent's worker implements [`Sweeper`]): it goes
//! through the provider's rate limiter, never runs inside a maintenance window (it is skipped
//! and the next tick tries again), and delivers rows with the same sink + checkpoint
//! compare-and-swap as a notice-triggered pull, so running next to notice processing is safe
//! (at least once).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shirase_proto::InterfaceId;
use tokio_util::sync::CancellationToken;

/// What the sweep schedule needs of a provider's worker.
pub(crate) trait Sweeper: Send + Sync {
    /// `sweep.interval` (zero = gap-triggered sweeps only).
    fn sweep_interval(&self) -> Duration;
    /// The interfaces the worker's provider serves.
    fn interfaces(&self) -> Vec<InterfaceId>;
    /// Confirm the sequence gaps missing for `sweep.gap_grace` (they are then among
    /// [`Sweeper::take_gaps`]); how long until the next suspected one is due.
    fn confirm_gaps(&self) -> Option<Duration>;
    /// Interfaces whose notices showed a confirmed sequence gap, or whose checkpoint was
    /// rewound, since the last call.
    fn take_gaps(&self) -> Vec<InterfaceId>;
    /// Notified when a sequence gap or a rewound checkpoint is seen.
    fn gap_seen(&self) -> &tokio::sync::Notify;
    /// Sweep one interface; whether it pulled.
    fn sweep(&self, iface: InterfaceId) -> impl Future<Output = bool> + Send;
}

/// Sweep `w`'s interfaces every `sweep.interval`, and at once after a sequence gap or a
/// rewound checkpoint.
pub(crate) async fn run<W: Sweeper>(w: Arc<W>, stop: CancellationToken) {
    let interval = w.sweep_interval();
    // No schedule: sleep "forever" (a year) and only answer gaps.
    let every = if interval.is_zero() {
        Duration::from_secs(365 * 86_400)
    } else {
        interval
    };
    let mut next = tokio::time::Instant::now() + every;
    // When the oldest suspected gap is due for confirmation.
    let mut gap_check: Option<tokio::time::Instant> = None;
    loop {
        let check = gap_check.unwrap_or(next);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(check), if gap_check.is_some() => {
                gap_check = sweep_gaps(&*w).await;
            }
            _ = tokio::time::sleep_until(next) => {
                for iface in w.interfaces() {
                    if stop.is_cancelled() {
                        return;
                    }
                    if !w.sweep(iface).await {
                        tracing::info!(interface = %iface, "sweep skipped or failed (maintenance, provider error); next one in {} s", every.as_secs());
                    }
                }
                next = tokio::time::Instant::now() + every;
            }
            _ = w.gap_seen().notified() => {
                gap_check = sweep_gaps(&*w).await;
            }
        }
    }
}

/// Confirm the gaps due, sweep every interface with a confirmed gap or a rewound checkpoint,
/// and return when the next suspected gap is due.
async fn sweep_gaps<W: Sweeper>(w: &W) -> Option<tokio::time::Instant> {
    let next = w.confirm_gaps().map(|d| tokio::time::Instant::now() + d);
    for iface in w.take_gaps() {
        tracing::info!(interface = %iface, "sweeping at once (sequence gap or rewound checkpoint)");
        w.sweep(iface).await;
    }
    next
}
