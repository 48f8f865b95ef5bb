//! The maintenance calendar against concrete Japan-time instants: the `24:00-27:00` notation
//! around midnight, month and year ends, holidays, one-off windows and cancellations, the
//! national-holiday table against the Cabinet Office list, config errors, host-zone
//! independence, and property tests tying `is_in_maintenance` to `next_windows`.
//!
//! Instants are built from explicit `+09:00` civil times, never from the host's zone.

// Helpers outside #[test] fns panic on purpose: a broken fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use jiff::civil::{Date, date};
use proptest::prelude::*;
use shirase_proto::maintenance::holidays::{HolidayName, holidays_of_year, national_holiday};
use shirase_proto::maintenance::{
    Calendar, Config, ConfigErrorKind, DayType, ExtraWindows, Window, WindowErrorKind, WindowOrigin,
};

/// A Japan civil time, e.g. `jst("2026-05-12T00:00")`.
fn jst(civil: &str) -> Timestamp {
    format!("{civil}+09:00").parse().unwrap()
}

fn cal(config: Config) -> Calendar {
    Calendar::new(&config).unwrap()
}

fn baseline() -> Calendar {
    cal(Config::default())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The window at `t`, asserting its business day, type and bounds.
fn assert_window(
    c: &Calendar,
    t: &str,
    business_day: Date,
    day_type: DayType,
    start: &str,
    end: &str,
) -> Window {
    let w = c
        .is_in_maintenance(jst(t))
        .unwrap_or_else(|| panic!("{t} should be in maintenance"));
    assert_eq!(w.business_day, business_day, "business day at {t}");
    assert_eq!(w.day_type, day_type, "day type at {t}");
    assert_eq!(w.start, jst(start), "start at {t}");
    assert_eq!(w.end, jst(end), "end at {t}");
    assert_eq!(
        c.current_window_end(jst(t)),
        Some(jst(end)),
        "current_window_end at {t}"
    );
    w
}

fn assert_available(c: &Calendar, t: &str) {
    assert_eq!(
        c.is_in_maintenance(jst(t)),
        None,
        "{t} should be outside maintenance"
    );
    assert_eq!(
        c.current_window_end(jst(t)),
        None,
        "current_window_end at {t}"
    );
}

#[test]
fn baseline_window_around_midnight() {
    let c = baseline();
    // Monday 2026-05-11 is a weekday; its 24:00-27:00 is Tuesday 00:00–03:00.
    assert_available(&c, "2026-05-11T23:59:59.999");
    let w = assert_window(
        &c,
        "2026-05-12T00:00",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-12T00:00",
        "2026-05-12T03:00",
    );
    assert_eq!(w.spec.to_string(), "24:00-27:00");
    assert_eq!(w.origin, WindowOrigin::Regular);
    assert_window(
        &c,
        "2026-05-12T02:59:59",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-12T00:00",
        "2026-05-12T03:00",
    );
    assert_window(
        &c,
        "2026-05-12T02:59:59.999999999",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-12T00:00",
        "2026-05-12T03:00",
    );
    assert_available(&c, "2026-05-12T03:00");
    assert_available(&c, "2026-05-12T12:00");
}

#[test]
fn ordinary_window_22_30_to_23_30() {
    let c = cal(Config {
        weekday: strings(&["22:30-23:30"]),
        ..Config::default()
    });
    assert_available(&c, "2026-05-12T22:29:59.999");
    assert_window(
        &c,
        "2026-05-12T22:30",
        date(2026, 5, 12),
        DayType::Weekday,
        "2026-05-12T22:30",
        "2026-05-12T23:30",
    );
    assert_window(
        &c,
        "2026-05-12T23:29:59",
        date(2026, 5, 12),
        DayType::Weekday,
        "2026-05-12T22:30",
        "2026-05-12T23:30",
    );
    assert_available(&c, "2026-05-12T23:30");
    // The weekday list no longer has 24:00-27:00: Wednesday 00:00–03:00 is available...
    assert_available(&c, "2026-05-13T01:00");
    // ...but a Saturday (holiday_closed, still baseline) is not: Sunday 01:00 belongs to Saturday.
    assert_window(
        &c,
        "2026-05-17T01:00",
        date(2026, 5, 16),
        DayType::HolidayClosed,
        "2026-05-17T00:00",
        "2026-05-17T03:00",
    );
}

#[test]
fn window_23_00_to_27_00_spans_midnight() {
    let c = cal(Config {
        weekday: strings(&["23:00-27:00"]),
        holiday_closed: strings(&["23:00-30:00"]),
        ..Config::default()
    });
    // Monday 2026-05-11.
    assert_available(&c, "2026-05-11T22:59:59.999");
    assert_window(
        &c,
        "2026-05-11T23:00",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-11T23:00",
        "2026-05-12T03:00",
    );
    assert_window(
        &c,
        "2026-05-11T23:59:59.999",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-11T23:00",
        "2026-05-12T03:00",
    );
    assert_window(
        &c,
        "2026-05-12T00:00",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-11T23:00",
        "2026-05-12T03:00",
    );
    assert_window(
        &c,
        "2026-05-12T02:59:59",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-11T23:00",
        "2026-05-12T03:00",
    );
    assert_available(&c, "2026-05-12T03:00");
    assert_window(
        &c,
        "2026-05-12T23:00",
        date(2026, 5, 12),
        DayType::Weekday,
        "2026-05-12T23:00",
        "2026-05-13T03:00",
    );
    // Friday night belongs to Friday (weekday, ends 03:00); Saturday night to Saturday
    // (holiday_closed, ends 06:00); Sunday night to Sunday.
    assert_window(
        &c,
        "2026-05-16T02:00",
        date(2026, 5, 15),
        DayType::Weekday,
        "2026-05-15T23:00",
        "2026-05-16T03:00",
    );
    assert_available(&c, "2026-05-16T04:00");
    assert_window(
        &c,
        "2026-05-17T05:59:59",
        date(2026, 5, 16),
        DayType::HolidayClosed,
        "2026-05-16T23:00",
        "2026-05-17T06:00",
    );
    assert_window(
        &c,
        "2026-05-18T05:00",
        date(2026, 5, 17),
        DayType::HolidayClosed,
        "2026-05-17T23:00",
        "2026-05-18T06:00",
    );
    assert_available(&c, "2026-05-18T06:00");
    assert_available(&c, "2026-05-19T05:00");
}

#[test]
fn year_end_rolls_into_the_new_year() {
    let c = baseline();
    // 2026-12-31 is in the year-end closure: its window is 2027-01-01 00:00–03:00.
    assert_available(&c, "2026-12-31T23:59:59.999");
    assert_window(
        &c,
        "2027-01-01T00:00",
        date(2026, 12, 31),
        DayType::HolidayClosed,
        "2027-01-01T00:00",
        "2027-01-01T03:00",
    );
    assert_window(
        &c,
        "2027-01-01T02:59:59",
        date(2026, 12, 31),
        DayType::HolidayClosed,
        "2027-01-01T00:00",
        "2027-01-01T03:00",
    );
    assert_available(&c, "2027-01-01T03:00");

    let days: Vec<(Date, DayType)> = c
        .next_windows(jst("2026-12-30T12:00"), 3)
        .iter()
        .map(|w| (w.business_day, w.day_type))
        .collect();
    assert_eq!(
        days,
        [
            (date(2026, 12, 30), DayType::HolidayClosed),
            (date(2026, 12, 31), DayType::HolidayClosed),
            (date(2027, 1, 1), DayType::HolidayClosed),
        ]
    );
    // Without the custom, 12/31 (a Thursday) is a weekday; 1/1 stays a national holiday.
    let plain = cal(Config {
        year_end_closure: false,
        ..Config::default()
    });
    assert_window(
        &plain,
        "2027-01-01T01:00",
        date(2026, 12, 31),
        DayType::Weekday,
        "2027-01-01T00:00",
        "2027-01-01T03:00",
    );
    assert_window(
        &plain,
        "2027-01-02T01:00",
        date(2027, 1, 1),
        DayType::HolidayClosed,
        "2027-01-02T00:00",
        "2027-01-02T03:00",
    );
    assert_window(
        &plain,
        "2027-01-05T01:00",
        date(2027, 1, 4),
        DayType::Weekday,
        "2027-01-05T00:00",
        "2027-01-05T03:00",
    );
}

#[test]
fn month_ends_in_leap_and_common_years() {
    let c = baseline();
    // Common year: 2027-02-28 (Sunday) → 2027-03-01.
    assert_available(&c, "2027-02-28T23:59:59.999");
    assert_window(
        &c,
        "2027-03-01T00:00",
        date(2027, 2, 28),
        DayType::HolidayClosed,
        "2027-03-01T00:00",
        "2027-03-01T03:00",
    );
    assert_available(&c, "2027-03-01T03:00");
    // Leap year: 2028-02-28 (Monday) → 02-29, and 02-29 (Tuesday) → 03-01.
    assert_window(
        &c,
        "2028-02-29T00:00",
        date(2028, 2, 28),
        DayType::Weekday,
        "2028-02-29T00:00",
        "2028-02-29T03:00",
    );
    assert_available(&c, "2028-02-29T23:59:59.999");
    assert_window(
        &c,
        "2028-03-01T00:00",
        date(2028, 2, 29),
        DayType::Weekday,
        "2028-03-01T00:00",
        "2028-03-01T03:00",
    );
    assert_window(
        &c,
        "2028-03-01T02:59:59",
        date(2028, 2, 29),
        DayType::Weekday,
        "2028-03-01T00:00",
        "2028-03-01T03:00",
    );
    // An ordinary month end: 2026-04-30 (Thursday) → 05-01.
    assert_window(
        &c,
        "2026-05-01T00:00",
        date(2026, 4, 30),
        DayType::Weekday,
        "2026-05-01T00:00",
        "2026-05-01T03:00",
    );
    let days: Vec<Date> = c
        .next_windows(jst("2028-02-28T03:00"), 3)
        .iter()
        .map(|w| w.business_day)
        .collect();
    assert_eq!(
        days,
        [date(2028, 2, 28), date(2028, 2, 29), date(2028, 3, 1)]
    );
}

#[test]
fn window_after_a_holiday_belongs_to_the_holiday() {
    let c = cal(Config {
        holiday_closed: strings(&["24:00-30:00"]),
        ..Config::default()
    });
    // Wednesday 2026-05-06 is a substitute holiday (振替休日); Thursday 05-07 a weekday.
    assert_window(
        &c,
        "2026-05-07T04:00",
        date(2026, 5, 6),
        DayType::HolidayClosed,
        "2026-05-07T00:00",
        "2026-05-07T06:00",
    );
    assert_available(&c, "2026-05-07T06:00");
    // Thursday's own window is the weekday one, ending 03:00.
    assert_window(
        &c,
        "2026-05-08T02:00",
        date(2026, 5, 7),
        DayType::Weekday,
        "2026-05-08T00:00",
        "2026-05-08T03:00",
    );
    assert_available(&c, "2026-05-08T04:00");
    // Citizens' holiday 2026-09-22 then Autumnal Equinox 09-23 then weekday 09-24.
    assert_window(
        &c,
        "2026-09-23T05:00",
        date(2026, 9, 22),
        DayType::HolidayClosed,
        "2026-09-23T00:00",
        "2026-09-23T06:00",
    );
    assert_window(
        &c,
        "2026-09-24T05:00",
        date(2026, 9, 23),
        DayType::HolidayClosed,
        "2026-09-24T00:00",
        "2026-09-24T06:00",
    );
    assert_available(&c, "2026-09-25T05:00");

    // Listed as 休日開庁日, the same holiday takes the holiday_open windows.
    let open = cal(Config {
        holiday_open: strings(&["24:00-25:00"]),
        holiday_open_dates: strings(&["2026-05-06"]),
        ..Config::default()
    });
    assert_eq!(open.day_type(date(2026, 5, 6)), DayType::HolidayOpen);
    assert_window(
        &open,
        "2026-05-07T00:30",
        date(2026, 5, 6),
        DayType::HolidayOpen,
        "2026-05-07T00:00",
        "2026-05-07T01:00",
    );
    assert_available(&open, "2026-05-07T01:30");
}

#[test]
fn one_off_extra_window() {
    let c = cal(Config {
        extra: vec![ExtraWindows {
            date: "2026-12-01".into(),
            windows: strings(&["12:00-13:00"]),
        }],
        ..Config::default()
    });
    assert_available(&c, "2026-12-01T11:59:59.999");
    let w = assert_window(
        &c,
        "2026-12-01T12:00",
        date(2026, 12, 1),
        DayType::Weekday,
        "2026-12-01T12:00",
        "2026-12-01T13:00",
    );
    assert_eq!(w.origin, WindowOrigin::Extra);
    assert_available(&c, "2026-12-01T13:00");
    // The day's regular window still happens.
    let w = assert_window(
        &c,
        "2026-12-02T00:00",
        date(2026, 12, 1),
        DayType::Weekday,
        "2026-12-02T00:00",
        "2026-12-02T03:00",
    );
    assert_eq!(w.origin, WindowOrigin::Regular);
    let origins: Vec<(Date, WindowOrigin)> = c
        .next_windows(jst("2026-12-01T03:00"), 3)
        .iter()
        .map(|w| (w.business_day, w.origin))
        .collect();
    assert_eq!(
        origins,
        [
            (date(2026, 12, 1), WindowOrigin::Extra),
            (date(2026, 12, 1), WindowOrigin::Regular),
            (date(2026, 12, 2), WindowOrigin::Regular),
        ]
    );
    // The other days are untouched.
    assert_available(&c, "2026-12-02T12:30");
}

#[test]
fn cancellation_drops_that_business_days_windows() {
    let c = cal(Config {
        cancel: strings(&["2026-12-02"]),
        ..Config::default()
    });
    // 12-01's window (12-02 00:00–03:00) still happens; 12-02's (12-03 00:00–03:00) does not.
    assert_window(
        &c,
        "2026-12-02T01:00",
        date(2026, 12, 1),
        DayType::Weekday,
        "2026-12-02T00:00",
        "2026-12-02T03:00",
    );
    assert_available(&c, "2026-12-03T00:00");
    assert_available(&c, "2026-12-03T01:00");
    assert_window(
        &c,
        "2026-12-04T01:00",
        date(2026, 12, 3),
        DayType::Weekday,
        "2026-12-04T00:00",
        "2026-12-04T03:00",
    );
    let next = c.next_windows(jst("2026-12-02T04:00"), 1);
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].business_day, next[0].start),
        (date(2026, 12, 3), jst("2026-12-04T00:00"))
    );
    assert!(c.windows_of(date(2026, 12, 2)).is_empty());
}

