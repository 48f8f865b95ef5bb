//! The relay's configuration: settings plus the topology (municipality, providers, interfaces,
//! subscribers).
//!
//! Layers, later ones winning: the commented `relay.default.toml` embedded in the binary → the
//! user's file → `SHIRASE_*` environment variables (`__` separates nested keys, e.g.
//! `SHIRASE_HTTP__LISTEN`). The merged text is deserialized into [`RawConfig`] and then
//! validated into [`Config`], whose fields are typed (`MunicipalityCode`, `InterfaceId`, ...).
//! Every problem is reported at once, each naming its field path (`providers[1].business_id`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shirase_proto::{BusinessId, InterfaceId, InterfaceVersion, MunicipalityCode, SubscriberId};

/// The defaults, checked in as `relay/relay.default.toml` and embedded here.
pub const DEFAULT_TOML: &str = include_str!("../relay.default.toml");

/// Top-level keys an environment variable may set. Other `SHIRASE_*` variables (the agent's,
/// `SHIRASE_LOG`) are ignored instead of failing the unknown-field check.
const ENV_KEYS: &[&str] = &[
    "municipality_code",
    "http",
    "nats",
    "stream",
    "nats_auth",
    "maintenance",
    "notifier",
];

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Field path, e.g. `providers[1].business_id`.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// What kind of configuration failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read or parsed, or a value has the wrong type.
    Load,
    /// The values parsed but break a rule.
    Invalid,
}

/// The configuration could not be loaded; every problem found is listed.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    /// The problems, each naming its field.
    pub problems: Vec<FieldProblem>,
}

impl ConfigError {
    /// Whether loading or validation failed.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    fn load(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ConfigErrorKind::Load,
            problems: vec![FieldProblem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid relay configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            if p.path.is_empty() {
                write!(f, "\n  - {}", p.message)?;
            } else {
                write!(f, "\n  - {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

/// The configuration as written (after layering), before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// 市区町村コード of the municipality this relay serves.
    #[serde(default)]
    pub municipality_code: Option<String>,
    /// HTTP settings.
    pub http: RawHttp,
    /// NATS connection settings.
    pub nats: RawNats,
    /// Stream settings.
    pub stream: RawStream,
    /// NATS authorization generation settings.
    #[serde(default)]
    pub nats_auth: RawNatsAuth,
    /// Maintenance scheduler settings.
    #[serde(default)]
    pub maintenance: crate::scheduler::RawSchedulerConfig,
    /// The error notification function (`[notifier]`).
    #[serde(default)]
    pub notifier: crate::notifier::RawNotifierConfig,
    /// Providers (提供側).
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Interfaces (連携ID) and their versions.
    #[serde(default)]
    pub interfaces: Vec<RawInterface>,
    /// Subscribers (利用側).
    #[serde(default)]
    pub subscribers: Vec<RawSubscriber>,
    /// Operator API credentials (`[[operators]]`, roles `operator` and `viewer`).
    #[serde(default)]
    pub operators: Vec<crate::operator::config::RawOperator>,
}

/// `[http]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Listen address.
    pub listen: String,
    /// Largest body.
    pub body_limit_bytes: usize,
    /// Most notices per batch.
    pub max_batch_notices: usize,
    /// Retry-After seconds on 503.
    pub retry_after_secs: u64,
    /// Server certificate chain (PEM): set with `tls_key_file` to serve HTTPS only.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// `[nats]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Server URLs.
    pub urls: Vec<String>,
    /// Optional `.creds` file.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Optional nkey seed file.
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the servers' certificates.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// PubAck timeout.
    pub publish_timeout: String,
    /// Attempts per notice.
    pub publish_attempts: u32,
    /// Try each HTTP batch as one JetStream atomic batch.
    pub atomic_batches: bool,
    /// Notices awaiting a PubAck at once, across all requests.
    pub max_notices_in_flight: usize,
}

/// `[stream]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    /// Replicas.
    pub replicas: usize,
    /// Notice retention.
    pub max_age: String,
    /// Dedup window.
    pub duplicate_window: String,
    /// `file` or `memory`.
    pub storage: String,
    /// DLQ retention.
    pub dlq_max_age: String,
    /// Alert retention.
    pub alert_max_age: String,
    /// Checkpoint history.
    pub checkpoint_history: i64,
}

/// `[nats_auth]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNatsAuth {
    /// Public nkey of the relay/operator identity.
    #[serde(default)]
    pub relay_nkey: Option<String>,
}

