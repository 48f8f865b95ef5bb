//! The request log (bounded, newest last) and the counters by outcome.
//!
//! Entries hold the request line, status, error code and row *count*: never row contents.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Data endpoint: 200 with rows.
    Ok,
    /// Token endpoint: a token was issued.
    TokenIssued,
    /// Token endpoint: 400 or 401.
    TokenRefused,
    /// 400 `E0001`.
    BadRequest,
    /// 400 `E0004`.
    TooMany,
    /// 401 `E0401`.
    Unauthorized,
    /// 503 `E0503` (injected error rate or outage).
    Error,
    /// 503 `E0900`.
    Maintenance,
    /// Bare 503: the provider timeout expired.
    Timeout,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// When the request arrived (sim clock, RFC 3339).
    pub at: String,
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/api/001o05-00`.
    pub path: String,
    /// The raw query string (conditions only: timestamps and addressee numbers).
    pub query: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The error code answered, if any (`E0004`...).
    pub code: Option<String>,
    /// Rows returned (200 only).
    pub rows: Option<usize>,
    /// Time spent answering, in milliseconds.
    pub duration_ms: u64,
    /// The OAuth client whose access token the data request carried (who polls, when several
    /// consumers share a provider); absent for token requests and unknown tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Counters since start (never reset, never dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Every request to the token and data endpoints.
    pub requests: u64,
    /// 200 from the data endpoint.
    pub ok: u64,
    /// Tokens issued.
    pub token_issued: u64,
    /// Token requests refused (400/401).
    pub token_refused: u64,
    /// 400 `E0001`.
    pub bad_request: u64,
    /// 400 `E0004`.
    pub too_many: u64,
    /// 401 `E0401`.
    pub unauthorized: u64,
    /// 503 `E0503`.
    pub error: u64,
    /// 503 `E0900`.
    pub maintenance: u64,
    /// Bare 503 after the provider timeout.
    pub timeout: u64,
    /// Rows returned by all 200 answers.
    pub rows_returned: u64,
    /// Changes committed (= notices recorded).
    pub changes_committed: u64,
    /// Notices the target accepted (relay 2xx or JetStream PubAck).
    pub notices_delivered: u64,
    /// Of those, how many the target reported as duplicates.
    pub notices_duplicate: u64,
    /// Delivery attempts that failed and were retried.
    pub notice_retries: u64,
    /// Notices the target refused for good (relay 4xx); logged with the reason.
    pub notices_failed: u64,
}

#[derive(Debug)]
pub(crate) struct RequestLog {
    capacity: usize,
    entries: VecDeque<RequestLogEntry>,
    pub counters: Counters,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn record(&mut self, e: RequestLogEntry) {
        let c = &mut self.counters;
        c.requests += 1;
        match e.outcome {
            Outcome::Ok => {
                c.ok += 1;
                c.rows_returned += e.rows.unwrap_or(0) as u64;
            }
            Outcome::TokenIssued => c.token_issued += 1,
            Outcome::TokenRefused => c.token_refused += 1,
            Outcome::BadRequest => c.bad_request += 1,
            Outcome::TooMany => c.too_many += 1,
            Outcome::Unauthorized => c.unauthorized += 1,
            Outcome::Error => c.error += 1,
            Outcome::Maintenance => c.maintenance += 1,
            Outcome::Timeout => c.timeout += 1,
        }
        tracing::debug!(path = %e.path, status = e.status, outcome = ?e.outcome, rows = ?e.rows, "request");
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    pub(crate) fn entries(&self) -> Vec<RequestLogEntry> {
        self.entries.iter().cloned().collect()
    }
}
