use super::*;
use crate::outcome::Outcome;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn keys(k: &[&str]) -> Vec<AtenaNo> {
    k.iter().map(|s| s.parse().unwrap()).collect()
}

/// The second dialect: split date/time at whole seconds, inclusive TO, romaji names, rows
/// under another key, the version in the path, capped answers with counts.
pub(crate) fn romaji() -> ApiProfile {
    let raw: RawApi = toml_like(serde_json::json!({
        "path": "/renkei/{version}/{interface}",
        "from": {"date": "koshin_ymd_from", "time": "koshin_time_from"},
        "to": {"date": "koshin_ymd_to", "time": "koshin_time_to"},
        "to_inclusive": true,
        "key": "atena_bango",
        "rows": "/kekka/meisai",
        "row_updated_at": {"date": "koshin_ymd", "time": "koshin_time"},
        "row_atena_no": "atena_bango",
        "row_history_no": "rireki_bango",
        "too_many_codes": ["W0101"],
        "maintenance_codes": ["W0900"],
        "total_count": "/kekka/kensu",
        "returned_count": "/kekka/henkyaku_kensu"
    }));
    let mut problems = Vec::new();
    let p = raw.validate("api", true, &mut |f, m| problems.push(format!("{f}: {m}")));
    assert!(problems.is_empty(), "{problems:?}");
    p.unwrap()
}

fn toml_like(v: serde_json::Value) -> RawApi {
    serde_json::from_value(v).unwrap()
}

fn problems(v: serde_json::Value, has_version: bool) -> Vec<String> {
    let raw: RawApi = toml_like(v);
    let mut out = Vec::new();
    let p = raw.validate("providers[0].api", has_version, &mut |f, m| {
        out.push(format!("{f}: {m}"))
    });
    assert_eq!(p.is_some(), out.is_empty());
    out
}

#[test]
fn the_default_is_todays_dialect() {
    let p = ApiProfile::default();
    let raw = RawApi::default();
    assert_eq!(
        raw.validate("api", false, &mut |f, m| panic!("{f}: {m}")),
        Some(p.clone())
    );
    assert!(!p.whole_seconds());
    let v = PathValues {
        interface: "001o05-00",
        version: Some("1.0"),
        municipality: None,
    };
    assert_eq!(p.path(None, v), "/api/001o05-00");
    let q = p.query(
        Some(ts("2026-11-25T01:15:30.123456Z")),
        Some(ts("2026-11-25T01:16:00Z")),
        &keys(&["000000000012345", "000000000012346"]),
    );
    assert_eq!(
        q,
        [
            (
                "updated_from".into(),
                "2026-11-25T10:15:30.123456+09:00".into()
            ),
            ("updated_to".into(), "2026-11-25T10:16:00+09:00".into()),
            ("atena_no".into(), "000000000012345,000000000012346".into()),
        ]
    );
}

#[test]
fn split_bounds_at_whole_seconds_widen_the_window() {
    let p = romaji();
    assert!(p.whole_seconds());
    let v = PathValues {
        interface: "001o05-00",
        version: Some("1.1"),
        municipality: Some("131016"),
    };
    assert_eq!(p.path(None, v), "/renkei/1.1/001o05-00");
    assert_eq!(
        p.path(Some("/{municipality}/x/{interface}"), v),
        "/131016/x/001o05-00"
    );
    // FROM rounds down; an inclusive TO is the last whole second before the exclusive end.
    let q = p.query(
        Some(ts("2026-11-24T15:00:01.5Z")),
        Some(ts("2026-11-24T15:00:03.2Z")),
        &[],
    );
    assert_eq!(
        q,
        [
            ("koshin_ymd_from".into(), "20261125".into()),
            ("koshin_time_from".into(), "000001".into()),
            ("koshin_ymd_to".into(), "20261125".into()),
            ("koshin_time_to".into(), "000003".into()),
        ]
    );
    let q = p.query(
        None,
        Some(ts("2026-11-24T15:00:03Z")),
        &keys(&["000000000012345"]),
    );
    assert_eq!(q[1], ("koshin_time_to".into(), "000002".into()));
    assert_eq!(q[2], ("atena_bango".into(), "000000000012345".into()));
}

#[test]
fn one_pattern_bound_with_exclusive_to_rounds_up() {
    let raw = toml_like(serde_json::json!({"timestamp_format": "%Y%m%d%H%M%S"}));
    let p = raw
        .validate("api", false, &mut |f, m| panic!("{f}: {m}"))
        .unwrap();
    assert!(p.whole_seconds());
    let q = p.query(
        Some(ts("2026-11-24T15:00:01.5Z")),
        Some(ts("2026-11-24T15:00:03.2Z")),
        &[],
    );
    assert_eq!(q[0].1, "20261125000001");
    assert_eq!(q[1].1, "20261125000004");
    assert_eq!(
        p.parse_one("20261125000001"),
        Some(ts("2026-11-24T15:00:01Z"))
    );
    let frac = toml_like(serde_json::json!({"timestamp_format": "%Y%m%d%H%M%S%.6f"}));
    assert!(
        !frac
            .validate("api", false, &mut |f, m| panic!("{f}: {m}"))
            .unwrap()
            .whole_seconds()
    );
}