/// `[[providers]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// 業務ID.
    pub business_id: String,
    /// Human name.
    pub name: String,
    /// Base URL of its PULL API.
    pub pull_api_base_url: String,
    /// Bearer credentials for HTTP ingest (optional for a watched provider).
    #[serde(default)]
    pub credentials: RawCredentials,
    /// Public nkey for direct NATS publishing (optional).
    #[serde(default)]
    pub nats_nkey: Option<String>,
    /// Maintenance calendar (`[providers.maintenance]`, [`shirase_proto::maintenance::Config`]);
    /// absent = the standard's baseline. Validated into [`Provider::maintenance`].
    #[serde(default)]
    pub maintenance: Option<serde_json::Value>,
    /// `[providers.watch]`: the provider cannot publish notices yet; the watcher polls it.
    #[serde(default)]
    pub watch: Option<crate::watcher::config::RawWatch>,
}

/// A provider's credentials reference.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// Hex SHA-256 digests of accepted bearer tokens (production: no secret in the file).
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// A file holding one plain token (dev); relative paths are relative to the config file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// `[[interfaces]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterface {
    /// 連携ID.
    pub id: String,
    /// 版数.
    pub version: String,
    /// Providing business id.
    pub provider: String,
}

/// `[[subscribers]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscriber {
    /// Subscriber id.
    pub id: String,
    /// Interfaces it reads.
    pub interfaces: Vec<String>,
    /// Consumer ack wait.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: String,
    /// Consumer max deliveries before the agent dead-letters.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    /// Consumer max unacked notices.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
    /// Public nkey of the subscriber's agent (optional).
    #[serde(default)]
    pub nats_nkey: Option<String>,
}

fn default_ack_wait() -> String {
    "60s".to_owned()
}
fn default_max_deliver() -> i64 {
    20
}
fn default_max_ack_pending() -> i64 {
    1000
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The municipality this relay serves.
    pub municipality: MunicipalityCode,
    /// HTTP settings.
    pub http: HttpConfig,
    /// NATS connection settings.
    pub nats: NatsConfig,
    /// Stream settings.
    pub stream: StreamConfig,
    /// Public nkey of the relay identity, for `--emit-nats-auth`.
    pub relay_nkey: Option<String>,
    /// The maintenance scheduler.
    pub maintenance: crate::scheduler::SchedulerConfig,
    /// The error notification function.
    pub notifier: crate::notifier::NotifierConfig,
    /// Providers.
    pub providers: Vec<Provider>,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Subscribers.
    pub subscribers: Vec<Subscriber>,
    /// Operators of the operator API.
    pub operators: Vec<crate::operator::config::Operator>,
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest body in bytes.
    pub body_limit_bytes: usize,
    /// Most notices per batch.
    pub max_batch_notices: usize,
    /// Retry-After on 503.
    pub retry_after: Duration,
    /// Certificate and key of the HTTPS listener; `None` = plain HTTP. The files are read when
    /// `serve` starts (errors there name `http.tls_cert_file` / `http.tls_key_file`).
    pub tls: Option<shirase_service::https::ServerTls>,
}

/// Validated `[nats]`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs.
    pub urls: Vec<String>,
    /// `.creds` file.
    pub credentials_file: Option<PathBuf>,
    /// nkey seed file.
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted for the servers' certificates; `None` = system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (always together with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub tls_required: bool,
    /// PubAck timeout per attempt.
    pub publish_timeout: Duration,
    /// Attempts per notice.
    pub publish_attempts: u32,
    /// Try each HTTP batch as one JetStream atomic batch (ADR-50) before falling back to
    /// per-notice publishing; provisioning then sets `allow_atomic` on the notice stream.
    pub atomic_batches: bool,
    /// Notices awaiting a PubAck at once, across all requests; a batch waits for room for
    /// all its notices before it sends any.
    pub max_notices_in_flight: usize,
}

/// Storage of the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Files (durable).
    File,
    /// Memory (tests).
    Memory,
}

/// Validated `[stream]`.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Replicas.
    pub replicas: usize,
    /// Notice retention.
    pub max_age: Duration,
    /// Dedup window.
    pub duplicate_window: Duration,
    /// Storage.
    pub storage: Storage,
    /// DLQ retention.
    pub dlq_max_age: Duration,
    /// Alert retention.
    pub alert_max_age: Duration,
    /// Checkpoint history.
    pub checkpoint_history: i64,
}

/// A provider (提供側業務システム).
#[derive(Clone)]
pub struct Provider {
    /// 業務ID.
    pub business_id: BusinessId,
    /// Human name.
    pub name: String,
    /// PULL API base URL.
    pub pull_api_base_url: String,
    /// SHA-256 digests of accepted bearer tokens.
    pub token_hashes: Vec<[u8; 32]>,
    /// Public nkey for direct NATS publishing.
    pub nats_nkey: Option<String>,
    /// The validated maintenance calendar (the baseline 24:00-27:00 when none is configured).
    pub maintenance: shirase_proto::maintenance::Calendar,
    /// Watched provider: the watcher's settings (its `interfaces` resolved).
    pub watch: Option<crate::watcher::config::WatchConfig>,
}

