//! The simulator's settings: which provider it plays, its data set, its clients and limits, and
//! where its notices go.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use shirase_proto::{BusinessId, InterfaceId, InterfaceVersion, MunicipalityCode};

use super::clock::ClockMode;
pub use super::dialect::Dialect;
use super::error::{SimError, SimErrorKind};

/// One interface (連携ID) the simulator serves, with the version (版数) its notices name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// The interface id, e.g. `001o05-00`.
    pub id: InterfaceId,
    /// The interface version, e.g. `1.0`.
    pub version: InterfaceVersion,
}

impl InterfaceSpec {
    /// An interface at version `1.0`.
    pub fn v1(id: InterfaceId) -> Self {
        Self {
            id,
            version: default_version(),
        }
    }
}

fn default_version() -> InterfaceVersion {
    // "1.0" is a valid version by construction; the fallback is never taken.
    "1.0".parse().unwrap_or_else(|_| unreachable_version())
}

#[allow(clippy::panic)]
fn unreachable_version() -> InterfaceVersion {
    panic!("1.0 is a valid interface version")
}

/// Query parameter names of the data endpoint. The standard does not fix them; these are
/// Shirase's defaults (docs/pull-api.md) and the agent makes them configurable per provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamNames {
    /// DB update timestamp lower bound, inclusive (default `updated_from`).
    pub updated_from: String,
    /// DB update timestamp upper bound, exclusive (default `updated_to`).
    pub updated_to: String,
    /// Comma-separated addressee numbers (default `atena_no`).
    pub atena_no: String,
}

impl Default for ParamNames {
    fn default() -> Self {
        Self {
            updated_from: "updated_from".into(),
            updated_to: "updated_to".into(),
            atena_no: "atena_no".into(),
        }
    }
}

/// A secret whose `Debug` output is redacted, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Where the notices for committed changes go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NoticeTarget {
    /// Nowhere: notices are only recorded ([`super::SimHandle::notices`]); a test publishes them.
    #[default]
    None,
    /// `POST <url>/v1/notices` on a relay, in batches, with this bearer token; a 503 or a
    /// connection failure is retried with the same notice ids.
    Relay {
        /// The relay's base URL, e.g. `http://127.0.0.1:8080`.
        url: String,
        /// The provider's bearer credential for the relay.
        token: Secret,
    },
    /// Publish directly to JetStream with `shirase_proto::publish` (retried with the same id).
    Nats {
        /// The NATS server URL, e.g. `nats://127.0.0.1:4222`.
        url: String,
    },
}

/// The simulator's settings. Start from [`Config::for_business`] (or `Default`, business `001`)
/// and change fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The municipality the provider serves (市区町村コード), e.g. `131016`.
    pub municipality: MunicipalityCode,
    /// The provider's business id (業務ID). One simulator instance is one provider.
    pub business: BusinessId,
    /// The interfaces served; each must belong to `business`.
    pub interfaces: Vec<InterfaceSpec>,
    /// Number of generated residents (addressees).
    pub population: usize,
    /// Seed of the deterministic data and change generators.
    pub seed: u64,
    /// OAuth clients: client id → client secret (the HS256 key of its assertions).
    pub clients: BTreeMap<String, Secret>,
    /// Lifetime of issued access tokens (`expires_in`).
    pub token_lifetime: Duration,
    /// A query matching more rows than this is answered `E0004`.
    pub row_threshold: usize,
    /// The provider-side processing timeout (the standard's 30 s): injected latency beyond it is
    /// answered with a bare 503 once this much time has passed.
    pub provider_timeout: Duration,
    /// Query parameter names of the data endpoint (standard dialect).
    pub params: ParamNames,
    /// Which dialect of the PULL API the data endpoint speaks.
    pub dialect: Dialect,
    /// Cap every answer at this many rows, reporting the total (the romaji dialect's counts);
    /// `None` = whole answers.
    pub answer_cap: Option<usize>,
    /// The order of an answer's rows (which rows a capped answer holds).
    pub answer_order: AnswerOrder,
    /// Start in maintenance (every request answered 503 `E0900`).
    pub maintenance: bool,
    /// The `Retry-After` sent with maintenance answers.
    pub maintenance_retry_after: Duration,
    /// Where notices go.
    pub notice_target: NoticeTarget,
    /// The DB clock.
    pub clock: ClockMode,
    /// Background change generator rate in changes per second (0 = off).
    pub change_rate: f64,
    /// The URL clients reach the simulator at, when it differs from `http://<listen address>`
    /// (behind a proxy or a container name). The assertion `aud` must be `<this>/oauth/token`.
    pub public_base_url: Option<String>,
    /// Most entries kept in the request log (oldest dropped first; counters never drop).
    pub request_log_capacity: usize,
}