#[test]
fn cancellation_plus_extra_replaces_the_day() {
    let c = cal(Config {
        cancel: strings(&["2026-12-02"]),
        extra: vec![ExtraWindows {
            date: "2026-12-02".into(),
            windows: strings(&["22:00-26:00"]),
        }],
        ..Config::default()
    });
    let w = assert_window(
        &c,
        "2026-12-03T01:59:59",
        date(2026, 12, 2),
        DayType::Weekday,
        "2026-12-02T22:00",
        "2026-12-03T02:00",
    );
    assert_eq!(w.origin, WindowOrigin::Extra);
    assert_available(&c, "2026-12-03T02:30");
    assert_eq!(c.windows_of(date(2026, 12, 2)).len(), 1);
}

#[test]
fn next_windows_in_order_with_day_types() {
    let c = baseline();
    let got: Vec<(Date, DayType)> = c
        .next_windows(jst("2026-05-01T12:00"), 10)
        .iter()
        .map(|w| (w.business_day, w.day_type))
        .collect();
    use DayType::{HolidayClosed as C, Weekday as W};
    let expected = [
        (date(2026, 5, 1), W), // Friday
        (date(2026, 5, 2), C), // Saturday
        (date(2026, 5, 3), C), // 憲法記念日 (Sunday)
        (date(2026, 5, 4), C), // みどりの日
        (date(2026, 5, 5), C), // こどもの日
        (date(2026, 5, 6), C), // 振替休日
        (date(2026, 5, 7), W),
        (date(2026, 5, 8), W),
        (date(2026, 5, 9), C),
        (date(2026, 5, 10), C),
    ];
    assert_eq!(got, expected);
    // From inside a window, that window comes first.
    let first = &c.next_windows(jst("2026-05-02T01:00"), 1)[0];
    assert_eq!(
        (first.business_day, first.start, first.end),
        (
            date(2026, 5, 1),
            jst("2026-05-02T00:00"),
            jst("2026-05-02T03:00")
        )
    );
    assert!(c.next_windows(jst("2026-05-02T01:00"), 0).is_empty());
}