impl fmt::Debug for Provider {
    // Token digests stay out of logs and debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("business_id", &self.business_id)
            .field("name", &self.name)
            .field("pull_api_base_url", &self.pull_api_base_url)
            .field(
                "token_hashes",
                &format_args!("[{} digest(s)]", self.token_hashes.len()),
            )
            .field("nats_nkey", &self.nats_nkey)
            .finish()
    }
}

/// An interface (連携ID) at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// 連携ID.
    pub id: InterfaceId,
    /// 版数.
    pub version: InterfaceVersion,
    /// Providing business.
    pub provider: BusinessId,
}

/// A subscriber (利用側) and its consumer settings.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Id.
    pub id: SubscriberId,
    /// Interfaces it reads.
    pub interfaces: Vec<InterfaceId>,
    /// Ack wait of its consumers.
    pub ack_wait: Duration,
    /// Max deliveries.
    pub max_deliver: i64,
    /// Max unacked.
    pub max_ack_pending: i64,
    /// Public nkey of its agent.
    pub nats_nkey: Option<String>,
}

impl Config {
    /// Load the defaults, then `file` (if any), then `SHIRASE_*` variables, and validate.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::load(
                    "",
                    format!("config file {} does not exist", f.display()),
                ));
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(Env::prefixed("SHIRASE_").split("__").filter(|k| {
            ENV_KEYS
                .iter()
                .any(|top| k.as_str().to_ascii_lowercase().starts_with(top))
        }));
        Self::from_figment(fig, file.and_then(Path::parent))
    }

    /// Load from TOML text layered on the defaults (no file, no environment). For tests and tools.
    pub fn from_toml_str(text: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let fig = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(text));
        Self::from_figment(fig, base_dir)
    }

    fn from_figment(fig: Figment, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let raw: RawConfig = fig.extract().map_err(|e| {
            let problems = e
                .into_iter()
                .map(|e| FieldProblem {
                    path: e.path.join("."),
                    message: e.kind.to_string(),
                })
                .collect();
            ConfigError {
                kind: ConfigErrorKind::Load,
                problems,
            }
        })?;
        validate(raw, base_dir)
    }

    /// The provider with this business id.
    pub fn provider(&self, b: &BusinessId) -> Option<&Provider> {
        self.providers.iter().find(|p| &p.business_id == b)
    }

    /// Whether `interface` at `version` is in the topology.
    pub fn interface(&self, id: &InterfaceId) -> impl Iterator<Item = &Interface> {
        self.interfaces.iter().filter(move |i| &i.id == id)
    }
}

/// Parse a friendly duration (`"30s"`, `"2h"`, `"14d"`, `"1h 30m"`); days are 24 hours.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. \"30s\", \"2h\", \"14d\""))?;
    let sd = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from(sd).map_err(|_| format!("{s:?} must not be negative"))
}

struct Problems(Vec<FieldProblem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldProblem {
            path: path.into(),
            message: message.into(),
        });
    }
    fn parse<T: std::str::FromStr>(&mut self, path: &str, value: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        match value.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }
    fn duration(&mut self, path: &str, value: &str) -> Duration {
        parse_duration(value).unwrap_or_else(|e| {
            self.push(path, e);
            Duration::ZERO
        })
    }
}

/// `providers[i].watch.interfaces`: as listed (each must be one of the provider's
/// `[[interfaces]]`), or all of the provider's interfaces when the list is empty.
fn resolve_watched_interfaces(
    raw: &RawConfig,
    providers: &mut [Provider],
    interfaces: &[Interface],
    p: &mut Problems,
) {
    for (i, rp) in raw.providers.iter().enumerate() {
        let Some(rw) = &rp.watch else { continue };
        let Some(pr) = providers
            .iter_mut()
            .find(|pr| pr.business_id.to_string() == rp.business_id)
        else {
            continue;
        };
        let Some(w) = pr.watch.as_mut() else { continue };
        let own: Vec<InterfaceId> = interfaces
            .iter()
            .filter(|x| x.provider == pr.business_id)
            .map(|x| x.id)
            .collect();
        if rw.interfaces.is_empty() {
            w.interfaces = own.clone();
            w.interfaces.dedup();
        }
        for (j, s) in rw.interfaces.iter().enumerate() {
            let path = format!("providers[{i}].watch.interfaces[{j}]");
            if let Some(id) = p.parse::<InterfaceId>(&path, s) {
                if !own.contains(&id) {
                    p.push(
                        path,
                        format!(
                            "interface {id} is not one of provider {}'s [[interfaces]]",
                            pr.business_id
                        ),
                    );
                } else if !w.interfaces.contains(&id) {
                    w.interfaces.push(id);
                }
            }
        }
        if w.interfaces.is_empty() && rw.interfaces.is_empty() {
            p.push(
                format!("providers[{i}].watch"),
                format!("provider {} has no [[interfaces]] to watch", pr.business_id),
            );
        }
    }
}

