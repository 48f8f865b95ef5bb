//! Japanese national holidays (国民の祝日) computed from the Act on National Holidays
//! (国民の祝日に関する法律, 祝日法), for [`COVERED_YEARS`] (2000–2099).
//!
//! Why rules instead of a crate: the maintained crate (`jpholiday` 0.2) needs a newer Rust
//! than this workspace's toolchain, its older 0.1 line misses the Emperor's Birthday after
//! 2020 and the 2021 Olympic moves, and `holiday_jp` downloads its data at run time (this
//! crate does no I/O). The rules below are short, deterministic and tested against the
//! Cabinet Office (内閣府) list.
//!
//! What is covered, per year in 2000–2099:
//! - the fixed and "Happy Monday" (nth Monday) holidays as amended up to now, including the
//!   2019 accession days and the 2020/2021 Olympic moves (東京オリンピック特措法);
//! - the vernal and autumnal equinox days (春分の日・秋分の日) from the usual approximation
//!   `floor(c + 0.242194 (Y − 1980) − floor((Y − 1980) / 4))` with c = 20.8431 / 23.2488,
//!   valid for 1980–2099. The law fixes only "the equinox day"; the official date is
//!   promulgated each February for the following year (暦要項), so dates beyond the latest
//!   promulgation are predictions, and the formula matches every promulgated date so far;
//! - substitute holidays (振替休日, art. 3(2)): before 2007 the Monday after a Sunday holiday,
//!   from 2007 the nearest following day that is not itself a holiday;
//! - citizens' holidays (国民の休日, art. 3(3)): a day that is neither a Sunday nor a
//!   substitute holiday, between two 国民の祝日 (e.g. 2026-09-22, 2019-04-30).
//!
//! Outside [`COVERED_YEARS`], [`national_holiday`] answers `None`: a calendar then knows only
//! weekends and the dates it was configured with. A future amendment of the law (a new or
//! moved holiday) is handled by configuration (`holiday_closed_dates`) until this table is
//! updated.

use std::fmt;
use std::ops::RangeInclusive;

use jiff::civil::{Date, Weekday, date};

/// The years for which [`national_holiday`] knows the holidays.
pub const COVERED_YEARS: RangeInclusive<i16> = 2000..=2099;

/// Which holiday a date is. [`HolidayName::ja`] gives the official Japanese name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HolidayName {
    /// 元日, New Year's Day (1/1).
    NewYearsDay,
    /// 成人の日, Coming of Age Day (2nd Monday of January).
    ComingOfAgeDay,
    /// 建国記念の日, National Foundation Day (2/11).
    NationalFoundationDay,
    /// 天皇誕生日, the Emperor's Birthday (12/23 until 2018, 2/23 from 2020).
    EmperorsBirthday,
    /// 春分の日, Vernal Equinox Day.
    VernalEquinoxDay,
    /// 昭和の日, Shōwa Day (4/29 from 2007).
    ShowaDay,
    /// 憲法記念日, Constitution Memorial Day (5/3).
    ConstitutionMemorialDay,
    /// みどりの日, Greenery Day (4/29 until 2006, 5/4 from 2007).
    GreeneryDay,
    /// こどもの日, Children's Day (5/5).
    ChildrensDay,
    /// 海の日, Marine Day.
    MarineDay,
    /// 山の日, Mountain Day (from 2016).
    MountainDay,
    /// 敬老の日, Respect for the Aged Day.
    RespectForTheAgedDay,
    /// 秋分の日, Autumnal Equinox Day.
    AutumnalEquinoxDay,
    /// 体育の日, Health and Sports Day (2nd Monday of October, until 2019).
    HealthAndSportsDay,
    /// スポーツの日, Sports Day (from 2020).
    SportsDay,
    /// 文化の日, Culture Day (11/3).
    CultureDay,
    /// 勤労感謝の日, Labour Thanksgiving Day (11/23).
    LabourThanksgivingDay,
    /// 即位の日, the day of the Emperor's accession (2019-05-01 only).
    AccessionDay,
    /// 即位礼正殿の儀の行われる日, the enthronement ceremony (2019-10-22 only).
    EnthronementCeremonyDay,
    /// 振替休日, a substitute holiday for a holiday that fell on a Sunday.
    SubstituteHoliday,
    /// 国民の休日, a citizens' holiday between two national holidays.
    CitizensHoliday,
}

