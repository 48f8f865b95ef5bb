//! `GET /api/<interface id>`: the standard's data endpoint (docs/pull-api.md), with the injected
//! faults applied in the order a real provider would hit them: maintenance and outage before
//! anything, then authentication, parameter checks, processing time (the provider timeout), an
//! unexpected error, and finally the row-count threshold.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use rand::Rng;
use serde_json::json;
use shirase_proto::{AtenaNo, InterfaceId, OffsetTimestamp};
use tokio::time::Instant;

use super::config::{AnswerOrder, ParamNames};
use super::db::{Query as DbQuery, TooMany};
use super::dialect::{Dialect, parse_romaji};
use super::log::Outcome;
use super::state::{Shared, lock};

/// Most addressee numbers one request may name; more is a malformed request, not a big one.
const MAX_KEYS_PER_REQUEST: usize = 1_000;

/// A JSON error body `{"code": ..., "message": ...}`.
pub(crate) fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

pub(crate) fn maintenance_response(s: &Shared) -> Response {
    let mut r = api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "E0900",
        "the provider is in maintenance; retry after the window",
    );
    let secs = s.config.maintenance_retry_after.as_secs().max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

struct Answer {
    response: Response,
    status: StatusCode,
    outcome: Outcome,
    code: Option<&'static str>,
    rows: Option<usize>,
}

impl Answer {
    fn error(
        status: StatusCode,
        outcome: Outcome,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            response: api_error(status, code, message),
            status,
            outcome,
            code: Some(code),
            rows: None,
        }
    }
}

pub(crate) async fn get_rows(
    State(s): State<Arc<Shared>>,
    Path(interface): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rows_at(s, None, interface, headers, uri).await
}

