//! Agent configuration: `agent.default.toml` (embedded, commented) → the user's file →
//! `SHIRASE_AGENT__*` environment variables, then validation with errors that name the field.
//!
//! The environment prefix is [`ENV_PREFIX`] (`SHIRASE_AGENT__`, with `__` separating nested
//! keys: `SHIRASE_AGENT__BATCH__SIZE=500`), not plain `SHIRASE_`: the agent often shares its
//! environment with `SHIRASE_LOG`, the relay's own variables or a wrapper's, and those must
//! not be read as agent settings (unknown keys are rejected).
//!
//! Durations are integers with their unit in the key name (`*_ms`, `*_secs`) so a TOML file
//! stays unambiguous without a duration syntax.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use shirase_proto::{BusinessId, InterfaceId, InterfaceVersion, MunicipalityCode, SubscriberId};
use shirase_pull::PullClientConfig;

/// Names of the PULL API query parameters (`[providers.params]`); defined by `shirase-pull`.
pub use shirase_pull::ParamNames;

/// Prefix of the environment variables that override the configuration.
pub const ENV_PREFIX: &str = "SHIRASE_AGENT__";

/// The embedded defaults, also shipped as documentation.
pub const DEFAULT_TOML: &str = include_str!("agent.default.toml");

/// Why a configuration could not be loaded. The message names the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be parsed into the schema.
    #[error("configuration: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent; `field` is its dotted path.
    #[error("configuration field `{field}`: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `providers[0].interfaces[1].id`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The whole agent configuration (one subscriber system).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

/// NATS connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs.
    pub urls: Vec<String>,
    /// Optional `.creds` file; empty = none.
    #[serde(default)]
    pub creds_file: String,
    /// Optional file holding this subscriber's NATS nkey seed (`SU...`); empty = none. Not
    /// together with `creds_file`.
    #[serde(default)]
    pub nkey_seed_file: String,
    /// CA certificate (PEM) that signed the servers' certificates; empty = system roots.
    #[serde(default)]
    pub tls_ca_file: String,
    /// Client certificate (PEM) for mutual TLS; needs `tls_key_file`.
    #[serde(default)]
    pub tls_cert_file: String,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: String,
    /// Refuse to talk to a server without TLS.
    #[serde(default)]
    pub tls_required: bool,
}

/// Batching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most notices per fetch.
    pub size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub max_wait_ms: u64,
}

/// Differential pull settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullConfig {
    /// Overlap subtracted from the checkpoint, in seconds.
    pub overlap_secs: u64,
    /// Deepest bisection of a window.
    pub bisect_max_depth: u32,
    /// Most notices planned into one window request (see agent.default.toml for why it is
    /// half the provider's row threshold).
    pub max_notices_per_window: usize,
    /// Shortest time between two re-reads of the overlap during a continuous run, seconds.
    pub overlap_reread_secs: u64,
}

/// Retry and backoff.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff, milliseconds.
    pub base_ms: u64,
    /// Backoff cap, milliseconds.
    pub max_ms: u64,
    /// Accepted for compatibility and unused: the operating-status alert is time-based
    /// ([`OutageConfig`]).
    pub connect_alert_after: u32,
}

/// `[sweep]`: differential pulls from the checkpoint on a schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Seconds between two sweeps of every interface; 0 = no scheduled sweep (gaps still
    /// trigger one).
    pub interval_secs: u64,
}

/// `[outage]`: when a failing provider becomes an operating-status alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageConfig {
    /// Continuous failure (outside maintenance windows) before the one alert, seconds.
    pub alert_after_secs: u64,
}

/// Coverage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageConfig {
    /// Nak delay of an uncovered notice, milliseconds.
    pub uncovered_retry_delay_ms: u64,
    /// Deliveries of an uncovered notice before alerting.
    pub uncovered_alert_after: u64,
}

/// Watchdog settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Pending but nothing delivered for this many seconds → alert.
    pub stalled_after_secs: u64,
}

/// Shutdown settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Grace period for in-flight work, milliseconds.
    pub grace_ms: u64,
}

/// HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`, or empty for none.
    #[serde(default)]
    pub listen: String,
    /// Server certificate chain (PEM); with `tls_key_file` the listener serves HTTPS only.
    /// Empty = plain HTTP.
    #[serde(default)]
    pub tls_cert_file: String,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: String,
}

impl HttpConfig {
    /// The HTTPS certificate and key, when both are set.
    pub fn tls(&self) -> Option<shirase_service::https::ServerTls> {
        (!self.tls_cert_file.is_empty() && !self.tls_key_file.is_empty()).then(|| {
            shirase_service::https::ServerTls {
                cert_file: self.tls_cert_file.clone().into(),
                key_file: self.tls_key_file.clone().into(),
                cert_field: "http.tls_cert_file",
                key_field: "http.tls_key_file",
            }
        })
    }
}

/// Where pulled rows go.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON Lines, one file per interface (`<dir>/<interface id>.jsonl`), fsync'd.
    File {
        /// Directory (created if missing).
        dir: PathBuf,
    },
    /// HTTP POST of each batch (JSON Lines body) to the consumer's import endpoint.
    Http {
        /// Endpoint URL.
        url: String,
        /// Request timeout, milliseconds.
        #[serde(default = "default_sink_timeout_ms")]
        timeout_ms: u64,
    },
    /// Runs `program args... <batch file>`; exit status 0 = accepted.
    Command {
        /// Program to run.
        program: PathBuf,
        /// Arguments placed before the batch file path.
        #[serde(default)]
        args: Vec<String>,
        /// Directory for batch files (a temp dir when empty).
        #[serde(default)]
        spool_dir: PathBuf,
    },
}

fn default_sink_timeout_ms() -> u64 {
    30_000
}

/// One provider's PULL API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Business id (業務ID) of the provider, e.g. `001`.
    pub business_id: BusinessId,
    /// Base URL; data requests go to `<base>/api/<interface id>`.
    pub pull_api_base_url: String,
    /// Token endpoint URL (also the `aud` of the client assertion).
    pub token_url: String,
    /// OAuth2 client id.
    pub client_id: String,
    /// File holding the client secret (trailing newline ignored).
    pub client_secret_file: PathBuf,
    /// Query parameter names.
    #[serde(default)]
    pub params: ParamNames,
    /// Client timeout per request, milliseconds (a little over the provider's 30 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Concurrent requests to this provider.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Requests per second to this provider (token requests included).
    #[serde(default = "default_rate")]
    pub rate_per_sec: f64,
    /// Interfaces read from this provider.
    #[serde(default)]
    pub interfaces: Vec<InterfaceConfig>,
    /// The provider's maintenance calendar (`[providers.maintenance]`, same format as the
    /// relay's); default: the standard's baseline `24:00-27:00` for every day type.
    #[serde(default)]
    pub maintenance: shirase_proto::maintenance::Config,
    /// Never send a request inside a window of `maintenance` (default `true`). `false` only
    /// for tests and drills; E0900 answers are honoured either way.
    #[serde(default = "default_true")]
    pub enforce_maintenance: bool,
}

fn default_true() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    35_000
}
fn default_concurrency() -> usize {
    2
}
fn default_rate() -> f64 {
    5.0
}

/// One interface read from a provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Interface id (連携ID).
    pub id: InterfaceId,
    /// Interface version (版数) this subscriber reads.
    pub version: InterfaceVersion,
    /// Use a keyed pull (by addressee number) when a batch names at most this many keys;
    /// 0 = never.
    #[serde(default)]
    pub keyed_pull_max_keys: usize,
}

/// The agent's PULL client settings of a provider: everything but the interfaces, limits and
/// maintenance calendar, which the agent applies itself.
impl From<&ProviderConfig> for PullClientConfig {
    fn from(p: &ProviderConfig) -> Self {
        Self {
            base_url: p.pull_api_base_url.clone(),
            token_url: p.token_url.clone(),
            client_id: p.client_id.clone(),
            client_secret_file: p.client_secret_file.clone(),
            client_secret_field: format!("providers[{}].client_secret_file", p.business_id),
            params: p.params.clone(),
            timeout: p.timeout(),
        }
    }
}

