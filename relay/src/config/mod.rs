//! The relay's configuration: settings plus the topology (municipality, providers, interfaces,
//! subscribers).
//!
//! Layers, later ones winning: the commented `relay.default.toml` embedded in the binary → the
//! user's file → `SHIRASE_*` environment variables (`__` separates nested keys, e.g.
//! `SHIRASE_HTTP__LISTEN`). The merged text is deserialized into [`RawConfig`] and then
//! validated into [`Config`], whose fields are typed (`MunicipalityCode`, `InterfaceId`, ...).
//! Every problem is reported at once, each naming its field path (`providers[1].business_id`);
//! durations are strings (`"5s"`), optional files absent keys, and a key of an older release is
//! an error naming its replacement ([`RENAMED`]).
//!
//! One module per section; [`common`] holds the shared helpers (from
//! [`shirase_proto::config`]) and imports nothing from the crate. The modules that use a section
//! (scheduler, notifier, watcher, operator API) import it from here, never the other way round.

mod common;
mod files;
mod http;
mod maintenance;
mod nats;
mod notifier;
mod operators;
mod ops;
mod providers;
mod stream;
mod subscribers;
mod watch;

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use shirase_proto::{BusinessId, InterfaceId, MunicipalityCode};

pub use common::{ConfigError, ConfigErrorKind, FieldProblem, Problems, parse_duration};
pub use files::{
    Completion, FileInterface, FileWatchConfig, RawFileInterface, RawFileWatch, glob_match,
};
pub use http::{HttpConfig, RawHttp};
pub use maintenance::{RawSchedulerConfig, SchedulerConfig};
pub use nats::{NatsConfig, RawNats, RawNatsAuth};
pub use notifier::{
    CommandConfig, EmailConfig, NotifierConfig, RawCommand, RawEmail, RawNotifierConfig,
    RawWebhook, SmtpSecurity, WebhookConfig,
};
pub use operators::{Operator, RawOperator, Role};
pub use ops::{OpsConfig, RawOps};
pub use providers::{Provider, RawCredentials, RawProvider, token_digest, token_in};
pub use stream::{Quotas, RawStream, Storage, StreamConfig};
pub use subscribers::{Interface, RawInterface, RawSubscriber, Subscriber};
pub use watch::{RawWatch, WatchConfig};

use common::Renamed;

/// The defaults, checked in as `relay/relay.default.toml` and embedded here.
pub const DEFAULT_TOML: &str = include_str!("../../relay.default.toml");

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
    "ops",
];

/// Keys of earlier releases: each is an error naming its replacement.
#[rustfmt::skip]
pub const RENAMED: &[Renamed] = &[
    Renamed { old: "http.retry_after_secs", new: Some("retry_after"), hint: "a duration string such as \"2s\"" },
    Renamed { old: "providers[].watch.params", new: Some("api"), hint: "the API profile table: updated_from → from, updated_to → to, atena_no → key (docs/pull-api.md)" },
];

/// The configuration as written (after layering), before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// 市区町村コード of the municipality this relay serves.
    #[serde(default)]
    pub municipality_code: Option<String>,
    /// HTTP settings.
    pub http: RawHttp,
    /// The operator surface (`[ops]`).
    pub ops: RawOps,
    /// NATS connection settings.
    pub nats: RawNats,
    /// Stream settings.
    pub stream: RawStream,
    /// NATS authorization generation settings.
    #[serde(default)]
    pub nats_auth: RawNatsAuth,
    /// Maintenance scheduler settings.
    #[serde(default)]
    pub maintenance: RawSchedulerConfig,
    /// The error notification function (`[notifier]`).
    #[serde(default)]
    pub notifier: RawNotifierConfig,
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
    pub operators: Vec<RawOperator>,
    /// Provider folders on the file server to announce completed files of (`[[file_watch]]`).
    #[serde(default)]
    pub file_watch: Vec<RawFileWatch>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The municipality this relay serves.
    pub municipality: MunicipalityCode,
    /// HTTP settings.
    pub http: HttpConfig,
    /// The operator surface.
    pub ops: OpsConfig,
    /// NATS connection settings.
    pub nats: NatsConfig,
    /// Stream settings.
    pub stream: StreamConfig,
    /// Public nkey of the relay identity, for `--emit-nats-auth`.
    pub relay_nkey: Option<String>,
    /// The maintenance scheduler.
    pub maintenance: SchedulerConfig,
    /// The error notification function.
    pub notifier: NotifierConfig,
    /// Providers.
    pub providers: Vec<Provider>,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Subscribers.
    pub subscribers: Vec<Subscriber>,
    /// Operators of the operator API.
    pub operators: Vec<Operator>,
    /// Watched provider folders (file integration).
    pub file_watch: Vec<FileWatchConfig>,
}

