//! `[[providers]]` and their `[[providers.interfaces]]`: the PULL APIs this subscriber reads.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shirase_proto::{BusinessId, InterfaceId, InterfaceVersion};

use super::common::Problems;

/// `[[providers]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Business id (業務ID).
    pub business_id: String,
    /// Base URL of the PULL API.
    pub pull_api_base_url: String,
    /// Token endpoint URL.
    pub token_url: String,
    /// OAuth2 client id.
    pub client_id: String,
    /// File holding the client secret.
    pub client_secret_file: PathBuf,
    /// How the provider's API spells requests and answers (`[providers.api]`).
    #[serde(default)]
    pub api: RawApi,
    /// Client timeout per request.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Concurrent requests.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Requests per second.
    #[serde(default = "default_rate")]
    pub rate_per_sec: f64,
    /// Interfaces read from this provider.
    #[serde(default)]
    pub interfaces: Vec<RawInterface>,
    /// The provider's maintenance calendar.
    #[serde(default)]
    pub maintenance: shirase_proto::maintenance::Config,
    /// Never send a request inside a maintenance window.
    #[serde(default = "default_true")]
    pub enforce_maintenance: bool,
    /// Allow `http://` URLs (dev and tests only).
    #[serde(default)]
    pub insecure_http: bool,
    /// A private CA (PEM) to trust for this provider's HTTPS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[[providers.interfaces]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterface {
    /// Interface id (連携ID).
    pub id: String,
    /// Interface version (版数).
    pub version: String,
    /// Keyed pull threshold; 0 = never.
    #[serde(default)]
    pub keyed_pull_max_keys: usize,
    /// Least time between two pulls of the interface (duration string); absent = none.
    #[serde(default)]
    pub min_interval: Option<String>,
    /// The interface's own path template (overrides `api.path`).
    #[serde(default)]
    pub path: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> String {
    "35s".into()
}
fn default_concurrency() -> usize {
    2
}
fn default_rate() -> f64 {
    5.0
}

/// One provider's PULL API.
#[derive(Debug, Clone)]
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
    /// How the provider's API spells requests and answers.
    pub api: ApiProfile,
    /// Client timeout per request (a little over the provider's 30 s).
    pub timeout: Duration,
    /// Concurrent requests to this provider.
    pub concurrency: usize,
    /// Requests per second to this provider (token requests included).
    pub rate_per_sec: f64,
    /// Interfaces read from this provider.
    pub interfaces: Vec<InterfaceConfig>,
    /// The provider's maintenance calendar (`[providers.maintenance]`, same format as the
    /// relay's); default: the standard's baseline `24:00-27:00` for every day type.
    pub maintenance: shirase_proto::maintenance::Config,
    /// Never send a request inside a window of `maintenance` (default `true`). `false` only
    /// for tests and drills; E0900 answers are honoured either way.
    pub enforce_maintenance: bool,
    /// `http://` URLs allowed (`insecure_http = true`: dev and tests only; the agent warns).
    pub insecure_http: bool,
    /// A private CA (PEM) trusted for this provider's PULL API and token endpoint.
    pub ca_file: Option<shirase_pull::CaFile>,
}

pub use shirase_pull::{ApiProfile, RawApi};

/// The agent's PULL client settings of a provider: everything but the interfaces, limits and
/// maintenance calendar, which the agent applies itself.
impl From<&ProviderConfig> for shirase_pull::PullClientConfig {
    fn from(p: &ProviderConfig) -> Self {
        Self {
            base_url: p.pull_api_base_url.clone(),
            token_url: p.token_url.clone(),
            client_id: p.client_id.clone(),
            client_secret_file: p.client_secret_file.clone(),
            client_secret_field: format!("providers[{}].client_secret_file", p.business_id),
            api: p.api.clone(),
            interfaces: p
                .interfaces
                .iter()
                .map(|i| {
                    let api = shirase_pull::InterfaceApi {
                        version: Some(i.version.to_string()),
                        path: i.path.clone(),
                    };
                    (i.id, api)
                })
                .collect(),
            // Set by the agent, which knows its municipality.
            municipality: None,
            timeout: p.timeout,
            provider: format!("provider {}", p.business_id),
            ca_file: p.ca_file.clone(),
        }
    }
}