fn validate(raw: RawConfig, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    let municipality = match &raw.municipality_code {
        Some(m) => p.parse::<MunicipalityCode>("municipality_code", m),
        None => {
            p.push(
                "municipality_code",
                "required: the 6-digit code of the municipality (e.g. 131016)",
            );
            None
        }
    };

    let listen = raw.http.listen.parse::<SocketAddr>().ok();
    if listen.is_none() {
        p.push(
            "http.listen",
            format!(
                "{:?} is not an address:port (e.g. 127.0.0.1:8080)",
                raw.http.listen
            ),
        );
    }
    if raw.http.body_limit_bytes < 1024 {
        p.push("http.body_limit_bytes", "must be at least 1024");
    }
    let http_tls = match (&raw.http.tls_cert_file, &raw.http.tls_key_file) {
        (Some(cert), Some(key)) => Some(shirase_service::https::ServerTls {
            cert_file: rebase(cert.clone(), base_dir),
            key_file: rebase(key.clone(), base_dir),
            cert_field: "http.tls_cert_file",
            key_field: "http.tls_key_file",
        }),
        (None, None) => None,
        (Some(_), None) => {
            p.push(
                "http.tls_key_file",
                "required with http.tls_cert_file: the private key (PEM) of the certificate",
            );
            None
        }
        (None, Some(_)) => {
            p.push(
                "http.tls_cert_file",
                "required with http.tls_key_file: the certificate chain (PEM) of the key",
            );
            None
        }
    };
    if raw.http.max_batch_notices == 0 || raw.http.max_batch_notices > 1000 {
        p.push(
            "http.max_batch_notices",
            "must be between 1 and 1000 (the protocol's batch limit)",
        );
    }

    if raw.nats.urls.is_empty() {
        p.push("nats.urls", "at least one NATS server URL is required");
    }
    for (i, u) in raw.nats.urls.iter().enumerate() {
        if u.parse::<async_nats::ServerAddr>().is_err() {
            p.push(
                format!("nats.urls[{i}]"),
                format!("{u:?} is not a NATS URL (e.g. nats://127.0.0.1:4222)"),
            );
        }
    }
    let publish_timeout = p.duration("nats.publish_timeout", &raw.nats.publish_timeout);
    if raw.nats.publish_attempts == 0 || raw.nats.publish_attempts > 20 {
        p.push("nats.publish_attempts", "must be between 1 and 20");
    }
    if raw.nats.max_notices_in_flight < raw.http.max_batch_notices
        || raw.nats.max_notices_in_flight > 100_000
    {
        p.push(
            "nats.max_notices_in_flight",
            format!(
                "must be between http.max_batch_notices ({}) and 100000, got {}",
                raw.http.max_batch_notices, raw.nats.max_notices_in_flight
            ),
        );
    }
    if raw.nats.credentials_file.is_some() && raw.nats.nkey_seed_file.is_some() {
        p.push(
            "nats.nkey_seed_file",
            "give either nats.credentials_file or nats.nkey_seed_file, not both",
        );
    }
    if raw.nats.tls_cert_file.is_some() != raw.nats.tls_key_file.is_some() {
        p.push(
            "nats.tls_key_file",
            "nats.tls_cert_file and nats.tls_key_file go together (client certificate and its key)",
        );
    }
    // The files themselves are read when connecting (a container mounts them at run time, so
    // a configuration check on another host must not require them); errors there name the field.

    if !(1..=5).contains(&raw.stream.replicas) {
        p.push(
            "stream.replicas",
            "must be 1 to 5 (1 for dev, 3 or 5 in a cluster)",
        );
    }
    let max_age = p.duration("stream.max_age", &raw.stream.max_age);
    let duplicate_window = p.duration("stream.duplicate_window", &raw.stream.duplicate_window);
    if duplicate_window > max_age {
        p.push(
            "stream.duplicate_window",
            "must not be longer than stream.max_age",
        );
    }
    if duplicate_window < Duration::from_secs(60) {
        p.push(
            "stream.duplicate_window",
            "must be at least 1m so a provider's retry is de-duplicated",
        );
    }
    let storage = match raw.stream.storage.as_str() {
        "file" => Storage::File,
        "memory" => Storage::Memory,
        other => {
            p.push(
                "stream.storage",
                format!("must be \"file\" or \"memory\", got {other:?}"),
            );
            Storage::File
        }
    };
    let dlq_max_age = p.duration("stream.dlq_max_age", &raw.stream.dlq_max_age);
    let alert_max_age = p.duration("stream.alert_max_age", &raw.stream.alert_max_age);
    if !(1..=64).contains(&raw.stream.checkpoint_history) {
        p.push("stream.checkpoint_history", "must be 1 to 64");
    }
    if let Some(k) = &raw.nats_auth.relay_nkey {
        check_nkey(&mut p, "nats_auth.relay_nkey", k);
    }

    let mut providers = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, rp) in raw.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        let b = p.parse::<BusinessId>(&format!("{path}.business_id"), &rp.business_id);
        if let Some(b) = b
            && !seen.insert(b)
        {
            p.push(
                format!("{path}.business_id"),
                format!("provider {b} is listed twice"),
            );
        }
        if rp.name.trim().is_empty() {
            p.push(format!("{path}.name"), "must not be empty");
        }
        if !(rp.pull_api_base_url.starts_with("http://")
            || rp.pull_api_base_url.starts_with("https://"))
        {
            p.push(
                format!("{path}.pull_api_base_url"),
                "must be an http:// or https:// URL",
            );
        }
        let mut token_hashes = Vec::new();
        for (j, h) in rp.credentials.token_sha256.iter().enumerate() {
            match hex::decode(h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
            {
                Some(d) => token_hashes.push(d),
                None => p.push(
                    format!("{path}.credentials.token_sha256[{j}]"),
                    "must be 64 hex digits (sha256sum of the token)",
                ),
            }
        }
        if let Some(f) = &rp.credentials.token_file {
            let full = match base_dir {
                Some(d) if f.is_relative() => d.join(f),
                _ => f.clone(),
            };
            match std::fs::read_to_string(&full) {
                Ok(text) => match token_from_file(&text) {
                    Some(t) => token_hashes.push(token_digest(t)),
                    None => p.push(
                        format!("{path}.credentials.token_file"),
                        format!(
                            "{} holds no token (one line, at least 16 characters)",
                            full.display()
                        ),
                    ),
                },
                Err(e) => p.push(
                    format!("{path}.credentials.token_file"),
                    format!("cannot read {}: {e}", full.display()),
                ),
            }
        }
        if token_hashes.is_empty() && rp.watch.is_none() {
            p.push(
                format!("{path}.credentials"),
                "set token_sha256 (list of hex digests) or token_file (or watch, for a provider that cannot publish notices yet)",
            );
        }
        if let Some(k) = &rp.nats_nkey {
            check_nkey(&mut p, &format!("{path}.nats_nkey"), k);
        }
        let calendar = match rp
            .maintenance
            .clone()
            .map(serde_json::from_value::<shirase_proto::maintenance::Config>)
        {
            None => shirase_proto::maintenance::Calendar::new(&Default::default())
                .map_err(|e| (e.field().to_owned(), e.to_string())),
            Some(Ok(c)) => shirase_proto::maintenance::Calendar::new(&c)
                .map_err(|e| (e.field().to_owned(), e.to_string())),
            Some(Err(e)) => Err((String::new(), e.to_string())),
        };
        let calendar = match calendar {
            Ok(c) => Some(c),
            Err((field, message)) => {
                let at = if field.is_empty() {
                    format!("{path}.maintenance")
                } else {
                    format!("{path}.maintenance.{field}")
                };
                p.push(at, message);
                None
            }
        };
        let watch = rp.watch.as_ref().and_then(|w| {
            crate::watcher::config::WatchConfig::validate(
                w,
                &format!("{path}.watch"),
                base_dir,
                &mut |f, m| p.push(f, m),
            )
        });
        if let (Some(business_id), Some(calendar)) = (b, calendar) {
            providers.push(Provider {
                business_id,
                name: rp.name.clone(),
                pull_api_base_url: rp.pull_api_base_url.clone(),
                token_hashes,
                nats_nkey: rp.nats_nkey.clone(),
                maintenance: calendar,
                watch,
            });
        }
    }
    if raw.providers.is_empty() {
        p.push("providers", "at least one provider is required");
    }
    let maintenance =
        crate::scheduler::SchedulerConfig::validate(&raw.maintenance, &mut |path, msg| {
            p.push(path, msg)
        });
    let notifier =
        crate::notifier::NotifierConfig::validate(&raw.notifier, base_dir, &mut |path, msg| {
            p.push(path, msg)
        });

    let mut interfaces: Vec<Interface> = Vec::new();
    for (i, ri) in raw.interfaces.iter().enumerate() {
        let path = format!("interfaces[{i}]");
        let id = p.parse::<InterfaceId>(&format!("{path}.id"), &ri.id);
        let version = p.parse::<InterfaceVersion>(&format!("{path}.version"), &ri.version);
        let provider = p.parse::<BusinessId>(&format!("{path}.provider"), &ri.provider);
        if let (Some(id), Some(version), Some(provider)) = (id, version, provider) {
            if id.business_id() != provider {
                p.push(
                    format!("{path}.provider"),
                    format!(
                        "interface {id} belongs to business {}, not {provider}",
                        id.business_id()
                    ),
                );
            } else if !providers.iter().any(|pr| pr.business_id == provider) {
                p.push(
                    format!("{path}.provider"),
                    format!("no provider with business_id {provider} is configured"),
                );
            }
            if interfaces
                .iter()
                .any(|x| x.id == id && x.version == version)
            {
                p.push(
                    path.clone(),
                    format!("interface {id} version {version} is listed twice"),
                );
            }
            interfaces.push(Interface {
                id,
                version,
                provider,
            });
        }
    }

    resolve_watched_interfaces(&raw, &mut providers, &interfaces, &mut p);

    let mut subscribers: Vec<Subscriber> = Vec::new();
    for (i, rs) in raw.subscribers.iter().enumerate() {
        let path = format!("subscribers[{i}]");
        let id = p.parse::<SubscriberId>(&format!("{path}.id"), &rs.id);
        if let Some(id) = &id
            && subscribers.iter().any(|s| &s.id == id)
        {
            p.push(
                format!("{path}.id"),
                format!("subscriber {id} is listed twice"),
            );
        }
        let mut ifs = Vec::new();
        if rs.interfaces.is_empty() {
            p.push(
                format!("{path}.interfaces"),
                "list at least one interface id",
            );
        }
        for (j, s) in rs.interfaces.iter().enumerate() {
            let ipath = format!("{path}.interfaces[{j}]");
            if let Some(iid) = p.parse::<InterfaceId>(&ipath, s) {
                if !interfaces.iter().any(|x| x.id == iid) {
                    p.push(&ipath, format!("interface {iid} is not in [[interfaces]]"));
                } else if !ifs.contains(&iid) {
                    ifs.push(iid);
                }
            }
        }
        let ack_wait = p.duration(&format!("{path}.ack_wait"), &rs.ack_wait);
        if ack_wait < Duration::from_secs(1) {
            p.push(format!("{path}.ack_wait"), "must be at least 1s");
        }
        if rs.max_deliver < 1 && rs.max_deliver != -1 {
            p.push(
                format!("{path}.max_deliver"),
                "must be at least 1 (or -1 for unlimited)",
            );
        }
        if rs.max_ack_pending < 1 {
            p.push(format!("{path}.max_ack_pending"), "must be at least 1");
        }
        if let Some(k) = &rs.nats_nkey {
            check_nkey(&mut p, &format!("{path}.nats_nkey"), k);
        }
        if let Some(id) = id {
            subscribers.push(Subscriber {
                id,
                interfaces: ifs,
                ack_wait,
                max_deliver: rs.max_deliver,
                max_ack_pending: rs.max_ack_pending,
                nats_nkey: rs.nats_nkey.clone(),
            });
        }
    }

    let (operators, operator_problems) =
        crate::operator::config::validate(&raw.operators, base_dir);
    p.0.extend(operator_problems);

    match (municipality, listen) {
        (Some(municipality), Some(listen)) if p.0.is_empty() => Ok(Config {
            municipality,
            http: HttpConfig {
                listen,
                body_limit_bytes: raw.http.body_limit_bytes,
                max_batch_notices: raw.http.max_batch_notices,
                retry_after: Duration::from_secs(raw.http.retry_after_secs),
                tls: http_tls,
            },
            nats: NatsConfig {
                urls: raw.nats.urls,
                credentials_file: raw.nats.credentials_file.map(|f| rebase(f, base_dir)),
                nkey_seed_file: raw.nats.nkey_seed_file.map(|f| rebase(f, base_dir)),
                tls_ca_file: raw.nats.tls_ca_file.map(|f| rebase(f, base_dir)),
                tls_cert_file: raw.nats.tls_cert_file.map(|f| rebase(f, base_dir)),
                tls_key_file: raw.nats.tls_key_file.map(|f| rebase(f, base_dir)),
                tls_required: raw.nats.tls_required,
                publish_timeout,
                publish_attempts: raw.nats.publish_attempts,
                atomic_batches: raw.nats.atomic_batches,
                max_notices_in_flight: raw.nats.max_notices_in_flight,
            },
            stream: StreamConfig {
                replicas: raw.stream.replicas,
                max_age,
                duplicate_window,
                storage,
                dlq_max_age,
                alert_max_age,
                checkpoint_history: raw.stream.checkpoint_history,
            },
            relay_nkey: raw.nats_auth.relay_nkey,
            maintenance,
            notifier,
            providers,
            interfaces,
            subscribers,
            operators,
        }),
        _ => Err(ConfigError {
            kind: ConfigErrorKind::Invalid,
            problems: p.0,
        }),
    }
}

