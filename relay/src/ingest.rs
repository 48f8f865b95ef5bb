//! `POST /v1/notices`: authenticated HTTP ingest of one notice or a batch.
//!
//! Order of checks: credentials (401) → the provider's request rate (429 + `Retry-After`) →
//! content type (415), all before a byte of the body is read, so a client without a token
//! cannot make the relay buffer anything → the body, read within `http.body_timeout` (408) and
//! `http.body_limit_bytes` (413) → JSON and shape
//! (400/413/422 for the whole body) → per notice: validation (422), authorization (403),
//! publish with `Nats-Msg-Id` = id and wait for the PubAck (202, or 503 + `Retry-After`).
//! A notice is stored as the bytes received for it, which validated as exactly that notice.
//!
//! # Bodies
//!
//! Single notice (a JSON object) accepted, HTTP 202:
//! `{"id": "<uuid>", "status": 202, "stream_seq": 17, "duplicate": false}`
//! (`duplicate: true` when JetStream already had this id: the notice is stored once).
//! Any failure uses the [`crate::api_error`] shape: `{"error": {"status", "code", "message", "violations"}}`.
//!
//! Batch (a JSON array), one result per item in order, HTTP 202 when all were accepted, the
//! common status when all items failed the same way (422, 403, 503), else 207:
//! ```json
//! {"accepted": 1, "duplicates": 0, "rejected": 1, "failed": 1,
//!  "results": [
//!   {"index": 0, "id": "…", "status": 202, "stream_seq": 18, "duplicate": false},
//!   {"index": 1, "id": "…", "status": 422, "error": {"status": 422, "code": "invalid_notice",
//!     "message": "…", "violations": [{"path": "/1/data/provider", "rule": "format", "message": "…"}]}},
//!   {"index": 2, "id": "…", "status": 503, "error": {"status": 503, "code": "unavailable", "message": "…"}}]}
//! ```
//! Violation paths in a batch are JSON Pointers into the whole body (`/1/data/provider`).
//! `rejected` counts 4xx items (fix them), `failed` counts 503 items (re-send those ids after
//! `Retry-After`; a re-send is de-duplicated).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use shirase_proto::{
    AnyNotice, BusinessId, Envelope, Limits, Payload, PayloadError, Rule, Violation,
    parse_any_payload_spans,
};

use crate::api_error::{ApiError, ErrorBody, Forbidden};
use crate::app::AppState;
use crate::publisher::Outgoing;

/// Result of one notice.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ItemResult {
    /// Position in the batch (absent for a single notice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Notice id, when the item had a readable one.
    pub id: Option<String>,
    /// HTTP status of this item.
    pub status: u16,
    /// Stream sequence (accepted items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
    /// Whether JetStream already had the id (accepted items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Why the item was not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// Accepted but not published: the provider is watched and the watcher announces changes
    /// made before its `watch.until` (so each change is announced once).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub covered_by_watcher: bool,
}

/// The batch answer.
#[derive(Debug, Clone, Serialize)]
pub struct BatchResponse {
    /// Items stored (including duplicates).
    pub accepted: usize,
    /// Accepted items that were duplicates.
    pub duplicates: usize,
    /// Accepted items not published because the watcher announces them.
    #[serde(skip_serializing_if = "is_zero")]
    pub covered_by_watcher: usize,
    /// Items refused with a 4xx status.
    pub rejected: usize,
    /// Items that got 503: re-send them.
    pub failed: usize,
    /// One per item, in order.
    pub results: Vec<ItemResult>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Whether the watcher, not the provider, announces `notice`'s change: the provider has a
/// `watch` section and the change is older than its `watch.until` (or there is no `until`).
/// File-ready notices are never covered: the API watcher announces rows, not files.
fn covered_by_watcher(state: &AppState, notice: &AnyNotice) -> bool {
    let AnyNotice::Change(notice) = notice else {
        return false;
    };
    state
        .config
        .providers
        .iter()
        .find(|p| p.business_id == notice.data.provider)
        .and_then(|p| p.watch.as_ref())
        .is_some_and(|w| w.covers(notice.data.updated_at.instant()))
}

/// The ingest router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/notices", post(post_notices))
        .with_state(state)
}

