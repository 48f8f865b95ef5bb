//! Maintenance self-enforcement (データ連携WT 1.1.8): the agent never sends a PULL request, nor
//! a token request, to a provider inside its maintenance window, whether or not the relay
//! paused the consumer. The window comes from the provider's calendar
//! (`[providers.maintenance]`, [`shirase_proto::maintenance`]) and from the provider itself
//! (503 `E0900` with `Retry-After`), whichever ends later.
//!
//! Time is read through a [`Clock`] so that tests (and drills) can put "now" inside a window;
//! only maintenance decisions use it, never DB timestamps or checkpoints.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use shirase_proto::maintenance::Calendar;

pub use shirase_proto::maintenance::{Clock, OffsetClock, SystemClock};

/// One provider's maintenance state: its calendar (if enforced) and the end of a window the
/// provider announced itself (E0900).
#[derive(Debug)]
pub(crate) struct Guard {
    calendar: Option<Calendar>,
    clock: Arc<dyn Clock>,
    announced_until: std::sync::Mutex<Option<Timestamp>>,
}

impl Guard {
    pub(crate) fn new(calendar: Option<Calendar>, clock: Arc<dyn Clock>) -> Self {
        Self {
            calendar,
            clock,
            announced_until: std::sync::Mutex::new(None),
        }
    }

    /// The end of the maintenance the provider is in now, if any.
    pub(crate) fn until(&self) -> Option<Timestamp> {
        let now = self.clock.now();
        let cal = self
            .calendar
            .as_ref()
            .and_then(|c| c.current_window_end(now));
        let ann = (*self
            .announced_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
        .filter(|t| *t > now);
        match (cal, ann) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long the current maintenance still lasts (at least 1 ms), if the provider is in one.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let end = self.until()?;
        let d = end.duration_since(self.clock.now());
        Some(
            Duration::try_from(d)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1)),
        )
    }

    /// The provider answered E0900 with `retry_after`: no request until then, or until the
    /// calendar's window ends if that is later. Returns the wait.
    pub(crate) fn announce(&self, retry_after: Duration) -> Duration {
        let now = self.clock.now();
        let until = now
            .checked_add(SignedDuration::try_from(retry_after).unwrap_or(SignedDuration::MAX))
            .unwrap_or(now);
        {
            let mut a = self
                .announced_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *a = Some(a.map_or(until, |x| x.max(until)));
        }
        self.remaining().unwrap_or(retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Timestamp);
    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            self.0
        }
    }

    fn guard(at: &str, enforced: bool) -> Guard {
        let cal = enforced
            .then(|| Calendar::new(&shirase_proto::maintenance::Config::default()).unwrap());
        Guard::new(cal, Arc::new(Fixed(at.parse().unwrap())))
    }

    #[test]
    fn inside_the_baseline_window_until_its_end() {
        // Tuesday 2026-05-12 02:59:57 JST: Monday's 24:00-27:00 ends at 03:00.
        let g = guard("2026-05-12T02:59:57+09:00", true);
        assert_eq!(g.until(), Some("2026-05-12T03:00+09:00".parse().unwrap()));
        assert_eq!(g.remaining(), Some(Duration::from_secs(3)));
        assert_eq!(
            guard("2026-05-12T03:00+09:00", true).until(),
            None,
            "half-open: 03:00 is outside"
        );
        assert_eq!(
            guard("2026-05-12T02:00+09:00", false).until(),
            None,
            "not enforced"
        );
    }

    #[test]
    fn announced_maintenance_lasts_its_retry_after_or_the_calendar_window() {
        let g = guard("2026-05-12T12:00+09:00", true);
        assert_eq!(g.announce(Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(g.until(), Some("2026-05-12T12:01+09:00".parse().unwrap()));
        let g = guard("2026-05-12T02:00+09:00", true);
        assert_eq!(
            g.announce(Duration::from_secs(60)),
            Duration::from_secs(3600),
            "the calendar window ends later"
        );
    }

    #[test]
    fn offset_clock_starts_where_asked() {
        let at: Timestamp = "2026-05-12T02:59:57+09:00".parse().unwrap();
        let c = OffsetClock::starting_at(at);
        assert!(c.now().duration_since(at).abs() < SignedDuration::from_secs(1));
    }
}