impl ProviderConfig {
    /// Client timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    /// The interface settings of `id`, if this subscriber reads it.
    pub fn interface(&self, id: &InterfaceId) -> Option<&InterfaceConfig> {
        self.interfaces.iter().find(|i| &i.id == id)
    }
}

impl Config {
    /// Load defaults → `file` (if given) → `SHIRASE_AGENT__*` env ([`ENV_PREFIX`]), then
    /// validate. Other `SHIRASE_*` variables are ignored.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::from_figment(fig)
    }

    /// Load defaults → the TOML text `user` (no environment), then validate. For tests and
    /// embedding.
    pub fn from_toml_str(user: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(user)))
    }

    fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let c: Config = fig.extract().map_err(|e| {
            // figment's error names the key path and the source (file/env) already.
            ConfigError::Parse(e.to_string())
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Range and cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nats.urls.is_empty() {
            return Err(ConfigError::invalid(
                "nats.urls",
                "give at least one server URL",
            ));
        }
        let n = &self.nats;
        if !n.creds_file.is_empty() && !n.nkey_seed_file.is_empty() {
            return Err(ConfigError::invalid(
                "nats.nkey_seed_file",
                "give either nats.creds_file or nats.nkey_seed_file, not both",
            ));
        }
        if n.tls_cert_file.is_empty() != n.tls_key_file.is_empty() {
            return Err(ConfigError::invalid(
                "nats.tls_key_file",
                "nats.tls_cert_file and nats.tls_key_file go together (client certificate and its key)",
            ));
        }
        for (name, f) in [
            ("nats.creds_file", &n.creds_file),
            ("nats.nkey_seed_file", &n.nkey_seed_file),
            ("nats.tls_ca_file", &n.tls_ca_file),
            ("nats.tls_cert_file", &n.tls_cert_file),
            ("nats.tls_key_file", &n.tls_key_file),
        ] {
            if !f.is_empty() && !Path::new(f).is_file() {
                return Err(ConfigError::invalid(
                    name,
                    format!("file {f} does not exist or is not a file"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.batch.size) {
            return Err(ConfigError::invalid("batch.size", "must be 1..=10000"));
        }
        if self.batch.max_wait_ms == 0 || self.batch.max_wait_ms > 60_000 {
            return Err(ConfigError::invalid(
                "batch.max_wait_ms",
                "must be 1..=60000",
            ));
        }
        if !(1..=1_000_000).contains(&self.pull.max_notices_per_window) {
            return Err(ConfigError::invalid(
                "pull.max_notices_per_window",
                "must be 1..=1000000 (about half the provider's row threshold)",
            ));
        }
        if self.pull.bisect_max_depth > 32 {
            return Err(ConfigError::invalid(
                "pull.bisect_max_depth",
                "must be 0..=32",
            ));
        }
        if self.retry.base_ms == 0 || self.retry.max_ms < self.retry.base_ms {
            return Err(ConfigError::invalid(
                "retry.max_ms",
                "retry.base_ms must be > 0 and retry.max_ms >= retry.base_ms",
            ));
        }
        if self.coverage.uncovered_retry_delay_ms == 0 {
            return Err(ConfigError::invalid(
                "coverage.uncovered_retry_delay_ms",
                "must be > 0",
            ));
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "http.listen",
                format!(
                    "must be host:port (e.g. 127.0.0.1:9464) or empty, got {:?}",
                    self.http.listen
                ),
            ));
        }
        let h = &self.http;
        if h.tls_cert_file.is_empty() != h.tls_key_file.is_empty() {
            let (field, other) = if h.tls_key_file.is_empty() {
                ("http.tls_key_file", "http.tls_cert_file")
            } else {
                ("http.tls_cert_file", "http.tls_key_file")
            };
            return Err(ConfigError::invalid(
                field,
                format!(
                    "required with {other}: http.tls_cert_file and http.tls_key_file go together (certificate chain and its private key, PEM)"
                ),
            ));
        }
        for (name, f) in [
            ("http.tls_cert_file", &h.tls_cert_file),
            ("http.tls_key_file", &h.tls_key_file),
        ] {
            if !f.is_empty() && !Path::new(f).is_file() {
                return Err(ConfigError::invalid(
                    name,
                    format!("file {f} does not exist or is not a file"),
                ));
            }
        }
        match &self.sink {
            SinkConfig::File { dir } if dir.as_os_str().is_empty() => {
                return Err(ConfigError::invalid(
                    "sink.dir",
                    "give the directory for the JSON Lines files",
                ));
            }
            SinkConfig::Http { url, .. }
                if !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                return Err(ConfigError::invalid(
                    "sink.url",
                    format!("must be an http(s) URL, got {url:?}"),
                ));
            }
            SinkConfig::Command { program, .. } if program.as_os_str().is_empty() => {
                return Err(ConfigError::invalid(
                    "sink.program",
                    "give the program to run",
                ));
            }
            _ => {}
        }
        if self.providers.is_empty() {
            return Err(ConfigError::invalid(
                "providers",
                "configure at least one [[providers]] entry",
            ));
        }
        for (pi, p) in self.providers.iter().enumerate() {
            let f = |name: &str| format!("providers[{pi}].{name}");
            if self.providers[..pi]
                .iter()
                .any(|q| q.business_id == p.business_id)
            {
                return Err(ConfigError::invalid(
                    f("business_id"),
                    format!("provider {} is configured twice", p.business_id),
                ));
            }
            for (name, url) in [
                ("pull_api_base_url", &p.pull_api_base_url),
                ("token_url", &p.token_url),
            ] {
                if reqwest::Url::parse(url)
                    .map(|u| !matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(true)
                {
                    return Err(ConfigError::invalid(
                        f(name),
                        format!("must be an http(s) URL, got {url:?}"),
                    ));
                }
            }
            if p.client_id.is_empty() {
                return Err(ConfigError::invalid(f("client_id"), "must not be empty"));
            }
            if p.client_secret_file.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    f("client_secret_file"),
                    "give the file holding the client secret",
                ));
            }
            if p.timeout_ms < 1000 {
                return Err(ConfigError::invalid(
                    f("timeout_ms"),
                    "must be at least 1000 (the provider answers within 30 s)",
                ));
            }
            if !(1..=64).contains(&p.concurrency) {
                return Err(ConfigError::invalid(f("concurrency"), "must be 1..=64"));
            }
            if !(p.rate_per_sec > 0.0 && p.rate_per_sec <= 1000.0) {
                return Err(ConfigError::invalid(
                    f("rate_per_sec"),
                    "must be > 0 and <= 1000",
                ));
            }
            for (name, v) in [
                ("params.updated_from", &p.params.updated_from),
                ("params.updated_to", &p.params.updated_to),
                ("params.atena_no", &p.params.atena_no),
            ] {
                if v.is_empty() {
                    return Err(ConfigError::invalid(f(name), "must not be empty"));
                }
            }
            if let Err(e) = shirase_proto::maintenance::Calendar::new(&p.maintenance) {
                return Err(ConfigError::invalid(
                    format!("providers[{pi}].maintenance.{}", e.field()),
                    e.to_string(),
                ));
            }
            if p.interfaces.is_empty() {
                return Err(ConfigError::invalid(
                    f("interfaces"),
                    "configure at least one [[providers.interfaces]] entry",
                ));
            }
            for (ii, i) in p.interfaces.iter().enumerate() {
                if i.id.business_id() != p.business_id {
                    return Err(ConfigError::invalid(
                        format!("providers[{pi}].interfaces[{ii}].id"),
                        format!(
                            "interface {} belongs to business {}, not to provider {}",
                            i.id,
                            i.id.business_id(),
                            p.business_id
                        ),
                    ));
                }
                if p.interfaces[..ii].iter().any(|j| j.id == i.id) {
                    return Err(ConfigError::invalid(
                        format!("providers[{pi}].interfaces[{ii}].id"),
                        format!("interface {} is listed twice", i.id),
                    ));
                }
                if i.keyed_pull_max_keys > shirase_proto::notice::MAX_KEYS * 10 {
                    return Err(ConfigError::invalid(
                        format!("providers[{pi}].interfaces[{ii}].keyed_pull_max_keys"),
                        "must be 0..=1000",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Shortest time between overlap re-reads: `pull.overlap_reread_secs`, at most half the
    /// overlap so that a late row is always caught by some re-read.
    pub fn overlap_reread(&self) -> Duration {
        Duration::from_secs(
            self.pull
                .overlap_reread_secs
                .min(self.pull.overlap_secs / 2),
        )
    }

    /// Overlap as a duration.
    pub fn overlap(&self) -> Duration {
        Duration::from_secs(self.pull.overlap_secs)
    }

    /// The HTTP listen address, if any.
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http.listen.parse().ok()
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
client_id = "tax"
client_secret_file = "/tmp/secret"
[[providers.interfaces]]
id = "001o05-00"
version = "1.0"
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::from_toml_str(MIN).unwrap();
        assert_eq!(c.subscriber.as_str(), "tax");
        assert_eq!(c.pull.overlap_secs, 600);
        assert_eq!(c.providers[0].timeout_ms, 35_000);
        assert_eq!(c.providers[0].concurrency, 2);
        assert_eq!(c.providers[0].rate_per_sec, 5.0);
        assert_eq!(c.providers[0].interfaces[0].keyed_pull_max_keys, 0);
        assert_eq!(c.providers[0].params, ParamNames::default());
        assert_eq!(
            c.sink,
            SinkConfig::File {
                dir: "/tmp/x".into()
            }
        );
    }

    #[test]
    fn pull_client_config_is_built_from_the_provider_section() {
        let c = Config::from_toml_str(MIN).unwrap();
        assert_eq!(
            PullClientConfig::from(&c.providers[0]),
            PullClientConfig {
                base_url: "http://127.0.0.1:9001".into(),
                token_url: "http://127.0.0.1:9001/oauth/token".into(),
                client_id: "tax".into(),
                client_secret_file: "/tmp/secret".into(),
                client_secret_field: "providers[001].client_secret_file".into(),
                params: ParamNames::default(),
                timeout: Duration::from_millis(35_000),
            }
        );
    }

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            ConfigError::Parse(m) => format!("parse: {m}"),
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
            field_of(Config::from_toml_str(&bad).unwrap_err()),
            "providers[0].interfaces[0].id"
        );
    }

    #[test]
    fn range_errors_name_the_field() {
        let bad = format!("{MIN}\n[batch]\nsize = 0\n");
        // [batch] after [[providers.interfaces]] is a new table at top level.
        assert_eq!(
            field_of(Config::from_toml_str(&bad).unwrap_err()),
            "batch.size"
        );
        let bad = MIN.replace(
            "client_id = \"tax\"",
            "client_id = \"tax\"\nconcurrency = 0",
        );
        assert_eq!(
            field_of(Config::from_toml_str(&bad).unwrap_err()),
            "providers[0].concurrency"
        );
        let bad = MIN.replace("http://127.0.0.1:9001/oauth/token", "ftp://x");
        assert_eq!(
            field_of(Config::from_toml_str(&bad).unwrap_err()),
            "providers[0].token_url"
        );
    }

    #[test]
    fn unknown_keys_and_bad_codes_are_parse_errors_naming_the_key() {
        let bad = MIN.replace(
            "subscriber = \"tax\"",
            "subscriber = \"tax\"\nsubscribr = 1",
        );
        let m = Config::from_toml_str(&bad).unwrap_err().to_string();
        assert!(m.contains("subscribr"), "{m}");
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
            let c = Config::load(Some(Path::new("agent.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                c.batch.size, 250,
                "SHIRASE_AGENT__BATCH__SIZE applies, SHIRASE_BATCH__SIZE does not"
            );
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
