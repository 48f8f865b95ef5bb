//! `[providers.api]` as written, and its validation: every problem is reported with its field
//! path (`providers[0].api.rows`), so a wrong profile is refused at startup.

use serde::Deserialize;

use super::{ApiProfile, Item, RowsOrder, TimestampFormat, japan};

/// A timestamp's name(s) as written: `"updated_at"` or `{ date = "...", time = "..." }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawItem {
    /// One name.
    One(String),
    /// Date and time parts (both required; checked by validation so the error names the half).
    Split(RawSplit),
}

/// The split form of a [`RawItem`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSplit {
    /// Date part name.
    #[serde(default)]
    pub date: Option<String>,
    /// Time part name.
    #[serde(default)]
    pub time: Option<String>,
}

/// `[providers.api]` as written. Every key is optional; the defaults are Shirase's own
/// dialect (docs/pull-api.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    /// Path template (`{interface}`, `{version}`, `{municipality}`).
    pub path: String,
    /// FROM parameter(s).
    pub from: RawItem,
    /// TO parameter(s).
    pub to: RawItem,
    /// `rfc3339` or a strftime pattern (Japan time) for one-name bounds.
    pub timestamp_format: String,
    /// Date part pattern of split bounds.
    pub date_format: String,
    /// Time part pattern of split bounds.
    pub time_format: String,
    /// TO inclusive.
    pub to_inclusive: bool,
    /// The addressee number parameter.
    pub key: String,
    /// JSON Pointer to the rows.
    pub rows: String,
    /// Row timestamp item(s).
    pub row_updated_at: RawItem,
    /// Row addressee number item.
    pub row_atena_no: String,
    /// Row history number item.
    pub row_history_no: String,
    /// "Too many rows" codes.
    pub too_many_codes: Vec<String>,
    /// "Out of service hours" codes.
    pub maintenance_codes: Vec<String>,
    /// JSON Pointer of the total count.
    pub total_count: Option<String>,
    /// JSON Pointer of the returned count.
    pub returned_count: Option<String>,
    /// `unspecified` or `updated_at`: the order of an answer's rows.
    pub rows_order: String,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            path: "/api/{interface}".into(),
            from: RawItem::One("updated_from".into()),
            to: RawItem::One("updated_to".into()),
            timestamp_format: "rfc3339".into(),
            date_format: "%Y%m%d".into(),
            time_format: "%H%M%S".into(),
            to_inclusive: false,
            key: "atena_no".into(),
            rows: "/rows".into(),
            row_updated_at: RawItem::One("updated_at".into()),
            row_atena_no: "atena_no".into(),
            row_history_no: "history_no".into(),
            too_many_codes: vec!["E0004".into()],
            maintenance_codes: vec!["E0900".into()],
            total_count: None,
            returned_count: None,
            rows_order: "unspecified".into(),
        }
    }
}

/// The placeholders a path template may use.
const PLACEHOLDERS: [&str; 3] = ["{interface}", "{version}", "{municipality}"];

/// Check a path template (the provider's or an interface's) at `field`. `has_version`: every
/// interface of the provider names its version (版数), so `{version}` can be filled.
pub fn check_path(
    template: &str,
    field: &str,
    has_version: bool,
    problem: &mut dyn FnMut(String, String),
) {
    if !template.starts_with('/') {
        problem(
            field.into(),
            format!("{template:?} must start with '/' (it follows the base URL)"),
        );
    }
    let mut rest = template.to_owned();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains('{') || rest.contains('}') {
        problem(
            field.into(),
            format!(
                "{template:?}: the only placeholders are {{interface}}, {{version}} and {{municipality}}"
            ),
        );
    }
    if template.contains("{version}") && !has_version {
        problem(
            field.into(),
            "{version} needs a version (版数) on every interface of this provider".into(),
        );
    }
}

