//! `[providers.watch]`: the settings of a watched provider (one that cannot publish notices
//! yet), validated with errors that name the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use shirase_proto::InterfaceId;
use shirase_pull::{ApiProfile, PullClientConfig, RawApi};

use super::common::parse_duration;

/// `[providers.watch]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    /// The provider's OAuth 2.0 token endpoint (also the `aud` of the client assertion).
    pub token_url: String,
    /// The watcher's OAuth 2.0 client id at the provider.
    pub client_id: String,
    /// File holding the client secret (client_secret_jwt); relative to the config file.
    pub client_secret_file: PathBuf,
    /// How the provider's API spells requests and answers (the agent's `[providers.api]`).
    #[serde(default)]
    pub api: RawApi,
    /// Interfaces to watch; default: every `[[interfaces]]` entry of this provider.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Poll interval to start with and to return to.
    #[serde(default = "d_interval")]
    pub interval: String,
    /// Fastest polling, reached after polls that found changes.
    #[serde(default = "d_min_interval")]
    pub min_interval: String,
    /// Slowest polling, reached after idle polls.
    #[serde(default = "d_max_interval")]
    pub max_interval: String,
    /// How far behind "now" a window ends, so rows committed with a slightly older DB
    /// timestamp are visible before their window is read.
    #[serde(default = "d_settle")]
    pub settle: String,
    /// Requests per second to this provider (token requests included).
    #[serde(default = "d_rate")]
    pub rate_per_sec: f64,
    /// Concurrent requests to this provider.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Client timeout per request (a little over the standard's 30 s).
    #[serde(default = "d_timeout")]
    pub timeout: String,
    /// Most addressee numbers in one notice (at most 100, the notice format's bound).
    #[serde(default = "d_max_keys")]
    pub max_keys_per_notice: usize,
    /// How often a window answered E0004 (too many rows) or a bare 503 may be halved.
    #[serde(default = "d_bisect")]
    pub bisect_max_depth: u32,
    /// Where the first window starts when there is no checkpoint yet (RFC 3339); default: the
    /// moment the watcher first runs (earlier changes are not announced).
    #[serde(default)]
    pub start: Option<String>,
    /// Switch to native notices: the watcher announces changes with a DB update timestamp
    /// before this instant (RFC 3339 with offset) and stops there; the relay publishes the
    /// provider's own notices from this instant on.
    #[serde(default)]
    pub until: Option<String>,
    /// Never send a request inside a maintenance window (default `true`; `false` for drills).
    #[serde(default = "d_true")]
    pub enforce_maintenance: bool,
}

fn d_interval() -> String {
    "60s".into()
}
fn d_min_interval() -> String {
    "15s".into()
}
fn d_max_interval() -> String {
    "120s".into()
}
fn d_settle() -> String {
    "2s".into()
}
fn d_rate() -> f64 {
    1.0
}
fn d_concurrency() -> usize {
    1
}
fn d_timeout() -> String {
    "35s".into()
}
fn d_max_keys() -> usize {
    shirase_proto::notice::MAX_KEYS
}
fn d_bisect() -> u32 {
    12
}
fn d_true() -> bool {
    true
}

/// A watched provider's validated settings.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Token endpoint.
    pub token_url: String,
    /// OAuth 2.0 client id.
    pub client_id: String,
    /// Client secret file (resolved against the config file's folder).
    pub client_secret_file: PathBuf,
    /// How the provider's API spells requests and answers.
    pub api: ApiProfile,
    /// Interfaces to watch (resolved when the whole topology is known).
    pub interfaces: Vec<InterfaceId>,
    /// Start interval.
    pub interval: Duration,
    /// Fastest interval.
    pub min_interval: Duration,
    /// Slowest interval.
    pub max_interval: Duration,
    /// Distance of a window's end from now.
    pub settle: Duration,
    /// Request rate budget.
    pub rate_per_sec: f64,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Client timeout.
    pub timeout: Duration,
    /// Keys per notice.
    pub max_keys_per_notice: usize,
    /// Bisection depth.
    pub bisect_max_depth: u32,
    /// First window's start without a checkpoint.
    pub start: Option<Timestamp>,
    /// Hand-over instant to native notices.
    pub until: Option<Timestamp>,
    /// No request inside a maintenance window.
    pub enforce_maintenance: bool,
}

impl WatchConfig {
    /// Validate `raw` (at field path `path`, e.g. `providers[1].watch`), reporting each problem
    /// through `problem`. `interfaces` stays as written; [`super`] resolves it.
    pub(super) fn validate(
        raw: &RawWatch,
        path: &str,
        base_dir: Option<&Path>,
        problem: &mut dyn FnMut(String, String),
    ) -> Option<Self> {
        let api = validate_api(raw, path, problem);
        let before = std::cell::Cell::new(0usize);
        let mut report = |field: &str, msg: String| {
            before.set(before.get() + 1);
            problem(format!("{path}.{field}"), msg);
        };
        let secret = check_client(raw, base_dir, &mut report);
        let d = durations(raw, &mut report);
        check_limits(raw, &mut report);
        let (start, until) = instants(raw, &mut report);
        if let (Some(s), Some(u)) = (start, until)
            && s > u
        {
            problem(
                format!("{path}.start"),
                format!("start ({s}) is after until ({u})"),
            );
            return None;
        }
        let api = api?;
        (before.get() == 0).then(|| WatchConfig {
            token_url: raw.token_url.clone(),
            client_id: raw.client_id.clone(),
            client_secret_file: secret,
            api,
            interfaces: Vec::new(),
            interval: d.interval,
            min_interval: d.min_interval,
            max_interval: d.max_interval,
            settle: d.settle,
            rate_per_sec: raw.rate_per_sec,
            concurrency: raw.concurrency,
            timeout: d.timeout,
            max_keys_per_notice: raw.max_keys_per_notice,
            bisect_max_depth: raw.bisect_max_depth,
            start,
            until,
            enforce_maintenance: raw.enforce_maintenance,
        })
    }