impl HolidayName {
    /// The official Japanese name, as the Cabinet Office list writes it.
    pub fn ja(self) -> &'static str {
        match self {
            Self::NewYearsDay => "元日",
            Self::ComingOfAgeDay => "成人の日",
            Self::NationalFoundationDay => "建国記念の日",
            Self::EmperorsBirthday => "天皇誕生日",
            Self::VernalEquinoxDay => "春分の日",
            Self::ShowaDay => "昭和の日",
            Self::ConstitutionMemorialDay => "憲法記念日",
            Self::GreeneryDay => "みどりの日",
            Self::ChildrensDay => "こどもの日",
            Self::MarineDay => "海の日",
            Self::MountainDay => "山の日",
            Self::RespectForTheAgedDay => "敬老の日",
            Self::AutumnalEquinoxDay => "秋分の日",
            Self::HealthAndSportsDay => "体育の日",
            Self::SportsDay => "スポーツの日",
            Self::CultureDay => "文化の日",
            Self::LabourThanksgivingDay => "勤労感謝の日",
            Self::AccessionDay => "休日（即位の日）",
            Self::EnthronementCeremonyDay => "休日（即位礼正殿の儀の行われる日）",
            Self::SubstituteHoliday => "振替休日",
            Self::CitizensHoliday => "国民の休日",
        }
    }
}

impl fmt::Display for HolidayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ja())
    }
}

/// One national holiday: its date and which holiday it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holiday {
    /// The calendar date (Japan).
    pub date: Date,
    /// Which holiday.
    pub name: HolidayName,
}

/// The national holiday on `date`, or `None` if it is none or its year is outside
/// [`COVERED_YEARS`].
pub fn national_holiday(date: Date) -> Option<Holiday> {
    holidays_of_year(date.year())
        .into_iter()
        .find(|h| h.date == date)
}

/// Every national holiday of `year` in date order, substitute and citizens' holidays
/// included; empty outside [`COVERED_YEARS`].
pub fn holidays_of_year(year: i16) -> Vec<Holiday> {
    if !COVERED_YEARS.contains(&year) {
        return Vec::new();
    }
    // 国民の祝日 proper: the days art. 2 (and the special laws) name.
    let named = named_holidays(year);
    let is_named = |d: Date| named.iter().any(|h| h.date == d);

    let mut substitutes = Vec::new();
    for h in named.iter().filter(|h| h.date.weekday() == Weekday::Sunday) {
        let mut d = next_day(h.date);
        if year < 2007 {
            // Old art. 3(2): only the very next day, and only if it is no holiday itself.
            if !is_named(d) {
                substitutes.push(Holiday {
                    date: d,
                    name: HolidayName::SubstituteHoliday,
                });
            }
        } else {
            while is_named(d) {
                d = next_day(d);
            }
            substitutes.push(Holiday {
                date: d,
                name: HolidayName::SubstituteHoliday,
            });
        }
    }

    let mut citizens = Vec::new();
    for h in &named {
        // A citizens' holiday sits exactly between two 国民の祝日, i.e. one day after one.
        let d = next_day(h.date);
        let sandwiched = is_named(next_day(d));
        let excluded = is_named(d)
            || d.weekday() == Weekday::Sunday
            || substitutes.iter().any(|s| s.date == d);
        if sandwiched && !excluded && d.year() == year {
            citizens.push(Holiday {
                date: d,
                name: HolidayName::CitizensHoliday,
            });
        }
    }

    let mut all: Vec<Holiday> = named
        .into_iter()
        .chain(substitutes)
        .chain(citizens)
        .collect();
    all.retain(|h| h.date.year() == year);
    all.sort();
    all.dedup_by_key(|h| h.date);
    all
}

/// The day of the vernal equinox (in March) of a year in 1980–2099.
pub fn vernal_equinox_day(year: i16) -> i8 {
    equinox_day(year, 20.8431)
}

/// The day of the autumnal equinox (in September) of a year in 1980–2099.
pub fn autumnal_equinox_day(year: i16) -> i8 {
    equinox_day(year, 23.2488)
}

fn equinox_day(year: i16, base: f64) -> i8 {
    let y = f64::from(year - 1980);
    // The day is always in 19..=24 for 1980–2099, so the cast cannot truncate.
    (base + 0.242194 * y - (y / 4.0).floor()).floor() as i8
}

