//! The simulator's two dialects of the PULL API, so the agent, the watcher and the probe are
//! tested against more than Shirase's own:
//! - [`Dialect::Standard`]: docs/pull-api.md (RFC 3339 bounds, `[from, to)`, rows under `rows`,
//!   `updated_at` / `atena_no` / `history_no`, microsecond DB timestamps, `E0004`).
//! - [`Dialect::Romaji`]: a vendor's reading of the same standard: the path carries the version
//!   (`/api/<version>/<interface>`), 更新年月日 and 更新時刻 as separate parameters (`%Y%m%d`,
//!   `%H%M%S`, Japan time) with an inclusive TO, DB update timestamps at whole seconds, romaji
//!   item names, rows under `/kekka/meisai`, the code `W0004` for too many rows, and answers
//!   capped at [`Config::answer_cap`](crate::Config::answer_cap) rows with the total
//!   (`/kekka/kensu`) and the returned count (`/kekka/henkyaku_kensu`).

use jiff::SignedDuration;
use jiff::civil::{Date, Time};
use serde_json::{Value, json};
use shirase_proto::{AtenaNo, InterfaceId, OffsetTimestamp};

use super::api::{ParamError, parse_keys};
use super::db::{Query, Row};

/// Which dialect the data endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// docs/pull-api.md.
    #[default]
    Standard,
    /// Split date/time bounds at whole seconds, romaji names, version in the path, counts.
    Romaji,
}

/// The romaji dialect's parameter names.
const FROM_YMD: &str = "koshin_ymd_from";
const FROM_TIME: &str = "koshin_time_from";
const TO_YMD: &str = "koshin_ymd_to";
const TO_TIME: &str = "koshin_time_to";
const KEY: &str = "atena_bango";

impl Dialect {
    /// The agent's `[providers.api]` table for this dialect (TOML, without the header).
    pub fn profile_toml(&self) -> &'static str {
        match self {
            Dialect::Standard => "",
            Dialect::Romaji => concat!(
                "path = \"/api/{version}/{interface}\"\n",
                "from = { date = \"koshin_ymd_from\", time = \"koshin_time_from\" }\n",
                "to = { date = \"koshin_ymd_to\", time = \"koshin_time_to\" }\n",
                "date_format = \"%Y%m%d\"\n",
                "time_format = \"%H%M%S\"\n",
                "to_inclusive = true\n",
                "key = \"atena_bango\"\n",
                "rows = \"/kekka/meisai\"\n",
                "row_updated_at = { date = \"koshin_ymd\", time = \"koshin_time\" }\n",
                "row_atena_no = \"atena_bango\"\n",
                "row_history_no = \"rireki_bango\"\n",
                "too_many_codes = [\"W0004\"]\n",
                "total_count = \"/kekka/kensu\"\n",
                "returned_count = \"/kekka/henkyaku_kensu\"\n",
            ),
        }
    }

    /// The code of a "too many rows" answer.
    pub fn too_many_code(&self) -> &'static str {
        match self {
            Dialect::Standard => "E0004",
            Dialect::Romaji => "W0004",
        }
    }

    /// Whether DB update timestamps are whole seconds.
    pub fn whole_seconds(&self) -> bool {
        matches!(self, Dialect::Romaji)
    }

    /// The 200 body of `rows` (already capped), `total` rows matching.
    pub(crate) fn body(&self, iface: &InterfaceId, rows: Vec<Row>, total: usize) -> Value {
        let n = rows.len();
        match self {
            Dialect::Standard => json!({"interface_id": iface, "count": n, "rows": rows}),
            Dialect::Romaji => {
                let meisai: Vec<Value> = rows.iter().map(romaji_row).collect();
                json!({"kekka": {"renkei_id": iface, "kensu": total, "henkyaku_kensu": n, "meisai": meisai}})
            }
        }
    }
}

fn romaji_row(r: &Row) -> Value {
    let (ymd, time) = r
        .updated_at
        .parse::<OffsetTimestamp>()
        .map(|t| {
            let z = t
                .instant()
                .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(9)));
            (
                z.strftime("%Y%m%d").to_string(),
                z.strftime("%H%M%S").to_string(),
            )
        })
        .unwrap_or_default();
    json!({
        "atena_bango": r.atena_no,
        "rireki_bango": r.history_no,
        "saishin_flg": if r.latest { "1" } else { "0" },
        "koshin_ymd": ymd,
        "koshin_time": time,
        "ido_ymd": r.change_date.strftime("%Y%m%d").to_string(),
        "ido_kbn": r.change,
        "kiroku": r.record,
    })
}

/// Parse the romaji dialect's query: both halves of a bound or neither; TO inclusive.
pub(crate) fn parse_romaji(pairs: &[(String, String)]) -> Result<Query, ParamError> {
    let malformed = ParamError::Malformed;
    let mut vals: [Option<&str>; 4] = [None; 4];
    let mut keys: Option<Vec<AtenaNo>> = None;
    for (name, value) in pairs {
        let slot = match name.as_str() {
            FROM_YMD => 0,
            FROM_TIME => 1,
            TO_YMD => 2,
            TO_TIME => 3,
            KEY => {
                if keys.replace(parse_keys(name, value)?).is_some() {
                    return Err(malformed(format!("{name}: given more than once")));
                }
                continue;
            }
            _ => {
                return Err(malformed(format!(
                    "{name}: unknown parameter (this provider accepts {FROM_YMD}, {FROM_TIME}, {TO_YMD}, {TO_TIME}, {KEY})"
                )));
            }
        };
        if vals[slot].replace(value).is_some() {
            return Err(malformed(format!("{name}: given more than once")));
        }
    }
    let from = bound(vals[0], vals[1], FROM_YMD, FROM_TIME)?;
    let to = bound(vals[2], vals[3], TO_YMD, TO_TIME)?.map(|t| t + SignedDuration::from_secs(1));
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(malformed(format!(
            "{TO_YMD}: must not be earlier than {FROM_YMD}"
        )));
    }
    if from.is_none() && to.is_none() && keys.is_none() {
        return Err(ParamError::NoCondition(format!(
            "no condition given; narrow the request with {FROM_YMD}/{TO_YMD} or {KEY}"
        )));
    }
    Ok(Query { from, to, keys })
}

fn bound(
    ymd: Option<&str>,
    time: Option<&str>,
    ymd_name: &str,
    time_name: &str,
) -> Result<Option<jiff::Timestamp>, ParamError> {
    let m = ParamError::Malformed;
    let (ymd, time) = match (ymd, time) {
        (None, None) => return Ok(None),
        (Some(d), Some(t)) => (d, t),
        (Some(_), None) => return Err(m(format!("{time_name}: required with {ymd_name}"))),
        (None, Some(_)) => return Err(m(format!("{ymd_name}: required with {time_name}"))),
    };
    let d = Date::strptime("%Y%m%d", ymd)
        .ok()
        .filter(|_| ymd.len() == 8)
        .ok_or_else(|| m(format!("{ymd_name}: must be YYYYMMDD")))?;
    let t = Time::strptime("%H%M%S", time)
        .ok()
        .filter(|_| time.len() == 6)
        .ok_or_else(|| m(format!("{time_name}: must be HHMMSS")))?;
    d.to_datetime(t)
        .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(9)))
        .map(|z| Some(z.timestamp()))
        .map_err(|e| m(format!("{time_name}: {e}")))
}