    /// The PULL client settings of the watched `provider` (whose `watch` section this is).
    /// An unreadable secret file is reported as `providers[<business id>].client_secret_file`.
    pub fn pull_client_config(&self, provider: &crate::config::Provider) -> PullClientConfig {
        PullClientConfig {
            base_url: provider.pull_api_base_url.clone(),
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            client_secret_file: self.client_secret_file.clone(),
            client_secret_field: format!("providers[{}].client_secret_file", provider.business_id),
            api: self.api.clone(),
            // The watcher adds each watched interface's version (for `{version}`).
            interfaces: Default::default(),
            municipality: None,
            timeout: self.timeout,
            provider: format!("provider {}", provider.business_id),
            ca_file: None,
        }
    }

    /// Does the watcher (rather than the provider) announce a change made at `updated_at`?
    pub fn covers(&self, updated_at: Timestamp) -> bool {
        self.until.is_none_or(|u| updated_at < u)
    }
}

/// The durations of a watch section (each 1s where unreadable).
struct Durations {
    interval: Duration,
    min_interval: Duration,
    max_interval: Duration,
    settle: Duration,
    timeout: Duration,
}

/// Check the OAuth client settings; the client secret file resolved against `base_dir`.
fn check_client(
    raw: &RawWatch,
    base_dir: Option<&Path>,
    report: &mut dyn FnMut(&str, String),
) -> PathBuf {
    if !(raw.token_url.starts_with("http://") || raw.token_url.starts_with("https://")) {
        report(
            "token_url",
            format!("{:?} is not an http(s) URL", raw.token_url),
        );
    }
    if raw.client_id.trim().is_empty() {
        report(
            "client_id",
            "required: the watcher's OAuth client id at the provider".into(),
        );
    }
    let secret = match base_dir {
        Some(d) if raw.client_secret_file.is_relative() => d.join(&raw.client_secret_file),
        _ => raw.client_secret_file.clone(),
    };
    if let Err(e) = std::fs::read(&secret) {
        report(
            "client_secret_file",
            format!("cannot read {}: {e}", secret.display()),
        );
    }
    secret
}

/// Parse the durations and check that `interval` lies between the other two.
fn durations(raw: &RawWatch, report: &mut dyn FnMut(&str, String)) -> Durations {
    let dur = |field: &str, v: &str, report: &mut dyn FnMut(&str, String)| {
        parse_duration(v).unwrap_or_else(|e| {
            report(field, e);
            Duration::from_secs(1)
        })
    };
    let interval = dur("interval", &raw.interval, report);
    let min_interval = dur("min_interval", &raw.min_interval, report);
    let max_interval = dur("max_interval", &raw.max_interval, report);
    let settle = dur("settle", &raw.settle, report);
    let timeout = dur("timeout", &raw.timeout, report);
    if min_interval.is_zero() {
        report("min_interval", "must be more than 0s".into());
    }
    if !(min_interval <= interval && interval <= max_interval) {
        report(
            "interval",
            format!(
                "must lie between min_interval ({}) and max_interval ({}); got {}",
                raw.min_interval, raw.max_interval, raw.interval
            ),
        );
    }
    Durations {
        interval,
        min_interval,
        max_interval,
        settle,
        timeout,
    }
}

/// Check the request rate, the concurrency and the keys per notice.
fn check_limits(raw: &RawWatch, report: &mut dyn FnMut(&str, String)) {
    if !(raw.rate_per_sec > 0.0 && raw.rate_per_sec.is_finite()) {
        report(
            "rate_per_sec",
            format!("must be a positive number, got {}", raw.rate_per_sec),
        );
    }
    if raw.concurrency == 0 {
        report("concurrency", "must be at least 1".into());
    }
    if raw.max_keys_per_notice == 0 || raw.max_keys_per_notice > shirase_proto::notice::MAX_KEYS {
        report(
            "max_keys_per_notice",
            format!(
                "must be 1 to {} (the notice format's bound), got {}",
                shirase_proto::notice::MAX_KEYS,
                raw.max_keys_per_notice
            ),
        );
    }
}

/// `start` and `until`, each `None` when absent or unreadable.
fn instants(
    raw: &RawWatch,
    report: &mut dyn FnMut(&str, String),
) -> (Option<Timestamp>, Option<Timestamp>) {
    let mut instant = |field: &str, v: &Option<String>| {
        v.as_ref().and_then(|s| match parse_instant(s) {
            Ok(t) => Some(t),
            Err(e) => {
                report(field, e);
                None
            }
        })
    };
    let start = instant("start", &raw.start);
    let until = instant("until", &raw.until);
    (start, until)
}

/// Validate `<path>.api`. Every interface of the relay's topology has a version, so a path
/// may use `{version}`.
fn validate_api(
    raw: &RawWatch,
    path: &str,
    problem: &mut dyn FnMut(String, String),
) -> Option<ApiProfile> {
    raw.api.validate(&format!("{path}.api"), true, problem)
}

/// An RFC 3339 timestamp with an explicit offset.
fn parse_instant(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>().map_err(|_| {
        format!("{s:?} is not an RFC 3339 timestamp with offset (e.g. 2026-12-01T00:00:00+09:00)")
    })
}
