//! Outage tracking per provider (the requester retries after a while and, still without an
//! answer, checks the provider's operating status: データ連携WT 1.1.8): transient failures are
//! retried with backoff by the worker; once a provider has failed continuously for
//! `outage.alert_after` outside its maintenance windows, one alert says "check the
//! operating status of provider X", and one recovery message follows when it answers again.
//!
//! Failures are answers that say "the provider is not working": a connection failure, a 503
//! with a body (E0503 and other codes) or another 5xx, and a bare 503 (its processing
//! timeout). Any other answer — rows, E0004, 4xx — proves it is up. Time inside a maintenance
//! window does not count: the agent sends nothing then, so the outage clock starts again
//! after the window unless an alert is already out (then only an answer ends it).

use std::time::Duration;

use tokio::time::Instant;

/// What a recorded outcome means for the operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageEvent {
    /// Nothing to say.
    None,
    /// The provider has been failing for this long: raise the one alert.
    Alert {
        /// How long it has been failing.
        failing_for: Duration,
    },
    /// It answered again after an alert: raise the recovery message.
    Recovered {
        /// How long the outage lasted.
        lasted: Duration,
    },
}

#[derive(Debug, Default)]
struct State {
    failing_since: Option<Instant>,
    alerted: bool,
}

/// One provider's outage state.
#[derive(Debug)]
pub struct OutageTracker {
    alert_after: Duration,
    state: std::sync::Mutex<State>,
}

impl OutageTracker {
    /// A tracker alerting after `alert_after` of continuous failure.
    pub fn new(alert_after: Duration) -> Self {
        Self {
            alert_after,
            state: std::sync::Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request failed at `now`.
    pub fn failure(&self, now: Instant) -> OutageEvent {
        let mut s = self.lock();
        let since = *s.failing_since.get_or_insert(now);
        let failing_for = now.duration_since(since);
        if !s.alerted && failing_for >= self.alert_after {
            s.alerted = true;
            return OutageEvent::Alert { failing_for };
        }
        OutageEvent::None
    }

    /// The provider answered at `now`.
    pub fn success(&self, now: Instant) -> OutageEvent {
        let mut s = self.lock();
        let since = s.failing_since.take();
        if std::mem::take(&mut s.alerted) {
            return OutageEvent::Recovered {
                lasted: since.map_or(Duration::ZERO, |t| now.duration_since(t)),
            };
        }
        OutageEvent::None
    }

    /// The provider is in a maintenance window: unanswered time there is not an outage.
    pub fn in_maintenance(&self) {
        let mut s = self.lock();
        if !s.alerted {
            s.failing_since = None;
        }
    }

    /// Whether the provider is failing now (its notices must wait, never be dead-lettered).
    pub fn failing(&self) -> bool {
        self.lock().failing_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_after_the_period_and_one_recovery() {
        let t = OutageTracker::new(Duration::from_secs(900));
        let t0 = Instant::now();
        assert_eq!(t.failure(t0), OutageEvent::None);
        assert!(t.failing());
        assert_eq!(t.failure(t0 + Duration::from_secs(899)), OutageEvent::None);
        assert_eq!(
            t.failure(t0 + Duration::from_secs(900)),
            OutageEvent::Alert {
                failing_for: Duration::from_secs(900)
            }
        );
        assert_eq!(
            t.failure(t0 + Duration::from_secs(2000)),
            OutageEvent::None,
            "exactly one alert per outage"
        );
        assert_eq!(
            t.success(t0 + Duration::from_secs(3000)),
            OutageEvent::Recovered {
                lasted: Duration::from_secs(3000)
            }
        );
        assert_eq!(
            t.success(t0 + Duration::from_secs(3001)),
            OutageEvent::None,
            "exactly one recovery"
        );
        assert!(!t.failing());
    }

    #[test]
    fn short_failures_and_maintenance_time_do_not_alert() {
        let t = OutageTracker::new(Duration::from_secs(900));
        let t0 = Instant::now();
        t.failure(t0);
        assert_eq!(
            t.success(t0 + Duration::from_secs(600)),
            OutageEvent::None,
            "answered before the period: no recovery message"
        );
        t.failure(t0 + Duration::from_secs(700));
        t.in_maintenance();
        assert_eq!(
            t.failure(t0 + Duration::from_secs(1700)),
            OutageEvent::None,
            "the clock restarted after the window"
        );
        assert_eq!(
            t.failure(t0 + Duration::from_secs(2600)),
            OutageEvent::Alert {
                failing_for: Duration::from_secs(900)
            }
        );
        t.in_maintenance();
        assert!(t.failing(), "an alerted outage ends only with an answer");
    }
}
