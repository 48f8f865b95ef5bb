//! Errors of the operator API, answered in the relay's one error shape
//! (`{"error": {"status", "code", "message", "violations": [{"path", ...}]}}`); a client error
//! names the request field to fix in `violations[0].path` (a JSON Pointer into the request).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shirase_proto::Violation;
use shirase_proto::validate::Rule;

use crate::api_error::ErrorBody;

/// What kind of failure, for callers that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsErrorKind {
    /// 401: no or wrong operator token.
    Unauthenticated,
    /// 403: the role does not allow the action.
    Forbidden,
    /// 422: a request field is wrong (named in `field`).
    Invalid,
    /// 404: the consumer, dead letter or subscriber does not exist.
    NotFound,
    /// 409: state changed underneath (checkpoint compare-and-set lost).
    Conflict,
    /// 503: JetStream did not answer.
    Unavailable,
}

/// An operator API error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OpsError {
    kind: OpsErrorKind,
    /// For a person.
    pub message: String,
    /// JSON Pointer of the request field at fault, for [`OpsErrorKind::Invalid`].
    pub field: Option<String>,
}

impl OpsError {
    /// The kind.
    pub fn kind(&self) -> OpsErrorKind {
        self.kind
    }
    /// 401.
    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self {
            kind: OpsErrorKind::Unauthenticated,
            message: m.into(),
            field: None,
        }
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self {
            kind: OpsErrorKind::Forbidden,
            message: m.into(),
            field: None,
        }
    }
    /// 422 naming `field` (a name like `subscriber`; stored as the pointer `/subscriber`).
    pub fn invalid(field: &str, m: impl Into<String>) -> Self {
        Self {
            kind: OpsErrorKind::Invalid,
            message: format!("{field}: {}", m.into()),
            field: Some(format!("/{field}")),
        }
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self {
            kind: OpsErrorKind::NotFound,
            message: m.into(),
            field: None,
        }
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self {
            kind: OpsErrorKind::Conflict,
            message: m.into(),
            field: None,
        }
    }
    /// 503 from a JetStream failure while doing `what`.
    pub fn nats(what: &str, e: impl std::fmt::Display) -> Self {
        Self {
            kind: OpsErrorKind::Unavailable,
            message: format!("{what}: {e}"),
            field: None,
        }
    }

    /// HTTP status and body.
    pub fn body(&self) -> ErrorBody {
        let (status, code) = match self.kind {
            OpsErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            OpsErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            OpsErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            OpsErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            OpsErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            OpsErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let violations = self
            .field
            .iter()
            .map(|p| Violation::new(p.clone(), Rule::Format, self.message.clone()))
            .collect();
        ErrorBody {
            status: status.as_u16(),
            code,
            message: self.message.clone(),
            violations,
        }
    }
}

#[derive(serde::Serialize)]
struct Envelope {
    error: ErrorBody,
}

impl IntoResponse for OpsError {
    fn into_response(self) -> Response {
        let body = self.body();
        let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(Envelope { error: body })).into_response();
        if self.kind == OpsErrorKind::Unauthenticated {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shirase-ops\""),
            );
        }
        resp
    }
}