fn named_holidays(year: i16) -> Vec<Holiday> {
    use HolidayName as N;
    let mut v = Vec::with_capacity(20);
    let mut add = |month: i8, day: i8, name: HolidayName| {
        v.push(Holiday {
            date: date(year, month, day),
            name,
        });
    };
    add(1, 1, N::NewYearsDay);
    add(1, nth_monday(year, 1, 2), N::ComingOfAgeDay);
    add(2, 11, N::NationalFoundationDay);
    if year >= 2020 {
        add(2, 23, N::EmperorsBirthday);
    }
    add(3, vernal_equinox_day(year), N::VernalEquinoxDay);
    if year >= 2007 {
        add(4, 29, N::ShowaDay);
    } else {
        add(4, 29, N::GreeneryDay);
    }
    if year == 2019 {
        add(5, 1, N::AccessionDay);
    }
    add(5, 3, N::ConstitutionMemorialDay);
    if year >= 2007 {
        add(5, 4, N::GreeneryDay);
    }
    add(5, 5, N::ChildrensDay);
    match year {
        2020 => add(7, 23, N::MarineDay),
        2021 => add(7, 22, N::MarineDay),
        ..=2002 => add(7, 20, N::MarineDay),
        _ => add(7, nth_monday(year, 7, 3), N::MarineDay),
    }
    match year {
        2020 => add(8, 10, N::MountainDay),
        2021 => add(8, 8, N::MountainDay),
        2016.. => add(8, 11, N::MountainDay),
        _ => {}
    }
    if year <= 2002 {
        add(9, 15, N::RespectForTheAgedDay);
    } else {
        add(9, nth_monday(year, 9, 3), N::RespectForTheAgedDay);
    }
    add(9, autumnal_equinox_day(year), N::AutumnalEquinoxDay);
    match year {
        2020 => add(7, 24, N::SportsDay),
        2021 => add(7, 23, N::SportsDay),
        2022.. => add(10, nth_monday(year, 10, 2), N::SportsDay),
        _ => add(10, nth_monday(year, 10, 2), N::HealthAndSportsDay),
    }
    if year == 2019 {
        add(10, 22, N::EnthronementCeremonyDay);
    }
    add(11, 3, N::CultureDay);
    add(11, 23, N::LabourThanksgivingDay);
    if year <= 2018 {
        add(12, 23, N::EmperorsBirthday);
    }
    v.sort();
    v
}

/// The day of month of the `nth` Monday of `month` (n in 1..=4 always exists).
fn nth_monday(year: i16, month: i8, nth: i8) -> i8 {
    let first = date(year, month, 1);
    let offset =
        (7 + Weekday::Monday.to_monday_zero_offset() - first.weekday().to_monday_zero_offset()) % 7;
    1 + offset + 7 * (nth - 1)
}

fn next_day(d: Date) -> Date {
    // Holidays are computed only for 2000–2099, far from jiff's range limit.
    d.tomorrow().unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_monday_matches_jiff() {
        for year in [2000_i16, 2019, 2026, 2027, 2099] {
            for month in 1..=12_i8 {
                for nth in 1..=4_i8 {
                    let expected = date(year, month, 1)
                        .nth_weekday_of_month(nth, Weekday::Monday)
                        .map(|d| d.day())
                        .ok();
                    assert_eq!(
                        Some(nth_monday(year, month, nth)),
                        expected,
                        "{year}-{month} #{nth}"
                    );
                }
            }
        }
    }

    #[test]
    fn equinox_formula_matches_promulgated_dates() {
        // 暦要項 (National Astronomical Observatory of Japan), as promulgated.
        let vernal = [
            (2000, 20),
            (2012, 20),
            (2020, 20),
            (2023, 21),
            (2024, 20),
            (2025, 20),
            (2026, 20),
            (2027, 21),
        ];
        let autumnal = [
            (2000, 23),
            (2012, 22),
            (2020, 22),
            (2023, 23),
            (2024, 22),
            (2025, 23),
            (2026, 23),
            (2027, 23),
        ];
        for (y, d) in vernal {
            assert_eq!(vernal_equinox_day(y), d, "vernal {y}");
        }
        for (y, d) in autumnal {
            assert_eq!(autumnal_equinox_day(y), d, "autumnal {y}");
        }
    }

    #[test]
    fn outside_coverage_is_empty() {
        assert!(holidays_of_year(1999).is_empty());
        assert!(holidays_of_year(2100).is_empty());
        assert_eq!(national_holiday(date(2100, 1, 1)), None);
        assert_eq!(
            national_holiday(date(2099, 1, 1)).map(|h| h.name),
            Some(HolidayName::NewYearsDay)
        );
    }

    #[test]
    fn pre_2007_rules() {
        // 2006-05-04 (Thursday) was a citizens' holiday between 5/3 and 5/5.
        assert_eq!(
            national_holiday(date(2006, 5, 4)).map(|h| h.name),
            Some(HolidayName::CitizensHoliday)
        );
        // 2003-05-04 was a Sunday: no holiday on it, no substitute for it.
        assert_eq!(national_holiday(date(2003, 5, 4)), None);
        assert_eq!(national_holiday(date(2003, 5, 6)), None);
        // 2004-05-03..05 Mon–Wed: 5/4 is a citizens' holiday.
        assert_eq!(
            national_holiday(date(2004, 5, 4)).map(|h| h.name),
            Some(HolidayName::CitizensHoliday)
        );
        // 2005-04-29 みどりの日; 2000-10-09 体育の日 (2nd Monday).
        assert_eq!(
            national_holiday(date(2005, 4, 29)).map(|h| h.name),
            Some(HolidayName::GreeneryDay)
        );
        assert_eq!(
            national_holiday(date(2000, 10, 9)).map(|h| h.name),
            Some(HolidayName::HealthAndSportsDay)
        );
        // 2000-09-15 (Friday) 敬老の日 on its fixed date.
        assert_eq!(
            national_holiday(date(2000, 9, 15)).map(|h| h.name),
            Some(HolidayName::RespectForTheAgedDay)
        );
    }
}
