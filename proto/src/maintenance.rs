//! The maintenance calendar of a provider: when its PULL API may be down (データ連携WT 1.1.8;
//! docs/standard.md, "Availability and operations").
//!
//! Both the relay (which pauses consumers during a window) and the agent (which never sends a
//! PULL request inside one) need the same answers, so the calendar lives here as a pure
//! module: no I/O, no clock. Every query takes the instant to ask about; all civil times are
//! Japan time ([`TIME_ZONE`], Asia/Tokyo) whatever the host's zone is.
//!
//! # How windows are written
//!
//! The standard writes a window against a **business day** (業務日), with hours past 24
//! meaning the small hours of the next calendar day. A window always belongs to the business
//! day it is written for, and so takes that day's [`DayType`], even when it runs on the next
//! calendar date.
//!
//! | written | business day D | runs (Japan time) | belongs to |
//! | --- | --- | --- | --- |
//! | `24:00-27:00` | Mon 2026-05-11 | Tue 05-12 00:00 – Tue 05-12 03:00 | Monday (weekday) |
//! | `22:30-23:30` | Mon 2026-05-11 | Mon 05-11 22:30 – Mon 05-11 23:30 | Monday |
//! | `23:00-27:00` | Mon 2026-05-11 | Mon 05-11 23:00 – Tue 05-12 03:00 | Monday |
//! | `24:00-27:00` | Wed 2026-05-06 (振替休日) | Thu 05-07 00:00 – 03:00 | Wednesday (holiday_closed) |
//! | `00:00-03:00` | Tue 2026-05-12 | Tue 05-12 00:00 – 03:00 | Tuesday (and overlaps Monday's `24:00-27:00`: rejected) |
//!
//! Hours run from 0 to 47 and minutes from 00 to 59; a window must end after it starts
//! (`23:00-03:00` is an error: write `23:00-27:00`). Windows are half-open: `24:00-27:00`
//! covers 00:00:00 up to but excluding 03:00:00.
//!
//! # Day types
//!
//! Each business day is a [`DayType`] with its own list of windows (the baseline is
//! [`BASELINE_WINDOW`], `24:00-27:00`, for all three):
//! - `holiday_open` (休日開庁日): a date the municipality lists in `holiday_open_dates`
//!   (a holiday on which the office opens) — this wins over everything below;
//! - `holiday_closed` (休日閉庁日): a date in `holiday_closed_dates`, a Saturday, a Sunday, a
//!   national holiday ([`holidays`]: 国民の祝日, 振替休日, 国民の休日), or — by municipal custom,
//!   on by default and switched off with `year_end_closure = false` — the year-end/new-year
//!   closure 12/29–1/3 (年末年始);
//! - `weekday` (平日): every other date.
//!
//! Per date, `cancel` drops that business day's regular windows and `extra` adds one-off
//! windows; a date both cancelled and given extra windows has exactly its extra windows.
//!
//! # Example
//!
//! ```
//! use shirase_proto::maintenance::{Calendar, Config, DayType};
//!
//! let calendar = Calendar::new(&Config::default())?;
//! // Wednesday 2026-05-06 is a substitute holiday (振替休日); its 24:00-27:00 is Thursday
//! // 00:00–03:00 Japan time.
//! let t: jiff::Timestamp = "2026-05-07T01:30+09:00".parse()?;
//! let window = calendar.is_in_maintenance(t).expect("inside the window");
//! assert_eq!(window.business_day, jiff::civil::date(2026, 5, 6));
//! assert_eq!(window.day_type, DayType::HolidayClosed);
//! assert_eq!(calendar.current_window_end(t), Some("2026-05-07T03:00+09:00".parse()?));
//! assert_eq!(calendar.next_windows(t, 3).len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Invariants
//!
//! [`Calendar::new`] rejects any configuration in which two windows could overlap, within a
//! day or across consecutive business days (for every pair of day types, and concretely
//! around every `extra` date), so the windows of a calendar form one ordered sequence of
//! disjoint intervals. Two windows may touch (one ends when the next starts).

pub mod holidays;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use holidays::{COVERED_YEARS, Holiday, HolidayName, national_holiday};

/// Where maintenance decisions read "now". Both the relay's scheduler and the agent's
/// self-enforcement take one, so tests and drills can put "now" inside a window; it is never
/// used for DB timestamps or checkpoints.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock shifted by a fixed offset: it runs at real speed from a chosen instant
/// (tests and drills start it a few seconds before or inside a window).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: jiff::SignedDuration,
}

