//! `[maintenance]`: the maintenance scheduler's settings (the scheduler itself is
//! [`crate::scheduler`]).

use std::time::Duration;

use serde::Deserialize;

use super::common::parse_duration;

/// `[maintenance]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSchedulerConfig {
    /// Run the scheduler in `serve`.
    pub scheduler: bool,
    /// How often the calendar is checked.
    pub tick: String,
    /// Upper bound of the random delay added to a window's end before a consumer resumes.
    pub resume_jitter_max: String,
    /// Lease time-to-live (the `shirase_leases` bucket's `max_age`).
    pub lease_ttl: String,
}

impl Default for RawSchedulerConfig {
    fn default() -> Self {
        Self {
            scheduler: true,
            tick: "10s".into(),
            resume_jitter_max: "5m".into(),
            lease_ttl: "30s".into(),
        }
    }
}

/// Validated `[maintenance]`.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Run the scheduler in `serve`.
    pub enabled: bool,
    /// How often the calendar is checked.
    pub tick: Duration,
    /// Upper bound of the resume jitter.
    pub resume_jitter_max: Duration,
    /// Lease time-to-live.
    pub lease_ttl: Duration,
}

impl SchedulerConfig {
    /// Validate, reporting each problem with its field path through `problem`.
    pub(super) fn validate(
        raw: &RawSchedulerConfig,
        problem: &mut dyn FnMut(String, String),
    ) -> Self {
        let mut dur = |field: &str, v: &str| {
            parse_duration(v).unwrap_or_else(|e| {
                problem(format!("maintenance.{field}"), e);
                Duration::from_secs(1)
            })
        };
        let tick = dur("tick", &raw.tick);
        let resume_jitter_max = dur("resume_jitter_max", &raw.resume_jitter_max);
        let lease_ttl = dur("lease_ttl", &raw.lease_ttl);
        if tick.is_zero() {
            problem(
                "maintenance.tick".into(),
                "must be more than 0s (e.g. \"10s\")".into(),
            );
        }
        if lease_ttl < Duration::from_secs(1) || lease_ttl < tick * 2 {
            problem(
                "maintenance.lease_ttl".into(),
                "must be at least 1s and at least twice maintenance.tick, so the holder renews in time".into(),
            );
        }
        Self {
            enabled: raw.scheduler,
            tick,
            resume_jitter_max,
            lease_ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let mut problems = Vec::new();
        let raw = RawSchedulerConfig {
            tick: "soon".into(),
            lease_ttl: "1s".into(),
            ..Default::default()
        };
        SchedulerConfig::validate(&raw, &mut |p, m| problems.push((p, m)));
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"maintenance.tick"), "{paths:?}");
        let raw = RawSchedulerConfig {
            tick: "10s".into(),
            lease_ttl: "15s".into(),
            ..Default::default()
        };
        problems.clear();
        SchedulerConfig::validate(&raw, &mut |p, m| problems.push((p, m)));
        assert_eq!(problems[0].0, "maintenance.lease_ttl");
    }
}
