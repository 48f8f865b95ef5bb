//! The maintenance calendar as configured (a provider's `maintenance` table in relay.toml /
//! agent.toml: windows in the `24:00-27:00` notation per day type, holiday-open and
//! holiday-closed dates, extra and cancel dates) through `toml` + serde into `Config`, then
//! `Calendar::new`, then "in window?" queries.
//!
//! Input: the TOML text, optionally followed by a NUL byte and query bytes (8 per instant).
//!
//! Invariants, beyond "no panic":
//! - a window that parses ends after it starts, names at most 47:59 and prints back to itself;
//! - a calendar that validates answers `is_in_maintenance`, `current_window_end`,
//!   `next_windows` and `windows_of` for any instant: every window ends after it starts, the
//!   window `t` is in contains `t`, the windows of a day and the next windows do not overlap
//!   and are ordered by start, the next windows have not ended, and the first of them is the
//!   one `t` is in.
#![no_main]

use jiff::Timestamp;
use jiff::civil::Date;
use libfuzzer_sys::fuzz_target;
use shirase_proto::maintenance::{Calendar, Config, Window, WindowSpec};

/// Instants asked about when the input carries none: around the 2026 Golden Week holidays and
/// the year end.
const DEFAULT_QUERIES: [&str; 4] = [
    "2026-05-06T16:30:00Z",
    "2026-05-07T01:30:00+09:00",
    "2026-12-31T23:59:59+09:00",
    "2027-01-04T02:59:59+09:00",
];

/// One instant from 8 bytes: the first byte's low bit picks any second jiff can represent, or
/// a second within the years 1900–2155, where the calendar has its holidays, its
/// day types and, in 1948–1951, daylight saving time.
fn instant(b: &[u8; 8]) -> Option<Timestamp> {
    let n = i64::from_le_bytes(*b);
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    if b[0] & 1 == 0 {
        return Timestamp::from_second(min + n.rem_euclid(max - min)).ok();
    }
    let base = Timestamp::from_second(-2_208_988_800).ok()?; // 1900-01-01T00:00:00Z
    let span = 256 * 366 * 86_400;
    base.checked_add(jiff::SignedDuration::from_secs(n.rem_euclid(span)))
        .ok()
}

fn check_window(w: &Window) {
    assert!(w.start < w.end, "window ends before it starts: {w}");
}

fn check_spec(text: &str) {
    if let Ok(spec) = text.parse::<WindowSpec>() {
        assert!(spec.start_minutes() < spec.end_minutes(), "{text:?}");
        assert!(spec.end_minutes() < 48 * 60, "{text:?}");
        assert_eq!(spec.to_string().parse::<WindowSpec>(), Ok(spec));
    }
}

fuzz_target!(|data: &[u8]| {
    let (text, queries) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    for w in config
        .weekday
        .iter()
        .chain(&config.holiday_open)
        .chain(&config.holiday_closed)
        .chain(config.extra.iter().flat_map(|e| &e.windows))
    {
        check_spec(w);
    }
    let Ok(cal) = Calendar::new(&config) else {
        return;
    };
    // `next_windows` walks day by day until it has its windows or is past the last configured
    // date. Weekdays and weekends recur weekly, so with windows on either the walk is short;
    // otherwise only the configured dates have windows and the walk is as long as the way to
    // the last of them, up to 8,000 years: asked only within a few years of it.
    let sparse = config.weekday.is_empty() && config.holiday_closed.is_empty();
    let last_date = config
        .holiday_open_dates
        .iter()
        .chain(&config.holiday_closed_dates)
        .chain(&config.cancel)
        .chain(config.extra.iter().map(|e| &e.date))
        .filter_map(|d| d.trim().parse::<Date>().ok())
        .max();
    let instants: Vec<Timestamp> = match queries {
        Some(q) => q
            .chunks_exact(8)
            .take(8)
            .filter_map(|c| instant(c.try_into().ok()?))
            .collect(),
        None => DEFAULT_QUERIES
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
    };
    for (i, t) in instants.into_iter().enumerate() {
        let inside = cal.is_in_maintenance(t);
        if let Some(w) = &inside {
            check_window(w);
            assert!(w.contains(t), "{t} not in the window it is in: {w}");
        }
        assert_eq!(cal.current_window_end(t), inside.as_ref().map(|w| w.end));
        let day = cal.time_zone().to_datetime(t).date();
        for d in [day.yesterday().ok(), Some(day), day.tomorrow().ok()]
            .into_iter()
            .flatten()
        {
            let ws = cal.windows_of(d);
            for w in &ws {
                check_window(w);
                assert_eq!(w.business_day, d);
            }
            assert!(ws.windows(2).all(|p| p[0].end <= p[1].start), "{d}: {ws:?}");
        }
        if sparse && last_date.is_some_and(|last| (last - day).get_days() > 3 * 366) {
            continue;
        }
        let n = 1 + i % 4;
        let next = cal.next_windows(t, n);
        assert!(next.len() <= n);
        for w in &next {
            check_window(w);
            assert!(w.end > t, "{t}: an ended window among the next: {w}");
        }
        assert!(
            next.windows(2).all(|p| p[0].end <= p[1].start),
            "{t}: {next:?}"
        );
        if let (Some(first), Some(w)) = (next.first(), &inside) {
            assert_eq!(
                first, w,
                "{t}: the first next window is not the one t is in"
            );
        }
    }
});