impl RawApi {
    /// Validate at `path` (e.g. `providers[0].api`); `has_version` as in [`check_path`].
    pub fn validate(
        &self,
        path: &str,
        has_version: bool,
        problem: &mut dyn FnMut(String, String),
    ) -> Option<ApiProfile> {
        let count = std::cell::Cell::new(0usize);
        let mut report = |field: &str, msg: String| {
            count.set(count.get() + 1);
            problem(format!("{path}.{field}"), msg);
        };
        check_path(&self.path, "path", has_version, &mut |f, m| report(&f, m));
        let from = item("from", &self.from, &mut report);
        let to = item("to", &self.to, &mut report);
        let row_updated_at = item("row_updated_at", &self.row_updated_at, &mut report);
        let split = |i: &Option<Item>| matches!(i, Some(Item::Split { .. }));
        if from.is_some() && to.is_some() && split(&from) != split(&to) {
            report(
                "to",
                "write from and to in the same form (both one name or both split)".into(),
            );
        }
        let timestamp_format = match self.timestamp_format.as_str() {
            "rfc3339" => TimestampFormat::Rfc3339,
            p => {
                if !split(&from) {
                    check_pattern(p, Need::DateTime, "timestamp_format", &mut report);
                }
                TimestampFormat::Pattern(p.to_owned())
            }
        };
        // From the table as written, so that a split bound missing a half still has its
        // patterns checked (every problem at once).
        let raw_split = |i: &RawItem| matches!(i, RawItem::Split(_));
        if raw_split(&self.from) || raw_split(&self.to) || raw_split(&self.row_updated_at) {
            check_pattern(&self.date_format, Need::Date, "date_format", &mut report);
            check_pattern(&self.time_format, Need::Time, "time_format", &mut report);
        }
        self.check_names(&mut report);
        let rows_order = match self.rows_order.as_str() {
            "unspecified" => RowsOrder::Unspecified,
            "updated_at" => RowsOrder::UpdatedAt,
            other => {
                report(
                    "rows_order",
                    format!(
                        "{other:?}: write \"updated_at\" (rows ascending by DB update timestamp) or \"unspecified\""
                    ),
                );
                RowsOrder::Unspecified
            }
        };
        let profile = ApiProfile {
            path: self.path.clone(),
            from: from?,
            to: to?,
            timestamp_format,
            date_format: self.date_format.clone(),
            time_format: self.time_format.clone(),
            to_inclusive: self.to_inclusive,
            key: self.key.clone(),
            rows: self.rows.clone(),
            row_updated_at: row_updated_at?,
            row_atena_no: self.row_atena_no.clone(),
            row_history_no: self.row_history_no.clone(),
            too_many_codes: self.too_many_codes.clone(),
            maintenance_codes: self.maintenance_codes.clone(),
            total_count: self.total_count.clone(),
            returned_count: self.returned_count.clone(),
            rows_order,
        };
        (count.get() == 0).then_some(profile)
    }

    fn check_names(&self, report: &mut dyn FnMut(&str, String)) {
        for (field, v) in [
            ("key", &self.key),
            ("row_atena_no", &self.row_atena_no),
            ("row_history_no", &self.row_history_no),
        ] {
            if v.trim().is_empty() {
                report(field, "must not be empty".into());
            }
        }
        let pointer = |field: &str, v: &str, report: &mut dyn FnMut(&str, String)| {
            if !v.is_empty() && !v.starts_with('/') {
                report(
                    field,
                    format!("{v:?} is not a JSON Pointer (RFC 6901): write \"/{v}\""),
                );
            }
        };
        pointer("rows", &self.rows, report);
        for (field, v) in [
            ("total_count", &self.total_count),
            ("returned_count", &self.returned_count),
        ] {
            match v.as_deref() {
                Some("") => report(
                    field,
                    "an empty pointer is the whole body: name the count".into(),
                ),
                Some(v) => pointer(field, v, report),
                None => {}
            }
        }
        if self.total_count.is_some() != self.returned_count.is_some() {
            report(
                "returned_count",
                "give total_count and returned_count together (the counts of a capped answer)"
                    .into(),
            );
        }
        for (field, list) in [
            ("too_many_codes", &self.too_many_codes),
            ("maintenance_codes", &self.maintenance_codes),
        ] {
            if list.iter().any(|c| c.trim().is_empty()) {
                report(field, "a code must not be empty".into());
            }
        }
    }
}

fn item(field: &str, raw: &RawItem, report: &mut dyn FnMut(&str, String)) -> Option<Item> {
    match raw {
        RawItem::One(n) if n.trim().is_empty() => {
            report(field, "must not be empty".into());
            None
        }
        RawItem::One(n) => Some(Item::One(n.clone())),
        RawItem::Split(RawSplit {
            date: Some(d),
            time: Some(t),
        }) if !d.is_empty() && !t.is_empty() => Some(Item::Split {
            date: d.clone(),
            time: t.clone(),
        }),
        RawItem::Split(s) => {
            let missing = if s.date.as_deref().is_none_or(str::is_empty) {
                "date"
            } else {
                "time"
            };
            report(
                &format!("{field}.{missing}"),
                "a split timestamp needs both halves: { date = \"...\", time = \"...\" }".into(),
            );
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    DateTime,
    Date,
    Time,
}

/// A pattern must write every field its part needs: a formatted sample instant must read back
/// as the same instant (at whole seconds).
fn check_pattern(p: &str, need: Need, field: &str, report: &mut dyn FnMut(&str, String)) {
    use jiff::fmt::strtime;
    let sample = jiff::civil::date(2031, 12, 28).at(23, 58, 59, 0);
    let Ok(z) = sample.to_zoned_datetime(japan()) else {
        return;
    };
    let (what, example) = match need {
        Need::DateTime => ("year, month, day, hour, minute and second", "%Y%m%d%H%M%S"),
        Need::Date => ("year, month and day", "%Y%m%d"),
        Need::Time => ("hour, minute and second", "%H%M%S"),
    };
    let ok = strtime::format(p, &z)
        .ok()
        .and_then(|s| strtime::parse(p, &s).ok())
        .is_some_and(|b| match need {
            Need::DateTime => {
                b.to_datetime()
                    .ok()
                    .map(|d| d.round(jiff::Unit::Second).ok())
                    == Some(Some(sample))
            }
            Need::Date => b.to_date().ok() == Some(sample.date()),
            Need::Time => {
                b.to_time()
                    .ok()
                    .and_then(|t| t.round(jiff::Unit::Second).ok())
                    == Some(sample.time())
            }
        });
    if !ok {
        report(
            field,
            format!("the strftime pattern {p:?} must write the {what} (e.g. {example:?})"),
        );
    }
}