/// Longest `min_interval` of an interface: beyond an hour the hourly sweep would read the
/// held changes first.
pub const MAX_MIN_INTERVAL: Duration = Duration::from_secs(3600);

/// One interface read from a provider.
#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    /// Interface id (連携ID).
    pub id: InterfaceId,
    /// Interface version (版数) this subscriber reads.
    pub version: InterfaceVersion,
    /// Use a keyed pull (by addressee number) when a batch names at most this many keys;
    /// 0 = never.
    pub keyed_pull_max_keys: usize,
    /// Hold the interface's notices until the oldest of them was stored this long ago, then
    /// pull them together: consecutive pulls lie at least this far apart (fewer requests,
    /// each change up to this much later). `None`: pull as soon as a batch brings notices.
    pub min_interval: Option<Duration>,
    /// The interface's own path template, overriding the provider's `api.path`.
    pub path: Option<String>,
}

impl ProviderConfig {
    /// Client timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The interface settings of `id`, if this subscriber reads it.
    pub fn interface(&self, id: &InterfaceId) -> Option<&InterfaceConfig> {
        self.interfaces.iter().find(|i| &i.id == id)
    }

    /// Validate `[[providers]]`, every problem with its path (`providers[1].interfaces[0].id`).
    pub(super) fn validate_all(raw: &[RawProvider], p: &mut Problems) -> Vec<Self> {
        if raw.is_empty() {
            p.push("providers", "configure at least one [[providers]] entry");
        }
        let mut out: Vec<Self> = Vec::new();
        for (pi, rp) in raw.iter().enumerate() {
            if let Some(provider) = Self::validate_one(pi, rp, &out, p) {
                out.push(provider);
            }
        }
        out
    }

    /// Validate `providers[pi]`; `before` holds the valid providers listed before it.
    fn validate_one(
        pi: usize,
        rp: &RawProvider,
        before: &[Self],
        p: &mut Problems,
    ) -> Option<Self> {
        let f = |name: &str| format!("providers[{pi}].{name}");
        let business_id = p.parse::<BusinessId>(&f("business_id"), &rp.business_id);
        if let Some(b) = business_id
            && before.iter().any(|q| q.business_id == b)
        {
            p.push(
                f("business_id"),
                format!("provider {b} is configured twice"),
            );
        }
        check_client(pi, rp, p);
        let ca_file =
            p.optional_path(&f("ca_file"), &rp.ca_file)
                .map(|path| shirase_pull::CaFile {
                    path,
                    field: f("ca_file"),
                });
        let timeout = check_limits(pi, rp, p);
        let api = validate_api(rp, pi, p);
        if let Err(e) = shirase_proto::maintenance::Calendar::new(&rp.maintenance) {
            p.push(f(&format!("maintenance.{}", e.field())), e.to_string());
        }
        let interfaces = validate_interfaces(pi, rp, business_id, p);
        let api = api?;
        Some(ProviderConfig {
            business_id: business_id?,
            pull_api_base_url: rp.pull_api_base_url.clone(),
            token_url: rp.token_url.clone(),
            client_id: rp.client_id.clone(),
            client_secret_file: rp.client_secret_file.clone(),
            api,
            timeout: timeout.unwrap_or_default(),
            concurrency: rp.concurrency,
            rate_per_sec: rp.rate_per_sec,
            interfaces,
            maintenance: rp.maintenance.clone(),
            enforce_maintenance: rp.enforce_maintenance,
            insecure_http: rp.insecure_http,
            ca_file,
        })
    }
}

/// Check the URLs and the OAuth client of `providers[pi]`.
fn check_client(pi: usize, rp: &RawProvider, p: &mut Problems) {
    let f = |name: &str| format!("providers[{pi}].{name}");
    for (name, url) in [
        ("pull_api_base_url", &rp.pull_api_base_url),
        ("token_url", &rp.token_url),
    ] {
        match reqwest::Url::parse(url).as_ref().map(reqwest::Url::scheme) {
            Ok("https") => {}
            Ok("http") if rp.insecure_http => {}
            Ok("http") => p.push(f(name), plaintext_refused(&f("insecure_http"))),
            _ => p.push(f(name), format!("must be an https URL, got {url:?}")),
        }
    }
    if rp.client_id.is_empty() {
        p.push(f("client_id"), "must not be empty");
    }
    if rp.client_secret_file.as_os_str().is_empty() {
        p.push(
            f("client_secret_file"),
            "give the file holding the client secret",
        );
    }
}

