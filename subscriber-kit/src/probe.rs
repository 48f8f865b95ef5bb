//! `shirase-agent probe`: read-only checks of each configured provider's PULL API against its
//! API profile (`[providers.api]`), so a vendor sees before going live whether the agent can
//! work with the API, and which profile key to change when it cannot.
//!
//! Every request goes through the provider's limiter (its `rate_per_sec` and `concurrency`);
//! nothing is sent inside its maintenance window. Only GET requests and token requests are
//! sent. Output names paths, codes, counts and profile keys, never rows, query strings or
//! addressee numbers.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use shirase_proto::InterfaceId;
use shirase_pull::client::RawAnswer;
use shirase_pull::wire::ErrorBody;
use shirase_pull::{ApiProfile, Limiter, Outcome, PullClient, PullClientConfig, Row};

use crate::config::{Config, ProviderConfig};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As the agent needs it.
    Ok,
    /// Worth knowing; does not stop the agent.
    Info,
    /// The agent cannot work with the API like this.
    Fail,
}

/// One check's line.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Verdict.
    pub status: Status,
    /// Provider business id.
    pub provider: String,
    /// Interface id, for per-interface checks.
    pub interface: Option<String>,
    /// What was checked (`token`, `window`, `rows`, `malformed_bound`, `to`, `too_many`, ...).
    pub check: &'static str,
    /// What was observed.
    pub detail: String,
    /// For a failure: the configuration key to change.
    pub key: Option<String>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Status::Ok => "ok  ",
            Status::Info => "info",
            Status::Fail => "FAIL",
        };
        write!(f, "{status} {} ", self.provider)?;
        if let Some(i) = &self.interface {
            write!(f, "{i} ")?;
        }
        write!(f, "{}: {}", self.check, self.detail)?;
        if let Some(k) = &self.key {
            write!(f, " → change {k}")?;
        }
        Ok(())
    }
}

/// Everything the probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when no check failed: the agent can work with the API.
    pub usable: bool,
    /// The checks in order.
    pub checks: Vec<Check>,
}

/// Which providers and interfaces to probe.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this provider (business id).
    pub provider: Option<String>,
    /// Only this interface id.
    pub interface: Option<String>,
}

/// Probe the selected providers of `config`.
pub async fn run(config: &Config, sel: &Selection) -> Report {
    let mut checks = Vec::new();
    let providers: Vec<&ProviderConfig> = config
        .providers
        .iter()
        .filter(|p| {
            sel.provider
                .as_deref()
                .is_none_or(|b| p.business_id.as_str() == b)
        })
        .collect();
    if providers.is_empty() {
        checks.push(Check {
            status: Status::Fail,
            provider: sel.provider.clone().unwrap_or_default(),
            interface: None,
            check: "select",
            detail: "no such provider in the configuration".into(),
            key: Some("--provider".into()),
        });
    }
    for p in providers {
        Probe::new(config, p, &mut checks).run(sel).await;
    }
    let usable = checks.iter().all(|c| c.status != Status::Fail);
    Report { usable, checks }
}

struct Probe<'a> {
    p: &'a ProviderConfig,
    client: Option<PullClient>,
    out: &'a mut Vec<Check>,
    calendar: Option<shirase_proto::maintenance::Calendar>,
}

impl<'a> Probe<'a> {
    fn new(config: &Config, p: &'a ProviderConfig, out: &'a mut Vec<Check>) -> Self {
        let mut pc = PullClientConfig::from(p);
        pc.municipality = Some(config.municipality.to_string());
        let limiter = Arc::new(Limiter::new(p.concurrency, p.rate_per_sec));
        let calendar = shirase_proto::maintenance::Calendar::new(&p.maintenance).ok();
        let mut me = Self {
            p,
            client: None,
            out,
            calendar,
        };
        match PullClient::new(pc, limiter) {
            Ok(c) => me.client = Some(c),
            Err(e) => me.push(
                None,
                Status::Fail,
                "secret",
                e.to_string(),
                Some("client_secret_file"),
            ),
        }
        me
    }

