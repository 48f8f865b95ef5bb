//! The agent loop's sections: `[batch]`, `[pull]`, `[retry]`, `[outage]`, `[sweep]`,
//! `[coverage]`, `[watchdog]` and `[shutdown]`. Durations are strings (`"500ms"`, `"60s"`).

use std::time::Duration;

use serde::Deserialize;

use super::common::Problems;

/// `[batch]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Most notices per fetch.
    pub size: usize,
    /// Longest wait for a batch to fill.
    pub max_wait: String,
}

/// `[pull]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPull {
    /// Overlap subtracted from the checkpoint.
    pub overlap: String,
    /// Deepest bisection of a window.
    pub bisect_max_depth: u32,
    /// Most notices planned into one window request.
    pub max_notices_per_window: usize,
}

/// `[retry]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// First backoff.
    pub base: String,
    /// Backoff cap.
    pub max: String,
}

/// `[outage]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutage {
    /// Continuous failure before the one alert.
    pub alert_after: String,
}

/// `[sweep]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSweep {
    /// Time between two sweeps; `"0s"` = none.
    pub interval: String,
    /// How long missing notice sequences may stay missing before they count as a gap.
    pub gap_grace: String,
}

/// `[coverage]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoverage {
    /// Nak delay of an uncovered notice.
    pub uncovered_retry_delay: String,
    /// Deliveries of an uncovered notice before alerting.
    pub uncovered_alert_after: u64,
}

/// `[watchdog]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatchdog {
    /// Pending but nothing delivered for this long → alert.
    pub stalled_after: String,
}

/// `[shutdown]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// Grace period for in-flight work.
    pub grace: String,
}

/// Batching.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most notices per fetch.
    pub size: usize,
    /// Longest wait for a batch to fill.
    pub max_wait: Duration,
}

/// Differential pull settings.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Overlap subtracted from the checkpoint.
    pub overlap: Duration,
    /// Deepest bisection of a window.
    pub bisect_max_depth: u32,
    /// Most notices planned into one window request (see agent.default.toml for why it is
    /// half the provider's row threshold).
    pub max_notices_per_window: usize,
}

/// Retry and backoff.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// First backoff.
    pub base: Duration,
    /// Backoff cap.
    pub max: Duration,
}

/// `[outage]`: when a failing provider becomes an operating-status alert.
#[derive(Debug, Clone)]
pub struct OutageConfig {
    /// Continuous failure (outside maintenance windows) before the one alert.
    pub alert_after: Duration,
}

/// `[sweep]`: differential pulls from the checkpoint on a schedule.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Time between two sweeps of every interface; zero = no scheduled sweep (gaps still
    /// trigger one).
    pub interval: Duration,
    /// How long missing notice sequences may stay missing (a provider's re-sent notice arrives
    /// after later ones) before they count as a gap and sweep the interface; zero = at once.
    pub gap_grace: Duration,
}

/// Coverage settings.
#[derive(Debug, Clone)]
pub struct CoverageConfig {
    /// Nak delay of an uncovered notice.
    pub uncovered_retry_delay: Duration,
    /// Deliveries of an uncovered notice before alerting.
    pub uncovered_alert_after: u64,
}

/// Watchdog settings.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    /// Pending but nothing delivered for this long → alert.
    pub stalled_after: Duration,
}

/// Shutdown settings.
#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    /// Grace period for in-flight work.
    pub grace: Duration,
}

/// The validated loop sections.
pub(super) struct Processing {
    pub batch: BatchConfig,
    pub pull: PullConfig,
    pub retry: RetryConfig,
    pub outage: OutageConfig,
    pub sweep: SweepConfig,
    pub coverage: CoverageConfig,
    pub watchdog: WatchdogConfig,
    pub shutdown: ShutdownConfig,
}

/// The raw loop sections.
pub(super) struct RawProcessing<'a> {
    pub batch: &'a RawBatch,
    pub pull: &'a RawPull,
    pub retry: &'a RawRetry,
    pub outage: &'a RawOutage,
    pub sweep: &'a RawSweep,
    pub coverage: &'a RawCoverage,
    pub watchdog: &'a RawWatchdog,
    pub shutdown: &'a RawShutdown,
}

impl Processing {
    /// Validate the loop sections.
    pub(super) fn validate(raw: RawProcessing<'_>, p: &mut Problems) -> Self {
        let mut d = |path: &str, v: &str| p.duration(path, v);
        let max_wait = d("batch.max_wait", &raw.batch.max_wait);
        let overlap = d("pull.overlap", &raw.pull.overlap);
        let base = d("retry.base", &raw.retry.base);
        let max = d("retry.max", &raw.retry.max);
        let alert_after = d("outage.alert_after", &raw.outage.alert_after);
        let interval = d("sweep.interval", &raw.sweep.interval);
        let gap_grace = d("sweep.gap_grace", &raw.sweep.gap_grace);
        let uncovered_retry_delay = d(
            "coverage.uncovered_retry_delay",
            &raw.coverage.uncovered_retry_delay,
        );
        let stalled_after = d("watchdog.stalled_after", &raw.watchdog.stalled_after);
        let grace = d("shutdown.grace", &raw.shutdown.grace);

        if !(1..=10_000).contains(&raw.batch.size) {
            p.push("batch.size", "must be 1..=10000");
        }
        if let Some(w) = max_wait
            && !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&w)
        {
            p.push("batch.max_wait", "must be between \"1ms\" and \"60s\"");
        }
        if !(1..=1_000_000).contains(&raw.pull.max_notices_per_window) {
            p.push(
                "pull.max_notices_per_window",
                "must be 1..=1000000 (about half the provider's row threshold)",
            );
        }
        if raw.pull.bisect_max_depth > 32 {
            p.push("pull.bisect_max_depth", "must be 0..=32");
        }
        if base.is_some_and(|b| b.is_zero()) {
            p.push("retry.base", "must be more than \"0s\"");
        }
        if let (Some(b), Some(m)) = (base, max)
            && m < b
        {
            p.push("retry.max", "must be at least retry.base");
        }
        if uncovered_retry_delay.is_some_and(|d| d.is_zero()) {
            p.push("coverage.uncovered_retry_delay", "must be more than \"0s\"");
        }
        Self {
            batch: BatchConfig {
                size: raw.batch.size,
                max_wait: max_wait.unwrap_or_default(),
            },
            pull: PullConfig {
                overlap: overlap.unwrap_or_default(),
                bisect_max_depth: raw.pull.bisect_max_depth,
                max_notices_per_window: raw.pull.max_notices_per_window,
            },
            retry: RetryConfig {
                base: base.unwrap_or_default(),
                max: max.unwrap_or_default(),
            },
            outage: OutageConfig {
                alert_after: alert_after.unwrap_or_default(),
            },
            sweep: SweepConfig {
                interval: interval.unwrap_or_default(),
                gap_grace: gap_grace.unwrap_or_default(),
            },
            coverage: CoverageConfig {
                uncovered_retry_delay: uncovered_retry_delay.unwrap_or_default(),
                uncovered_alert_after: raw.coverage.uncovered_alert_after,
            },
            watchdog: WatchdogConfig {
                stalled_after: stalled_after.unwrap_or_default(),
            },
            shutdown: ShutdownConfig {
                grace: grace.unwrap_or_default(),
            },
        }
    }
}