/// Why an `http://` URL is refused, naming the switch that allows it.
pub(super) fn plaintext_refused(switch: &str) -> String {
    format!(
        "http:// sends the token, addressee numbers (宛名番号) and rows in clear: use https:// (with ca_file for a private CA), or set {switch} = true for a dev or test setup"
    )
}

/// Check the timeout, concurrency and rate of `providers[pi]`; the timeout, if readable.
fn check_limits(pi: usize, rp: &RawProvider, p: &mut Problems) -> Option<Duration> {
    let f = |name: &str| format!("providers[{pi}].{name}");
    let timeout = p.duration(&f("timeout"), &rp.timeout);
    if timeout.is_some_and(|t| t < Duration::from_secs(1)) {
        p.push(
            f("timeout"),
            "must be at least \"1s\" (the provider answers within 30 s)",
        );
    }
    if !(1..=64).contains(&rp.concurrency) {
        p.push(f("concurrency"), "must be 1..=64");
    }
    if !(rp.rate_per_sec > 0.0 && rp.rate_per_sec <= 1000.0) {
        p.push(f("rate_per_sec"), "must be > 0 and <= 1000");
    }
    timeout
}

/// The valid `[[providers.interfaces]]` of `providers[pi]` (whose business id is
/// `business_id`, when readable).
fn validate_interfaces(
    pi: usize,
    rp: &RawProvider,
    business_id: Option<BusinessId>,
    p: &mut Problems,
) -> Vec<InterfaceConfig> {
    if rp.interfaces.is_empty() {
        p.push(
            format!("providers[{pi}].interfaces"),
            "configure at least one [[providers.interfaces]] entry",
        );
    }
    let mut interfaces: Vec<InterfaceConfig> = Vec::new();
    for (ii, ri) in rp.interfaces.iter().enumerate() {
        let g = |name: &str| format!("providers[{pi}].interfaces[{ii}].{name}");
        let id = p.parse::<InterfaceId>(&g("id"), &ri.id);
        let version = p.parse::<InterfaceVersion>(&g("version"), &ri.version);
        if let (Some(id), Some(b)) = (id, business_id)
            && id.business_id() != b
        {
            p.push(
                g("id"),
                format!(
                    "interface {id} belongs to business {}, not to provider {b}",
                    id.business_id()
                ),
            );
        }
        if let Some(id) = id
            && interfaces.iter().any(|j| j.id == id)
        {
            p.push(g("id"), format!("interface {id} is listed twice"));
        }
        if ri.keyed_pull_max_keys > shirase_proto::notice::MAX_KEYS * 10 {
            p.push(g("keyed_pull_max_keys"), "must be 0..=1000");
        }
        let min_interval = ri
            .min_interval
            .as_deref()
            .and_then(|v| p.duration(&g("min_interval"), v));
        if let Some(d) = min_interval
            && (d.is_zero() || d > MAX_MIN_INTERVAL)
        {
            p.push(
                g("min_interval"),
                "must be more than 0s and at most 1h (leave the key out for no minimum)",
            );
        }
        if let (Some(id), Some(version)) = (id, version) {
            interfaces.push(InterfaceConfig {
                id,
                version,
                keyed_pull_max_keys: ri.keyed_pull_max_keys,
                min_interval,
                path: ri.path.clone(),
            });
        }
    }
    interfaces
}