#[test]
fn romaji_answers_are_read_with_counts() {
    let p = romaji();
    let body = br#"{"kekka":{"kensu":3,"henkyaku_kensu":2,"meisai":[
        {"atena_bango":"000000000012345","rireki_bango":"3","koshin_ymd":"20261125","koshin_time":"101530"},
        {"atena_bango":"000000000012346","rireki_bango":1,"koshin_ymd":"20261125","koshin_time":93000}]}}"#;
    let c = p.classify(200, None, body);
    assert_eq!(
        c.capped,
        Some(Capped {
            total: 3,
            returned: 2
        })
    );
    let Outcome::Data(rows) = c.outcome else {
        panic!("not data")
    };
    assert_eq!(rows[0].updated_at, ts("2026-11-25T01:15:30Z"));
    assert_eq!(rows[0].history_no, Some(3));
    assert_eq!(rows[1].updated_at, ts("2026-11-25T00:30:00Z"));
    assert_eq!(rows[1].atena_no.as_deref(), Some("000000000012346"));
    let whole = br#"{"kekka":{"kensu":0,"henkyaku_kensu":0,"meisai":[]}}"#;
    assert_eq!(p.classify(200, None, whole).capped, None);
}

#[test]
fn codes_are_the_providers() {
    let p = romaji();
    assert_eq!(
        p.classify(400, None, br#"{"code":"W0101","message":"m"}"#)
            .outcome,
        Outcome::TooMany
    );
    assert!(matches!(
        p.classify(400, None, br#"{"code":"E0004","message":"m"}"#)
            .outcome,
        Outcome::Permanent { .. }
    ));
    assert_eq!(
        p.classify(503, None, br#"{"code":"W0900","message":"m"}"#)
            .outcome,
        Outcome::Maintenance { retry_after: None }
    );
}

#[test]
fn a_wrong_profile_is_a_mismatch_naming_the_key() {
    let d = ApiProfile::default();
    let romaji_body = br#"{"kekka":{"kensu":0,"henkyaku_kensu":0,"meisai":[]}}"#;
    assert_eq!(
        d.classify(200, None, romaji_body).outcome,
        Outcome::ProfileMismatch {
            key: "rows".into(),
            message: "no array at \"/rows\"".into()
        }
    );
    let p = romaji();
    let bad = br#"{"kekka":{"kensu":1,"henkyaku_kensu":1,"meisai":[{"atena_bango":"1","koshin_ymd":"2026-11-25","koshin_time":"101530"}]}}"#;
    let Outcome::ProfileMismatch { key, message } = p.classify(200, None, bad).outcome else {
        panic!()
    };
    assert_eq!(key, "row_updated_at");
    assert!(!message.contains("2026"), "never a value: {message}");
}

#[test]
fn bad_profiles_are_refused_with_field_paths() {
    let e = problems(serde_json::json!({"rows": "data"}), true);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("providers[0].api.rows: "), "{e:?}");
    let e = problems(serde_json::json!({"timestamp_format": "%Y%m%d"}), true);
    assert!(
        e[0].starts_with("providers[0].api.timestamp_format: "),
        "{e:?}"
    );
    let e = problems(
        serde_json::json!({"from": {"date": "d"}, "to": {"date": "d2", "time": "t2"}}),
        true,
    );
    assert!(e[0].starts_with("providers[0].api.from.time: "), "{e:?}");
    let e = problems(
        serde_json::json!({"from": {"date": "d", "time": "t"}, "to": {"date": "d2", "time": "t2"}, "time_format": "%H%M"}),
        true,
    );
    assert!(e[0].starts_with("providers[0].api.time_format: "), "{e:?}");
    let e = problems(
        serde_json::json!({"path": "/api/{version}/{interface}"}),
        false,
    );
    assert!(e[0].starts_with("providers[0].api.path: "), "{e:?}");
    assert!(
        problems(
            serde_json::json!({"path": "/api/{version}/{interface}"}),
            true
        )
        .is_empty()
    );
    let e = problems(serde_json::json!({"path": "/api/{id}"}), true);
    assert!(e[0].starts_with("providers[0].api.path: "), "{e:?}");
    let e = problems(serde_json::json!({"total_count": "/kensu"}), true);
    assert!(
        e[0].starts_with("providers[0].api.returned_count: "),
        "{e:?}"
    );
    assert!(serde_json::from_value::<RawApi>(serde_json::json!({"bogus": 1})).is_err());
    let e = problems(serde_json::json!({"rows_order": "atena_no"}), true);
    assert_eq!(
        e,
        [
            "providers[0].api.rows_order: \"atena_no\": write \"updated_at\" (rows ascending by DB update timestamp) or \"unspecified\""
        ]
    );
}

#[test]
fn rows_order_is_read_from_the_profile() {
    let raw: RawApi = toml_like(serde_json::json!({"rows_order": "updated_at"}));
    let p = raw.validate("api", false, &mut |f, m| panic!("{f}: {m}"));
    assert_eq!(p.map(|p| p.rows_order), Some(RowsOrder::UpdatedAt));
    assert_eq!(ApiProfile::default().rows_order, RowsOrder::Unspecified);
}

#[test]
fn a_401_is_refused_credentials_whatever_code_its_body_carries() {
    // Found by the `pull_response` fuzz target: a 401 whose body said E0004 (or the
    // maintenance code) was classified by its code.
    let p = ApiProfile::default();
    for body in [
        br#"{"code":"E0004","message":"x"}"#.as_slice(),
        br#"{"code":"E0900","message":"x"}"#.as_slice(),
        b"",
    ] {
        assert!(
            matches!(
                p.classify(401, None, body).outcome,
                Outcome::Unauthorized { .. }
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        p.classify(400, None, br#"{"code":"E0004"}"#).outcome,
        Outcome::TooMany
    );
}
