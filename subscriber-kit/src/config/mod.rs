//! Agent configuration: `agent.default.toml` (embedded, commented) → the user's file →
//! `SHIRASE_AGENT__*` environment variables. The merged layers are read as [`RawConfig`]
//! (exactly what the files say) and validated into [`Config`]; every problem is reported at
//! once, each with its field path (`providers[1].interfaces[0].id`, `batch.max_wait`).
//!
//! The environment prefix is [`ENV_PREFIX`] (`SHIRASE_AGENT__`, with `__` separating nested
//! keys: `SHIRASE_AGENT__BATCH__SIZE=500`), not plain `SHIRASE_`: the agent often shares its
//! environment with `SHIRASE_LOG`, the relay's own variables or a wrapper's, and those must
//! not be read as agent settings (unknown keys are rejected).
//!
//! Durations are strings (`"500ms"`, `"60s"`, `"2m"`), optional files are absent keys, and
//! NATS keys are named as in the relay's `[nats]`. A key of an older release is an error that
//! names its replacement ([`RENAMED`]). Relative paths are relative to the directory the agent
//! is started from.

mod common;
mod files;
mod http;
mod nats;
mod processing;
mod providers;
mod sink;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use shirase_proto::{MunicipalityCode, SubscriberId};

pub use common::{ConfigError, ConfigErrorKind, FieldProblem, Problems, parse_duration};
pub use files::{FilesConfig, RawFiles, RawShare};
pub use http::{HttpConfig, RawHttp};
pub use nats::{NatsConfig, RawNats};
pub use processing::{
    BatchConfig, CoverageConfig, OutageConfig, PullConfig, RawBatch, RawCoverage, RawOutage,
    RawPull, RawRetry, RawShutdown, RawSweep, RawWatchdog, RetryConfig, ShutdownConfig,
    SweepConfig, WatchdogConfig,
};
pub use providers::{
    ApiProfile, InterfaceConfig, ProviderConfig, RawApi, RawInterface, RawProvider,
};
pub use sink::{RawSink, SinkConfig};

use common::Renamed;

/// Prefix of the environment variables that override the configuration.
pub const ENV_PREFIX: &str = "SHIRASE_AGENT__";

/// The embedded defaults, also shipped as documentation.
pub const DEFAULT_TOML: &str = include_str!("../agent.default.toml");

const DURATION_MS: &str = "a duration string such as \"200ms\"";
const DURATION_S: &str = "a duration string such as \"30s\"";
const DURATION_M: &str = "a duration string such as \"10m\"";

/// Keys of earlier releases: each is an error naming its replacement.
#[rustfmt::skip]
pub const RENAMED: &[Renamed] = &[
    Renamed { old: "nats.creds_file", new: Some("credentials_file"), hint: "the same .creds file; the relay's name for it" },
    Renamed { old: "batch.max_wait_ms", new: Some("max_wait"), hint: DURATION_MS },
    Renamed { old: "pull.overlap_secs", new: Some("overlap"), hint: DURATION_M },
    Renamed { old: "pull.overlap_reread_secs", new: None, hint: "notice-triggered pulls no longer re-read the overlap; a late row is pulled by its own notice" },
    Renamed { old: "pull.overlap_reread", new: None, hint: "notice-triggered pulls no longer re-read the overlap; a late row is pulled by its own notice" },
    Renamed { old: "retry.base_ms", new: Some("base"), hint: DURATION_MS },
    Renamed { old: "retry.max_ms", new: Some("max"), hint: DURATION_S },
    Renamed { old: "retry.connect_alert_after", new: None, hint: "it had no effect; the operating-status alert is time-based (outage.alert_after)" },
    Renamed { old: "outage.alert_after_secs", new: Some("alert_after"), hint: DURATION_M },
    Renamed { old: "sweep.interval_secs", new: Some("interval"), hint: "a duration string such as \"1h\"; \"0s\" = no scheduled sweep" },
    Renamed { old: "coverage.uncovered_retry_delay_ms", new: Some("uncovered_retry_delay"), hint: DURATION_MS },
    Renamed { old: "watchdog.stalled_after_secs", new: Some("stalled_after"), hint: DURATION_S },
    Renamed { old: "shutdown.grace_ms", new: Some("grace"), hint: DURATION_S },
    Renamed { old: "sink.timeout_ms", new: Some("timeout"), hint: DURATION_S },
    Renamed { old: "providers[].timeout_ms", new: Some("timeout"), hint: DURATION_S },
    Renamed { old: "providers[].params", new: Some("api"), hint: API_PARAMS },
];

