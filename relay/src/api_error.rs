//! HTTP error answers: [`ApiError`] implements `IntoResponse`.
//!
//! Every error body has one shape:
//! `{"error": {"status": 422, "code": "invalid_notice", "message": "...", "violations": [{"path": "/data/provider", "rule": "format", "message": "..."}]}}`.
//! Client errors name the field to fix; internal errors are logged with detail and answered
//! with an opaque message.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shirase_proto::Violation;

/// Why an authenticated provider may not publish a notice (HTTP 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forbidden {
    /// `data.provider` is not the authenticated provider.
    WrongProvider,
    /// `data.municipality_code` is not this relay's municipality.
    WrongMunicipality,
    /// The interface is not in the topology for this provider.
    UnknownInterface,
    /// The interface exists but not at this version (版数).
    UnknownInterfaceVersion,
}

impl Forbidden {
    /// The `code` in error bodies and the metrics reason.
    pub fn code(&self) -> &'static str {
        match self {
            Forbidden::WrongProvider => "wrong_provider",
            Forbidden::WrongMunicipality => "wrong_municipality",
            Forbidden::UnknownInterface => "unknown_interface",
            Forbidden::UnknownInterfaceVersion => "unknown_interface_version",
        }
    }
}

/// The `error` object of a response body (also used per batch item).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// Field violations with JSON Pointer paths, when the input was at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 401: no or wrong credentials.
    Unauthenticated(String),
    /// 415: not JSON.
    UnsupportedMediaType(String),
    /// 413: body or batch too large.
    TooLarge(String, Vec<Violation>),
    /// 400: not JSON, not UTF-8, too deep.
    BadRequest(String, Vec<Violation>),
    /// 422: JSON, but not a valid notice or batch.
    Unprocessable(String, Vec<Violation>),
    /// 403: authenticated but not allowed.
    Forbidden(Forbidden, String),
    /// 503: JetStream unavailable; retry after the given time with the same ids.
    Unavailable(String, Duration),
    /// 429: the provider is over its request rate; retry after the given time.
    TooManyRequests(String, Duration),
    /// 408: the body did not arrive within `http.body_timeout`.
    RequestTimeout(String),
    /// 500: a bug or an unexpected failure; logged, answered opaquely.
    Internal(String),
}

impl ApiError {
    /// Status and body of this error.
    pub fn body(&self) -> ErrorBody {
        let (status, code, message, violations) = match self {
            ApiError::Unauthenticated(m) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                m.clone(),
                vec![],
            ),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
                vec![],
            ),
            ApiError::TooLarge(m, v) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                m.clone(),
                v.clone(),
            ),
            ApiError::BadRequest(m, v) => {
                (StatusCode::BAD_REQUEST, "malformed", m.clone(), v.clone())
            }
            ApiError::Unprocessable(m, v) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_notice",
                m.clone(),
                v.clone(),
            ),
            ApiError::Forbidden(f, m) => (StatusCode::FORBIDDEN, f.code(), m.clone(), vec![]),
            ApiError::Unavailable(m, _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                m.clone(),
                vec![],
            ),
            ApiError::TooManyRequests(m, _) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                m.clone(),
                vec![],
            ),
            ApiError::RequestTimeout(m) => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                m.clone(),
                vec![],
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the relay logged the details".to_owned(),
                vec![],
            ),
        };
        ErrorBody {
            status: status.as_u16(),
            code,
            message,
            violations,
        }
    }

    /// The metrics reason of this error.
    pub fn code(&self) -> &'static str {
        self.body().code
    }
}

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error answering a request");
        }
        let body = self.body();
        let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(Envelope { error: body })).into_response();
        match &self {
            ApiError::Unavailable(_, after) | ApiError::TooManyRequests(_, after) => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    // Whole seconds, rounded up: never earlier than the wait.
                    HeaderValue::from(
                        (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1),
                    ),
                );
            }
            ApiError::Unauthenticated(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"shirase\""),
                );
            }
            _ => {}
        }
        resp
    }
}