impl OffsetClock {
    /// A clock that reads `at` now and advances in real time.
    pub fn starting_at(at: Timestamp) -> Self {
        Self {
            offset: at.duration_since(Timestamp::now()),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let n = Timestamp::now();
        n.checked_add(self.offset).unwrap_or(n)
    }
}

/// The time zone every civil time of a calendar is in.
pub const TIME_ZONE: &str = "Asia/Tokyo";

/// The standard's baseline window (1.1.8): 00:00–03:00 of the next calendar day.
pub const BASELINE_WINDOW: &str = "24:00-27:00";

const MINUTES_PER_DAY: u16 = 24 * 60;
/// 47:59, the latest time a window may name.
const MAX_MINUTE: u16 = 48 * 60 - 1;
/// When no window turns up for this many business days past every explicitly configured
/// date, none ever will (weekdays and weekends both recur within a week; the longest run
/// without a weekday, around the new year, is shorter than this).
const EMPTY_SCAN_DAYS: i32 = 21;

/// The kind of business day, which picks the windows that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    /// 平日: an ordinary working day.
    Weekday,
    /// 休日開庁日: a holiday on which the municipal office opens.
    HolidayOpen,
    /// 休日閉庁日: a holiday on which the office is closed (weekends, national holidays,
    /// the year-end closure).
    HolidayClosed,
}

impl DayType {
    /// All three, in config order.
    pub const ALL: [DayType; 3] = [
        DayType::Weekday,
        DayType::HolidayOpen,
        DayType::HolidayClosed,
    ];

    /// The config/wire name: `weekday`, `holiday_open` or `holiday_closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weekday => "weekday",
            Self::HolidayOpen => "holiday_open",
            Self::HolidayClosed => "holiday_closed",
        }
    }

    /// The Japanese term: 平日, 休日開庁日 or 休日閉庁日.
    pub fn ja(self) -> &'static str {
        match self {
            Self::Weekday => "平日",
            Self::HolidayOpen => "休日開庁日",
            Self::HolidayClosed => "休日閉庁日",
        }
    }
}