/// What replaced `[providers.params]` (and the watcher's `[providers.watch.params]`).
pub const API_PARAMS: &str = "the API profile table: updated_from → from, updated_to → to, atena_no → key (docs/pull-api.md)";

/// The configuration as written (after layering), before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Subscriber id.
    pub subscriber: String,
    /// Municipality code.
    pub municipality: String,
    /// `[nats]`.
    pub nats: RawNats,
    /// `[batch]`.
    pub batch: RawBatch,
    /// `[pull]`.
    pub pull: RawPull,
    /// `[retry]`.
    pub retry: RawRetry,
    /// `[outage]`.
    pub outage: RawOutage,
    /// `[sweep]`.
    pub sweep: RawSweep,
    /// `[coverage]`.
    pub coverage: RawCoverage,
    /// `[watchdog]`.
    pub watchdog: RawWatchdog,
    /// `[shutdown]`.
    pub shutdown: RawShutdown,
    /// `[http]`.
    pub http: RawHttp,
    /// `[sink]`.
    pub sink: RawSink,
    /// `[[providers]]`.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// `[files]`: file integration.
    #[serde(default)]
    pub files: RawFiles,
}

/// The whole agent configuration (one subscriber system), validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Subscriber id (e.g. `tax`): names the durable consumers and checkpoint keys.
    pub subscriber: SubscriberId,
    /// Municipality code (6 digits with check digit).
    pub municipality: MunicipalityCode,
    /// NATS connection.
    pub nats: NatsConfig,
    /// Batching of notices fetched from the consumer.
    pub batch: BatchConfig,
    /// Differential pull settings.
    pub pull: PullConfig,
    /// Retry and backoff.
    pub retry: RetryConfig,
    /// Outage alerting (`[outage]`).
    pub outage: OutageConfig,
    /// Scheduled sweeps (`[sweep]`).
    pub sweep: SweepConfig,
    /// Coverage (uncovered notices).
    pub coverage: CoverageConfig,
    /// Stalled-consumer watchdog.
    pub watchdog: WatchdogConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// HTTP listener for `/healthz` and `/metrics`.
    pub http: HttpConfig,
    /// Where pulled rows go.
    pub sink: SinkConfig,
    /// Providers this subscriber reads from.
    pub providers: Vec<ProviderConfig>,
    /// File integration: the providers' shares as mounted here.
    pub files: FilesConfig,
}

