//! The maintenance scheduler (データ連携WT 1.1.8): during a provider's maintenance window
//! every (subscriber, provider) consumer of that provider is paused with JetStream consumer
//! pause (`$JS.API.CONSUMER.PAUSE`, nats-server ≥ 2.11), until the window's end plus a jitter,
//! so agents receive no notice while the provider's PULL API may be down and do not all call
//! it at the same instant when the window ends.
//!
//! State is derived from the calendar on every tick, never remembered: inside a window the
//! scheduler makes sure each consumer is paused until `end + jitter` (setting the same
//! deadline again is harmless), so a relay restarted mid-window re-applies the pause, and a
//! consumer someone resumed by hand is paused again. The resume needs no action: the deadline
//! is stored on the server, which resumes the consumer by itself, even if no relay is running
//! at that moment.
//!
//! The jitter is pseudo-random but deterministic per (consumer, window): SHA-256 of the
//! consumer name and window start, scaled into `[0, resume_jitter_max)`. Different consumers
//! get different delays (spreading the catch-up), while every tick and every replica computes
//! the same deadline for one consumer, which keeps re-application idempotent.
//!
//! With several relay replicas only the holder of the KV lease ([`crate::lease`]) acts.
//!
//! Time is read through a [`Clock`] so tests can put "now" just before or inside a window;
//! the deadline sent to the server is translated back into real time.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use shirase_proto::BusinessId;
use shirase_proto::maintenance::{Calendar, Window};
use shirase_proto::subject::NOTICE_STREAM;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lease::{LEASE_BUCKET, Lease, LeaseError, SCHEDULER_KEY};
use crate::metrics::{Metrics, ProviderLabel};

pub use shirase_proto::maintenance::{Clock, OffsetClock, SystemClock};

/// What kind of scheduler failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerErrorKind {
    /// The lease bucket is missing or unreadable.
    Lease,
    /// A JetStream request failed.
    Server,
}

/// A scheduler step failed (the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The lease.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A JetStream request.
    #[error("{what}: {message}")]
    Server {
        /// What we were doing.
        what: String,
        /// The error.
        message: String,
    },
}

impl SchedulerError {
    /// The kind, for callers that branch.
    pub fn kind(&self) -> SchedulerErrorKind {
        match self {
            SchedulerError::Lease(_) => SchedulerErrorKind::Lease,
            SchedulerError::Server { .. } => SchedulerErrorKind::Server,
        }
    }
}

/// One provider's calendar and the consumers it pauses.
#[derive(Debug, Clone)]
struct Target {
    provider: BusinessId,
    calendar: Calendar,
    consumers: Vec<String>,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// Another replica holds the lease; nothing was done.
    Follower,
    /// This replica holds the lease (or runs without one).
    Leader {
        /// Pause requests sent this tick (consumers already paused until the right deadline
        /// are not asked again).
        pause_requests: usize,
        /// Providers in maintenance now.
        in_maintenance: Vec<BusinessId>,
    },
}

/// The maintenance scheduler of one relay process.
#[derive(Debug)]
pub struct Scheduler {
    js: jetstream::Context,
    targets: Vec<Target>,
    clock: Arc<dyn Clock>,
    jitter_max: Duration,
    lease: Option<Lease>,
    metrics: Arc<Metrics>,
}

impl Scheduler {
    /// A scheduler for `config`'s providers that competes for the `scheduler` lease as
    /// `holder` (unique per process).
    pub async fn new(
        config: &Config,
        js: jetstream::Context,
        metrics: Arc<Metrics>,
        holder: String,
    ) -> Result<Self, SchedulerError> {
        let lease = Lease::open(&js, LEASE_BUCKET, SCHEDULER_KEY, holder).await?;
        let mut s = Self::without_lease(config, js, metrics);
        s.lease = Some(lease);
        Ok(s)
    }

    /// A scheduler that always acts (a single relay, or tools).
    pub fn without_lease(config: &Config, js: jetstream::Context, metrics: Arc<Metrics>) -> Self {
        let desired = crate::topology::desired(config);
        let targets = config
            .providers
            .iter()
            .map(|p| Target {
                provider: p.business_id,
                calendar: p.maintenance.clone(),
                consumers: desired
                    .consumers
                    .iter()
                    .filter(|c| c.provider == p.business_id)
                    .filter_map(|c| c.config.durable_name.clone())
                    .collect(),
            })
            .collect();
        Self {
            js,
            targets,
            clock: Arc::new(SystemClock),
            jitter_max: config.maintenance.resume_jitter_max,
            lease: None,
            metrics,
        }
    }

    /// Read "now" from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The resume delay of `consumer` after `window`: deterministic, in `[0, jitter_max)`.
    pub fn jitter(&self, consumer: &str, window: &Window) -> Duration {
        jitter(self.jitter_max, consumer, window)
    }