impl Config {
    /// Load the defaults, then `file` (if any), then `SHIRASE_*` variables, and validate.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::load(
                    "relay",
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
        shirase_service::config::load_validated(&fig, DEFAULT_TOML, RENAMED, "relay", |raw, p| {
            validate(raw, base_dir, p)
        })
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

fn validate(raw: RawConfig, base_dir: Option<&Path>, p: &mut Problems) -> Option<Config> {
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

    let http = HttpConfig::validate(&raw.http, base_dir, p);
    let ops = OpsConfig::validate(&raw.ops, http.as_ref().map(|h| h.listen), p);
    let nats = NatsConfig::validate(&raw.nats, raw.http.max_batch_notices, base_dir, p);
    let stream = StreamConfig::validate(&raw.stream, p);
    let relay_nkey = raw.nats_auth.validate(p);
    let mut providers = providers::validate(&raw.providers, base_dir, p);
    let maintenance =
        SchedulerConfig::validate(&raw.maintenance, &mut |path, msg| p.push(path, msg));
    let notifier =
        NotifierConfig::validate(&raw.notifier, base_dir, &mut |path, msg| p.push(path, msg));
    let interfaces = subscribers::validate_interfaces(&raw.interfaces, &providers, p);
    providers::resolve_watched_interfaces(&raw.providers, &mut providers, &interfaces, p);
    let subscribers = subscribers::validate_subscribers(&raw.subscribers, &interfaces, p);
    let (operators, operator_problems) = operators::validate(&raw.operators, base_dir);
    p.extend(operator_problems);
    let file_watch = files::validate(&raw.file_watch, &providers, &interfaces, base_dir, p);
    Some(Config {
        municipality: municipality?,
        http: http?,
        ops,
        nats,
        stream,
        relay_nkey,
        maintenance,
        notifier,
        providers,
        interfaces,
        subscribers,
        operators,
        file_watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn quotas_and_the_inbox_prefix_are_checked_naming_their_field() {
        let c = Config::from_toml_str(MINIMAL, None).unwrap();
        assert_eq!(c.nats.inbox_prefix, "_INBOX_relay");
        assert_eq!(
            (c.stream.quotas.notices, c.stream.quotas.leases),
            (2 << 30, 1 << 20)
        );
        let text = format!(
            "{MINIMAL}\n[stream]\nmax_bytes = \"lots\"\ndlq_max_bytes = \"512KiB\"\n[nats]\ninbox_prefix = \"_INBOX.>\"\n"
        );
        let e = Config::from_toml_str(&text, None).unwrap_err();
        let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        for want in [
            "stream.max_bytes: \"lots\" is not a size",
            "stream.dlq_max_bytes: must be at least 1MiB",
            "nats.inbox_prefix: an inbox prefix is",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(want)),
                "{want} missing from {lines:?}"
            );
        }
        let text = format!("{MINIMAL}\n[nats]\ninbox_prefix = \"_INBOX_relay_2\"\n");
        let c = Config::from_toml_str(&text, None).unwrap();
        assert_eq!(c.nats.inbox_prefix, "_INBOX_relay_2");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let text = MINIMAL.replace("id = \"001o05-00\"", "id = \"001o05-0\"")
            + "\n[http]\nretry_after = \"soon\"\n[stream]\nreplicas = 9\n[nats]\ntls_ca_file = \"\"\n[maintenance]\ntick = \"0s\"\n";
        let e = Config::from_toml_str(&text, None).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Invalid);
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "http.retry_after",
            "stream.replicas",
            "nats.tls_ca_file",
            "maintenance.tick",
            "interfaces[0].id",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
    }

