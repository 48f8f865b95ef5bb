//! Injected faults: error rate, latency (beyond the provider timeout: a bare 503), outage,
//! maintenance, replica lag, a lowered row threshold (E0004) and time-outs of heavy requests. Changed at run time over `/admin/faults` or the handle.

use serde::{Deserialize, Serialize};

use super::error::{SimError, SimErrorKind};

/// The faults currently injected into the data endpoint (maintenance and outage also hit the
/// token endpoint).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Faults {
    /// Fraction (0.0 to 1.0) of data requests answered 503 `E0503`.
    pub error_rate: f64,
    /// Added processing time of a data request; beyond the provider timeout the request is
    /// answered with a bare 503 (no body) when the timeout expires.
    pub latency_ms: u64,
    /// Every request answered 503 `E0503`.
    pub outage: bool,
    /// Every request answered 503 `E0900` with `Retry-After`.
    pub maintenance: bool,
    /// The data endpoint reads a replica showing the DB as it was this many ms ago.
    pub replica_lag_ms: u64,
    /// When not 0, the row threshold in force instead of the configured one: more matching
    /// rows are answered 400 `E0004` (an E0004 storm).
    #[serde(default)]
    pub row_threshold: usize,
    /// When not 0, a request matching more rows than this takes longer than the provider
    /// timeout and is answered with a bare 503 when it expires (a provider whose DB is slow
    /// under load: heavy requests time out, light ones are answered).
    #[serde(default)]
    pub timeout_above_rows: usize,
}

/// A partial update of [`Faults`]: absent fields keep their value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    /// See [`Faults::error_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// See [`Faults::latency_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// See [`Faults::outage`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<bool>,
    /// See [`Faults::maintenance`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<bool>,
    /// See [`Faults::replica_lag_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_lag_ms: Option<u64>,
    /// See [`Faults::row_threshold`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_threshold: Option<usize>,
    /// See [`Faults::timeout_above_rows`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_above_rows: Option<usize>,
}

impl Faults {
    /// Apply a partial update; nothing changes when a field is out of range.
    pub(crate) fn apply(&mut self, u: &FaultsUpdate) -> Result<(), SimError> {
        if let Some(r) = u.error_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(SimError::new(
                SimErrorKind::InvalidRequest,
                format!("error_rate: must be between 0.0 and 1.0, got {r}"),
            ));
        }
        if let Some(v) = u.error_rate {
            self.error_rate = v;
        }
        if let Some(v) = u.latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = u.outage {
            self.outage = v;
        }
        if let Some(v) = u.maintenance {
            self.maintenance = v;
        }
        if let Some(v) = u.replica_lag_ms {
            self.replica_lag_ms = v;
        }
        if let Some(v) = u.row_threshold {
            self.row_threshold = v;
        }
        if let Some(v) = u.timeout_above_rows {
            self.timeout_above_rows = v;
        }
        Ok(())
    }
}
