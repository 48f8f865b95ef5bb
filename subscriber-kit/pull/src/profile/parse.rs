//! Reading a provider's answer with its profile: the rows at a JSON Pointer, each row's
//! timestamp, addressee number and history number, the counts of a capped answer, and the
//! provider's own codes for "too many rows" and "out of service hours".
//!
//! Rows are personal data: errors name pointers and profile keys, never values.

use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::OffsetTimestamp;

use super::{ApiProfile, Item, TimestampFormat, japan};
use crate::outcome::Outcome;
use crate::wire::{ErrorBody, Row};

/// A 200 answer that does not read with the profile: the profile key to change, and what was
/// wrong (a JSON Pointer into the body, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The `[providers.api]` key that does not match (`rows`, `row_updated_at`, ...).
    pub key: &'static str,
    /// What was found instead.
    pub message: String,
}

/// The counts of a capped answer (検索結果件数 / 返却レコード数).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capped {
    /// Rows matching the conditions.
    pub total: u64,
    /// Rows in this answer.
    pub returned: u64,
}

/// An answer classified with the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The outcome class.
    pub outcome: Outcome,
    /// Set when the profile names the counts and the total exceeds what was returned.
    pub capped: Option<Capped>,
}

impl ApiProfile {
    /// Parse a 200 answer's rows and counts.
    pub fn parse_body(&self, body: &[u8]) -> Result<(Vec<Row>, Option<Capped>), Mismatch> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| Mismatch {
            key: "rows",
            message: format!(
                "the body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        })?;
        let items = v
            .pointer(&self.rows)
            .and_then(|r| r.as_array())
            .ok_or_else(|| Mismatch {
                key: "rows",
                message: format!("no array at {:?}", self.rows),
            })?;
        let rows = items
            .iter()
            .enumerate()
            .map(|(i, raw)| self.parse_row(i, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let capped = self.capped(&v, rows.len())?;
        Ok((rows, capped))
    }

    fn capped(&self, v: &serde_json::Value, n: usize) -> Result<Option<Capped>, Mismatch> {
        let (Some(t), Some(r)) = (&self.total_count, &self.returned_count) else {
            return Ok(None);
        };
        let count = |key: &'static str, p: &str| {
            let c = v.pointer(p).ok_or_else(|| Mismatch {
                key,
                message: format!("no count at {p:?}"),
            })?;
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| Mismatch {
                    key,
                    message: format!("{p:?} is not a count"),
                })
        };
        let total = count("total_count", t)?;
        let returned = count("returned_count", r)?;
        if returned != n as u64 {
            return Err(Mismatch {
                key: "returned_count",
                message: format!(
                    "{r:?} says {returned} rows, the array at {:?} holds {n}",
                    self.rows
                ),
            });
        }
        Ok((total > returned).then_some(Capped { total, returned }))
    }

    fn parse_row(&self, i: usize, raw: &serde_json::Value) -> Result<Row, Mismatch> {
        let at = |name: &str| format!("{}/{i}/{}", self.rows, name.trim_start_matches('/'));
        let get = |name: &str| {
            if name.starts_with('/') {
                raw.pointer(name)
            } else {
                raw.get(name)
            }
        };
        let text = |name: &str| {
            get(name).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let missing = |name: &str| Mismatch {
            key: "row_updated_at",
            message: format!("{} is missing", at(name)),
        };
        let unreadable = |name: &str| Mismatch {
            key: "row_updated_at",
            message: format!("{} does not read with the profile's format", at(name)),
        };
        let updated_at = match &self.row_updated_at {
            Item::One(n) => {
                let s = text(n).ok_or_else(|| missing(n))?;
                self.parse_one(&s).ok_or_else(|| unreadable(n))?
            }
            Item::Split { date, time } => {
                let d = text(date).ok_or_else(|| missing(date))?;
                let t = text(time).ok_or_else(|| missing(time))?;
                self.parse_split(&d, &t).ok_or_else(|| unreadable(time))?
            }
        };
        // Optional: a row without an addressee number is still data (the probe reports it).
        let atena_no = text(&self.row_atena_no);
        let history_no = get(&self.row_history_no).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        Ok(Row {
            atena_no,
            history_no,
            updated_at,
            raw: raw.clone(),
        })
    }

    /// A one-item timestamp: RFC 3339 with offset, or the profile's pattern in Japan time.
    pub fn parse_one(&self, s: &str) -> Option<Timestamp> {
        if let Ok(t) = s.parse::<OffsetTimestamp>() {
            return Some(t.instant());
        }
        match &self.timestamp_format {
            TimestampFormat::Pattern(p) => jiff::fmt::strtime::parse(p, s)
                .ok()?
                .to_datetime()
                .ok()?
                .to_zoned_datetime(japan())
                .ok()
                .map(|z| z.timestamp()),
            TimestampFormat::Rfc3339 => None,
        }
    }

    /// A split timestamp: date and time parts in Japan time.
    pub fn parse_split(&self, date: &str, time: &str) -> Option<Timestamp> {
        use jiff::fmt::strtime::parse;
        // A time written as a number loses its leading zeros (93000 for 09:30:00).
        let width = self.time_width();
        let time = match width {
            Some(w) if time.len() < w && time.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{time:0>w$}")
            }
            _ => time.to_owned(),
        };
        let d = parse(&self.date_format, date).ok()?.to_date().ok()?;
        let t = parse(&self.time_format, &time).ok()?.to_time().ok()?;
        d.to_datetime(t)
            .to_zoned_datetime(japan())
            .ok()
            .map(|z| z.timestamp())
    }

    fn time_width(&self) -> Option<usize> {
        let t = jiff::civil::time(12, 34, 56, 0);
        let s = jiff::fmt::strtime::format(&self.time_format, t).ok()?;
        s.bytes().all(|b| b.is_ascii_digit()).then_some(s.len())
    }

    fn code_in(list: &[String], code: Option<&str>) -> bool {
        code.is_some_and(|c| list.iter().any(|x| x == c))
    }

    /// Classify a non-401 answer with the provider's codes (docs/pull-api.md, outcome classes).
    pub fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Classified {
        let err = || serde_json::from_slice::<ErrorBody>(body).ok();
        let plain = |outcome| Classified {
            outcome,
            capped: None,
        };
        match status {
            200 => match self.parse_body(body) {
                Ok((rows, capped)) => Classified {
                    outcome: Outcome::Data(rows),
                    capped,
                },
                Err(m) => plain(Outcome::ProfileMismatch {
                    key: m.key.into(),
                    message: m.message,
                }),
            },
            503 if body.iter().all(u8::is_ascii_whitespace) => {
                plain(Outcome::TimeoutSplit { retry_after })
            }
            _ => plain(self.classify_error(status, retry_after, err())),
        }
    }

    fn classify_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        e: Option<ErrorBody>,
    ) -> Outcome {
        // Refused credentials stay refused credentials whatever code the body carries (the
        // client then fetches a new token once).
        if status == 401 {
            return Outcome::Unauthorized {
                message: "401".into(),
            };
        }
        let code = e.as_ref().and_then(|e| e.code.clone());
        if Self::code_in(&self.maintenance_codes, code.as_deref()) && status >= 400 {
            return Outcome::Maintenance { retry_after };
        }
        if Self::code_in(&self.too_many_codes, code.as_deref()) && (400..500).contains(&status) {
            return Outcome::TooMany;
        }
        match status {
            s if s >= 500 => Outcome::Transient { code, retry_after },
            400 if e.is_none() => Outcome::Permanent {
                status,
                code: None,
                message: "400 without a JSON body".into(),
            },
            s => Outcome::Permanent {
                status: s,
                code,
                message: e
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| format!("unexpected HTTP status {s}")),
            },
        }
    }
}
