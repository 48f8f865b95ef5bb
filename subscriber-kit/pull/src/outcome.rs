//! The outcome classes of a PULL request (docs/pull-api.md), shared by the client and the
//! profile's classification. A leaf: imports nothing from the rest of the crate.

use std::time::Duration;

use crate::wire::Row;

/// The outcome classes of a PULL request (docs/pull-api.md, "agent's outcome class").
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200: the rows.
    Data(Vec<Row>),
    /// 503 with a JSON body (E0503 or another code), or another 5xx: retry with backoff.
    Transient {
        /// Error code from the body.
        code: Option<String>,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 503 without a body: the provider's 30 s processing timeout. Retry with a smaller window.
    TimeoutSplit {
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 400 `E0004`: too many rows (or no condition). Bisect the window.
    TooMany,
    /// 503 `E0900`: the provider is in maintenance.
    Maintenance {
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 400 other than `E0004` (or another 4xx): will not succeed by retrying; dead letter.
    Permanent {
        /// HTTP status.
        status: u16,
        /// Error code from the body.
        code: Option<String>,
        /// The provider's message (names the parameter; never personal data by contract).
        message: String,
    },
    /// 401 even after one token refresh, or the token endpoint refused the assertion.
    Unauthorized {
        /// What the provider said.
        message: String,
    },
    /// The provider could not be reached (connect error, client timeout, broken response).
    Connect(String),
    /// A 200 answer that does not read with the provider's API profile (rows missing at the
    /// pointer, an unparseable timestamp): retry with backoff and alert; never ack or
    /// dead-letter on a guess.
    ProfileMismatch {
        /// The `[providers.api]` key to check (`rows`, `row_updated_at`, ...).
        key: String,
        /// What was found (pointers, never values).
        message: String,
    },
}

impl Outcome {
    /// A short label for metrics: `data`, `transient`, `timeout_split`, `too_many`,
    /// `maintenance`, `permanent`, `unauthorized`, `connect`, `profile_mismatch`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Data(_) => "data",
            Outcome::Transient { .. } => "transient",
            Outcome::TimeoutSplit { .. } => "timeout_split",
            Outcome::TooMany => "too_many",
            Outcome::Maintenance { .. } => "maintenance",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Unauthorized { .. } => "unauthorized",
            Outcome::Connect(_) => "connect",
            Outcome::ProfileMismatch { .. } => "profile_mismatch",
        }
    }
}
