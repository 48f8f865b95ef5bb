//! The background change generator: commits random changes at the configured rate.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::db::ChangeSpec;
use super::state::Shared;

/// Commit `rate` changes per second until shutdown. Ticks at most every 10 ms and carries the
/// fractional part, so both 0.5/s and 5,000/s come out right on average.
pub(crate) async fn run(shared: Arc<Shared>, rate: f64, shutdown: CancellationToken) {
    let period = Duration::from_secs_f64((1.0 / rate).max(0.01));
    let per_tick = rate * period.as_secs_f64();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut carry = 0.0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        carry += per_tick;
        let n = carry.floor();
        carry -= n;
        if n >= 1.0
            && let Err(e) = shared.commit(&ChangeSpec::new(n as usize))
        {
            tracing::warn!(error = %e, "background change generator could not commit");
        }
    }
}
