//! The stalled-consumer watchdog: notices are unfinished on the durable consumer but none has
//! been finished (acked or terminated) for `[watchdog] stalled_after`.
//!
//! What counts, and why (observed on nats-server 2.15, `tests/it/agent_watchdog.rs`): a notice
//! nak'ed with a delay is counted in the consumer's `num_ack_pending`, not in `num_pending`
//! (which holds only notices never delivered), until its redelivery. So "pending" here is
//! `num_pending + num_ack_pending`, and "delivered" means finished: a notice that is fetched,
//! fails and is nak'ed again (a provider outage) is no progress at all, however often it
//! comes back.
//!
//! A notice the agent deliberately parked with a nak delay because it is not a failure (the
//! pull did not cover it yet, or the provider is in maintenance) is not a stall while its
//! redelivery time is in the future; the stall clock restarts when it is due. Failure naks
//! (backoff after an outage, a 503, a sink or checkpoint error) park nothing: those are the
//! stalls this watchdog exists to report.
//!
//! Progress is also seen through the consumer's ack floor, so an idle replica does not report
//! a stall while another replica sharing the consumer is finishing notices.

use std::time::Duration;

use tokio::time::Instant;

/// The watchdog's state for one consumer. Pure: the caller passes the time and the counts.
#[derive(Debug)]
pub struct Watchdog {
    after: Duration,
    progress: Instant,
    parked_until: Option<Instant>,
    ack_floor: Option<u64>,
}

/// What the consumer looked like at one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerState {
    /// Notices never delivered (`num_pending`).
    pub pending: u64,
    /// Notices delivered and not yet acked, nak-delayed ones included (`num_ack_pending`).
    pub ack_pending: u64,
    /// Consumer sequence of the ack floor: moves when any replica finishes the oldest notice.
    pub ack_floor: u64,
}

impl Watchdog {
    /// A watchdog reporting after `after` without progress, starting now.
    pub fn new(after: Duration, now: Instant) -> Self {
        Self {
            after,
            progress: now,
            parked_until: None,
            ack_floor: None,
        }
    }

    /// Notices were finished (acked or terminated), or an intended pause ended (maintenance).
    pub fn progressed(&mut self, now: Instant) {
        self.progress = now;
    }

    /// A notice was handed back on purpose until `until` (not a failure).
    pub fn parked(&mut self, until: Instant) {
        self.parked_until = Some(self.parked_until.map_or(until, |p| p.max(until)));
    }

    /// Check the consumer; `Some(idle)` while it is stalled, with how long nothing was finished.
    pub fn check(&mut self, s: ConsumerState, now: Instant) -> Option<Duration> {
        if self.ack_floor.is_some_and(|f| s.ack_floor > f) {
            self.progress = self.progress.max(now);
        }
        self.ack_floor = Some(s.ack_floor);
        if s.pending + s.ack_pending == 0 {
            self.progress = now;
            self.parked_until = None;
            return None;
        }
        let since = match self.parked_until {
            Some(p) if now < p => return None,
            Some(p) => p.max(self.progress),
            None => self.progress,
        };
        let idle = now.saturating_duration_since(since);
        (idle >= self.after).then_some(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Duration = Duration::from_secs(10);

    fn st(pending: u64, ack_pending: u64, ack_floor: u64) -> ConsumerState {
        ConsumerState {
            pending,
            ack_pending,
            ack_floor,
        }
    }

    #[test]
    fn unfinished_without_progress_for_n_seconds_is_a_stall() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(N, t0);
        assert_eq!(w.check(st(0, 5, 0), t0 + Duration::from_secs(9)), None);
        // Nak'ed notices sit in ack_pending only: still a stall.
        assert_eq!(w.check(st(0, 5, 0), t0 + N), Some(N));
        assert_eq!(
            w.check(st(3, 0, 0), t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(12))
        );
    }

    #[test]
    fn progress_and_an_empty_consumer_reset_the_clock() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(N, t0);
        w.progressed(t0 + Duration::from_secs(5));
        assert_eq!(w.check(st(1, 0, 0), t0 + Duration::from_secs(14)), None);
        assert_eq!(w.check(st(1, 0, 0), t0 + Duration::from_secs(15)), Some(N));
        assert_eq!(w.check(st(0, 0, 0), t0 + Duration::from_secs(16)), None);
        assert_eq!(w.check(st(1, 0, 0), t0 + Duration::from_secs(25)), None);
        assert!(w.check(st(1, 0, 0), t0 + Duration::from_secs(26)).is_some());
    }

    #[test]
    fn a_moving_ack_floor_is_progress_made_by_another_replica() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(N, t0);
        assert_eq!(w.check(st(0, 4, 7), t0 + Duration::from_secs(8)), None);
        assert_eq!(w.check(st(0, 4, 9), t0 + Duration::from_secs(12)), None);
        assert_eq!(w.check(st(0, 4, 9), t0 + Duration::from_secs(21)), None);
        assert!(w.check(st(0, 4, 9), t0 + Duration::from_secs(22)).is_some());
    }

    #[test]
    fn a_parked_notice_is_no_stall_until_its_redelivery_is_due() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(N, t0);
        w.parked(t0 + Duration::from_secs(60));
        assert_eq!(w.check(st(0, 1, 0), t0 + Duration::from_secs(59)), None);
        // Due: the clock starts at the redelivery time.
        assert_eq!(w.check(st(0, 1, 0), t0 + Duration::from_secs(69)), None);
        assert_eq!(w.check(st(0, 1, 0), t0 + Duration::from_secs(70)), Some(N));
    }
}
