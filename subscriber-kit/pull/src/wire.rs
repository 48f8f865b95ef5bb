//! The JSON bodies of the PULL API on the wire (docs/pull-api.md): the data answer and its
//! rows, error bodies, the token answer and the client assertion's claims.
//!
//! Rows are personal data: nothing here logs them.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One row as the provider returned it. `raw` is the whole row object (personal data).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Addressee number, when the row has one.
    pub atena_no: Option<String>,
    /// History number (履歴番号), when present.
    pub history_no: Option<u64>,
    /// The row's DB update timestamp: what checkpoints and coverage are computed from.
    pub updated_at: Timestamp,
    /// The row as received.
    pub raw: serde_json::Value,
}

/// The claims of the client assertion (RFC 7523, signed with the client secret, HS256).
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    /// Issuer: the client id.
    pub iss: &'a str,
    /// Subject: the client id.
    pub sub: &'a str,
    /// Audience: the token endpoint URL.
    pub aud: &'a str,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// A fresh id per assertion (UUIDv7).
    pub jti: String,
}

/// The token endpoint's 200 answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds, when sent.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// An error body: the data endpoint's `code` / `message`, the token endpoint's OAuth
/// `error` / `error_description`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Error code (`E0004`, `E0503`, `E0900`, ...).
    #[serde(default)]
    pub code: Option<String>,
    /// The provider's message.
    #[serde(default)]
    pub message: Option<String>,
    /// OAuth error.
    #[serde(default)]
    pub error: Option<String>,
    /// OAuth error description.
    #[serde(default)]
    pub error_description: Option<String>,
}