impl Config {
    /// Defaults for a provider: the resident registry `001` serves `001o05-00` and `001o06-00`,
    /// the individual resident tax `010` serves `010o01-00`, any other business `<id>o01-00`;
    /// all at version 1.0.
    pub fn for_business(business: BusinessId) -> Self {
        let ids: Vec<String> = match business.as_str() {
            "001" => vec!["001o05-00".into(), "001o06-00".into()],
            "010" => vec!["010o01-00".into()],
            other => vec![format!("{other}o01-00")],
        };
        let interfaces = ids
            .iter()
            .filter_map(|s| s.parse::<InterfaceId>().ok())
            .map(InterfaceSpec::v1)
            .collect();
        Self {
            municipality: default_municipality(),
            business,
            interfaces,
            population: 1_000,
            seed: 42,
            clients: BTreeMap::new(),
            token_lifetime: Duration::from_secs(300),
            row_threshold: 1_000,
            provider_timeout: Duration::from_secs(30),
            params: ParamNames::default(),
            dialect: Dialect::Standard,
            answer_cap: None,
            answer_order: AnswerOrder::UpdatedAt,
            maintenance: false,
            maintenance_retry_after: Duration::from_secs(60),
            notice_target: NoticeTarget::None,
            clock: ClockMode::Real,
            change_rate: 0.0,
            public_base_url: None,
            request_log_capacity: 10_000,
        }
    }

    /// Add an OAuth client (builder style).
    pub fn with_client(mut self, client_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        self.clients.insert(client_id.into(), secret.into());
        self
    }

    /// Check ranges and cross-field rules; the error names the field.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::new(SimErrorKind::Config, m));
        if self.interfaces.is_empty() {
            return bad("interfaces: at least one interface must be served".into());
        }
        let mut seen = BTreeSet::new();
        for (i, s) in self.interfaces.iter().enumerate() {
            if s.id.business_id() != self.business {
                return bad(format!(
                    "interfaces[{i}]: {} does not belong to business {} (one simulator serves one provider)",
                    s.id, self.business
                ));
            }
            if !seen.insert(s.id) {
                return bad(format!("interfaces[{i}]: {} is listed twice", s.id));
            }
        }
        if self.population == 0 || self.population > 10_000_000 {
            return bad(format!(
                "population: must be 1..=10000000, got {}",
                self.population
            ));
        }
        if self.row_threshold == 0 {
            return bad("row_threshold: must be at least 1".into());
        }
        if self.provider_timeout.is_zero() {
            return bad("provider_timeout: must be positive".into());
        }
        if self.token_lifetime < Duration::from_secs(1) {
            return bad("token_lifetime: must be at least 1 s".into());
        }
        if !self.change_rate.is_finite() || self.change_rate < 0.0 {
            return bad(format!(
                "change_rate: must be a finite number >= 0, got {}",
                self.change_rate
            ));
        }
        let p = &self.params;
        for (field, name) in [
            ("params.updated_from", &p.updated_from),
            ("params.updated_to", &p.updated_to),
            ("params.atena_no", &p.atena_no),
        ] {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return bad(format!(
                    "{field}: must be a non-empty name of letters, digits, _ - ., got {name:?}"
                ));
            }
        }
        if p.updated_from == p.updated_to
            || p.updated_from == p.atena_no
            || p.updated_to == p.atena_no
        {
            return bad("params: the three parameter names must differ".into());
        }
        for id in self.clients.keys() {
            if id.is_empty() {
                return bad("clients: a client id must not be empty".into());
            }
        }
        if self.answer_cap == Some(0) {
            return bad("answer_cap: must be at least 1 (or none)".into());
        }
        if self.request_log_capacity == 0 {
            return bad("request_log_capacity: must be at least 1".into());
        }
        if let Some(u) = &self.public_base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return bad(format!(
                "public_base_url: must start with http:// or https://, got {u:?}"
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::for_business(default_business())
    }
}

fn default_municipality() -> MunicipalityCode {
    "131016".parse().unwrap_or_else(|_| unreachable_code())
}

fn default_business() -> BusinessId {
    "001".parse().unwrap_or_else(|_| unreachable_code())
}

#[allow(clippy::panic)]
fn unreachable_code<T>() -> T {
    panic!("built-in default codes are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_per_business() {
        let c = Config::default();
        let ids: Vec<&str> = c.interfaces.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["001o05-00", "001o06-00"]);
        assert!(c.validate().is_ok());
        let t = Config::for_business("010".parse().unwrap());
        assert_eq!(t.interfaces[0].id.as_str(), "010o01-00");
        assert_eq!(t.interfaces[0].version.as_str(), "1.0");
    }

    #[test]
    fn foreign_interface_is_refused_naming_the_field() {
        let mut c = Config::default();
        c.interfaces
            .push(InterfaceSpec::v1("010o01-00".parse().unwrap()));
        let e = c.validate().unwrap_err();
        assert_eq!(e.kind(), SimErrorKind::Config);
        assert!(e.to_string().starts_with("interfaces[2]"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Config::default().with_client("tax", "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}

/// The order of a data answer's rows, and so which rows a capped answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerOrder {
    /// Ascending by DB update timestamp (then addressee number, history number): a capped
    /// answer holds the oldest rows (the agent's `rows_order = "updated_at"`).
    #[default]
    UpdatedAt,
    /// Ascending by addressee number (宛名番号), then history number: a capped answer's newest
    /// row may be newer than rows it left out (the agent's `rows_order = "unspecified"`).
    Key,
}