impl fmt::Display for DayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a window string; see [`WindowParseError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowErrorKind {
    /// Not of the form `HH:MM-HH:MM`.
    Syntax,
    /// An hour above 47.
    HourOutOfRange,
    /// A minute outside 00–59.
    MinuteOutOfRange,
    /// The end is not after the start (including an empty window).
    EndNotAfterStart,
}

/// A window string that does not parse; the message quotes it and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WindowParseError {
    kind: WindowErrorKind,
    message: String,
}

impl WindowParseError {
    /// What is wrong, for callers that branch on it.
    pub fn kind(&self) -> WindowErrorKind {
        self.kind
    }
}

/// A window as written for a business day, e.g. `24:00-27:00`: a half-open range of minutes
/// from the business day's 00:00, up to 47:59.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowSpec {
    start: u16,
    end: u16,
}

impl WindowSpec {
    /// The baseline window `24:00-27:00`.
    pub const BASELINE: WindowSpec = WindowSpec {
        start: 24 * 60,
        end: 27 * 60,
    };

    /// A window from minute `start` to minute `end` of the business day (e.g. 1440–1620 for
    /// `24:00-27:00`).
    pub fn from_minutes(start: u16, end: u16) -> Result<Self, WindowParseError> {
        for m in [start, end] {
            if m > MAX_MINUTE {
                return Err(WindowParseError {
                    kind: WindowErrorKind::HourOutOfRange,
                    message: format!(
                        "minute {m} of the business day is past 47:59, the latest time a window may name"
                    ),
                });
            }
        }
        let spec = WindowSpec { start, end };
        if end <= start {
            let hint = if end < start && end < MINUTES_PER_DAY && start < MINUTES_PER_DAY {
                format!(
                    "; a window past midnight is written with hours past 24, e.g. {}-{}",
                    hhmm(start),
                    hhmm(end + MINUTES_PER_DAY)
                )
            } else {
                String::new()
            };
            let what = if end == start {
                "is empty: its end is not after its start"
            } else {
                "ends before it starts"
            };
            return Err(WindowParseError {
                kind: WindowErrorKind::EndNotAfterStart,
                message: format!("window \"{spec}\" {what}{hint}"),
            });
        }
        Ok(spec)
    }

    /// Minutes from the business day's 00:00 to the start.
    pub fn start_minutes(self) -> u16 {
        self.start
    }

    /// Minutes from the business day's 00:00 to the (excluded) end.
    pub fn end_minutes(self) -> u16 {
        self.end
    }

    /// Whether the window runs into the next calendar day (ends after 24:00).
    pub fn crosses_midnight(self) -> bool {
        self.end > MINUTES_PER_DAY
    }

    fn overlaps_shifted(self, other: WindowSpec, other_shift: u16) -> bool {
        let (os, oe) = (other.start + other_shift, other.end + other_shift);
        self.start < oe && os < self.end
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hhmm(self.start), hhmm(self.end))
    }
}

impl FromStr for WindowSpec {
    type Err = WindowParseError;

    fn from_str(s: &str) -> Result<Self, WindowParseError> {
        let syntax = || WindowParseError {
            kind: WindowErrorKind::Syntax,
            message: format!(
                "window {:?} must look like HH:MM-HH:MM (e.g. {BASELINE_WINDOW}, hours 0 to 47)",
                s.chars().take(40).collect::<String>()
            ),
        };
        let (a, b) = s.split_once('-').ok_or_else(syntax)?;
        let start = parse_time(a.trim(), s).ok_or_else(syntax)??;
        let end = parse_time(b.trim(), s).ok_or_else(syntax)??;
        Self::from_minutes(start, end)
    }
}

/// `None` for a syntax error, `Some(Err)` for a range error.
fn parse_time(t: &str, whole: &str) -> Option<Result<u16, WindowParseError>> {
    let (h, m) = t.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if h > 47 {
        return Some(Err(WindowParseError {
            kind: WindowErrorKind::HourOutOfRange,
            message: format!(
                "hour {h} in window {whole:?} must be 0 to 47 (24 to 47 are the next calendar day's 0 to 23)"
            ),
        }));
    }
    if m > 59 {
        return Some(Err(WindowParseError {
            kind: WindowErrorKind::MinuteOutOfRange,
            message: format!("minute {m:02} in window {whole:?} must be 00 to 59"),
        }));
    }
    Some(Ok(h * 60 + m))
}

impl Serialize for WindowSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a window instance comes from the day type's list or from `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowOrigin {
    /// From the `weekday` / `holiday_open` / `holiday_closed` list.
    Regular,
    /// A one-off window from `extra`.
    Extra,
}

/// One concrete maintenance window: the half-open interval `[start, end)` plus the business
/// day (and its type) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First instant inside the window.
    pub start: Timestamp,
    /// First instant after the window.
    pub end: Timestamp,
    /// The business day the window is written for (the day before, for `24:00-27:00`).
    pub business_day: Date,
    /// The type of [`Window::business_day`].
    pub day_type: DayType,
    /// The window as written.
    pub spec: WindowSpec,
    /// Regular or one-off.
    pub origin: WindowOrigin,
}

impl Window {
    /// Whether `t` is inside `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) [{} .. {})",
            self.business_day, self.spec, self.day_type, self.start, self.end
        )
    }
}

/// One-off windows for one business day, as configured (`extra = [{ date, windows }]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraWindows {
    /// The business day, `YYYY-MM-DD` (a TOML date, quoted or bare).
    #[serde(deserialize_with = "date_text")]
    pub date: String,
    /// Its extra windows, written like the regular ones.
    pub windows: Vec<String>,
}

/// A provider's maintenance calendar as configured (relay.toml / agent.toml embed it per
/// provider, e.g. `[providers.maintenance]`). Every field is optional; the defaults are the
/// standard's baseline. Turn it into a [`Calendar`] with [`Calendar::new`], which validates
/// it.
///
/// ```toml
/// weekday = ["24:00-27:00"]
/// holiday_open = ["24:00-27:00"]
/// holiday_closed = ["24:00-27:00"]
/// holiday_open_dates = ["2026-12-27"]
/// holiday_closed_dates = []
/// year_end_closure = true
/// extra = [{ date = "2026-12-01", windows = ["12:00-13:00"] }]
/// cancel = ["2026-12-02"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Windows of a weekday (平日). Default `["24:00-27:00"]`.
    pub weekday: Vec<String>,
    /// Windows of a holiday-open day (休日開庁日). Default `["24:00-27:00"]`.
    pub holiday_open: Vec<String>,
    /// Windows of a holiday-closed day (休日閉庁日). Default `["24:00-27:00"]`.
    pub holiday_closed: Vec<String>,
    /// Holidays on which the office opens (`YYYY-MM-DD`): these are `holiday_open`.
    #[serde(deserialize_with = "date_texts")]
    pub holiday_open_dates: Vec<String>,
    /// Further closed days (`YYYY-MM-DD`): municipal closures, or a national holiday the
    /// built-in table does not know yet.
    #[serde(deserialize_with = "date_texts")]
    pub holiday_closed_dates: Vec<String>,
    /// Treat 12/29–1/3 (年末年始) as `holiday_closed`, the municipal custom. Default `true`.
    pub year_end_closure: bool,
    /// One-off windows per business day.
    pub extra: Vec<ExtraWindows>,
    /// Business days whose regular windows do not happen (`YYYY-MM-DD`).
    #[serde(deserialize_with = "date_texts")]
    pub cancel: Vec<String>,
}

