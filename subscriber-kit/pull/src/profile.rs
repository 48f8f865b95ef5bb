//! A provider's API profile: how its PULL API spells the standard's requests and answers
//! (docs/pull-api.md, "Connecting your PULL API"). The standard fixes the behaviour (GET with
//! query parameters, differential fetch by DB update timestamp FROM–TO, keyed fetch by
//! addressee number, a row threshold) but not the names, formats or body shapes; each
//! interface's API specification (API仕様書) does. One profile per provider, from
//! `[providers.api]` (agent) or `[providers.watch.api]` (relay watcher).
//!
//! - [`raw`]: the table as written ([`RawApi`]) and its validation, every problem with its
//!   field path.
//! - this module: the validated [`ApiProfile`] and request building (path, bound parameters
//!   in Japan time, inclusive or exclusive TO, key parameter).
//! - [`parse`]: reading an answer with the profile (rows at a JSON Pointer, row items, counts
//!   of a capped answer, the provider's codes).

pub mod parse;
pub mod raw;

use jiff::{SignedDuration, Timestamp, Unit};
use shirase_proto::{AtenaNo, OffsetTimestamp};

pub use parse::{Capped, Classified, Mismatch};
pub use raw::{RawApi, RawItem};

/// Where a timestamp lives: one parameter (or row item), or a date and a time part
/// (更新年月日 and 更新時刻).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// One name holding the whole timestamp.
    One(String),
    /// Two names: the date part and the time part.
    Split {
        /// Date part (e.g. `koshin_ymd_from`).
        date: String,
        /// Time part (e.g. `koshin_time_from`).
        time: String,
    },
}

/// How a one-name timestamp is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// RFC 3339 with offset (sent in `+09:00`).
    Rfc3339,
    /// A strftime pattern in Japan time without offset (e.g. `%Y%m%d%H%M%S`).
    Pattern(String),
}

/// A validated API profile. [`Default`] is Shirase's own dialect (docs/pull-api.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiProfile {
    /// Path template under the base URL: `{interface}`, `{version}`, `{municipality}`.
    pub path: String,
    /// FROM bound (inclusive).
    pub from: Item,
    /// TO bound.
    pub to: Item,
    /// Format of a one-name bound (and of a one-name row timestamp without offset).
    pub timestamp_format: TimestampFormat,
    /// Format of a split bound's date part.
    pub date_format: String,
    /// Format of a split bound's time part.
    pub time_format: String,
    /// TO is inclusive (`<=`) rather than exclusive (`<`).
    pub to_inclusive: bool,
    /// The addressee number (宛名番号) parameter, comma-separated values.
    pub key: String,
    /// JSON Pointer to the array of rows (`""` = the whole body).
    pub rows: String,
    /// The row's DB update timestamp item(s).
    pub row_updated_at: Item,
    /// The row's addressee number item.
    pub row_atena_no: String,
    /// The row's history number item.
    pub row_history_no: String,
    /// Codes meaning "too many rows, narrow the conditions".
    pub too_many_codes: Vec<String>,
    /// Codes meaning "out of service hours".
    pub maintenance_codes: Vec<String>,
    /// JSON Pointer of the total count (検索結果件数), when the provider caps its answers.
    pub total_count: Option<String>,
    /// JSON Pointer of the returned count (返却レコード数).
    pub returned_count: Option<String>,
    /// The order of an answer's rows, which decides how a capped answer is read to the end.
    pub rows_order: RowsOrder,
}

/// The order in which the provider returns an answer's rows (`rows_order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowsOrder {
    /// `"unspecified"`: no order promised (e.g. by 宛名番号, addressee number). A capped
    /// answer is read again in smaller pieces (split), its rows discarded.
    #[default]
    Unspecified,
    /// `"updated_at"`: ascending by DB update timestamp. A capped answer's rows are kept and
    /// the rest is read from the newest timestamp received (FROM is inclusive).
    UpdatedAt,
}

impl RowsOrder {
    /// The value as written in `rows_order`.
    pub fn as_str(self) -> &'static str {
        match self {
            RowsOrder::Unspecified => "unspecified",
            RowsOrder::UpdatedAt => "updated_at",
        }
    }
}

impl Default for ApiProfile {
    fn default() -> Self {
        Self {
            path: "/api/{interface}".into(),
            from: Item::One("updated_from".into()),
            to: Item::One("updated_to".into()),
            timestamp_format: TimestampFormat::Rfc3339,
            date_format: "%Y%m%d".into(),
            time_format: "%H%M%S".into(),
            to_inclusive: false,
            key: "atena_no".into(),
            rows: "/rows".into(),
            row_updated_at: Item::One("updated_at".into()),
            row_atena_no: "atena_no".into(),
            row_history_no: "history_no".into(),
            too_many_codes: vec!["E0004".into()],
            maintenance_codes: vec!["E0900".into()],
            total_count: None,
            returned_count: None,
            rows_order: RowsOrder::Unspecified,
        }
    }
}

/// What fills a path template's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct PathValues<'a> {
    /// Interface id (連携ID).
    pub interface: &'a str,
    /// Interface version (版数) the subscriber configured.
    pub version: Option<&'a str>,
    /// Municipality code.
    pub municipality: Option<&'a str>,
}

