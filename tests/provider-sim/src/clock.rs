//! The simulator's DB clock: real time or a manual start instant, both shiftable by tests.
//!
//! DB update timestamps, the replica-lag view and the notice `time` all read this clock, so a
//! test can make "the lag has passed" happen by advancing it instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// Which clock the simulator's DB runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// The system clock (plus whatever [`crate::SimHandle::advance_clock`] added).
    #[default]
    Real,
    /// A clock frozen at this instant until advanced.
    Manual(Timestamp),
}

#[derive(Debug)]
pub(crate) struct SimClock {
    mode: ClockMode,
    /// Nanoseconds added by `advance`; an atomic because every request reads it.
    offset_ns: AtomicI64,
}

impl SimClock {
    pub(crate) fn new(mode: ClockMode) -> Self {
        Self {
            mode,
            offset_ns: AtomicI64::new(0),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        let base = match self.mode {
            ClockMode::Real => Timestamp::now(),
            ClockMode::Manual(t) => t,
        };
        let offset = SignedDuration::from_nanos(self.offset_ns.load(Ordering::SeqCst));
        base.checked_add(offset).unwrap_or(base)
    }

    pub(crate) fn advance(&self, by: std::time::Duration) {
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.offset_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

/// The instant truncated to whole microseconds, the DB timestamp precision.
pub(crate) fn truncate_micros(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// The instant truncated to whole seconds (the romaji dialect's DB timestamp precision).
pub(crate) fn truncate_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `2026-11-25T10:15:30.123456+09:00`: JST, always six fractional digits, as the doc shows.
pub(crate) fn format_db_timestamp(t: Timestamp) -> String {
    let jst = jiff::tz::TimeZone::fixed(jiff::tz::offset(9));
    t.to_zoned_datetime(jst)
        .strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")
        .to_string()
}

/// The calendar date in Japan at this instant (the 異動日 of an ordinary change).
pub(crate) fn jst_date(t: Timestamp) -> jiff::civil::Date {
    let jst = jiff::tz::TimeZone::fixed(jiff::tz::offset(9));
    t.to_zoned_datetime(jst).date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_timestamps_have_six_digits_and_jst_offset() {
        let t: Timestamp = "2026-11-25T01:15:30.1234567Z".parse().unwrap();
        assert_eq!(
            format_db_timestamp(truncate_micros(t)),
            "2026-11-25T10:15:30.123456+09:00"
        );
        let whole: Timestamp = "2026-11-25T01:15:30Z".parse().unwrap();
        assert_eq!(
            format_db_timestamp(whole),
            "2026-11-25T10:15:30.000000+09:00"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start: Timestamp = "2026-11-25T01:00:00Z".parse().unwrap();
        let c = SimClock::new(ClockMode::Manual(start));
        assert_eq!(c.now(), start);
        c.advance(std::time::Duration::from_millis(1500));
        assert_eq!(
            c.now(),
            "2026-11-25T01:00:01.5Z".parse::<Timestamp>().unwrap()
        );
    }
}