/// The key under which the `toml` crate (and figment's TOML provider) hands a bare TOML date
/// to serde: a one-entry map `{ "$__toml_private_datetime": "2026-12-02" }`.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// A date as text, from a string or a bare TOML date; validated later by [`Calendar::new`],
/// which names the field.
#[derive(Debug)]
struct DateText(String);

impl<'de> Deserialize<'de> for DateText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DateText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date written YYYY-MM-DD")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateText, E> {
                Ok(DateText(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DateText, A::Error> {
                match map.next_key::<String>()? {
                    Some(k) if k == TOML_DATETIME_KEY => Ok(DateText(map.next_value()?)),
                    _ => Err(serde::de::Error::custom(
                        "expected a date written YYYY-MM-DD, got a table",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn date_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    DateText::deserialize(d).map(|t| t.0)
}

fn date_texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<DateText>::deserialize(d).map(|v| v.into_iter().map(|t| t.0).collect())
}

impl Default for Config {
    fn default() -> Self {
        let baseline = vec![BASELINE_WINDOW.to_owned()];
        Self {
            weekday: baseline.clone(),
            holiday_open: baseline.clone(),
            holiday_closed: baseline,
            holiday_open_dates: Vec::new(),
            holiday_closed_dates: Vec::new(),
            year_end_closure: true,
            extra: Vec::new(),
            cancel: Vec::new(),
        }
    }
}

/// What is wrong with a [`Config`]; see [`ConfigError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// A window string is malformed or out of range.
    Window(WindowErrorKind),
    /// Two windows overlap (in one day, or across consecutive business days).
    Overlap,
    /// A date is not `YYYY-MM-DD` or does not exist.
    Date,
    /// A date is listed both in `holiday_open_dates` and `holiday_closed_dates`.
    ConflictingDates,
    /// An `extra` entry has no windows.
    EmptyExtra,
    /// The Asia/Tokyo zone is missing from the bundled time-zone database.
    TimeZone,
}

/// An invalid maintenance [`Config`]: [`ConfigError::field`] names the offending field
/// relative to the maintenance table (e.g. `weekday[1]`, `extra[0].windows[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("maintenance.{field}: {message}")]
pub struct ConfigError {
    field: String,
    kind: ConfigErrorKind,
    message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, kind: ConfigErrorKind, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind,
            message: message.into(),
        }
    }

    /// What is wrong, for callers that branch on it.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The offending field, relative to the maintenance table.
    pub fn field(&self) -> &str {
        &self.field
    }
}

/// A validated maintenance calendar, answering "is the provider in maintenance at T", "when
/// does this window end" and "what are the next windows". Cheap to clone; no I/O.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    regular: [Vec<WindowSpec>; 3],
    holiday_open_dates: BTreeSet<Date>,
    holiday_closed_dates: BTreeSet<Date>,
    year_end_closure: bool,
    extra: BTreeMap<Date, Vec<WindowSpec>>,
    cancel: BTreeSet<Date>,
    /// The latest explicitly configured date: beyond it only the regular lists matter.
    last_explicit: Option<Date>,
}

fn type_index(t: DayType) -> usize {
    match t {
        DayType::Weekday => 0,
        DayType::HolidayOpen => 1,
        DayType::HolidayClosed => 2,
    }
}

fn parse_windows(field: &str, raw: &[String]) -> Result<Vec<WindowSpec>, ConfigError> {
    let mut specs: Vec<(usize, WindowSpec)> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let spec: WindowSpec = s.parse().map_err(|e: WindowParseError| {
            ConfigError::new(
                format!("{field}[{i}]"),
                ConfigErrorKind::Window(e.kind()),
                e.message,
            )
        })?;
        if let Some((j, other)) = specs.iter().find(|(_, o)| o.overlaps_shifted(spec, 0)) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                ConfigErrorKind::Overlap,
                format!(
                    "window {spec} overlaps {field}[{j}] {other}; windows of one day must not overlap (merge them)"
                ),
            ));
        }
        specs.push((i, spec));
    }
    let mut out: Vec<WindowSpec> = specs.into_iter().map(|(_, s)| s).collect();
    out.sort();
    Ok(out)
}