/// Japan time (Asia/Tokyo), in which strftime bounds are written.
pub fn japan() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Tokyo")
        .unwrap_or_else(|_| jiff::tz::TimeZone::fixed(jiff::tz::offset(9)))
}

fn strftime(t: Timestamp, pattern: &str) -> String {
    jiff::fmt::strtime::format(pattern, &t.to_zoned_datetime(japan())).unwrap_or_default()
}

/// Whether a strftime pattern writes fractions of a second (`%f`, `%.f`, `%6f`, `%.3f`, ...).
fn has_fraction(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'%'
            && b[i + 1..]
                .iter()
                .find(|c| !(c.is_ascii_digit() || **c == b'.'))
                == Some(&b'f')
    })
}

impl ApiProfile {
    /// Whether the provider's bounds (and so its DB update timestamps, as far as Shirase can
    /// ask) are whole seconds: every timestamp pattern lacks a fraction of a second.
    pub fn whole_seconds(&self) -> bool {
        match (&self.from, &self.timestamp_format) {
            (Item::Split { .. }, _) => !has_fraction(&self.time_format),
            (Item::One(_), TimestampFormat::Rfc3339) => false,
            (Item::One(_), TimestampFormat::Pattern(p)) => !has_fraction(p),
        }
    }

    /// The smallest step of a bound: one second or one nanosecond.
    pub fn precision(&self) -> SignedDuration {
        if self.whole_seconds() {
            SignedDuration::from_secs(1)
        } else {
            SignedDuration::from_nanos(1)
        }
    }

    /// `t` rounded down to the profile's precision.
    pub fn floor(&self, t: Timestamp) -> Timestamp {
        if self.whole_seconds() {
            t.round(
                jiff::TimestampRound::new()
                    .smallest(Unit::Second)
                    .mode(jiff::RoundMode::Floor),
            )
            .unwrap_or(t)
        } else {
            t
        }
    }

    /// `t` rounded up to the profile's precision.
    pub fn ceil(&self, t: Timestamp) -> Timestamp {
        if self.whole_seconds() {
            t.round(
                jiff::TimestampRound::new()
                    .smallest(Unit::Second)
                    .mode(jiff::RoundMode::Ceil),
            )
            .unwrap_or(t)
        } else {
            t
        }
    }

    /// The URL path of an interface: `template` (the interface's own, or the profile's) with
    /// its placeholders filled.
    pub fn path(&self, template: Option<&str>, v: PathValues<'_>) -> String {
        template
            .unwrap_or(&self.path)
            .replace("{interface}", v.interface)
            .replace("{version}", v.version.unwrap_or_default())
            .replace("{municipality}", v.municipality.unwrap_or_default())
    }

    /// The query parameters of a request for rows updated in `[from, to)` (either side open
    /// when `None`) and/or of `keys`. Bounds are widened to the profile's precision, never
    /// narrowed: FROM rounds down, an exclusive TO rounds up, an inclusive TO is the last
    /// instant before `to` at that precision. A row read twice is harmless (at least once);
    /// a row never asked for is lost.
    pub fn query(
        &self,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        keys: &[AtenaNo],
    ) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(f) = from {
            self.bound(&self.from, self.floor(f), &mut q);
        }
        if let Some(t) = to {
            let t = if self.to_inclusive {
                self.floor(t - SignedDuration::from_nanos(1))
            } else {
                self.ceil(t)
            };
            self.bound(&self.to, t, &mut q);
        }
        if !keys.is_empty() {
            let keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
            q.push((self.key.clone(), keys.join(",")));
        }
        q
    }

    /// FROM and TO written exactly as given, not widened (the probe's TO check).
    pub fn exact_bounds(&self, from: Timestamp, to: Timestamp) -> Vec<(String, String)> {
        let mut q = Vec::new();
        self.bound(&self.from, from, &mut q);
        self.bound(&self.to, to, &mut q);
        q
    }

    /// A deliberately malformed FROM (every FROM parameter `"x"`): a provider must answer it
    /// with 400 and a JSON body.
    pub fn malformed_from(&self) -> Vec<(String, String)> {
        match &self.from {
            Item::One(n) => vec![(n.clone(), "x".into())],
            Item::Split { date, time } => {
                vec![(date.clone(), "x".into()), (time.clone(), "x".into())]
            }
        }
    }

    fn bound(&self, item: &Item, t: Timestamp, q: &mut Vec<(String, String)>) {
        match item {
            Item::One(name) => q.push((name.clone(), self.format_one(t))),
            Item::Split { date, time } => {
                q.push((date.clone(), strftime(t, &self.date_format)));
                q.push((time.clone(), strftime(t, &self.time_format)));
            }
        }
    }

    /// One timestamp written as a one-name bound.
    pub fn format_one(&self, t: Timestamp) -> String {
        match &self.timestamp_format {
            TimestampFormat::Rfc3339 => OffsetTimestamp::from_instant_jst(t).to_string(),
            TimestampFormat::Pattern(p) => strftime(t, p),
        }
    }

    /// The names of the FROM bound's parameters (for messages).
    pub fn from_names(&self) -> String {
        item_names(&self.from)
    }
}

fn item_names(i: &Item) -> String {
    match i {
        Item::One(n) => n.clone(),
        Item::Split { date, time } => format!("{date}+{time}"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