/// Validate `providers[pi].api` and the interfaces' own `path`, every problem with its path.
/// `{version}` is refused when an interface has no version to fill it with.
fn validate_api(rp: &RawProvider, pi: usize, p: &mut Problems) -> Option<ApiProfile> {
    let has_version =
        !rp.interfaces.is_empty() && rp.interfaces.iter().all(|i| !i.version.trim().is_empty());
    let mut report = |f: String, m: String| p.push(f, m);
    let api = rp
        .api
        .validate(&format!("providers[{pi}].api"), has_version, &mut report);
    for (ii, ri) in rp.interfaces.iter().enumerate() {
        if let Some(t) = &ri.path {
            let field = format!("providers[{pi}].interfaces[{ii}].path");
            shirase_pull::profile::raw::check_path(t, &field, has_version, &mut report);
        }
    }
    api
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"
subscriber = "tax"
municipality = "131016"
[sink]
kind = "file"
dir = "/tmp/x"
[[providers]]
business_id = "001"
pull_api_base_url = "https://tax.example.lg.jp"
token_url = "https://tax.example.lg.jp/oauth/token"
client_id = "tax"
client_secret_file = "/tmp/secret"
[[providers.interfaces]]
id = "001o05-00"
version = "1.0"
"#;

    #[test]
    fn http_is_refused_unless_insecure_http_and_names_the_switch() {
        let plain = BASE.replace("https://", "http://");
        let e = Config::from_toml_str(&plain).unwrap_err();
        let l: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(
            l[0].starts_with("providers[0].pull_api_base_url: http:// sends"),
            "{l:?}"
        );
        assert!(
            l[1].starts_with("providers[0].token_url: http:// sends"),
            "{l:?}"
        );
        assert!(l[0].contains("providers[0].insecure_http = true"), "{l:?}");
        let allowed = plain.replace(
            "client_id = \"tax\"",
            "client_id = \"tax\"\ninsecure_http = true",
        );
        let c = Config::from_toml_str(&allowed).unwrap();
        assert!(c.providers[0].insecure_http);
        let c = Config::from_toml_str(BASE).unwrap();
        assert!(!c.providers[0].insecure_http);
        assert_eq!(c.providers[0].ca_file, None);
    }

    #[test]
    fn ca_file_is_passed_to_the_client_with_its_field() {
        let text = BASE.replace(
            "client_id = \"tax\"",
            "client_id = \"tax\"\nca_file = \"/etc/shirase/provider-ca.pem\"",
        );
        let c = Config::from_toml_str(&text).unwrap();
        let pc = shirase_pull::PullClientConfig::from(&c.providers[0]);
        assert_eq!(
            pc.ca_file,
            Some(shirase_pull::CaFile {
                path: "/etc/shirase/provider-ca.pem".into(),
                field: "providers[0].ca_file".into(),
            })
        );
        assert_eq!(pc.provider, "provider 001");
        let e = Config::from_toml_str(
            &BASE.replace("client_id = \"tax\"", "client_id = \"tax\"\nca_file = \"\""),
        )
        .unwrap_err();
        assert_eq!(e.problems[0].path, "providers[0].ca_file");
    }

    #[test]
    fn an_http_sink_is_refused_unless_insecure_http() {
        let http_sink = |extra: &str| {
            BASE.replace(
                "kind = \"file\"\ndir = \"/tmp/x\"",
                &format!("kind = \"http\"\nurl = \"http://127.0.0.1:9100/import\"{extra}"),
            )
        };
        let e = Config::from_toml_str(&http_sink("")).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].path, "sink.url");
        assert!(
            e.problems[0].message.contains("sink.insecure_http = true"),
            "{e}"
        );
        let c = Config::from_toml_str(&http_sink("\ninsecure_http = true")).unwrap();
        assert!(matches!(
            c.sink,
            crate::config::SinkConfig::Http {
                insecure_http: true,
                ..
            }
        ));
    }

    fn lines(extra: &str) -> Vec<String> {
        let e = Config::from_toml_str(&format!("{BASE}{extra}")).unwrap_err();
        e.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_second_dialect_validates() {
        let c = Config::from_toml_str(&format!(
            "{BASE}path = \"/renkei/{{interface}}\"\n[providers.api]\npath = \"/api/{{version}}/{{interface}}\"\nfrom = {{ date = \"koshin_ymd_from\", time = \"koshin_time_from\" }}\nto = {{ date = \"koshin_ymd_to\", time = \"koshin_time_to\" }}\nto_inclusive = true\nrows = \"/kekka/meisai\"\nrow_updated_at = {{ date = \"koshin_ymd\", time = \"koshin_time\" }}\ntotal_count = \"/kekka/kensu\"\nreturned_count = \"/kekka/henkyaku_kensu\"\n"
        ))
        .unwrap();
        let p = &c.providers[0];
        assert!(p.api.whole_seconds());
        assert_eq!(p.interfaces[0].path.as_deref(), Some("/renkei/{interface}"));
    }

    #[test]
    fn old_params_table_names_the_new_keys() {
        let l = lines("[providers.params]\nupdated_to = \"x\"\n");
        assert!(
            l[0].starts_with("providers[0].params: renamed to providers[0].api (")
                && l[0].contains("updated_to → to"),
            "{l:?}"
        );
    }

    #[test]
    fn every_kind_of_bad_profile_is_refused_with_its_field_path() {
        // (the [providers.api] table or the interface's fields, the field path expected)
        let cases: [(&str, &str); 10] = [
            (
                "[providers.api]\nrow_key = \"x\"\n",
                "providers[0].api.row_key: ",
            ),
            (
                "[providers.api]\nrows_order = \"atena_no\"\n",
                "providers[0].api.rows_order: ",
            ),
            (
                "[providers.api]\nrows = \"kekka/meisai\"\n",
                "providers[0].api.rows: ",
            ),
            (
                "[providers.api]\ntotal_count = \"kensu\"\nreturned_count = \"/n\"\n",
                "providers[0].api.total_count: ",
            ),
            (
                "[providers.api]\ntimestamp_format = \"%Y%m%d%H%M\"\n",
                "providers[0].api.timestamp_format: ",
            ),
            (
                "[providers.api]\nfrom = { date = \"d\", time = \"t\" }\nto = { date = \"d2\", time = \"t2\" }\ndate_format = \"%m%d\"\n",
                "providers[0].api.date_format: ",
            ),
            (
                "[providers.api]\nfrom = { date = \"d\", time = \"t\" }\nto = { date = \"d2\", time = \"t2\" }\ntime_format = \"%H%M\"\n",
                "providers[0].api.time_format: ",
            ),
            (
                "[providers.api]\nfrom = { date = \"d\", time = \"t\" }\nto = { date = \"d2\" }\n",
                "providers[0].api.to.time: ",
            ),
            (
                "[providers.api]\nfrom = { time = \"t\" }\nto = { date = \"d2\", time = \"t2\" }\n",
                "providers[0].api.from.date: ",
            ),
            (
                "[providers.api]\nrow_updated_at = { date = \"koshin_ymd\" }\n",
                "providers[0].api.row_updated_at.time: ",
            ),
        ];
        for (extra, want) in cases {
            let l = lines(extra);
            assert!(
                l.iter().any(|x| x.starts_with(want)),
                "{want} missing for {extra:?}: {l:#?}"
            );
        }
    }

    #[test]
    fn a_version_placeholder_needs_a_version_on_every_interface() {
        let base = BASE.replace("version = \"1.0\"", "version = \"\"");
        let e = Config::from_toml_str(&format!(
            "{base}path = \"/renkei/{{version}}/{{interface}}\"\n[providers.api]\npath = \"/api/{{version}}/{{interface}}\"\n"
        ))
        .unwrap_err();
        let l: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        for want in [
            "providers[0].api.path: {version} needs a version",
            "providers[0].interfaces[0].path: {version} needs a version",
        ] {
            assert!(
                l.iter().any(|x| x.starts_with(want)),
                "{want} missing from {l:#?}"
            );
        }
        // With a version on the interface the same paths are accepted.
        Config::from_toml_str(&format!(
            "{BASE}path = \"/renkei/{{version}}/{{interface}}\"\n[providers.api]\npath = \"/api/{{version}}/{{interface}}\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn a_bad_profile_is_refused_naming_each_field() {
        let l = lines(
            "[providers.api]\nrows = \"data\"\ntimestamp_format = \"%Y%m%d\"\nrow_updated_at = { date = \"d\" }\nbogus = 1\n",
        );
        for want in [
            "providers[0].api.bogus: ",
            "providers[0].api.rows: ",
            "providers[0].api.timestamp_format: ",
            "providers[0].api.row_updated_at.time: ",
        ] {
            assert!(
                l.iter().any(|x| x.starts_with(want)),
                "{want} missing from {l:#?}"
            );
        }
    }
}