    #[test]
    fn old_keys_are_errors_naming_the_new_key_and_validation_goes_on() {
        let text = format!(
            "{MINIMAL}\n[http]\nretry_after_secs = 7\nlisten = \"nowhere\"\n[stream]\nmax_agee = \"1d\"\n"
        );
        let e = Config::from_toml_str(&text, None).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Load);
        let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines[0],
            "http.retry_after_secs: renamed to http.retry_after (a duration string such as \"2s\")"
        );
        assert!(
            lines[1].starts_with("stream.max_agee: unknown field"),
            "{lines:?}"
        );
        assert!(lines[2].starts_with("http.listen: "), "{lines:?}");
        assert_eq!(lines.len(), 3, "{lines:?}");
    }

    #[test]
    fn absent_optional_paths_are_none() {
        let c = Config::from_toml_str(MINIMAL, None).unwrap();
        assert!(c.nats.credentials_file.is_none());
        assert!(c.nats.nkey_seed_file.is_none());
        assert!(c.nats.tls_ca_file.is_none());
        let c = Config::from_toml_str(
            &format!("{MINIMAL}\n[nats]\ntls_ca_file = \"tls/ca.pem\"\n"),
            Some(Path::new("/etc/shirase")),
        )
        .unwrap();
        assert_eq!(
            c.nats.tls_ca_file.as_deref(),
            Some(Path::new("/etc/shirase/tls/ca.pem"))
        );
    }

    #[test]
    fn an_empty_file_names_each_missing_thing_once() {
        // Found by the `config` fuzz target: "at least one provider is required" came twice.
        let e = Config::from_toml_str("", None).unwrap_err();
        let mut seen = std::collections::BTreeSet::new();
        for p in &e.problems {
            assert!(
                seen.insert((p.path.clone(), p.message.clone())),
                "reported twice: {}: {}",
                p.path,
                p.message
            );
        }
        assert!(e.problems.iter().any(|p| p.path == "providers"), "{e}");
    }

    #[test]
    fn a_provider_name_with_a_line_break_is_refused() {
        let text = MINIMAL.replace(
            "name = \"resident registry\"",
            "name = \"resident registry\\n    { nkey: \\\"UXXX\\\" }\"",
        );
        let e = Config::from_toml_str(&text, None).unwrap_err();
        let p = &e.problems[0];
        assert_eq!(p.path, "providers[0].name");
        assert!(p.message.contains("control characters"), "{}", p.message);
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
    fn a_bad_watch_api_profile_is_refused_naming_each_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = watched(
            dir.path(),
            concat!(
                "[providers.watch.api]\n",
                "rows = \"kekka/meisai\"\n",
                "from = { date = \"koshin_ymd_from\" }\n",
                "to = { date = \"koshin_ymd_to\", time = \"koshin_time_to\" }\n",
                "time_format = \"%H%M\"\n",
                "row_key = \"x\"\n",
                "rows_order = \"newest_first\"\n",
            ),
        );
        let e = Config::from_toml_str(&text, Some(dir.path())).unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "providers[0].watch.api.row_key",
            "providers[0].watch.api.rows",
            "providers[0].watch.api.from.time",
            "providers[0].watch.api.time_format",
            "providers[0].watch.api.rows_order",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
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
    #[allow(clippy::result_large_err)] // figment's Jail closures return its own (large) error
    fn layers_are_defaults_then_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "relay.toml",
                &format!("{MINIMAL}\n[http]\nlisten = \"127.0.0.1:9000\"\nretry_after = \"7s\"\n"),
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