fn content_type_ok(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json"
        | "application/cloudevents+json"
        | "application/cloudevents-batch+json" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json (or application/cloudevents+json, application/cloudevents-batch+json), got {:?}",
            ct.chars().take(80).collect::<String>()
        ))),
    }
}

fn payload_error(e: PayloadError) -> ApiError {
    let v = vec![Violation {
        path: String::new(),
        rule: e.rule(),
        message: e.to_string(),
    }];
    match e {
        PayloadError::TooLarge { .. } | PayloadError::TooMany { .. } => {
            ApiError::TooLarge(e.to_string(), v)
        }
        PayloadError::Syntax(_) => ApiError::BadRequest(e.to_string(), v),
        PayloadError::Shape | PayloadError::Empty => ApiError::Unprocessable(e.to_string(), v),
    }
}

/// Whether `provider` may publish `notice` under this topology.
fn authorize(state: &AppState, provider: BusinessId, notice: &AnyNotice) -> Result<(), ApiError> {
    let (d_provider, d_municipality) = (notice.provider(), notice.municipality());
    let (d_interface, d_version) = (notice.interface_id(), notice.interface_version());
    if d_provider != provider {
        return Err(ApiError::Forbidden(
            Forbidden::WrongProvider,
            format!("your credentials are provider {provider}'s; data.provider is {d_provider}"),
        ));
    }
    if d_municipality != state.config.municipality {
        return Err(ApiError::Forbidden(
            Forbidden::WrongMunicipality,
            format!(
                "this relay serves municipality {}; data.municipality_code is {d_municipality}",
                state.config.municipality
            ),
        ));
    }
    let mut known = state.config.interface(&d_interface).peekable();
    if known.peek().is_none() {
        return Err(ApiError::Forbidden(
            Forbidden::UnknownInterface,
            format!("interface {d_interface} is not configured for provider {provider}"),
        ));
    }
    if !known.any(|i| i.version == *d_version) {
        return Err(ApiError::Forbidden(
            Forbidden::UnknownInterfaceVersion,
            format!("interface {d_interface} is not configured at version {d_version}"),
        ));
    }
    Ok(())
}

fn unavailable(state: &AppState, id: &str) -> ApiError {
    ApiError::Unavailable(
        format!(
            "JetStream did not acknowledge notice {id}; re-send it with the same id after Retry-After"
        ),
        state.config.http.retry_after,
    )
}

async fn post_notices(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match handle(&state, &parts.headers, body).await {
        Ok(r) => r,
        Err(e) => {
            state.metrics.reject(e.code(), 1);
            e.into_response()
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(
        format!("body is larger than the limit of {limit} bytes (split the batch)"),
        vec![Violation {
            path: String::new(),
            rule: Rule::TooLarge,
            message: format!("limit is {limit} bytes"),
        }],
    )
}

/// Everything decided from the headers alone: who is calling, whether they are within their
/// rate, and whether the body's type is acceptable.
fn admit(state: &AppState, headers: &HeaderMap) -> Result<BusinessId, ApiError> {
    let provider = state
        .auth
        .authenticate(headers)
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
    if let Err(wait) = state.rate_limit.check(provider, std::time::Instant::now()) {
        return Err(ApiError::TooManyRequests(
            format!(
                "provider {provider} is over its request rate ({} per second, bursts of {}); retry after Retry-After",
                state.config.http.provider_rate_per_sec, state.config.http.provider_burst
            ),
            wait,
        ));
    }
    content_type_ok(headers)?;
    // A body over the limit is answered 413 once `body_limit_bytes` of it were read, not from
    // its Content-Length: answering before reading makes the server close a connection the
    // client is still writing to, and the client sees a broken pipe instead of the 413. Only
    // an authenticated provider within its rate gets this far.
    Ok(provider)
}

/// The body, read only now: at most `body_limit_bytes`, within `body_timeout`.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.http.body_limit_bytes;
    let timeout = state.config.http.body_timeout;
    let timed_out = || {
        ApiError::RequestTimeout(format!(
            "the body did not arrive within {}s (http.body_timeout)",
            timeout.as_secs_f64()
        ))
    };
    // The listener's own body deadline (the same `http.body_timeout`) may fire first.
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => match cause(&e) {
            BodyFailure::TooLarge => Err(too_large(limit)),
            BodyFailure::TimedOut => Err(timed_out()),
            BodyFailure::Other => Err(ApiError::BadRequest(
                format!("could not read the body: {e}"),
                vec![],
            )),
        },
    }
}