fn parse_date(field: &str, raw: &str) -> Result<Date, ConfigError> {
    let err = |why: String| {
        ConfigError::new(
            field,
            ConfigErrorKind::Date,
            format!("{raw:?} is not a date written YYYY-MM-DD (e.g. 2026-12-27){why}"),
        )
    };
    let date = raw
        .trim()
        .parse::<Date>()
        .map_err(|e| err(format!(": {e}")))?;
    // jiff also reads the date part of a date-time; a time here is a mistake, not a detail.
    if date.to_string() != raw.trim() {
        return Err(err(String::new()));
    }
    Ok(date)
}

fn parse_dates(field: &str, raw: &[String]) -> Result<BTreeSet<Date>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| parse_date(&format!("{field}[{i}]"), s))
        .collect()
}

/// A window of day D past 24:00 runs into day D+1; whatever types D and D+1 turn out to be,
/// D+1's windows must not start before D's end.
fn check_consecutive_regular(regular: &[Vec<WindowSpec>; 3]) -> Result<(), ConfigError> {
    for before in DayType::ALL {
        for after in DayType::ALL {
            for a in &regular[type_index(before)] {
                for (j, b) in regular[type_index(after)].iter().enumerate() {
                    if a.overlaps_shifted(*b, MINUTES_PER_DAY) {
                        return Err(ConfigError::new(
                            format!("{after}[{j}]"),
                            ConfigErrorKind::Overlap,
                            format!(
                                "window {b} overlaps the {before} window {a} of the business day before \
                                 (a {before} followed by a {after}); windows of consecutive business days must not overlap"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `holiday_open_dates` and `holiday_closed_dates`, which must not share a date.
fn parse_holiday_dates(config: &Config) -> Result<(BTreeSet<Date>, BTreeSet<Date>), ConfigError> {
    let holiday_open_dates = parse_dates("holiday_open_dates", &config.holiday_open_dates)?;
    let holiday_closed_dates = parse_dates("holiday_closed_dates", &config.holiday_closed_dates)?;
    if let Some(d) = holiday_open_dates
        .intersection(&holiday_closed_dates)
        .next()
    {
        let i = config
            .holiday_closed_dates
            .iter()
            .position(|s| s.trim().parse::<Date>().ok() == Some(*d))
            .unwrap_or(0);
        return Err(ConfigError::new(
            format!("holiday_closed_dates[{i}]"),
            ConfigErrorKind::ConflictingDates,
            format!("{d} is also listed in holiday_open_dates; a day is either open or closed"),
        ));
    }
    Ok((holiday_open_dates, holiday_closed_dates))
}

impl Calendar {
    /// Validates `config` into a calendar. Errors name the field: malformed windows or
    /// dates, windows of one day that overlap, windows of consecutive business days that
    /// could overlap, a date listed as both holiday-open and holiday-closed, an empty `extra`.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let tz = TimeZone::get(TIME_ZONE).map_err(|e| {
            ConfigError::new(
                "(time zone)",
                ConfigErrorKind::TimeZone,
                format!("{TIME_ZONE} is not in the bundled tz database: {e}"),
            )
        })?;
        let regular = [
            parse_windows("weekday", &config.weekday)?,
            parse_windows("holiday_open", &config.holiday_open)?,
            parse_windows("holiday_closed", &config.holiday_closed)?,
        ];
        check_consecutive_regular(&regular)?;
        let (holiday_open_dates, holiday_closed_dates) = parse_holiday_dates(config)?;
        let cancel = parse_dates("cancel", &config.cancel)?;
        let mut cal = Calendar {
            tz,
            regular,
            holiday_open_dates,
            holiday_closed_dates,
            year_end_closure: config.year_end_closure,
            extra: BTreeMap::new(),
            cancel,
            last_explicit: None,
        };
        // Extra windows: parse, then check against the same day's windows; the check across
        // days needs every extra in place, so it comes after.
        let extra_fields = cal.add_extras(&config.extra)?;
        cal.check_extras_across_days(&extra_fields)?;
        cal.last_explicit = [
            cal.holiday_open_dates.last(),
            cal.holiday_closed_dates.last(),
            cal.cancel.last(),
            cal.extra.keys().next_back(),
        ]
        .into_iter()
        .flatten()
        .max()
        .copied();
        Ok(cal)
    }

    /// Parse `extra` into the calendar, checking each window against the other windows of
    /// its day; each extra's date with its field path, for the check across days.
    fn add_extras(&mut self, extra: &[ExtraWindows]) -> Result<Vec<(Date, String)>, ConfigError> {
        let mut extra_fields: Vec<(Date, String)> = Vec::new();
        for (i, e) in extra.iter().enumerate() {
            let date = parse_date(&format!("extra[{i}].date"), &e.date)?;
            if e.windows.is_empty() {
                return Err(ConfigError::new(
                    format!("extra[{i}].windows"),
                    ConfigErrorKind::EmptyExtra,
                    "lists no window; give at least one (e.g. [\"12:00-13:00\"]) or remove the entry",
                ));
            }
            let field = format!("extra[{i}].windows");
            let specs = parse_windows(&field, &e.windows)?;
            let day_regular: Vec<WindowSpec> = if self.cancel.contains(&date) {
                Vec::new()
            } else {
                self.regular[type_index(self.day_type(date))].clone()
            };
            let existing = self.extra.entry(date).or_default();
            for (j, spec) in specs.iter().enumerate() {
                if let Some(o) = existing.iter().find(|o| o.overlaps_shifted(*spec, 0)) {
                    return Err(ConfigError::new(
                        format!("{field}[{j}]"),
                        ConfigErrorKind::Overlap,
                        format!("window {spec} overlaps another extra window {o} of {date}"),
                    ));
                }
                if let Some(o) = day_regular.iter().find(|o| o.overlaps_shifted(*spec, 0)) {
                    return Err(ConfigError::new(
                        format!("{field}[{j}]"),
                        ConfigErrorKind::Overlap,
                        format!(
                            "window {spec} overlaps the regular {} window {o} of {date}; \
                             to replace that day's windows, also list {date} in `cancel`",
                            self.day_type(date)
                        ),
                    ));
                }
            }
            existing.extend(specs);
            existing.sort();
            extra_fields.push((date, field));
        }
        Ok(extra_fields)
    }

    /// Check that no window of a day with extras overlaps, past midnight, the windows of the
    /// next business day (nor those of the day before into it).
    fn check_extras_across_days(&self, extra_fields: &[(Date, String)]) -> Result<(), ConfigError> {
        for (date, field) in extra_fields {
            let (Ok(prev), Ok(next)) = (date.yesterday(), date.tomorrow()) else {
                continue;
            };
            for (a_day, b_day) in [(prev, *date), (*date, next)] {
                for a in self.specs_of(a_day) {
                    for (b, _) in self.specs_of(b_day) {
                        if a.0.overlaps_shifted(b, MINUTES_PER_DAY) {
                            return Err(ConfigError::new(
                                field.clone(),
                                ConfigErrorKind::Overlap,
                                format!(
                                    "window {b} of {b_day} overlaps window {} of the business day before ({a_day}); \
                                     windows of consecutive business days must not overlap",
                                    a.0
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The time zone all civil times are in (Asia/Tokyo).
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The type of business day `date` is (see the module docs for the precedence).
    pub fn day_type(&self, date: Date) -> DayType {
        if self.holiday_open_dates.contains(&date) {
            return DayType::HolidayOpen;
        }
        let year_end = self.year_end_closure
            && matches!((date.month(), date.day()), (12, 29..=31) | (1, 1..=3));
        if self.holiday_closed_dates.contains(&date)
            || matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            || year_end
            || national_holiday(date).is_some()
        {
            DayType::HolidayClosed
        } else {
            DayType::Weekday
        }
    }

    /// The window specs of one business day after cancellations and extras, by start.
    fn specs_of(&self, day: Date) -> Vec<(WindowSpec, WindowOrigin)> {
        let mut specs: Vec<(WindowSpec, WindowOrigin)> = Vec::new();
        if !self.cancel.contains(&day) {
            specs.extend(
                self.regular[type_index(self.day_type(day))]
                    .iter()
                    .map(|s| (*s, WindowOrigin::Regular)),
            );
        }
        if let Some(extra) = self.extra.get(&day) {
            specs.extend(extra.iter().map(|s| (*s, WindowOrigin::Extra)));
        }
        specs.sort_by_key(|(s, _)| *s);
        specs
    }

    fn instant(&self, day: Date, minutes: u16) -> Option<Timestamp> {
        let day = if minutes >= MINUTES_PER_DAY {
            day.tomorrow().ok()?
        } else {
            day
        };
        let m = minutes % MINUTES_PER_DAY;
        // Both fit i8: m / 60 < 24 and m % 60 < 60.
        let dt = DateTime::new(
            day.year(),
            day.month(),
            day.day(),
            (m / 60) as i8,
            (m % 60) as i8,
            0,
            0,
        )
        .ok()?;
        let ambiguous = self.tz.to_ambiguous_timestamp(dt);
        if let AmbiguousOffset::Gap { .. } = ambiguous.offset() {
            // A civil time the clocks skipped (Japan's daylight saving time, 1948–1951, jumped
            // from 00:00 to 01:00 each spring). Every skipped time is the instant of the jump,
            // so that a later civil time never maps to an earlier instant: windows keep their
            // ends after their starts and their order.
            let before_jump = ambiguous.earlier().ok()?;
            return self.tz.following(before_jump).next().map(|t| t.timestamp());
        }
        ambiguous.compatible().ok()
    }

    /// The concrete windows of one business day (regular ones unless cancelled, plus its
    /// extras), ordered by start. A window whose every minute the clocks skipped does not
    /// happen.
    pub fn windows_of(&self, business_day: Date) -> Vec<Window> {
        let day_type = self.day_type(business_day);
        self.specs_of(business_day)
            .into_iter()
            .filter_map(|(spec, origin)| {
                Some(Window {
                    start: self.instant(business_day, spec.start)?,
                    end: self.instant(business_day, spec.end)?,
                    business_day,
                    day_type,
                    spec,
                    origin,
                })
            })
            .filter(|w| w.start < w.end)
            .collect()
    }

    /// The window `t` is inside, if any. Windows are half-open: at a window's end the
    /// provider is available again (unless another window starts exactly then).
    pub fn is_in_maintenance(&self, t: Timestamp) -> Option<Window> {
        let today = self.tz.to_datetime(t).date();
        // A window belongs to the calendar date it runs on or to the day before (hours up
        // to 47 reach at most into the next calendar day).
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .flat_map(|d| self.windows_of(d))
            .find(|w| w.contains(t))
    }

    /// When the window `t` is inside ends, or `None` outside maintenance. If another window
    /// starts exactly at that end, maintenance goes on: ask again at the returned instant.
    pub fn current_window_end(&self, t: Timestamp) -> Option<Timestamp> {
        self.is_in_maintenance(t).map(|w| w.end)
    }

    /// The next `n` windows that have not ended at `t` — the one `t` is inside first, if
    /// any — ordered by start. Fewer than `n` only when the calendar has no more windows
    /// (e.g. every list is empty and the explicit dates are past).
    pub fn next_windows(&self, t: Timestamp, n: usize) -> Vec<Window> {
        let mut out: Vec<Window> = Vec::new();
        if n == 0 {
            return out;
        }
        let today = self.tz.to_datetime(t).date();
        let Ok(mut day) = today.yesterday() else {
            return out;
        };
        let mut pending: Vec<Window> = Vec::new();
        let mut last_found = day;
        loop {
            for w in self.windows_of(day) {
                if w.end > t {
                    pending.push(w);
                    last_found = day;
                }
            }
            let Ok(next) = day.tomorrow() else { break };
            // Every later business day's windows start at or after `next` 00:00, so the
            // pending windows that start before it are final and in order.
            if let Some(cutoff) = self.instant(next, 0) {
                pending.sort_by_key(|w| w.start);
                let ready = pending.iter().take_while(|w| w.start < cutoff).count();
                out.extend(pending.drain(..ready));
                if out.len() >= n {
                    out.truncate(n);
                    return out;
                }
            }
            let past_explicit = self.last_explicit.is_none_or(|d| next > d);
            if past_explicit && next > today && (next - last_found).get_days() > EMPTY_SCAN_DAYS {
                break;
            }
            day = next;
        }
        pending.sort_by_key(|w| w.start);
        out.extend(pending);
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<WindowSpec, WindowErrorKind> {
        s.parse::<WindowSpec>().map_err(|e| e.kind())
    }

    #[test]
    fn window_spec_parses_and_prints_the_standard_notation() {
        let w = spec("24:00-27:00").unwrap();
        assert_eq!((w.start_minutes(), w.end_minutes()), (1440, 1620));
        assert_eq!(w, WindowSpec::BASELINE);
        assert!(w.crosses_midnight());
        assert_eq!(w.to_string(), "24:00-27:00");
        let w = spec("22:30-23:30").unwrap();
        assert_eq!((w.start_minutes(), w.end_minutes()), (1350, 1410));
        assert!(!w.crosses_midnight());
        assert_eq!(spec("9:05-47:59").unwrap().to_string(), "09:05-47:59");
        assert_eq!(spec(" 23:00 - 27:00 ").unwrap().to_string(), "23:00-27:00");
        assert!(!spec("22:00-24:00").unwrap().crosses_midnight());
    }

    #[test]
    fn window_spec_errors_say_what_is_wrong() {
        assert_eq!(spec("24:00"), Err(WindowErrorKind::Syntax));
        assert_eq!(spec("24-27"), Err(WindowErrorKind::Syntax));
        assert_eq!(spec("24:0-27:00"), Err(WindowErrorKind::Syntax));
        assert_eq!(spec("２４:00-27:00"), Err(WindowErrorKind::Syntax));
        assert_eq!(spec("-1:00-27:00"), Err(WindowErrorKind::Syntax));
        assert_eq!(spec("24:00-48:00"), Err(WindowErrorKind::HourOutOfRange));
        assert_eq!(spec("24:60-27:00"), Err(WindowErrorKind::MinuteOutOfRange));
        assert_eq!(spec("27:00-24:00"), Err(WindowErrorKind::EndNotAfterStart));
        assert_eq!(spec("24:00-24:00"), Err(WindowErrorKind::EndNotAfterStart));
        let e = "23:00-03:00".parse::<WindowSpec>().unwrap_err();
        assert_eq!(e.kind(), WindowErrorKind::EndNotAfterStart);
        assert!(e.to_string().contains("23:00-27:00"), "{e}");
        let e = "24:00-48:00".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("hour 48"), "{e}");
        let e = "24:75-27:00".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("minute 75"), "{e}");
    }

    #[test]
    fn windows_in_the_daylight_saving_gap_of_1948_keep_their_ends_after_their_starts() {
        // Japan's clocks jumped from Sunday 1948-05-02 00:00 JST to 01:00 JDT, i.e. at
        // 1948-05-01T15:00Z; Saturday 1948-05-01 is a holiday_closed business day.
        let cal = Calendar::new(&Config {
            holiday_closed: vec!["24:10-24:50".into(), "24:50-25:10".into()],
            ..Config::default()
        })
        .unwrap();
        let ts = |s: &str| s.parse::<Timestamp>().unwrap();
        let windows = cal.windows_of(jiff::civil::date(1948, 5, 1));
        // 24:10-24:50 was skipped entirely; 24:50-25:10 starts at the jump.
        assert_eq!(windows.len(), 1, "{windows:?}");
        assert_eq!(windows[0].spec, spec("24:50-25:10").unwrap());
        assert_eq!(windows[0].start, ts("1948-05-01T15:00:00Z"));
        assert_eq!(windows[0].end, ts("1948-05-01T15:10:00Z"));
        let inside = cal.is_in_maintenance(ts("1948-05-01T15:05:00Z")).unwrap();
        assert_eq!(inside, windows[0]);
        let next = cal.next_windows(ts("1948-05-01T14:00:00Z"), 3);
        assert_eq!(next[0], windows[0]);
        assert!(
            next.windows(2)
                .all(|p| p[0].start < p[0].end && p[0].end <= p[1].start)
        );
    }

    #[test]
    fn day_type_precedence() {
        let cal = Calendar::new(&Config {
            holiday_open_dates: vec!["2026-12-27".into(), "2026-05-06".into()],
            holiday_closed_dates: vec!["2026-06-15".into()],
            ..Config::default()
        })
        .unwrap();
        let d = |y, m, d| jiff::civil::date(y, m, d);
        assert_eq!(cal.day_type(d(2026, 12, 27)), DayType::HolidayOpen); // Sunday, listed open
        assert_eq!(cal.day_type(d(2026, 5, 6)), DayType::HolidayOpen); // 振替休日, listed open
        assert_eq!(cal.day_type(d(2026, 6, 15)), DayType::HolidayClosed); // Monday, listed closed
        assert_eq!(cal.day_type(d(2026, 6, 16)), DayType::Weekday);
        assert_eq!(cal.day_type(d(2026, 12, 29)), DayType::HolidayClosed); // Tuesday, 年末年始
        assert_eq!(cal.day_type(d(2027, 1, 4)), DayType::Weekday);
        let no_closure = Calendar::new(&Config {
            year_end_closure: false,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(no_closure.day_type(d(2026, 12, 29)), DayType::Weekday);
        assert_eq!(no_closure.day_type(d(2027, 1, 1)), DayType::HolidayClosed); // 元日
    }
}