#[test]
fn windows_of_consecutive_days_interleave_in_start_order() {
    // Monday's 47:00 (Tuesday 23:00) starts after Tuesday's 01:00; Sunday's lands on Monday.
    let w = strings(&["01:00-02:00", "47:00-47:30"]);
    let c = cal(Config {
        weekday: w.clone(),
        holiday_open: w.clone(),
        holiday_closed: w,
        ..Config::default()
    });
    let got: Vec<(Timestamp, Date)> = c
        .next_windows(jst("2026-05-11T00:00"), 4)
        .iter()
        .map(|w| (w.start, w.business_day))
        .collect();
    assert_eq!(
        got,
        [
            (jst("2026-05-11T01:00"), date(2026, 5, 11)),
            // Sunday's 47:00-47:30.
            (jst("2026-05-11T23:00"), date(2026, 5, 10)),
            (jst("2026-05-12T01:00"), date(2026, 5, 12)),
            (jst("2026-05-12T23:00"), date(2026, 5, 11)),
        ]
    );
    assert_window(
        &c,
        "2026-05-12T23:15",
        date(2026, 5, 11),
        DayType::Weekday,
        "2026-05-12T23:00",
        "2026-05-12T23:30",
    );
}

#[test]
fn calendars_without_windows_terminate() {
    let none = cal(Config {
        weekday: vec![],
        holiday_open: vec![],
        holiday_closed: vec![],
        ..Config::default()
    });
    assert!(none.next_windows(jst("2026-01-01T00:00"), 5).is_empty());
    assert_eq!(none.is_in_maintenance(jst("2026-01-02T01:00")), None);
    let only_extra = cal(Config {
        weekday: vec![],
        holiday_open: vec![],
        holiday_closed: vec![],
        extra: vec![
            ExtraWindows {
                date: "2026-06-01".into(),
                windows: strings(&["10:00-11:00"]),
            },
            ExtraWindows {
                date: "2027-03-01".into(),
                windows: strings(&["10:00-11:00"]),
            },
        ],
        ..Config::default()
    });
    let got: Vec<Date> = only_extra
        .next_windows(jst("2026-01-01T00:00"), 5)
        .iter()
        .map(|w| w.business_day)
        .collect();
    assert_eq!(got, [date(2026, 6, 1), date(2027, 3, 1)]);
}