enum BodyFailure {
    TooLarge,
    TimedOut,
    Other,
}

fn cause(e: &axum::Error) -> BodyFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return BodyFailure::TooLarge;
        }
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return BodyFailure::TimedOut;
        }
        source = err.source();
    }
    BodyFailure::Other
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let provider = admit(state, headers)?;
    let bytes = read_body(state, body).await?;
    let limit = state.config.http.body_limit_bytes;
    let limits = Limits {
        max_batch_bytes: limit,
        max_batch_notices: state.config.http.max_batch_notices,
        ..Limits::default()
    };
    let (payload, spans) = parse_any_payload_spans(&bytes, &limits).map_err(payload_error)?;
    // Each valid notice is stored as the bytes it was validated from.
    let raw: Vec<Bytes> = spans.into_iter().map(|r| bytes.slice(r)).collect();
    match payload {
        Payload::Single(Err(violations)) => Err(ApiError::Unprocessable(
            format!(
                "the notice has {} problem(s); see violations",
                violations.len()
            ),
            violations,
        )),
        Payload::Single(Ok(notice)) => {
            authorize(state, provider, &notice)?;
            let id = notice.id().to_string();
            if covered_by_watcher(state, &notice) {
                return Ok((
                    StatusCode::ACCEPTED,
                    Json(ItemResult {
                        index: None,
                        id: Some(id),
                        status: 202,
                        stream_seq: None,
                        duplicate: None,
                        error: None,
                        covered_by_watcher: true,
                    }),
                )
                    .into_response());
            }
            let payload = raw
                .into_iter()
                .next()
                .unwrap_or_else(|| notice.to_json().into());
            match state.publisher.publish_raw(&notice, payload).await {
                Ok(s) => Ok((
                    StatusCode::ACCEPTED,
                    Json(ItemResult {
                        index: None,
                        id: Some(id),
                        status: 202,
                        stream_seq: Some(s.stream_seq),
                        duplicate: Some(s.duplicate),
                        error: None,
                        covered_by_watcher: false,
                    }),
                )
                    .into_response()),
                Err(f) if f.transient => {
                    tracing::warn!(notice = %id, attempts = f.attempts, error = %f.last, "publish failed; answering 503");
                    Err(unavailable(state, &id))
                }
                Err(f) => Err(ApiError::Internal(f.to_string())),
            }
        }
        Payload::Batch(items) => Ok(batch(state, provider, &bytes, items, &raw).await),
    }
}

/// The id of a batch item that failed validation, when it has a string `id`.
fn raw_ids(bytes: &[u8]) -> Vec<Option<String>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    i.get("id")
                        .and_then(|x| x.as_str())
                        .map(|s| s.chars().take(64).collect())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A batch: classify the items, publish the valid authorized ones, answer per item.
async fn batch(
    state: &AppState,
    provider: BusinessId,
    bytes: &[u8],
    items: Vec<Result<AnyNotice, Vec<Violation>>>,
    raw: &[Bytes],
) -> Response {
    let (mut results, to_publish) = classify_items(state, provider, bytes, &items);
    publish_items(state, &to_publish, raw, &mut results).await;
    batch_response(state, results)
}