    /// Check the calendar once and pause what must be paused.
    pub async fn tick(&self) -> Result<TickOutcome, SchedulerError> {
        if let Some(lease) = &self.lease {
            let held = lease.try_acquire().await?;
            self.metrics.maintenance_leader.set(i64::from(held));
            if !held {
                return Ok(TickOutcome::Follower);
            }
        } else {
            self.metrics.maintenance_leader.set(1);
        }
        let now = self.clock.now();
        let mut pause_requests = 0;
        let mut in_maintenance = Vec::new();
        let mut stream = None;
        for t in &self.targets {
            let label = ProviderLabel {
                provider: t.provider.to_string(),
            };
            let Some(window) = t.calendar.is_in_maintenance(now) else {
                self.metrics.maintenance_paused.get_or_create(&label).set(0);
                continue;
            };
            in_maintenance.push(t.provider);
            self.metrics.maintenance_paused.get_or_create(&label).set(1);
            if stream.is_none() {
                stream = Some(self.js.get_stream(NOTICE_STREAM).await.map_err(|e| {
                    SchedulerError::Server {
                        what: format!("reading stream {NOTICE_STREAM}"),
                        message: e.to_string(),
                    }
                })?);
            }
            let Some(s) = &stream else { continue };
            for name in &t.consumers {
                let until_cal = window.end
                    + SignedDuration::try_from(self.jitter(name, &window))
                        .unwrap_or(SignedDuration::ZERO);
                // The calendar's instant, in the server's (real) time.
                let until = Timestamp::now() + until_cal.duration_since(now);
                let info = s
                    .consumer_info(name)
                    .await
                    .map_err(|e| SchedulerError::Server {
                        what: format!("reading consumer {name}"),
                        message: e.to_string(),
                    })?;
                let current = info.config.pause_until.map(|d| d.unix_timestamp_nanos());
                let want = until.as_nanosecond();
                // Within 1 s counts as the same deadline: an offset test clock and the real
                // clock are read a few microseconds apart on every tick.
                if info.paused && current.is_some_and(|c| (c - want).abs() < 1_000_000_000) {
                    continue;
                }
                let deadline =
                    async_nats::datetime::from_nanos(want).map_err(|e| SchedulerError::Server {
                        what: format!("pause deadline of consumer {name}"),
                        message: e.to_string(),
                    })?;
                s.pause_consumer(name, deadline)
                    .await
                    .map_err(|e| SchedulerError::Server {
                        what: format!("pausing consumer {name}"),
                        message: e.to_string(),
                    })?;
                pause_requests += 1;
                self.metrics
                    .maintenance_pause_requests
                    .get_or_create(&label)
                    .inc();
                tracing::info!(
                    provider = %t.provider, consumer = %name, window = %window.spec, business_day = %window.business_day,
                    "paused for maintenance until {until} (window ends {}, resume jitter {:?})",
                    window.end, self.jitter(name, &window)
                );
            }
        }
        Ok(TickOutcome::Leader {
            pause_requests,
            in_maintenance,
        })
    }

    /// Tick every `every` until `shutdown`, then release the lease.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(kind = ?e.kind(), "maintenance scheduler: {e}; retrying next tick");
            }
        }
        if let Some(l) = &self.lease {
            l.release().await;
        }
        self.metrics.maintenance_leader.set(0);
    }
}

/// Start the scheduler of a serving relay in the background: it waits for NATS and the lease
/// bucket (retrying every tick) and runs until `shutdown`.
pub fn spawn(
    config: Config,
    js: jetstream::Context,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = format!("relay-{}", uuid::Uuid::now_v7());
        let tick = config.maintenance.tick;
        loop {
            match Scheduler::new(&config, js.clone(), metrics.clone(), holder.clone()).await {
                Ok(s) => {
                    tracing::info!(%holder, "maintenance scheduler started");
                    s.run(tick, shutdown).await;
                    return;
                }
                Err(e) => tracing::warn!("maintenance scheduler not started yet: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    })
}

fn jitter(max: Duration, consumer: &str, window: &Window) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(format!("{consumer}\n{}", window.start).as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    let frac = u64::from_be_bytes(b) as f64 / (u64::MAX as f64 + 1.0);
    max.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shirase_proto::maintenance::Config as CalConfig;

    #[test]
    fn jitter_is_stable_per_consumer_and_window_and_below_the_maximum() {
        let cal = Calendar::new(&CalConfig::default()).unwrap();
        let w = cal.next_windows("2026-05-11T12:00+09:00".parse().unwrap(), 2);
        let max = Duration::from_secs(300);
        let a = jitter(max, "tax_001", &w[0]);
        assert_eq!(
            a,
            jitter(max, "tax_001", &w[0]),
            "same consumer and window: same deadline on every tick"
        );
        assert!(a < max);
        let others: Vec<Duration> = ["delinquency_001", "tax_010"]
            .iter()
            .map(|c| jitter(max, c, &w[0]))
            .collect();
        assert!(
            others.iter().all(|o| *o != a),
            "consumers resume at different instants"
        );
        assert_ne!(
            jitter(max, "tax_001", &w[1]),
            a,
            "a new window, a new delay"
        );
        assert_eq!(jitter(Duration::ZERO, "tax_001", &w[0]), Duration::ZERO);
    }

    #[test]
    fn provider_calendars_are_validated_with_the_field_path_and_default_to_the_baseline() {
        let base = r#"
municipality_code = "131016"
[[providers]]
business_id = "001"
name = "p"
pull_api_base_url = "http://127.0.0.1:9000"
credentials = { token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"] }
"#;
        let c = Config::from_toml_str(base, None).unwrap();
        let t: Timestamp = "2026-05-12T01:00+09:00".parse().unwrap();
        assert_eq!(
            c.providers[0].maintenance.current_window_end(t),
            Some("2026-05-12T03:00+09:00".parse().unwrap()),
            "baseline"
        );
        let bad = format!("{base}[providers.maintenance]\nweekday = [\"23:00-03:00\"]\n");
        let e = Config::from_toml_str(&bad, None).unwrap_err();
        assert!(
            e.problems
                .iter()
                .any(|p| p.path == "providers[0].maintenance.weekday[0]"),
            "{e}"
        );
        let e = Config::from_toml_str(&format!("{base}[maintenance]\nlease_ttl = \"1s\"\n"), None)
            .unwrap_err();
        assert!(
            e.problems.iter().any(|p| p.path == "maintenance.lease_ttl"),
            "{e}"
        );
    }
}