#[test]
fn config_embeds_in_toml_per_provider() {
    #[derive(serde::Deserialize)]
    struct File {
        providers: Provider,
    }
    #[derive(serde::Deserialize)]
    struct Provider {
        maintenance: Config,
    }
    let file: File = toml::from_str(
        r#"
        [providers.maintenance]
        weekday = ["24:00-27:00"]
        holiday_open = ["24:00-27:00"]
        holiday_closed = ["24:00-27:00"]
        holiday_open_dates = ["2026-12-27"]
        extra = [{ date = "2026-12-01", windows = ["12:00-13:00"] }]
        cancel = ["2026-12-02"]
        "#,
    )
    .unwrap();
    let config = file.providers.maintenance;
    assert!(
        config.year_end_closure,
        "the year-end closure is on by default"
    );
    let c = cal(config);
    assert_eq!(c.day_type(date(2026, 12, 27)), DayType::HolidayOpen);
    assert_eq!(
        c.is_in_maintenance(jst("2026-12-01T12:30"))
            .map(|w| w.origin),
        Some(WindowOrigin::Extra)
    );
    assert_eq!(c.is_in_maintenance(jst("2026-12-03T01:00")), None);

    let empty: Config = toml::from_str("").unwrap();
    assert_eq!(empty, Config::default());
    assert_eq!(empty.weekday, ["24:00-27:00"]);

    // Bare TOML dates work as well as quoted ones; a bare date-time is refused by name.
    let bare: Config = toml::from_str(
        "cancel = [2026-12-02]\nholiday_open_dates = [2026-12-27]\nextra = [{ date = 2026-12-01, windows = [\"12:00-13:00\"] }]",
    )
    .unwrap();
    assert_eq!(
        (bare.cancel.as_slice(), bare.holiday_open_dates.as_slice()),
        (
            &["2026-12-02".to_owned()][..],
            &["2026-12-27".to_owned()][..]
        )
    );
    assert_eq!(bare.extra[0].date, "2026-12-01");
    let c = cal(bare);
    assert_eq!(c.is_in_maintenance(jst("2026-12-03T01:00")), None);
    let e = Calendar::new(&toml::from_str::<Config>("cancel = [2026-12-02T10:00:00]").unwrap())
        .unwrap_err();
    assert_eq!((e.kind(), e.field()), (ConfigErrorKind::Date, "cancel[0]"));
    let e = toml::from_str::<Config>("cancel = [{ day = 2 }]").unwrap_err();
    assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");

    let unknown = toml::from_str::<Config>("weekdays = [\"24:00-27:00\"]").unwrap_err();
    assert!(unknown.to_string().contains("weekdays"), "{unknown}");
}

fn config_error(config: Config) -> (ConfigErrorKind, String, String) {
    let e = Calendar::new(&config).unwrap_err();
    (e.kind(), e.field().to_owned(), e.to_string())
}