/// One result per item (invalid, forbidden and watcher-covered items final), and the items
/// left to publish with their index.
fn classify_items<'a>(
    state: &AppState,
    provider: BusinessId,
    bytes: &[u8],
    items: &'a [Result<AnyNotice, Vec<Violation>>],
) -> (Vec<ItemResult>, Vec<(usize, &'a AnyNotice)>) {
    let mut results: Vec<ItemResult> = Vec::with_capacity(items.len());
    let mut to_publish: Vec<(usize, &AnyNotice)> = Vec::new();
    let mut ids: Option<Vec<Option<String>>> = None;
    for (index, item) in items.iter().enumerate() {
        let mut r = ItemResult {
            index: Some(index),
            id: None,
            status: 0,
            stream_seq: None,
            duplicate: None,
            error: None,
            covered_by_watcher: false,
        };
        match item {
            Err(violations) => {
                let ids = ids.get_or_insert_with(|| raw_ids(bytes));
                r.id = ids.get(index).cloned().flatten();
                let violations: Vec<Violation> = violations
                    .iter()
                    .map(|v| Violation {
                        path: format!("/{index}{}", v.path),
                        rule: v.rule,
                        message: v.message.clone(),
                    })
                    .collect();
                let e = ApiError::Unprocessable(
                    format!("notice {index} has {} problem(s)", violations.len()),
                    violations,
                );
                state.metrics.reject(e.code(), 1);
                r.status = 422;
                r.error = Some(e.body());
            }
            Ok(notice) => {
                r.id = Some(notice.id().to_string());
                match authorize(state, provider, notice) {
                    Err(e) => {
                        state.metrics.reject(e.code(), 1);
                        r.status = e.body().status;
                        r.error = Some(e.body());
                    }
                    Ok(()) if covered_by_watcher(state, notice) => {
                        r.status = 202;
                        r.covered_by_watcher = true;
                    }
                    Ok(()) => to_publish.push((index, notice)),
                }
            }
        }
        results.push(r);
    }
    (results, to_publish)
}

/// Publish `to_publish` (each as its bytes in `raw`, by index) and write each outcome into its
/// item's result.
async fn publish_items(
    state: &AppState,
    to_publish: &[(usize, &AnyNotice)],
    raw: &[Bytes],
    results: &mut [ItemResult],
) {
    let notices: Vec<Outgoing<'_, AnyNotice>> = to_publish
        .iter()
        .map(|(i, n)| {
            let payload = raw.get(*i).cloned();
            (*n, payload.unwrap_or_else(|| n.to_json().into()))
        })
        .collect();
    let outcomes = state.publisher.publish_all_raw(&notices).await;
    let mut failed_logged = 0usize;
    for ((index, notice), outcome) in to_publish.iter().zip(outcomes) {
        let r = &mut results[*index];
        match outcome {
            Ok(s) => {
                r.status = 202;
                r.stream_seq = Some(s.stream_seq);
                r.duplicate = Some(s.duplicate);
            }
            Err(f) => {
                let e = if f.transient {
                    unavailable(state, &notice.id().to_string())
                } else {
                    ApiError::Internal(f.to_string())
                };
                if failed_logged == 0 {
                    tracing::warn!(notice = %notice.id(), attempts = f.attempts, error = %f.last, "batch item not acknowledged");
                }
                failed_logged += 1;
                state.metrics.reject(e.code(), 1);
                r.status = e.body().status;
                r.error = Some(e.body());
            }
        }
    }
}

/// The batch answer: counts, the common status (207 when they differ), `Retry-After` when
/// any item got 503.
fn batch_response(state: &AppState, results: Vec<ItemResult>) -> Response {
    let accepted = results.iter().filter(|r| r.status == 202).count();
    let duplicates = results.iter().filter(|r| r.duplicate == Some(true)).count();
    let covered = results.iter().filter(|r| r.covered_by_watcher).count();
    let failed = results.iter().filter(|r| r.status >= 500).count();
    let rejected = results.len() - accepted - failed;
    let first = results.first().map(|r| r.status).unwrap_or(202);
    let status = if results.iter().all(|r| r.status == first) {
        first
    } else {
        207
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::MULTI_STATUS);
    let any_503 = results.iter().any(|r| r.status == 503);
    let mut resp = (
        status,
        Json(BatchResponse {
            accepted,
            duplicates,
            covered_by_watcher: covered,
            rejected,
            failed,
            results,
        }),
    )
        .into_response();
    if any_503 {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(state.config.http.retry_after.as_secs().max(1)),
        );
    }
    resp
}