fn rebase(f: PathBuf, base_dir: Option<&Path>) -> PathBuf {
    match base_dir {
        Some(d) if f.is_relative() => d.join(f),
        _ => f,
    }
}

fn check_nkey(p: &mut Problems, path: &str, k: &str) {
    let ok = k.len() == 56
        && k.starts_with('U')
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    if !ok {
        p.push(path, "must be a public user nkey (56 characters starting with U, from `nk -gen user -pubout`)");
    }
}

/// The token in a dev token file: the first line that is not empty and not a `#` comment.
fn token_from_file(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|t| t.len() >= 16)
}

/// SHA-256 of a bearer token, the form credentials are stored and compared in.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
municipality_code = "131016"
[[providers]]
business_id = "001"
name = "resident registry"
pull_api_base_url = "http://127.0.0.1:9000"
credentials = { token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"] }
[[interfaces]]
id = "001o05-00"
version = "1.0"
provider = "001"
[[subscribers]]
id = "tax"
interfaces = ["001o05-00"]
"#;

    #[test]
    fn defaults_apply_and_durations_parse() {
        let c = Config::from_toml_str(MINIMAL, None).unwrap();
        assert_eq!(c.stream.max_age, Duration::from_secs(14 * 86_400));
        assert_eq!(c.stream.duplicate_window, Duration::from_secs(7_200));
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.subscribers[0].ack_wait, Duration::from_secs(60));
        assert_eq!(c.stream.storage, Storage::File);
    }

    #[test]
    fn errors_name_the_field_path() {
        let text = MINIMAL.replace("business_id = \"001\"", "business_id = \"01\"")
            + "\n[[providers]]\nbusiness_id = \"0x0\"\nname = \"\"\npull_api_base_url = \"ftp://x\"\ncredentials = {}\n";
        let e = Config::from_toml_str(&text, None).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Invalid);
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "providers[0].business_id",
            "providers[1].business_id",
            "providers[1].name",
            "providers[1].pull_api_base_url",
            "providers[1].credentials",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert!(e.to_string().contains("providers[1].business_id"));
    }

    #[test]
    fn notices_in_flight_must_hold_at_least_one_full_batch() {
        let c = Config::from_toml_str(MINIMAL, None).unwrap();
        assert_eq!(c.nats.max_notices_in_flight, 5000);
        let text = format!("{MINIMAL}\n[nats]\nmax_notices_in_flight = 999\n");
        let e = Config::from_toml_str(&text, None).unwrap_err();
        let p = &e.problems[0];
        assert_eq!(p.path, "nats.max_notices_in_flight");
        assert!(
            p.message.contains("http.max_batch_notices (1000)"),
            "{}",
            p.message
        );
    }

    /// MINIMAL with provider 001 watched (and without ingest credentials), `watch` extra lines.
    fn watched(dir: &Path, watch: &str) -> String {
        std::fs::write(dir.join("w.secret"), "s3cret\n").unwrap();
        MINIMAL.replace(
            "credentials = { token_sha256 = [\"0000000000000000000000000000000000000000000000000000000000000000\"] }",
            &format!(
                "[providers.watch]\ntoken_url = \"http://127.0.0.1:9000/oauth/token\"\nclient_id = \"shirase-watcher\"\nclient_secret_file = \"w.secret\"\n{watch}"
            ),
        )
    }

    #[test]
    fn a_watched_provider_needs_no_ingest_credentials_and_watches_its_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let text = watched(dir.path(), "until = \"2026-12-01T00:00:00+09:00\"\n");
        let c = Config::from_toml_str(&text, Some(dir.path())).unwrap();
        let w = c.providers[0].watch.as_ref().unwrap();
        assert_eq!(
            w.interfaces,
            vec!["001o05-00".parse::<InterfaceId>().unwrap()]
        );
        assert_eq!(w.interval, Duration::from_secs(60));
        assert_eq!(w.min_interval, Duration::from_secs(15));
        assert_eq!(w.client_secret_file, dir.path().join("w.secret"));
        let until: jiff::Timestamp = "2026-11-30T15:00:00Z".parse().unwrap();
        assert_eq!(w.until, Some(until));
        assert!(w.covers(until - jiff::SignedDuration::from_millis(1)));
        assert!(
            !w.covers(until),
            "from until on the provider's own notices count"
        );
    }

    #[test]
    fn watch_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = watched(
            dir.path(),
            "interval = \"5s\"\nmin_interval = \"10s\"\nmax_keys_per_notice = 500\nuntil = \"2026-12-01T00:00:00\"\ninterfaces = [\"010o01-00\"]\n",
        )
        .replace("client_id = \"shirase-watcher\"", "client_id = \"\"");
        let e = Config::from_toml_str(&text, Some(dir.path())).unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "providers[0].watch.client_id",
            "providers[0].watch.interval",
            "providers[0].watch.max_keys_per_notice",
            "providers[0].watch.until",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert!(paths.len() == 4, "{paths:?}");
        std::fs::remove_file(dir.path().join("w.secret")).unwrap();
        let e = Config::from_toml_str(&text, Some(dir.path())).unwrap_err();
        assert!(
            e.problems
                .iter()
                .any(|p| p.path == "providers[0].watch.client_secret_file"),
            "{e}"
        );
        let text = watched(dir.path(), "interfaces = [\"010o01-00\"]\n");
        let e = Config::from_toml_str(&text, Some(dir.path())).unwrap_err();
        assert_eq!(e.problems[0].path, "providers[0].watch.interfaces[0]");
        assert!(
            e.problems[0].message.contains("not one of provider 001"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        let e = Config::from_toml_str(&format!("{MINIMAL}\n[stream]\nmax_agee = \"1d\"\n"), None)
            .unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Load);
        assert!(e.to_string().contains("max_agee"), "{e}");
        let e = Config::from_toml_str(
            &format!("{MINIMAL}\n[stream]\nduplicate_window = \"soon\"\n"),
            None,
        )
        .unwrap_err();
        assert_eq!(e.problems[0].path, "stream.duplicate_window");
    }

    #[test]
    fn layers_are_defaults_then_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "relay.toml",
                &format!("{MINIMAL}\n[http]\nlisten = \"127.0.0.1:9000\"\nretry_after_secs = 7\n"),
            )?;
            jail.set_env("SHIRASE_HTTP__LISTEN", "127.0.0.1:9999");
            jail.set_env("SHIRASE_STREAM__MAX_AGE", "3d");
            // Unrelated SHIRASE_* variables (the agent's, the log filter) are not config errors.
            jail.set_env("SHIRASE_LOG", "debug");
            let c = Config::load(Some(Path::new("relay.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                c.http.listen.to_string(),
                "127.0.0.1:9999",
                "env beats the file"
            );
            assert_eq!(
                c.http.retry_after,
                Duration::from_secs(7),
                "the file beats the defaults"
            );
            assert_eq!(c.stream.max_age, Duration::from_secs(3 * 86_400));
            assert_eq!(
                c.stream.duplicate_window,
                Duration::from_secs(7_200),
                "defaults fill the rest"
            );
            jail.set_env("SHIRASE_HTTP__BODY_LIMIT_BYTES", "12");
            let e = Config::load(Some(Path::new("relay.toml"))).unwrap_err();
            assert_eq!(e.problems[0].path, "http.body_limit_bytes");
            Ok(())
        });
    }

    #[test]
    fn token_files_are_read_relative_to_the_config_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.token"),
            "# DEV ONLY\nabcdefghijklmnop-dev-token\n",
        )
        .unwrap();
        let text = MINIMAL.replace(
            "credentials = { token_sha256 = [\"0000000000000000000000000000000000000000000000000000000000000000\"] }",
            "credentials = { token_file = \"p.token\" }",
        );
        let c = Config::from_toml_str(&text, Some(dir.path())).unwrap();
        assert_eq!(
            c.providers[0].token_hashes,
            vec![token_digest("abcdefghijklmnop-dev-token")]
        );
        assert!(!format!("{:?}", c.providers[0]).contains("abcdefghijklmnop"));
        let e = Config::from_toml_str(&text, Some(Path::new("/nonexistent"))).unwrap_err();
        assert_eq!(e.problems[0].path, "providers[0].credentials.token_file");
    }

    #[test]
    fn https_needs_both_files_relative_to_the_config() {
        let c = Config::from_toml_str(
            &format!(
                "{MINIMAL}\n[http]\ntls_cert_file = \"tls/relay.pem\"\ntls_key_file = \"/k.pem\"\n"
            ),
            Some(Path::new("/etc/shirase")),
        )
        .unwrap();
        let tls = c.http.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/shirase/tls/relay.pem"));
        assert_eq!(tls.key_file, Path::new("/k.pem"));
        let e = Config::from_toml_str(
            &format!("{MINIMAL}\n[http]\ntls_key_file = \"k.pem\"\n"),
            None,
        )
        .unwrap_err();
        assert_eq!(e.problems[0].path, "http.tls_cert_file");
        assert!(
            Config::from_toml_str(MINIMAL, None)
                .unwrap()
                .http
                .tls
                .is_none()
        );
    }

    #[test]
    fn subscriber_interfaces_must_exist() {
        let text = MINIMAL.replace(
            "interfaces = [\"001o05-00\"]",
            "interfaces = [\"001o06-00\"]",
        );
        let e = Config::from_toml_str(&text, None).unwrap_err();
        assert_eq!(e.problems[0].path, "subscribers[0].interfaces[0]");
    }

    #[test]
    fn interface_must_belong_to_its_provider() {
        let text = MINIMAL.replace("provider = \"001\"", "provider = \"010\"");
        let e = Config::from_toml_str(&text, None).unwrap_err();
        assert!(
            e.problems
                .iter()
                .any(|p| p.path == "interfaces[0].provider"),
            "{e}"
        );
    }
}