/// `GET /api/<version>/<interface id>`: the romaji dialect's path.
pub(crate) async fn get_versioned_rows(
    State(s): State<Arc<Shared>>,
    Path((version, interface)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rows_at(s, Some(version), interface, headers, uri).await
}

/// Whether this dialect serves this path: the romaji dialect wants the interface's version in
/// it, the standard one none.
fn path_error(s: &Shared, version: Option<&str>, interface: &str) -> Option<Answer> {
    let spec = s
        .config
        .interfaces
        .iter()
        .find(|i| i.id.as_str() == interface);
    let message = match (s.config.dialect, version) {
        (Dialect::Standard, None) => return None,
        (Dialect::Romaji, Some(v)) if spec.is_none_or(|i| i.version.as_str() == v) => return None,
        (Dialect::Standard, Some(_)) => "this provider serves /api/<interface id>".to_owned(),
        (Dialect::Romaji, Some(v)) => format!("version {v:?} of {interface} is not served"),
        (Dialect::Romaji, None) => "this provider serves /api/<version>/<interface id>".to_owned(),
    };
    Some(Answer::error(
        StatusCode::NOT_FOUND,
        Outcome::BadRequest,
        "E0001",
        message,
    ))
}

async fn rows_at(
    s: Arc<Shared>,
    version: Option<String>,
    interface: String,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let started = Instant::now();
    let client = bearer(&headers).and_then(|t| lock(&s.auth).client_of(t));
    let a = match path_error(&s, version.as_deref(), &interface) {
        Some(a) => a,
        None => answer(&s, &interface, &headers, &uri).await,
    };
    let path = match &version {
        Some(v) => format!("/api/{v}/{interface}"),
        None => format!("/api/{interface}"),
    };
    s.log_request(
        &Method::GET,
        &path,
        uri.query().map(str::to_owned),
        a.status,
        a.outcome,
        a.code,
        a.rows,
        started,
        client,
    );
    a.response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

async fn answer(s: &Shared, interface: &str, headers: &HeaderMap, uri: &Uri) -> Answer {
    let faults = s.faults();
    if faults.maintenance {
        return Answer {
            response: maintenance_response(s),
            status: StatusCode::SERVICE_UNAVAILABLE,
            outcome: Outcome::Maintenance,
            code: Some("E0900"),
            rows: None,
        };
    }
    if faults.outage {
        return Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Error,
            "E0503",
            "provider unavailable (outage)",
        );
    }
    if let Err(why) = lock(&s.auth).check(bearer(headers)) {
        return Answer::error(
            StatusCode::UNAUTHORIZED,
            Outcome::Unauthorized,
            "E0401",
            why,
        );
    }
    let iface = match interface.parse::<InterfaceId>() {
        Ok(i) if lock(&s.db).has_interface(&i) => i,
        _ => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                Outcome::BadRequest,
                "E0001",
                format!("interface id {interface:?} is not served by this provider"),
            );
        }
    };
    let pairs = match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(p)) => p,
        Err(e) => {
            let m = format!("the query string is not valid application/x-www-form-urlencoded: {e}");
            return Answer::error(StatusCode::BAD_REQUEST, Outcome::BadRequest, "E0001", m);
        }
    };
    let parsed = match s.config.dialect {
        Dialect::Standard => parse_query(&pairs, &s.config.params),
        Dialect::Romaji => parse_romaji(&pairs),
    };
    let q = match parsed {
        Ok(q) => q,
        Err(ParamError::Malformed(m)) => {
            return Answer::error(StatusCode::BAD_REQUEST, Outcome::BadRequest, "E0001", m);
        }
        Err(ParamError::NoCondition(m)) => {
            let code = s.config.dialect.too_many_code();
            return Answer::error(StatusCode::BAD_REQUEST, Outcome::TooMany, code, m);
        }
    };

    let latency = Duration::from_millis(faults.latency_ms);
    if latency > s.config.provider_timeout {
        // The standard's timeout: the provider gives up and answers 503 with no body at all.
        tokio::time::sleep(s.config.provider_timeout).await;
        return Answer {
            response: StatusCode::SERVICE_UNAVAILABLE.into_response(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            outcome: Outcome::Timeout,
            code: None,
            rows: None,
        };
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if faults.error_rate > 0.0 && rand::rng().random_bool(faults.error_rate.clamp(0.0, 1.0)) {
        return Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Error,
            "E0503",
            "unexpected error on the provider (injected)",
        );
    }

    let view = (faults.replica_lag_ms > 0).then(|| {
        let now = s.clock.now();
        now.checked_sub(SignedDuration::from_millis(faults.replica_lag_ms as i64))
            .unwrap_or(now)
    });
    if faults.timeout_above_rows > 0
        && lock(&s.db)
            .query(&iface, &q, faults.timeout_above_rows, view)
            .is_err()
    {
        // Heavy under the injected slowness: the provider timeout expires first.
        tokio::time::sleep(s.config.provider_timeout).await;
        return Answer {
            response: StatusCode::SERVICE_UNAVAILABLE.into_response(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            outcome: Outcome::Timeout,
            code: None,
            rows: None,
        };
    }
    let threshold = match faults.row_threshold {
        0 => s.config.row_threshold,
        n => n,
    };
    let result = lock(&s.db).query(&iface, &q, threshold, view);
    match result {
        Err(TooMany) => Answer::error(
            StatusCode::BAD_REQUEST,
            Outcome::TooMany,
            s.config.dialect.too_many_code(),
            format!(
                "more than {threshold} rows match; narrow the conditions (a shorter window or fewer addressee numbers)",
            ),
        ),
        Ok(mut rows) => {
            let total = rows.len();
            if s.config.answer_order == AnswerOrder::Key {
                rows.sort_by(|a, b| (&a.atena_no, a.history_no).cmp(&(&b.atena_no, b.history_no)));
            }
            if let Some(cap) = s.config.answer_cap {
                rows.truncate(cap);
            }
            let n = rows.len();
            let body = s.config.dialect.body(&iface, rows, total);
            Answer {
                response: (StatusCode::OK, axum::Json(body)).into_response(),
                status: StatusCode::OK,
                outcome: Outcome::Ok,
                code: None,
                rows: Some(n),
            }
        }
    }
}

pub(crate) enum ParamError {
    /// E0001: the message names the parameter.
    Malformed(String),
    /// E0004: no condition at all.
    NoCondition(String),
}

/// Comma-separated addressee numbers, sorted and without repeats.
pub(crate) fn parse_keys(name: &str, value: &str) -> Result<Vec<AtenaNo>, ParamError> {
    let malformed = ParamError::Malformed;
    if value.is_empty() {
        return Err(malformed(format!(
            "{name}: empty; give comma-separated 15-digit addressee numbers"
        )));
    }
    let mut list = Vec::new();
    for (i, item) in value.split(',').enumerate() {
        list.push(
            item.parse::<AtenaNo>()
                .map_err(|e| malformed(format!("{name}: item {i}: {e}")))?,
        );
    }
    if list.len() > MAX_KEYS_PER_REQUEST {
        return Err(malformed(format!(
            "{name}: at most {MAX_KEYS_PER_REQUEST} addressee numbers, got {}",
            list.len()
        )));
    }
    list.sort_unstable();
    list.dedup();
    Ok(list)
}

fn parse_query(pairs: &[(String, String)], names: &ParamNames) -> Result<DbQuery, ParamError> {
    let mut from: Option<OffsetTimestamp> = None;
    let mut to: Option<OffsetTimestamp> = None;
    let mut keys: Option<Vec<AtenaNo>> = None;
    let malformed = |m: String| ParamError::Malformed(m);
    for (name, value) in pairs {
        let twice = || malformed(format!("{name}: given more than once"));
        if *name == names.updated_from || *name == names.updated_to {
            let ts = value.parse::<OffsetTimestamp>().map_err(|e| {
                let hint = if value.contains(' ') {
                    " ('+' in the offset must be sent as %2B)"
                } else {
                    ""
                };
                malformed(format!("{name}: {e}{hint}"))
            })?;
            let slot = if *name == names.updated_from {
                &mut from
            } else {
                &mut to
            };
            if slot.replace(ts).is_some() {
                return Err(twice());
            }
        } else if *name == names.atena_no {
            if keys.replace(parse_keys(name, value)?).is_some() {
                return Err(twice());
            }
        } else {
            return Err(malformed(format!(
                "{name}: unknown parameter (this provider accepts {}, {}, {})",
                names.updated_from, names.updated_to, names.atena_no
            )));
        }
    }
    if let (Some(f), Some(t)) = (&from, &to)
        && f.instant() > t.instant()
    {
        return Err(malformed(format!(
            "{}: must not be earlier than {}",
            names.updated_to, names.updated_from
        )));
    }
    if from.is_none() && to.is_none() && keys.is_none() {
        return Err(ParamError::NoCondition(format!(
            "no condition given; narrow the request with {}/{} or {}",
            names.updated_from, names.updated_to, names.atena_no
        )));
    }
    Ok(DbQuery {
        from: from.map(|t| t.instant()),
        to: to.map(|t| t.instant()),
        keys,
    })
}