    fn push(
        &mut self,
        i: Option<&InterfaceId>,
        status: Status,
        check: &'static str,
        detail: String,
        key: Option<&str>,
    ) {
        let b = self.p.business_id;
        self.out.push(Check {
            status,
            provider: b.to_string(),
            interface: i.map(ToString::to_string),
            check,
            detail,
            key: key.map(|k| format!("providers[{b}].{k}")),
        });
    }

    /// Inside the provider's maintenance window (the probe sends nothing then)?
    fn in_maintenance(&mut self) -> bool {
        let now = Timestamp::now();
        let w = self
            .calendar
            .as_ref()
            .and_then(|c| c.is_in_maintenance(now));
        match w.filter(|_| self.p.enforce_maintenance) {
            Some(w) => {
                let end = shirase_proto::OffsetTimestamp::from_instant_jst(w.end);
                self.push(
                    None,
                    Status::Fail,
                    "maintenance",
                    format!(
                        "inside the provider's maintenance window until {end}; nothing was sent, probe again after it"
                    ),
                    None,
                );
                true
            }
            None => false,
        }
    }

    async fn run(mut self, sel: &Selection) {
        if self.client.is_none() || self.in_maintenance() {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        match client.check_token().await {
            Ok(()) => self.push(
                None,
                Status::Ok,
                "token",
                "client_secret_jwt assertion accepted, access token issued".into(),
                None,
            ),
            Err(o) => {
                let key = if matches!(o, Outcome::Connect(_)) {
                    "token_url"
                } else {
                    "client_id / client_secret_file"
                };
                self.push(None, Status::Fail, "token", describe(&o), Some(key));
                return;
            }
        }
        let ifaces: Vec<InterfaceId> = self
            .p
            .interfaces
            .iter()
            .map(|i| i.id)
            .filter(|i| sel.interface.as_deref().is_none_or(|s| i.as_str() == s))
            .collect();
        if ifaces.is_empty() {
            let m = "no such interface for this provider".into();
            self.push(None, Status::Fail, "select", m, None);
        }
        for i in ifaces {
            if self.in_maintenance() {
                return;
            }
            self.interface(&client, &i).await;
        }
    }

    /// The checks of one interface.
    async fn interface(&mut self, c: &PullClient, i: &InterfaceId) {
        let Some(rows) = self.window(c, i).await else {
            return;
        };
        self.rows(i, &rows);
        self.malformed(c, i).await;
        match rows.iter().map(|r| r.updated_at).max() {
            Some(newest) => self.check_to(c, i, newest).await,
            None => {
                let m = "no rows in the recent window: TO inclusive/exclusive not observed";
                self.push(Some(i), Status::Info, "to", m.into(), None);
            }
        }
    }

    /// A recent window answered 200 with an array at the rows pointer: the last 24 h, or a
    /// shorter window when the provider answers "too many".
    async fn window(&mut self, c: &PullClient, i: &InterfaceId) -> Option<Vec<Row>> {
        let api = self.p.api.clone();
        let path = path_of(c, i);
        let now = Timestamp::now();
        let mut span = SignedDuration::from_hours(24);
        let mut refused = false;
        loop {
            let q = api.query(Some(now - span), Some(now), &[]);
            let a = match c.get_raw(i, &q).await {
                Ok(a) => a,
                Err(o) => {
                    let m = format!("GET {path}: {}", describe(&o));
                    self.push(Some(i), Status::Fail, "window", m, None);
                    return None;
                }
            };
            let cl = api.classify(a.status, a.retry_after, &a.body);
            let mins = span.as_mins();
            match cl.outcome {
                Outcome::Data(rows) => {
                    let capped = cl
                        .capped
                        .map(|k| {
                            format!(
                                "; capped at {} of {} (the agent reads the rest)",
                                k.returned, k.total
                            )
                        })
                        .unwrap_or_default();
                    let m = format!(
                        "GET {path} over the last {mins} min answered 200 with {} rows at {:?}{capped}",
                        rows.len(),
                        api.rows
                    );
                    self.push(Some(i), Status::Ok, "window", m, None);
                    if !refused {
                        let m = format!(
                            "not observed: {} rows in {mins} min were answered without a too-many code (the profile's: {}); the provider's threshold is above that",
                            cl.capped.map_or(rows.len() as u64, |k| k.total),
                            api.too_many_codes.join(", ")
                        );
                        self.push(Some(i), Status::Info, "too_many", m, None);
                    }
                    return Some(rows);
                }
                Outcome::TooMany if span > SignedDuration::from_mins(1) => {
                    let m = format!(
                        "the last {mins} min answered {} (too many rows): the agent bisects such windows",
                        code_of(&a)
                    );
                    self.push(Some(i), Status::Info, "too_many", m, None);
                    refused = true;
                    span /= 24;
                }
                Outcome::ProfileMismatch { key, message } => {
                    let m = format!("GET {path} answered 200 but {message}");
                    let k = format!("api.{key}");
                    self.push(Some(i), Status::Fail, "window", m, Some(&k));
                    return None;
                }
                o => {
                    let key = key_for_refusal(&a);
                    let m = format!("GET {path}: {}", describe(&o));
                    self.push(Some(i), Status::Fail, "window", m, Some(key));
                    return None;
                }
            }
        }
    }

    /// Every row's timestamp, key and history items present and parseable.
    fn rows(&mut self, i: &InterfaceId, rows: &[Row]) {
        let api = self.p.api.clone();
        if rows.is_empty() {
            let m = "no rows in the recent window: row items not checked (commit a change and probe again)";
            self.push(Some(i), Status::Info, "rows", m.into(), None);
            return;
        }
        let n = rows.len();
        let no_key = rows.iter().filter(|r| r.atena_no.is_none()).count();
        let no_hist = rows.iter().filter(|r| r.history_no.is_none()).count();
        if no_key > 0 {
            let m = format!(
                "{no_key} of {n} rows lack the addressee number item {:?}",
                api.row_atena_no
            );
            self.push(Some(i), Status::Fail, "rows", m, Some("api.row_atena_no"));
        }
        if no_hist > 0 {
            let m = format!(
                "{no_hist} of {n} rows lack a numeric history number item {:?}",
                api.row_history_no
            );
            self.push(Some(i), Status::Fail, "rows", m, Some("api.row_history_no"));
        }
        if no_key + no_hist == 0 {
            let m = format!(
                "{n} rows: timestamp, addressee number and history number read with the profile"
            );
            self.push(Some(i), Status::Ok, "rows", m, None);
        }
        self.precision(i, rows);
    }

    /// Whole seconds in the rows and in the profile agree.
    fn precision(&mut self, i: &InterfaceId, rows: &[Row]) {
        let whole = rows.iter().all(|r| r.updated_at.subsec_nanosecond() == 0);
        let (status, m, key) = match (whole, self.p.api.whole_seconds()) {
            (true, true) => (
                Status::Ok,
                "DB update timestamps at whole seconds, as the profile's formats",
                None,
            ),
            (false, false) => (
                Status::Ok,
                "DB update timestamps finer than a second, as the profile's formats",
                None,
            ),
            (true, false) => (Status::Info, "every timestamp seen is a whole second", None),
            (false, true) => (
                Status::Fail,
                "rows carry fractions of a second but the profile's bounds are whole seconds",
                Some("api.time_format / api.timestamp_format"),
            ),
        };
        self.push(Some(i), status, "precision", m.into(), key);
    }

    /// A deliberately malformed FROM must be answered 400 with a JSON body.
    async fn malformed(&mut self, c: &PullClient, i: &InterfaceId) {
        let q = self.p.api.malformed_from();
        let names = self.p.api.from_names();
        let (status, m, key) = match c.get_raw(i, &q).await {
            Ok(a) if a.status == 400 && serde_json::from_slice::<ErrorBody>(&a.body).is_ok() => (
                Status::Ok,
                format!("a malformed {names} was answered 400 {}", code_of(&a)),
                None,
            ),
            Ok(a) if a.status == 200 => (
                Status::Fail,
                format!(
                    "a malformed {names} was answered 200: the provider does not read this parameter"
                ),
                Some("api.from"),
            ),
            Ok(a) => (
                Status::Fail,
                format!(
                    "a malformed {names} was answered {} {} (expected 400 with a JSON body)",
                    a.status,
                    code_of(&a)
                ),
                Some("api.from"),
            ),
            Err(o) => (Status::Fail, describe(&o), None),
        };
        self.push(Some(i), status, "malformed_bound", m, key);
    }

    /// FROM = TO = the newest row's timestamp: an inclusive TO returns that row.
    async fn check_to(&mut self, c: &PullClient, i: &InterfaceId, t: Timestamp) {
        let api: ApiProfile = self.p.api.clone();
        let q = api.exact_bounds(t, t);
        let inclusive = match c.get_raw(i, &q).await {
            Ok(a) => match api.classify(a.status, a.retry_after, &a.body).outcome {
                Outcome::Data(rows) => rows.iter().any(|r| r.updated_at == t),
                _ if a.status == 400 => false,
                o => {
                    let m = format!("FROM = TO answered {}: not observed", describe(&o));
                    self.push(Some(i), Status::Info, "to", m, None);
                    return;
                }
            },
            Err(o) => {
                self.push(Some(i), Status::Fail, "to", describe(&o), None);
                return;
            }
        };
        let word = |b: bool| if b { "inclusive" } else { "exclusive" };
        if inclusive == api.to_inclusive {
            let m = format!(
                "TO is {} (FROM = TO = the newest row's timestamp)",
                word(inclusive)
            );
            self.push(Some(i), Status::Ok, "to", m, None);
        } else {
            let m = format!(
                "TO behaves {}, the profile says {}",
                word(inclusive),
                word(api.to_inclusive)
            );
            let k = format!("api.to_inclusive = {inclusive}");
            self.push(Some(i), Status::Fail, "to", m, Some(&k));
        }
    }
}

fn path_of(c: &PullClient, i: &InterfaceId) -> String {
    let url = c.url(i);
    let base = c.config().base_url.trim_end_matches('/').len();
    url.get(base..).unwrap_or_default().to_owned()
}

fn code_of(a: &RawAnswer) -> String {
    serde_json::from_slice::<ErrorBody>(&a.body)
        .ok()
        .and_then(|e| e.code)
        .unwrap_or_else(|| "(no code)".into())
}

/// Which profile key a refused recent window points at.
fn key_for_refusal(a: &RawAnswer) -> &'static str {
    let msg = serde_json::from_slice::<ErrorBody>(&a.body)
        .ok()
        .and_then(|e| e.message)
        .unwrap_or_default();
    match a.status {
        404 => "api.path",
        400 if msg.contains("unknown parameter") => "api.from / api.to",
        400 => "api.timestamp_format / api.date_format / api.time_format / api.too_many_codes",
        _ => "api",
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Permanent {
            status,
            code,
            message,
        } => {
            format!("{status} {}: {message}", code.as_deref().unwrap_or("-"))
        }
        Outcome::Unauthorized { message } => format!("refused: {message}"),
        Outcome::Connect(m) => format!("unreachable: {m}"),
        Outcome::Transient { code, .. } => format!("5xx {}", code.as_deref().unwrap_or("-")),
        Outcome::Maintenance { .. } => "the provider answered its maintenance code".into(),
        o => o.label().into(),
    }
}