#[test]
fn config_errors_name_the_field() {
    let (kind, field, msg) = config_error(Config {
        weekday: strings(&["24:00-27:00", "23:00-25:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Overlap, "weekday[1]")
    );
    assert!(
        msg.starts_with("maintenance.weekday[1]:") && msg.contains("weekday[0]"),
        "{msg}"
    );

    let (kind, field, msg) = config_error(Config {
        holiday_closed: strings(&["24:00-48:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (
            ConfigErrorKind::Window(WindowErrorKind::HourOutOfRange),
            "holiday_closed[0]"
        )
    );
    assert!(msg.contains("hour 48"), "{msg}");

    let (kind, field, _) = config_error(Config {
        holiday_open: strings(&["ok", "24:00-27:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (
            ConfigErrorKind::Window(WindowErrorKind::Syntax),
            "holiday_open[0]"
        )
    );

    let (kind, field, _) = config_error(Config {
        weekday: strings(&["24:00-27:60"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (
            ConfigErrorKind::Window(WindowErrorKind::MinuteOutOfRange),
            "weekday[0]"
        )
    );

    let (kind, field, msg) = config_error(Config {
        weekday: strings(&["23:00-03:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (
            ConfigErrorKind::Window(WindowErrorKind::EndNotAfterStart),
            "weekday[0]"
        )
    );
    assert!(msg.contains("23:00-27:00"), "{msg}");

    // Friday's 22:00-27:00 runs into Saturday's 01:00-02:00.
    let (kind, field, msg) = config_error(Config {
        weekday: strings(&["22:00-27:00"]),
        holiday_closed: strings(&["01:00-02:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Overlap, "holiday_closed[0]")
    );
    assert!(msg.contains("business day before"), "{msg}");

    let (kind, field, _) = config_error(Config {
        cancel: strings(&["2026-02-30"]),
        ..Config::default()
    });
    assert_eq!((kind, field.as_str()), (ConfigErrorKind::Date, "cancel[0]"));

    let (kind, field, _) = config_error(Config {
        holiday_open_dates: strings(&["2026-12-27", "27/12/2026"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Date, "holiday_open_dates[1]")
    );

    let (kind, field, msg) = config_error(Config {
        holiday_open_dates: strings(&["2026-12-27"]),
        holiday_closed_dates: strings(&["2026-12-28", "2026-12-27"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::ConflictingDates, "holiday_closed_dates[1]")
    );
    assert!(msg.contains("holiday_open_dates"), "{msg}");

    let extra = |date: &str, w: &[&str]| {
        vec![ExtraWindows {
            date: date.into(),
            windows: strings(w),
        }]
    };
    let (kind, field, _) = config_error(Config {
        extra: extra("2026-12-01", &[]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::EmptyExtra, "extra[0].windows")
    );

    let (kind, field, _) = config_error(Config {
        extra: extra("2026-13-01", &["12:00-13:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Date, "extra[0].date")
    );

    // An extra window on top of the day's own regular window: the message says to cancel.
    let (kind, field, msg) = config_error(Config {
        extra: extra("2026-12-01", &["12:00-13:00", "26:00-28:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Overlap, "extra[0].windows[1]")
    );
    assert!(msg.contains("cancel"), "{msg}");

    // An extra window inside the previous business day's 24:00-27:00.
    let (kind, field, msg) = config_error(Config {
        extra: extra("2026-12-02", &["01:00-02:00"]),
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Overlap, "extra[0].windows")
    );
    assert!(msg.contains("2026-12-01"), "{msg}");

    // Two extra entries for one date overlapping each other.
    let (kind, field, _) = config_error(Config {
        extra: vec![
            ExtraWindows {
                date: "2026-12-01".into(),
                windows: strings(&["12:00-13:00"]),
            },
            ExtraWindows {
                date: "2026-12-01".into(),
                windows: strings(&["12:30-14:00"]),
            },
        ],
        ..Config::default()
    });
    assert_eq!(
        (kind, field.as_str()),
        (ConfigErrorKind::Overlap, "extra[1].windows[0]")
    );

    // Touching windows are fine, within a day and across days.
    let ok = Calendar::new(&Config {
        weekday: strings(&["22:00-24:00", "24:00-27:00"]),
        holiday_closed: strings(&["03:00-05:00", "24:00-27:00"]),
        ..Config::default()
    });
    assert!(ok.is_ok(), "{ok:?}");
}

fn holiday_list(year: i16) -> Vec<(Date, &'static str)> {
    holidays_of_year(year)
        .into_iter()
        .map(|h| (h.date, h.name.ja()))
        .collect()
}

#[test]
fn holidays_2026_match_the_cabinet_office_list() {
    // 内閣府「国民の祝日について」, 令和8年.
    let expected = [
        (date(2026, 1, 1), "元日"),
        (date(2026, 1, 12), "成人の日"),
        (date(2026, 2, 11), "建国記念の日"),
        (date(2026, 2, 23), "天皇誕生日"),
        (date(2026, 3, 20), "春分の日"),
        (date(2026, 4, 29), "昭和の日"),
        (date(2026, 5, 3), "憲法記念日"),
        (date(2026, 5, 4), "みどりの日"),
        (date(2026, 5, 5), "こどもの日"),
        (date(2026, 5, 6), "振替休日"),
        (date(2026, 7, 20), "海の日"),
        (date(2026, 8, 11), "山の日"),
        (date(2026, 9, 21), "敬老の日"),
        (date(2026, 9, 22), "国民の休日"),
        (date(2026, 9, 23), "秋分の日"),
        (date(2026, 10, 12), "スポーツの日"),
        (date(2026, 11, 3), "文化の日"),
        (date(2026, 11, 23), "勤労感謝の日"),
    ];
    assert_eq!(holiday_list(2026), expected);
}

#[test]
fn holidays_2027_match_the_cabinet_office_list() {
    // 内閣府「国民の祝日について」, 令和9年.
    let expected = [
        (date(2027, 1, 1), "元日"),
        (date(2027, 1, 11), "成人の日"),
        (date(2027, 2, 11), "建国記念の日"),
        (date(2027, 2, 23), "天皇誕生日"),
        (date(2027, 3, 21), "春分の日"),
        (date(2027, 3, 22), "振替休日"),
        (date(2027, 4, 29), "昭和の日"),
        (date(2027, 5, 3), "憲法記念日"),
        (date(2027, 5, 4), "みどりの日"),
        (date(2027, 5, 5), "こどもの日"),
        (date(2027, 7, 19), "海の日"),
        (date(2027, 8, 11), "山の日"),
        (date(2027, 9, 20), "敬老の日"),
        (date(2027, 9, 23), "秋分の日"),
        (date(2027, 10, 11), "スポーツの日"),
        (date(2027, 11, 3), "文化の日"),
        (date(2027, 11, 23), "勤労感謝の日"),
    ];
    assert_eq!(holiday_list(2027), expected);
}

#[test]
fn holidays_of_the_special_years_2019_to_2021() {
    let name = |y, m, d| national_holiday(date(y, m, d)).map(|h| h.name);
    // 2019: accession. 4/30 and 5/2 are citizens' holidays around 5/1; 5/6 substitutes 5/5.
    assert_eq!(name(2019, 4, 30), Some(HolidayName::CitizensHoliday));
    assert_eq!(name(2019, 5, 1), Some(HolidayName::AccessionDay));
    assert_eq!(name(2019, 5, 2), Some(HolidayName::CitizensHoliday));
    assert_eq!(name(2019, 5, 6), Some(HolidayName::SubstituteHoliday));
    assert_eq!(
        name(2019, 10, 22),
        Some(HolidayName::EnthronementCeremonyDay)
    );
    assert_eq!(name(2019, 12, 23), None);
    assert_eq!(name(2019, 2, 23), None);
    assert_eq!(holidays_of_year(2019).len(), 22);
    // 2020 and 2021: the Olympic moves.
    assert_eq!(name(2020, 7, 23), Some(HolidayName::MarineDay));
    assert_eq!(name(2020, 7, 24), Some(HolidayName::SportsDay));
    assert_eq!(name(2020, 8, 10), Some(HolidayName::MountainDay));
    assert_eq!(name(2020, 10, 12), None);
    assert_eq!(name(2021, 7, 22), Some(HolidayName::MarineDay));
    assert_eq!(name(2021, 7, 23), Some(HolidayName::SportsDay));
    assert_eq!(name(2021, 8, 8), Some(HolidayName::MountainDay));
    assert_eq!(name(2021, 8, 9), Some(HolidayName::SubstituteHoliday));
    assert_eq!(name(2021, 10, 11), None);
    assert_eq!(holidays_of_year(2020).len(), 18);
    assert_eq!(holidays_of_year(2021).len(), 17);
    // 2009 and 2015 "silver weeks".
    assert_eq!(name(2009, 9, 22), Some(HolidayName::CitizensHoliday));
    assert_eq!(name(2015, 9, 22), Some(HolidayName::CitizensHoliday));
    // 2008: 5/3 Saturday, 5/4 Sunday → the substitute skips 5/5 to 5/6.
    assert_eq!(name(2008, 5, 6), Some(HolidayName::SubstituteHoliday));
}

#[test]
fn national_holidays_are_holiday_closed_days() {
    let c = baseline();
    assert_eq!(c.day_type(date(2026, 9, 22)), DayType::HolidayClosed);
    assert_eq!(c.day_type(date(2026, 5, 6)), DayType::HolidayClosed);
    assert_eq!(c.day_type(date(2027, 3, 22)), DayType::HolidayClosed);
    assert_eq!(c.day_type(date(2026, 9, 24)), DayType::Weekday);
    assert_eq!(c.day_type(date(2026, 5, 9)), DayType::HolidayClosed); // Saturday
    assert_eq!(c.day_type(date(2026, 5, 10)), DayType::HolidayClosed); // Sunday
    // Outside the covered years only weekends (and configured dates) are known.
    assert_eq!(c.day_type(date(2100, 2, 11)), DayType::Weekday);
}

/// Answers for a fixed set of instants, as text, so a child process can report them.
fn zone_probe_answers() -> String {
    let c = cal(Config {
        weekday: strings(&["23:00-27:00"]),
        ..Config::default()
    });
    let mut out = String::new();
    for t in [
        "2026-05-11T22:59:59.999",
        "2026-05-11T23:00",
        "2026-05-12T00:00",
        "2026-05-12T02:59:59",
        "2026-05-12T03:00",
        "2026-12-31T23:59:59.999",
        "2027-01-01T00:00",
    ] {
        let w = c.is_in_maintenance(jst(t));
        out += &format!(
            "{t}={:?};",
            w.map(|w| (
                w.business_day.to_string(),
                w.day_type,
                w.start.to_string(),
                w.end.to_string()
            ))
        );
    }
    let next: Vec<String> = c
        .next_windows(jst("2026-05-08T12:00"), 3)
        .iter()
        .map(|w| format!("{}@{}", w.business_day, w.start))
        .collect();
    out + &next.join(",")
}

#[test]
fn zone_probe() {
    let answers = zone_probe_answers();
    // The same values whatever TZ says (the parent test runs this under other zones).
    assert!(answers.starts_with(
        "2026-05-11T22:59:59.999=None;2026-05-11T23:00=Some((\"2026-05-11\", Weekday, \"2026-05-11T14:00:00Z\", \"2026-05-11T18:00:00Z\"));"
    ), "{answers}");
    assert!(answers.contains("2026-05-12T03:00=None;"), "{answers}");
    assert!(answers.contains("2027-01-01T00:00=Some((\"2026-12-31\", HolidayClosed, \"2026-12-31T15:00:00Z\", \"2026-12-31T18:00:00Z\"))"), "{answers}");
    assert!(answers.ends_with("2026-05-08@2026-05-08T14:00:00Z,2026-05-09@2026-05-09T15:00:00Z,2026-05-10@2026-05-10T15:00:00Z"), "{answers}");
    println!("ZONE-PROBE {answers}");
}

#[test]
fn host_zone_does_not_change_answers() {
    // Setting TZ in-process would need `unsafe` (forbidden here), so run the probe test in
    // a child process of this test binary under other host zones.
    let here = zone_probe_answers();
    let exe = std::env::current_exe().unwrap();
    for tz in ["UTC", "America/New_York", "Pacific/Kiritimati"] {
        let out = std::process::Command::new(&exe)
            .args(["zone_probe", "--exact", "--nocapture", "--test-threads=1"])
            .env("TZ", tz)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "TZ={tz}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "TZ={tz}: the probe did not run: {stdout}"
        );
        // libtest prints "test zone_probe ... " on the same line before the probe's output.
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("ZONE-PROBE "))
            .map(|(_, a)| a)
            .unwrap_or_default();
        assert_eq!(line, here, "TZ={tz}");
    }
}

// ---- properties ----

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Non-overlapping windows inside `[split, split + 24h]`: all windows of every day lie in
/// that band, so consecutive business days can never overlap and every config is valid.
fn windows_in(split: u16) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(split..=split + 1440, 0..=6).prop_map(|cuts| {
        let cuts: Vec<u16> = cuts.into_iter().collect();
        cuts.chunks_exact(2)
            .map(|c| format!("{}-{}", hhmm(c[0]), hhmm(c[1])))
            .collect()
    })
}

fn day_in_2026_2027() -> impl Strategy<Value = Date> {
    (0i64..730).prop_map(|n| {
        date(2026, 1, 1)
            .checked_add(jiff::Span::new().days(n))
            .unwrap()
    })
}

fn random_config() -> impl Strategy<Value = Config> {
    (0u16..1440).prop_flat_map(|split| {
        (
            windows_in(split),
            windows_in(split),
            windows_in(split),
            prop::collection::btree_set(day_in_2026_2027(), 0..4),
            prop::collection::btree_set(day_in_2026_2027(), 0..4),
            prop::collection::btree_set(day_in_2026_2027(), 0..6),
            prop::collection::vec(windows_in(split), 0..4),
            any::<bool>(),
        )
            .prop_map(
                |(
                    weekday,
                    holiday_open,
                    holiday_closed,
                    open_dates,
                    closed_dates,
                    cancel,
                    extras,
                    year_end_closure,
                )| {
                    let cancel: Vec<Date> = cancel.into_iter().collect();
                    // Extra windows go on cancelled days, so they replace the day's windows and
                    // stay inside the band.
                    let extra = cancel
                        .iter()
                        .zip(extras)
                        .filter(|(_, w)| !w.is_empty())
                        .map(|(d, windows)| ExtraWindows {
                            date: d.to_string(),
                            windows,
                        })
                        .collect();
                    Config {
                        weekday,
                        holiday_open,
                        holiday_closed,
                        holiday_closed_dates: closed_dates
                            .difference(&open_dates)
                            .map(Date::to_string)
                            .collect(),
                        holiday_open_dates: open_dates.iter().map(Date::to_string).collect(),
                        year_end_closure,
                        extra,
                        cancel: cancel.iter().map(Date::to_string).collect(),
                    }
                },
            )
    })
}

/// Configs with no care for overlaps: each day type and each extra gets its own band, and
/// extras land on any day of a three-week stretch around the new year (where the instants of
/// [`new_year_instant`] are), cancelled or not. Many are invalid.
fn free_config() -> impl Strategy<Value = Config> {
    let day = (0i64..21).prop_map(|n| {
        date(2026, 12, 20)
            .checked_add(jiff::Span::new().days(n))
            .unwrap()
    });
    let band = || (0u16..1440).prop_flat_map(windows_in);
    (
        band(),
        band(),
        band(),
        prop::collection::vec((day.clone(), band()), 0..4),
        prop::collection::btree_set(day.clone(), 0..3),
        prop::collection::btree_set(day, 0..3),
    )
        .prop_map(
            |(weekday, holiday_open, holiday_closed, extras, cancel, open_dates)| Config {
                weekday,
                holiday_open,
                holiday_closed,
                holiday_open_dates: open_dates.iter().map(Date::to_string).collect(),
                extra: extras
                    .into_iter()
                    .filter(|(_, w)| !w.is_empty())
                    .map(|(d, windows)| ExtraWindows {
                        date: d.to_string(),
                        windows,
                    })
                    .collect(),
                cancel: cancel.iter().map(Date::to_string).collect(),
                ..Config::default()
            },
        )
}

fn new_year_instant() -> impl Strategy<Value = Timestamp> {
    let base = jst("2026-12-19T00:00").as_second();
    (
        0i64..24 * 1440,
        prop_oneof![Just(0i64), Just(-1), 0i64..60_000_000_000],
    )
        .prop_map(move |(minute, nanos)| {
            Timestamp::from_nanosecond(
                i128::from(base + minute * 60) * 1_000_000_000 + i128::from(nanos),
            )
            .unwrap()
        })
}

fn hand_configs() -> impl Strategy<Value = Config> {
    prop_oneof![
        Just(Config::default()),
        Just(Config {
            weekday: strings(&["23:00-27:00"]),
            holiday_closed: strings(&["23:00-30:00"]),
            ..Config::default()
        }),
        Just(Config {
            weekday: strings(&["01:00-02:00", "47:00-47:30"]),
            holiday_open: strings(&["01:00-02:00", "47:00-47:30"]),
            holiday_closed: strings(&["02:00-03:00", "46:00-47:00"]),
            ..Config::default()
        }),
        Just(Config {
            weekday: strings(&["22:00-24:00", "24:00-27:00"]),
            holiday_closed: strings(&["03:00-05:00", "24:00-27:00"]),
            cancel: strings(&["2026-12-02", "2027-05-06"]),
            extra: vec![ExtraWindows {
                date: "2026-12-01".into(),
                windows: strings(&["12:00-13:00"])
            }],
            holiday_open_dates: strings(&["2026-12-27"]),
            ..Config::default()
        }),
    ]
}

/// An instant in 2025-12-25 .. 2028-01-05 Japan time, often exactly on or 1 ms / 1 ns around
/// a minute boundary (where windows start and end).
fn instant() -> impl Strategy<Value = Timestamp> {
    let base = jst("2025-12-25T00:00").as_second();
    (
        0i64..741,
        0i64..1440,
        prop_oneof![
            Just(0i64),
            Just(-1_000_000),
            Just(1_000_000),
            Just(-1),
            0i64..60_000_000_000
        ],
    )
        .prop_map(move |(day, minute, nanos)| {
            Timestamp::from_nanosecond(
                i128::from(base + day * 86_400 + minute * 60) * 1_000_000_000 + i128::from(nanos),
            )
            .unwrap()
        })
}

fn check_agreement(c: &Calendar, t: Timestamp, lookback_minutes: i64) -> Result<(), TestCaseError> {
    const N: usize = 64;
    let from = t
        .checked_sub(jiff::SignedDuration::from_mins(lookback_minutes))
        .unwrap();
    let ws = c.next_windows(from, N);
    for w in &ws {
        prop_assert!(w.start < w.end, "window {w} does not end after it starts");
        prop_assert!(w.end > from, "window {w} had ended at {from}");
        prop_assert_eq!(w.day_type, c.day_type(w.business_day));
        prop_assert!(
            c.windows_of(w.business_day).contains(w),
            "{w} not among its day's windows"
        );
        let civil_start = c.time_zone().to_datetime(w.start).date();
        let days_after = (civil_start - w.business_day).get_days();
        prop_assert!(
            days_after == 0 || days_after == 1,
            "{w} starts {days_after} days after its business day"
        );
    }
    for pair in ws.windows(2) {
        prop_assert!(
            pair[0].end <= pair[1].start,
            "{} overlaps or precedes {}",
            pair[0],
            pair[1]
        );
    }
    if ws.len() == N {
        prop_assert!(ws[N - 1].start > t, "{N} windows do not reach past {t}");
    }
    let expected = ws.iter().find(|w| w.contains(t)).cloned();
    prop_assert_eq!(c.is_in_maintenance(t), expected.clone());
    prop_assert_eq!(c.current_window_end(t), expected.as_ref().map(|w| w.end));
    // From t itself, the first window is the one t is in, else the first one after t.
    let first = c.next_windows(t, 1).into_iter().next();
    let expected_first = expected.or_else(|| ws.iter().find(|w| w.start > t).cloned());
    if ws.len() < N || expected_first.is_some() {
        prop_assert_eq!(first, expected_first);
    }
    Ok(())
}

proptest! {
    // No failure persistence: proptest cannot locate a source root for an integration test.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_calendars_agree_with_next_windows(config in random_config(), t in instant(), lookback in 0i64..4 * 1440) {
        let c = Calendar::new(&config);
        prop_assert!(c.is_ok(), "a config generated valid was rejected: {:?}", c.err());
        if let Ok(c) = c {
            check_agreement(&c, t, lookback)?;
        }
    }

    #[test]
    fn hand_calendars_agree_with_next_windows(config in hand_configs(), t in instant(), lookback in 0i64..4 * 1440) {
        check_agreement(&cal(config), t, lookback)?;
    }

    #[test]
    fn free_calendars_are_rejected_or_consistent(config in free_config(), t in new_year_instant(), lookback in 0i64..4 * 1440) {
        match Calendar::new(&config) {
            // Only overlaps can be wrong with these configs.
            Err(e) => prop_assert_eq!(e.kind(), ConfigErrorKind::Overlap, "{}", e),
            Ok(c) => check_agreement(&c, t, lookback)?,
        }
    }

    #[test]
    fn window_specs_round_trip(start in 0u16..2880, end in 0u16..2880) {
        let text = format!("{}-{}", hhmm(start), hhmm(end));
        match text.parse::<shirase_proto::maintenance::WindowSpec>() {
            Ok(spec) => {
                prop_assert!(start < end);
                prop_assert_eq!((spec.start_minutes(), spec.end_minutes()), (start, end));
                prop_assert_eq!(spec.to_string(), text);
            }
            Err(e) => {
                prop_assert!(start >= end, "{text} rejected: {e}");
                prop_assert_eq!(e.kind(), WindowErrorKind::EndNotAfterStart);
            }
        }
    }
}