impl Config {
    /// Load defaults → `file` (if given) → `SHIRASE_AGENT__*` env ([`ENV_PREFIX`]), then
    /// validate. Other `SHIRASE_*` variables are ignored.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::load(
                    "agent",
                    "",
                    format!("config file {} does not exist", f.display()),
                ));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::from_figment(&fig)
    }

    /// Load defaults → the TOML text `user` (no environment), then validate. For tests and
    /// embedding.
    pub fn from_toml_str(user: &str) -> Result<Self, ConfigError> {
        Self::from_figment(&Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(user)))
    }

    fn from_figment(fig: &Figment) -> Result<Self, ConfigError> {
        shirase_service::config::load_validated(fig, DEFAULT_TOML, RENAMED, "agent", |raw, p| {
            Self::validate(&raw, p)
        })
    }

    /// Validate `raw`, recording every problem in `p`; `None` when a value needed to build
    /// the configuration is unusable.
    pub fn validate(raw: &RawConfig, p: &mut Problems) -> Option<Self> {
        let subscriber = p.parse::<SubscriberId>("subscriber", &raw.subscriber);
        let municipality = p.parse::<MunicipalityCode>("municipality", &raw.municipality);
        let nats = NatsConfig::validate(&raw.nats, p);
        let proc = processing::Processing::validate(
            processing::RawProcessing {
                batch: &raw.batch,
                pull: &raw.pull,
                retry: &raw.retry,
                outage: &raw.outage,
                sweep: &raw.sweep,
                coverage: &raw.coverage,
                watchdog: &raw.watchdog,
                shutdown: &raw.shutdown,
            },
            p,
        );
        let http = HttpConfig::validate(&raw.http, p);
        let sink = SinkConfig::validate(&raw.sink, p);
        let providers = ProviderConfig::validate_all(&raw.providers, p);
        let ids: Vec<_> = providers.iter().map(|x| x.business_id).collect();
        let files = FilesConfig::validate(&raw.files, &ids, p);
        Some(Config {
            subscriber: subscriber?,
            municipality: municipality?,
            nats,
            batch: proc.batch,
            pull: proc.pull,
            retry: proc.retry,
            outage: proc.outage,
            sweep: proc.sweep,
            coverage: proc.coverage,
            watchdog: proc.watchdog,
            shutdown: proc.shutdown,
            http,
            sink,
            providers,
            files,
        })
    }

    /// Overlap as a duration.
    pub fn overlap(&self) -> Duration {
        self.pull.overlap
    }

    /// The HTTP listen address, if any.
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http.listen
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
subscriber = "tax"
municipality = "131016"
[sink]
kind = "file"
dir = "/tmp/x"
[[providers]]
business_id = "001"
pull_api_base_url = "http://127.0.0.1:9001"
token_url = "http://127.0.0.1:9001/oauth/token"
insecure_http = true
client_id = "tax"
client_secret_file = "/tmp/secret"
[[providers.interfaces]]
id = "001o05-00"
version = "1.0"
"#;

    fn paths(e: &ConfigError) -> Vec<&str> {
        e.problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::from_toml_str(MIN).unwrap();
        assert_eq!(c.subscriber.as_str(), "tax");
        assert_eq!(c.pull.overlap, Duration::from_secs(600));
        assert_eq!(c.batch.max_wait, Duration::from_secs(1));
        assert_eq!(c.retry.base, Duration::from_secs(1));
        assert_eq!(c.retry.max, Duration::from_secs(60));
        assert_eq!(c.outage.alert_after, Duration::from_secs(900));
        assert_eq!(c.sweep.interval, Duration::from_secs(3600));
        assert_eq!(c.coverage.uncovered_retry_delay, Duration::from_secs(2));
        assert_eq!(c.watchdog.stalled_after, Duration::from_secs(60));
        assert_eq!(c.shutdown.grace, Duration::from_secs(10));
        assert_eq!(c.providers[0].timeout, Duration::from_secs(35));
        assert_eq!(c.providers[0].concurrency, 2);
        assert_eq!(c.providers[0].rate_per_sec, 5.0);
        assert_eq!(c.providers[0].interfaces[0].keyed_pull_max_keys, 0);
        assert_eq!(c.providers[0].interfaces[0].min_interval, None);
        assert_eq!(c.providers[0].api, ApiProfile::default());
        assert_eq!(
            c.sink,
            SinkConfig::File {
                dir: "/tmp/x".into()
            }
        );
        assert_eq!(c.http_listen(), Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn the_inbox_prefix_is_checked_naming_its_field() {
        assert_eq!(Config::from_toml_str(MIN).unwrap().nats.inbox_prefix, None);
        let with =
            |p: &str| MIN.replace("[sink]", &format!("[nats]\ninbox_prefix = {p:?}\n[sink]"));
        let c = Config::from_toml_str(&with("_INBOX_subscriber_tax")).unwrap();
        assert_eq!(
            c.nats.inbox_prefix.as_deref(),
            Some("_INBOX_subscriber_tax")
        );
        for bad in ["_INBOX.>", "a b", ""] {
            let e = Config::from_toml_str(&with(bad)).unwrap_err();
            assert_eq!(paths(&e), ["nats.inbox_prefix"], "{bad:?}");
        }
    }

    #[test]
    fn optional_paths_are_absent_keys() {
        let c = Config::from_toml_str(MIN).unwrap();
        let n = &c.nats;
        assert!(n.credentials_file.is_none() && n.nkey_seed_file.is_none());
        assert!(n.tls_ca_file.is_none() && n.tls_cert_file.is_none() && n.tls_key_file.is_none());
        assert!(c.http.tls.is_none());
        let e = Config::from_toml_str(&format!("{MIN}\n[nats]\ntls_ca_file = \"\"\n")).unwrap_err();
        assert_eq!(paths(&e), ["nats.tls_ca_file"]);
        assert!(e.problems[0].message.contains("leave the key out"), "{e}");
        let c = Config::from_toml_str(&MIN.replace(
            "kind = \"file\"\ndir = \"/tmp/x\"",
            "kind = \"command\"\nprogram = \"/bin/true\"",
        ))
        .unwrap();
        assert!(matches!(
            c.sink,
            SinkConfig::Command {
                spool_dir: None,
                ..
            }
        ));
    }

    #[test]
    fn durations_are_strings() {
        let text = format!(
            "{MIN}\n[batch]\nmax_wait = \"250ms\"\n[pull]\noverlap = \"2m\"\n[sweep]\ninterval = \"0s\"\n"
        )
        .replace("client_id = \"tax\"", "client_id = \"tax\"\ntimeout = \"1m 5s\"");
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.batch.max_wait, Duration::from_millis(250));
        assert_eq!(c.pull.overlap, Duration::from_secs(120));
        assert_eq!(c.sweep.interval, Duration::ZERO);
        assert_eq!(c.providers[0].timeout(), Duration::from_secs(65));
        let e = Config::from_toml_str(&format!("{MIN}\n[batch]\nmax_wait = 1000\n")).unwrap_err();
        assert_eq!(paths(&e), ["batch.max_wait"]);
        let e =
            Config::from_toml_str(&format!("{MIN}\n[batch]\nmax_wait = \"soon\"\n")).unwrap_err();
        assert_eq!(paths(&e), ["batch.max_wait"]);
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let text = MIN
            .replace("municipality = \"131016\"", "municipality = \"131017\"")
            .replace("client_id = \"tax\"", "client_id = \"\"\nconcurrency = 0")
            .replace("id = \"001o05-00\"", "id = \"010o01-00\"")
            + "\n[batch]\nsize = 0\nmax_wait = \"2m\"\n[retry]\nbase = \"5s\"\nmax = \"1s\"\n[http]\nlisten = \"nowhere\"\n";
        let e = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Invalid);
        let got = paths(&e);
        for want in [
            "municipality",
            "batch.size",
            "batch.max_wait",
            "retry.max",
            "http.listen",
            "providers[0].client_id",
            "providers[0].concurrency",
            "providers[0].interfaces[0].id",
        ] {
            assert!(got.contains(&want), "{want} missing from {got:?}");
        }
        let shown = e.to_string();
        assert!(
            shown.contains("providers[0].interfaces[0].id: interface 010o01-00"),
            "{shown}"
        );
    }

    #[test]
    fn old_keys_are_errors_naming_the_new_key() {
        let text = format!(
            "{MIN}\n[batch]\nmax_wait_ms = 200\n[nats]\ncreds_file = \"/x.creds\"\n[retry]\nconnect_alert_after = 3\n"
        )
        .replace("client_id = \"tax\"", "client_id = \"tax\"\ntimeout_ms = 5000\nconcurrency = 0");
        let e = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Load);
        let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        for want in [
            "batch.max_wait_ms: renamed to batch.max_wait (a duration string such as \"200ms\")",
            "nats.creds_file: renamed to nats.credentials_file",
            "providers[0].timeout_ms: renamed to providers[0].timeout (a duration string such as \"30s\")",
            "retry.connect_alert_after: removed",
            // Validation still runs: the other problems come in the same error.
            "providers[0].concurrency: must be 1..=64",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(want)),
                "{want} missing from {lines:#?}"
            );
        }
        // Every old key of the table is caught, also from the environment's nesting.
        for r in RENAMED {
            let (table, key) = r.old.rsplit_once('.').unwrap();
            let text = if table == "providers[]" {
                MIN.replace(
                    "client_id = \"tax\"",
                    &format!("client_id = \"tax\"\n{key} = 1"),
                )
            } else if table == "sink" {
                MIN.replace("dir = \"/tmp/x\"", &format!("dir = \"/tmp/x\"\n{key} = 1"))
            } else {
                format!("{MIN}\n[{table}]\n{key} = 1\n")
            };
            let e = Config::from_toml_str(&text).unwrap_err();
            let want = r.old.replace("[]", "[0]");
            assert_eq!(paths(&e), [want.as_str()], "{e}");
        }
    }

    #[test]
    fn dev_configs_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/dev");
        for (f, sub, providers) in [
            ("agent.toml", "tax", 1),
            ("agent-tax.toml", "tax", 1),
            ("agent-delinquency.toml", "delinquency", 2),
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(c.subscriber.as_str(), sub, "{f}");
            assert_eq!(c.providers.len(), providers, "{f}");
            assert_eq!(c.municipality.as_str(), "131016");
        }
    }

    #[test]
    fn interface_of_another_business_is_named() {
        let bad = MIN.replace("id = \"001o05-00\"", "id = \"010o01-00\"");
        assert_eq!(
            paths(&Config::from_toml_str(&bad).unwrap_err()),
            ["providers[0].interfaces[0].id"]
        );
    }

    #[test]
    fn min_interval_is_a_duration_of_an_interface() {
        let with = |v: &str| {
            MIN.replace(
                "version = \"1.0\"",
                &format!("version = \"1.0\"\nmin_interval = {v}"),
            )
        };
        let c = Config::from_toml_str(&with("\"10s\"")).unwrap();
        assert_eq!(
            c.providers[0].interfaces[0].min_interval,
            Some(Duration::from_secs(10))
        );
        for bad in ["\"0s\"", "\"2h\"", "\"ten seconds\""] {
            let e = Config::from_toml_str(&with(bad)).unwrap_err();
            assert_eq!(
                paths(&e),
                ["providers[0].interfaces[0].min_interval"],
                "{bad}"
            );
        }
    }

    #[test]
    fn range_errors_name_the_field() {
        let bad = format!("{MIN}\n[batch]\nsize = 0\n");
        // [batch] after [[providers.interfaces]] is a new table at top level.
        assert_eq!(
            paths(&Config::from_toml_str(&bad).unwrap_err()),
            ["batch.size"]
        );
        let bad = MIN.replace("http://127.0.0.1:9001/oauth/token", "ftp://x");
        assert_eq!(
            paths(&Config::from_toml_str(&bad).unwrap_err()),
            ["providers[0].token_url"]
        );
    }

    #[test]
    fn unknown_keys_and_bad_codes_name_the_key() {
        let bad = MIN.replace(
            "subscriber = \"tax\"",
            "subscriber = \"tax\"\nsubscribr = 1",
        ) + "\n[pull]\noverlapp = \"1s\"\n";
        let e = Config::from_toml_str(&bad).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Load);
        assert_eq!(paths(&e), ["pull.overlapp", "subscribr"]);
        let bad = MIN.replace("131016", "131017");
        let m = Config::from_toml_str(&bad).unwrap_err().to_string();
        assert!(m.contains("municipality"), "{m}");
    }

    #[test]
    // figment::Jail's closure error type is figment's (large) Error; not ours to box.
    #[allow(clippy::result_large_err)]
    fn env_overrides_use_the_agent_prefix_and_ignore_other_shirase_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("agent.toml", MIN)?;
            jail.set_env("SHIRASE_FOO", "1");
            jail.set_env("SHIRASE_LOG", "debug");
            jail.set_env("SHIRASE_LOG_FORMAT", "json");
            jail.set_env("SHIRASE_BATCH__SIZE", "7");
            jail.set_env("SHIRASE_AGENT__BATCH__SIZE", "250");
            jail.set_env("SHIRASE_AGENT__BATCH__MAX_WAIT", "300ms");
            let c = Config::load(Some(Path::new("agent.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                c.batch.size, 250,
                "SHIRASE_AGENT__BATCH__SIZE applies, SHIRASE_BATCH__SIZE does not"
            );
            assert_eq!(c.batch.max_wait, Duration::from_millis(300));
            // An unknown key under the agent prefix is still an error naming it.
            jail.set_env("SHIRASE_AGENT__BATCHH__SIZE", "1");
            let e = Config::load(Some(Path::new("agent.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("batchh"), "{e}");
            Ok(())
        });
    }
}
