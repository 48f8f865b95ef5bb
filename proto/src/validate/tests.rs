//! One test (or more) per rule, each asserting the exact (path, rule) pairs reported.

use serde_json::json;

use super::*;
use crate::notice::{ChangeKind, MAX_KEYS};

/// A valid individual number (個人番号) by the check digit: 12345678901 → 8.
const MY_NUMBER: &str = "123456789018";

fn valid() -> Value {
    json!({
        "specversion": "1.0",
        "id": "0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0e",
        "source": "urn:jp:lg:131016:001",
        "type": "jp.lg.shirase.change.v1",
        "time": "2026-11-25T10:15:31+09:00",
        "subject": "001o05-00",
        "sequence": "00000000000000000042",
        "data": {
            "interface_id": "001o05-00",
            "interface_version": "1.0",
            "municipality_code": "131016",
            "provider": "001",
            "updated_at": "2026-11-25T10:15:30.123+09:00",
            "change": "update"
        }
    })
}

fn check(v: &Value) -> Result<Notice, Vec<Violation>> {
    check_value(v, &Limits::default())
}

/// The (path, rule) pairs reported for `v`, which must be refused.
fn refused(v: &Value) -> Vec<(String, Rule)> {
    match check(v) {
        Ok(n) => panic!("accepted: {n:?}"),
        Err(vs) => {
            for x in &vs {
                assert!(!x.message.is_empty(), "empty message for {x:?}");
            }
            vs.into_iter().map(|x| (x.path, x.rule)).collect()
        }
    }
}

fn one(path: &str, rule: Rule) -> Vec<(String, Rule)> {
    vec![(path.to_owned(), rule)]
}

/// `valid()` with the member at `pointer` replaced by `new`.
fn with(pointer: &str, new: Value) -> Value {
    let mut v = valid();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no member {pointer}")) = new;
    v
}

/// `valid()` without the member at `pointer`.
fn without(pointer: &str) -> Value {
    let mut v = valid();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key)
        .unwrap();
    v
}

fn message(v: &Value, path: &str) -> String {
    check(v)
        .unwrap_err()
        .into_iter()
        .find(|x| x.path == path)
        .unwrap()
        .message
}

#[test]
fn valid_notice_is_accepted_with_every_field() {
    let n = check(&valid()).unwrap();
    assert_eq!(n.id.to_string(), "0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0e");
    assert_eq!(n.source.to_string(), "urn:jp:lg:131016:001");
    assert_eq!(n.subject.as_str(), "001o05-00");
    assert_eq!(n.sequence, Sequence(42));
    assert_eq!(n.time.as_str(), "2026-11-25T10:15:31+09:00");
    assert_eq!(n.datacontenttype, None);
    assert_eq!(n.data.municipality_code.as_str(), "131016");
    assert_eq!(n.data.provider.as_str(), "001");
    assert_eq!(n.data.interface_version.as_str(), "1.0");
    assert_eq!(n.data.updated_at.as_str(), "2026-11-25T10:15:30.123+09:00");
    assert_eq!(n.data.change, ChangeKind::Update);
    assert_eq!(n.data.keys, None);
    // The walk and serde's derive agree on a valid notice.
    assert_eq!(serde_json::from_value::<Notice>(valid()).unwrap(), n);
    assert_eq!(serde_json::to_value(&n).unwrap(), valid());
}

#[test]
fn optional_members_are_accepted() {
    let mut v = valid();
    v["datacontenttype"] = json!("application/json");
    v["data"]["keys"] = json!({"atena_no": ["000000000012345", "999999999999999"]});
    v["data"]["change"] = json!("retroactive");
    let n = check(&v).unwrap();
    assert_eq!(n.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(n.data.keys.unwrap().atena_no.len(), 2);
    assert_eq!(n.data.change, ChangeKind::Retroactive);
    assert_eq!(
        check(&with("/data/change", json!("delete")))
            .unwrap()
            .data
            .change,
        ChangeKind::Delete
    );
}

#[test]
fn empty_key_list_is_accepted() {
    let mut v = valid();
    v["data"]["keys"] = json!({"atena_no": []});
    assert_eq!(
        check(&v).unwrap().data.keys,
        Some(Keys { atena_no: vec![] })
    );
}

// ---- Rule::Syntax ----

#[test]
fn syntax_errors_name_the_problem() {
    let l = Limits::default();
    for (bytes, needle) in [
        (&b""[..], "EOF"),
        (b"{", "EOF"),
        (b"{\"id\": }", "expected value"),
        (b"{} {}", "trailing characters"),
        (b"{\"a\": \"\\ud800\"}", "escape"),
        (b"{\"a\": \"\xff\"}", "not UTF-8"),
        (b"\xfe{}", "byte offset 0"),
    ] {
        let vs = parse_notice(bytes, &l).unwrap_err();
        assert_eq!(vs.len(), 1, "{vs:?}");
        assert_eq!(vs[0].rule, Rule::Syntax);
        assert_eq!(vs[0].path, "");
        assert!(
            vs[0].message.contains(needle),
            "{:?} lacks {needle:?}",
            vs[0].message
        );
    }
}

#[test]
fn invalid_utf8_reports_the_byte_offset() {
    let vs = parse_notice(b"{\"a\": \"ok\xc3\x28\"}", &Limits::default()).unwrap_err();
    assert_eq!(
        vs[0].message,
        "not UTF-8: invalid byte sequence at byte offset 9"
    );
}

#[test]
fn byte_order_mark_is_ignored() {
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(serde_json::to_vec(&valid()).unwrap());
    assert!(parse_notice(&bytes, &Limits::default()).is_ok());
    assert!(matches!(
        parse_payload(&bytes, &Limits::default()),
        Ok(Payload::Single(Ok(_)))
    ));
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_crash() {
    let l = Limits {
        max_notice_bytes: 1 << 20,
        ..Limits::default()
    };
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let depth = 100_000;
        let body = format!("{}0{}", open.repeat(depth), close.repeat(depth));
        let vs = parse_notice(body.as_bytes(), &l).unwrap_err();
        assert_eq!(
            vs.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![Rule::Syntax]
        );
        assert!(
            vs[0].message.contains("nested more than 127 levels"),
            "{}",
            vs[0].message
        );
        match parse_payload(body.as_bytes(), &l) {
            Err(PayloadError::Syntax(m)) => {
                assert!(m.contains("nested more than 127 levels"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Inside a batch item too.
        let batch = format!("[{{}}, {}]", body);
        match parse_payload(batch.as_bytes(), &l) {
            Err(PayloadError::Syntax(m)) => assert!(m.ends_with("(in batch item 1)"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn deep_value_built_by_a_caller_is_walked_without_recursion() {
    // Not reachable from bytes (serde_json stops at 128), but check_value is public. Built and
    // dropped by hand: serde_json's Drop for Value recurses.
    let mut v = Value::Null;
    for _ in 0..100_000 {
        v = Value::Array(vec![v]);
    }
    let mut notice = valid();
    notice["deep"] = v;
    let vs = refused(&notice);
    assert_eq!(
        vs,
        vec![
            ("".to_owned(), Rule::TooLarge),
            ("/deep".to_owned(), Rule::UnknownField)
        ]
    );
    let mut deep = notice.as_object_mut().unwrap().remove("deep").unwrap();
    while let Value::Array(mut items) = deep {
        deep = items.pop().unwrap_or(Value::Null);
    }
}

// ---- Rule::Type ----

#[test]
fn root_must_be_an_object() {
    for v in [json!([]), json!("x"), json!(1), json!(null), json!(true)] {
        assert_eq!(refused(&v), one("", Rule::Type));
    }
    assert_eq!(
        message(&json!([]), ""),
        "a notice must be an object, got an array"
    );
}

#[test]
fn every_string_member_refuses_other_json_types() {
    let paths = [
        "/specversion",
        "/id",
        "/source",
        "/type",
        "/time",
        "/subject",
        "/sequence",
        "/data/interface_id",
        "/data/interface_version",
        "/data/municipality_code",
        "/data/provider",
        "/data/updated_at",
        "/data/change",
    ];
    for path in paths {
        for bad in [json!(1), json!(null), json!(true), json!([]), json!({})] {
            let vs = refused(&with(path, bad.clone()));
            assert_eq!(vs, one(path, Rule::Type), "{path} = {bad}");
        }
    }
    let mut v = valid();
    v["datacontenttype"] = json!(7);
    assert_eq!(refused(&v), one("/datacontenttype", Rule::Type));
    assert_eq!(
        message(&with("/time", json!(1)), "/time"),
        "time must be a string (when the notice was emitted, RFC 3339 with offset, e.g. 2026-11-25T10:15:30+09:00), got a number"
    );
}

#[test]
fn containers_must_have_their_types() {
    assert_eq!(
        refused(&with("/data", json!("x"))),
        one("/data", Rule::Type)
    );
    let mut v = valid();
    for keys in [json!([]), json!(null), json!("000000000012345")] {
        v["data"]["keys"] = keys;
        assert_eq!(refused(&v), one("/data/keys", Rule::Type));
    }
    v["data"]["keys"] = json!({"atena_no": "000000000012345"});
    assert_eq!(refused(&v), one("/data/keys/atena_no", Rule::Type));
    v["data"]["keys"] = json!({"atena_no": ["000000000012345", 12345, null]});
    assert_eq!(
        refused(&v),
        vec![
            ("/data/keys/atena_no/1".to_owned(), Rule::Type),
            ("/data/keys/atena_no/2".to_owned(), Rule::Type)
        ]
    );
}

// ---- Rule::Required ----

#[test]
fn every_required_member_is_reported_with_its_path() {
    for path in [
        "/specversion",
        "/id",
        "/source",
        "/type",
        "/time",
        "/subject",
        "/sequence",
        "/data",
        "/data/interface_id",
        "/data/interface_version",
        "/data/municipality_code",
        "/data/provider",
        "/data/updated_at",
        "/data/change",
    ] {
        assert_eq!(refused(&without(path)), one(path, Rule::Required), "{path}");
    }
    let mut v = valid();
    v["data"]["keys"] = json!({});
    assert_eq!(refused(&v), one("/data/keys/atena_no", Rule::Required));
    assert_eq!(
        message(&without("/data/updated_at"), "/data/updated_at"),
        "data.updated_at is required: the DB update timestamp, RFC 3339 with offset, e.g. 2026-11-25T10:15:30.123+09:00"
    );
}

#[test]
fn empty_object_lists_every_required_member() {
    let vs = refused(&json!({}));
    let paths: Vec<&str> = vs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/data",
            "/id",
            "/sequence",
            "/source",
            "/specversion",
            "/subject",
            "/time",
            "/type"
        ]
    );
    assert!(vs.iter().all(|(_, r)| *r == Rule::Required));
}

// ---- Rule::UnknownField ----

#[test]
fn unknown_members_are_reported_at_every_level() {
    let mut v = valid();
    v["traceparent"] = json!("00-abc");
    v["data"]["name"] = json!("x");
    v["data"]["keys"] = json!({"atena_no": [], "kojin_no": []});
    v["a/b~c"] = json!(1);
    assert_eq!(
        refused(&v),
        vec![
            ("/a~1b~0c".to_owned(), Rule::UnknownField),
            ("/data/keys/kojin_no".to_owned(), Rule::UnknownField),
            ("/data/name".to_owned(), Rule::UnknownField),
            ("/traceparent".to_owned(), Rule::UnknownField),
        ]
    );
    assert_eq!(
        message(&v, "/data/name"),
        "unknown member \"name\" in data; the members are interface_id, interface_version, municipality_code, provider, updated_at, change, keys"
    );
}

// ---- Rule::Format ----

/// Each string member with values refused for their format, and the message fragment expected.
#[test]
fn format_violations_per_member() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "/id",
            "0192F0C1-5E2A-7B3C-9D4E-5F6A7B8C9D0E",
            "lowercase hyphenated",
        ),
        (
            "/id",
            "0192f0c15e2a7b3c9d4e5f6a7b8c9d0e",
            "exactly 36 characters",
        ),
        ("/id", "0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0g", "UUID"),
        ("/id", "00000000-0000-0000-0000-000000000000", "nil or max"),
        ("/id", "ffffffff-ffff-ffff-ffff-ffffffffffff", "nil or max"),
        ("/source", "urn:jp:lg:131016:01x", "business id"),
        ("/source", "urn:jp:lg:131017:001", "check digit"),
        (
            "/source",
            "urn:jp:xx:131016:001",
            "urn:jp:lg:<municipality code>:<business id>",
        ),
        ("/source", "urn:jp:lg:131016:0012", "exactly 20 characters"),
        ("/time", "2026-11-25T10:15:31", "offset is missing"),
        ("/time", "2026-11-25 10:15:31+09:00", "RFC 3339"),
        ("/time", "2026-11-25t10:15:31+09:00", "RFC 3339"),
        ("/time", "2026-02-30T10:15:31+09:00", "no such date"),
        ("/time", "2026-11-25T24:00:00+09:00", "hour 00-23"),
        ("/time", "2026-11-25T23:59:60+09:00", "second 00-59"),
        ("/time", "2026-11-25T10:15:31+24:00", "offset must be"),
        ("/time", "2026-11-25T10:15:31+0900", "offset must be"),
        ("/time", "2026-11-25T10:15:31.+09:00", "fractional"),
        (
            "/time",
            "2026-11-25T10:15:31.1234567890+09:00",
            "20 to 35 characters long, got 36",
        ),
        ("/time", "2026-11-25T10:15:31.1234567890Z", "fractional"),
        ("/subject", "001O05-00", "NNNoNN-NN"),
        ("/subject", "001o05_00", "NNNoNN-NN"),
        ("/subject", "001o05-0", "exactly 9 characters"),
        ("/sequence", "42", "exactly 20 characters"),
        ("/sequence", "0000000000000000004x", "20 digits"),
        ("/sequence", "18446744073709551616", "larger than"),
        ("/data/interface_id", "1o05-00", "exactly 9 characters"),
        ("/data/interface_version", "1..0", "版数"),
        ("/data/interface_version", "", "1 to 11 characters"),
        ("/data/interface_version", "1.0.0.0", "版数"),
        ("/data/interface_version", "1000.0", "版数"),
        ("/data/interface_version", "v1", "版数"),
        ("/data/municipality_code", "131017", "expected last digit 6"),
        ("/data/municipality_code", "13101a", "6 digits"),
        ("/data/municipality_code", "1310160", "exactly 6 characters"),
        ("/data/provider", "1", "exactly 3 characters"),
        ("/data/provider", "0a1", "3 digits"),
        (
            "/data/updated_at",
            "2026-11-25T10:15:30.123",
            "offset is missing",
        ),
        (
            "/data/updated_at",
            "2026-13-25T10:15:30+09:00",
            "month 01-12",
        ),
        (
            "/data/change",
            "insert",
            "one of update, retroactive, delete",
        ),
        (
            "/data/change",
            "UPDATE",
            "one of update, retroactive, delete",
        ),
    ];
    for (path, value, needle) in cases {
        let mut v = with(path, json!(value));
        // Keep cross-field partners in step so only the format rule fires.
        if *path == "/data/interface_id" {
            v["subject"] = json!(value);
        }
        if *path == "/data/provider" {
            v["source"] = json!(format!("urn:jp:lg:131016:{value}"));
        }
        let vs = check(&v).unwrap_err();
        let pairs: Vec<(String, Rule)> = vs.iter().map(|x| (x.path.clone(), x.rule)).collect();
        let mut want = one(path, Rule::Format);
        if *path == "/data/provider" {
            want.push(("/source".to_owned(), Rule::Format));
        }
        if *path == "/data/interface_id" {
            want.push(("/subject".to_owned(), Rule::Format));
        }
        assert_eq!(pairs, want, "{path} = {value:?}");
        assert!(
            vs[0].message.contains(needle),
            "{path} = {value:?}: {:?} lacks {needle:?}",
            vs[0].message
        );
    }
}

#[test]
fn format_boundaries_that_are_accepted() {
    for (path, value) in [
        ("/time", "2026-11-25T10:15:31Z"),
        ("/time", "2026-11-25T10:15:31.1Z"),
        ("/time", "2026-11-25T10:15:31.123456789-23:59"),
        ("/time", "2024-02-29T00:00:00+00:00"),
        ("/time", "2026-11-25T23:59:59-00:00"),
        ("/sequence", "00000000000000000000"),
        ("/sequence", "18446744073709551615"),
        ("/data/interface_version", "1"),
        ("/data/interface_version", "999.999.999"),
        ("/data/updated_at", "2026-11-25T10:15:30.123456+09:00"),
        ("/id", "01234567-89ab-4def-8123-456789abcdef"),
    ] {
        assert!(check(&with(path, json!(value))).is_ok(), "{path} = {value}");
    }
}

#[test]
fn length_violations_say_the_bounds() {
    let long = "9".repeat(100_000);
    assert_eq!(
        message(
            &with("/data/interface_version", json!(long)),
            "/data/interface_version"
        ),
        "data.interface_version must be 1 to 11 characters long, got 100000: the interface version (版数), e.g. 1.0"
    );
    assert_eq!(
        message(&with("/id", json!("x")), "/id"),
        "id must be exactly 36 characters long, got 1: id must be a UUID in lowercase hyphenated form (UUID v7 recommended), got \"x\""
    );
    // Characters, not bytes, as JSON Schema counts.
    assert_eq!(
        refused(&with("/data/provider", json!("〇〇一"))),
        vec![("/data/provider".to_owned(), Rule::Format)]
    );
}

// ---- Rule::Constant ----

#[test]
fn constants_are_enforced() {
    assert_eq!(
        refused(&with("/specversion", json!("0.3"))),
        one("/specversion", Rule::Constant)
    );
    assert_eq!(
        message(&with("/specversion", json!("0.3")), "/specversion"),
        "specversion must be \"1.0\", got \"0.3\""
    );
    assert_eq!(
        refused(&with("/type", json!("jp.lg.shirase.change.v2"))),
        one("/type", Rule::Constant)
    );
    let mut v = valid();
    v["datacontenttype"] = json!("text/plain");
    assert_eq!(refused(&v), one("/datacontenttype", Rule::Constant));
    v["datacontenttype"] = json!(null);
    assert_eq!(refused(&v), one("/datacontenttype", Rule::Type));
}

// ---- Rule::TooLarge ----

#[test]
fn oversized_notice_counts_bytes_as_received() {
    let l = Limits::default();
    let compact = serde_json::to_vec(&valid()).unwrap();
    let mut padded = compact.clone();
    padded.truncate(padded.len() - 1);
    padded.extend(std::iter::repeat_n(
        b' ',
        l.max_notice_bytes - compact.len(),
    ));
    padded.push(b'}');
    assert_eq!(padded.len(), l.max_notice_bytes);
    assert!(
        parse_notice(&padded, &l).is_ok(),
        "exactly at the limit is accepted"
    );
    padded.insert(1, b' ');
    let vs = parse_notice(&padded, &l).unwrap_err();
    assert_eq!(
        vs.iter()
            .map(|x| (x.path.as_str(), x.rule))
            .collect::<Vec<_>>(),
        [("", Rule::TooLarge)]
    );
    assert_eq!(
        vs[0].message,
        "notice is 8193 bytes; the limit is 8192 bytes (a notice carries ids and timestamps, never data)"
    );
}

#[test]
fn oversized_notice_still_reports_its_other_violations() {
    let mut v = valid();
    v["blob"] = json!("x".repeat(9000));
    assert_eq!(
        refused(&v),
        vec![
            ("".to_owned(), Rule::TooLarge),
            ("/blob".to_owned(), Rule::UnknownField)
        ]
    );
    let bytes = serde_json::to_vec(&v).unwrap();
    let vs = parse_notice(&bytes, &Limits::default()).unwrap_err();
    assert_eq!(vs.len(), 2);
    // Far beyond every limit: refused unread.
    let huge = vec![b' '; 5 * 1024 * 1024];
    let vs = parse_notice(&huge, &Limits::default()).unwrap_err();
    assert_eq!(
        vs.iter().map(|x| x.rule).collect::<Vec<_>>(),
        [Rule::TooLarge]
    );
}

#[test]
fn check_value_measures_the_compact_serialization() {
    let mut v = valid();
    v["data"]["keys"] = json!({"atena_no": ["000000000012345"]});
    v["x"] = json!([1.5, -3, null, true, false, {"é\"\n": "\u{1}"}, []]);
    assert_eq!(
        compact_len(&Json::from_value(&v)),
        serde_json::to_vec(&v).unwrap().len()
    );
    let size = serde_json::to_vec(&valid()).unwrap().len();
    let l = Limits {
        max_notice_bytes: size,
        ..Limits::default()
    };
    assert!(check_value(&valid(), &l).is_ok());
    let l = Limits {
        max_notice_bytes: size - 1,
        ..Limits::default()
    };
    assert_eq!(
        check_value(&valid(), &l).unwrap_err()[0].rule,
        Rule::TooLarge
    );
}

// ---- Rule::TooMany ----

fn atena(n: usize) -> Value {
    json!({"atena_no": (0..n).map(|i| format!("{i:015}")).collect::<Vec<_>>()})
}

#[test]
fn keys_are_bounded() {
    let mut v = valid();
    v["data"]["keys"] = atena(MAX_KEYS);
    assert_eq!(check(&v).unwrap().data.keys.unwrap().atena_no.len(), 100);
    v["data"]["keys"] = atena(MAX_KEYS + 1);
    assert_eq!(refused(&v), one("/data/keys/atena_no", Rule::TooMany));
    assert!(
        message(&v, "/data/keys/atena_no")
            .contains("has 101 addressee numbers; at most 100 per notice")
    );
    let l = Limits {
        max_keys: 2,
        ..Limits::default()
    };
    v["data"]["keys"] = atena(3);
    assert_eq!(check_value(&v, &l).unwrap_err().len(), 1);
    v["data"]["keys"] = atena(2);
    assert!(check_value(&v, &l).is_ok());
}

#[test]
fn bad_keys_are_each_reported() {
    let mut v = valid();
    v["data"]["keys"] = json!({"atena_no": ["12345", "000000000012345", "00000000001234x"]});
    assert_eq!(
        refused(&v),
        vec![
            ("/data/keys/atena_no/0".to_owned(), Rule::Format),
            ("/data/keys/atena_no/2".to_owned(), Rule::Format)
        ]
    );
}

// ---- Rule::PersonalData ----

#[test]
fn individual_number_is_refused_in_strings_numbers_and_member_names() {
    let mut v = valid();
    v["note"] = json!(format!("person {MY_NUMBER} moved"));
    v["n"] = json!(123456789018u64);
    v["f"] = json!(123456789018.5);
    v[MY_NUMBER] = json!(true);
    v["data"]["x"] = json!([[{"y": MY_NUMBER}]]);
    let vs = check(&v).unwrap_err();
    let pd: Vec<&str> = vs
        .iter()
        .filter(|x| x.rule == Rule::PersonalData)
        .map(|x| x.path.as_str())
        .collect();
    assert_eq!(pd, ["/************", "/data/x/0/0/y", "/f", "/n", "/note"]);
    for x in &vs {
        assert!(
            !x.message.contains(MY_NUMBER),
            "message repeats the number: {x:?}"
        );
        assert!(
            !x.path.contains(MY_NUMBER),
            "path repeats the number: {x:?}"
        );
    }
}

#[test]
fn individual_number_in_a_known_member_is_both_a_format_and_personal_data_violation() {
    let v = with("/data/interface_version", json!(MY_NUMBER));
    assert_eq!(
        refused(&v),
        vec![
            ("/data/interface_version".to_owned(), Rule::Format),
            ("/data/interface_version".to_owned(), Rule::PersonalData)
        ]
    );
    let v = with("/data/municipality_code", json!(format!("x{MY_NUMBER}")));
    for x in check(&v).unwrap_err() {
        assert!(!x.message.contains(MY_NUMBER), "{x:?}");
    }
}

#[test]
fn personal_data_guard_boundaries() {
    let flagged = |s: &str| {
        let mut v = valid();
        v["note"] = json!(s);
        check(&v)
            .unwrap_err()
            .iter()
            .any(|x| x.rule == Rule::PersonalData)
    };
    assert!(flagged(MY_NUMBER));
    assert!(flagged(&format!("a{MY_NUMBER}b")));
    assert!(flagged(&format!("1-{MY_NUMBER}")));
    assert!(
        !flagged("123456789012"),
        "12 digits failing the check digit"
    );
    assert!(!flagged("12345678901"), "11 digits");
    assert!(!flagged(&format!("{MY_NUMBER}0")), "13-digit run");
    assert!(!flagged(&format!("0{MY_NUMBER}")), "13-digit run");
    assert!(
        !flagged("1234 5678 9018"),
        "separated groups are not one run"
    );
}

#[test]
fn uuid_id_is_exempt_from_the_guard() {
    // The id's last group is 12 digits passing the check digit: still a valid notice.
    let v = with("/id", json!(format!("0192f0c1-5e2a-7b3c-9d4e-{MY_NUMBER}")));
    assert!(check(&v).is_ok());
    // Only /id: the same string elsewhere is refused.
    let mut v = valid();
    v["data"]["note"] = json!(format!("0192f0c1-5e2a-7b3c-9d4e-{MY_NUMBER}"));
    assert!(refused(&v).contains(&("/data/note".to_owned(), Rule::PersonalData)));
}

// ---- Rule::Inconsistent ----

#[test]
fn subject_must_equal_the_interface_id() {
    assert_eq!(
        refused(&with("/subject", json!("001o05-01"))),
        one("/subject", Rule::Inconsistent)
    );
    assert_eq!(
        message(&with("/subject", json!("001o05-01")), "/subject"),
        "subject is 001o05-01 but data.interface_id is 001o05-00; they must be equal"
    );
}

#[test]
fn provider_must_own_the_interface() {
    let mut v = valid();
    v["data"]["provider"] = json!("010");
    v["source"] = json!("urn:jp:lg:131016:010");
    assert_eq!(refused(&v), one("/data/provider", Rule::Inconsistent));
}

#[test]
fn source_must_match_data() {
    let v = with("/source", json!("urn:jp:lg:011002:001"));
    assert_eq!(refused(&v), one("/source", Rule::Inconsistent));
    assert!(
        message(&v, "/source").contains("municipality 011002 but data.municipality_code is 131016")
    );
    let v = with("/source", json!("urn:jp:lg:131016:010"));
    assert_eq!(refused(&v), one("/source", Rule::Inconsistent));
    let v = with("/source", json!("urn:jp:lg:011002:010"));
    assert_eq!(
        refused(&v),
        vec![("/source".to_owned(), Rule::Inconsistent); 2]
    );
}

// ---- everything at once ----

#[test]
fn every_violation_is_reported_not_only_the_first() {
    let v = json!({
        "specversion": "0.3",
        "id": "not-a-uuid",
        "source": "urn:jp:lg:131016:002",
        "time": "2026-11-25T10:15:31",
        "subject": "001o05-01",
        "sequence": 42,
        "extra": MY_NUMBER,
        "data": {
            "interface_id": "001o05-00",
            "interface_version": "1.0",
            "municipality_code": "131017",
            "provider": "002",
            "updated_at": "2026-11-25T10:15:30",
            "change": "upsert",
            "keys": {"atena_no": ["1"], "other": 1}
        }
    });
    assert_eq!(
        refused(&v),
        vec![
            ("/data/change".to_owned(), Rule::Format),
            ("/data/keys/atena_no/0".to_owned(), Rule::Format),
            ("/data/keys/other".to_owned(), Rule::UnknownField),
            ("/data/municipality_code".to_owned(), Rule::Format),
            ("/data/provider".to_owned(), Rule::Inconsistent),
            ("/data/updated_at".to_owned(), Rule::Format),
            ("/extra".to_owned(), Rule::UnknownField),
            ("/extra".to_owned(), Rule::PersonalData),
            ("/id".to_owned(), Rule::Format),
            ("/sequence".to_owned(), Rule::Type),
            ("/specversion".to_owned(), Rule::Constant),
            ("/subject".to_owned(), Rule::Inconsistent),
            ("/time".to_owned(), Rule::Format),
            ("/type".to_owned(), Rule::Required),
        ]
    );
}

// ---- serialization of violations ----

#[test]
fn violation_serializes_for_http_error_bodies() {
    let v = Violation::new("/data/updated_at", Rule::Format, "m");
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        json!({"path": "/data/updated_at", "rule": "format", "message": "m"})
    );
    assert_eq!(
        serde_json::from_value::<Violation>(serde_json::to_value(&v).unwrap()).unwrap(),
        v
    );
    assert_eq!(v.to_string(), "/data/updated_at: m (format)");
    assert_eq!(
        Violation::new("", Rule::Syntax, "x").to_string(),
        "(notice): x (syntax)"
    );
    for rule in Rule::ALL {
        assert_eq!(serde_json::to_value(rule).unwrap(), json!(rule.as_str()));
        assert_eq!(
            serde_json::from_value::<Rule>(json!(rule.as_str())).unwrap(),
            rule
        );
        assert_eq!(rule.to_string(), rule.as_str());
    }
    assert_eq!(Rule::UnknownField.as_str(), "unknown_field");
    assert_eq!(Rule::PersonalData.as_str(), "personal_data");
    assert_eq!(Rule::TooLarge.as_str(), "too_large");
}

#[test]
fn violation_new_masks_individual_numbers() {
    let v = Violation::new(
        format!("/{MY_NUMBER}"),
        Rule::Format,
        format!("got {MY_NUMBER}!"),
    );
    assert_eq!(v.path, "/************");
    assert_eq!(v.message, "got ************!");
}

// ---- payloads ----

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn payload_single_and_batch_results_in_order() {
    let l = Limits::default();
    match parse_payload(&bytes(&valid()), &l).unwrap() {
        Payload::Single(Ok(n)) => assert_eq!(n.sequence, Sequence(42)),
        other => panic!("{other:?}"),
    }
    let batch = json!([valid(), with("/subject", json!("001o05-01")), 5, valid()]);
    let p = parse_payload(&bytes(&batch), &l).unwrap();
    let Payload::Batch(rs) = &p else {
        panic!("{p:?}")
    };
    assert_eq!(rs.len(), 4);
    assert!(rs[0].is_ok() && rs[3].is_ok());
    assert_eq!(rs[1].as_ref().unwrap_err()[0].rule, Rule::Inconsistent);
    assert_eq!(rs[2].as_ref().unwrap_err()[0].rule, Rule::Type);
    assert_eq!(p.results().len(), 4);
    assert_eq!(p.into_results().len(), 4);
}

#[test]
fn payload_errors() {
    let l = Limits::default();
    assert_eq!(parse_payload(b"[]", &l).unwrap_err(), PayloadError::Empty);
    assert_eq!(
        parse_payload(b" [ ] ", &l).unwrap_err(),
        PayloadError::Empty
    );
    assert_eq!(parse_payload(b"42", &l).unwrap_err(), PayloadError::Shape);
    assert_eq!(
        parse_payload(b"\"x\"", &l).unwrap_err(),
        PayloadError::Shape
    );
    assert_eq!(parse_payload(b"null", &l).unwrap_err(), PayloadError::Shape);
    assert!(matches!(
        parse_payload(b"", &l),
        Err(PayloadError::Syntax(_))
    ));
    assert!(matches!(
        parse_payload(b"nope", &l),
        Err(PayloadError::Syntax(_))
    ));
    assert!(matches!(
        parse_payload(b"[{}", &l),
        Err(PayloadError::Syntax(_))
    ));
    assert!(matches!(
        parse_payload(b"{} x", &l),
        Err(PayloadError::Syntax(_))
    ));
    match parse_payload(b"[\"\xff\"]", &l) {
        Err(e @ PayloadError::Syntax(_)) => {
            assert_eq!(
                e.to_string(),
                "body is not UTF-8: invalid byte sequence at byte offset 2"
            );
            assert_eq!(
                e.violation(),
                Violation::new("", Rule::Syntax, e.to_string())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn batch_limits() {
    let l = Limits {
        max_batch_notices: 3,
        ..Limits::default()
    };
    let three = json!([valid(), valid(), valid()]);
    assert!(matches!(parse_payload(&bytes(&three), &l), Ok(Payload::Batch(rs)) if rs.len() == 3));
    let four = json!([valid(), valid(), valid(), valid()]);
    let e = parse_payload(&bytes(&four), &l).unwrap_err();
    assert_eq!(e, PayloadError::TooMany { count: 4, limit: 3 });
    assert_eq!(e.rule(), Rule::TooMany);
    assert_eq!(
        e.to_string(),
        "batch has 4 notices; the limit is 3 (split the batch)"
    );

    let body = bytes(&three);
    let l = Limits {
        max_batch_bytes: body.len(),
        ..Limits::default()
    };
    assert!(parse_payload(&body, &l).is_ok());
    let l = Limits {
        max_batch_bytes: body.len() - 1,
        ..Limits::default()
    };
    let e = parse_payload(&body, &l).unwrap_err();
    assert_eq!(
        e,
        PayloadError::TooLarge {
            bytes: body.len(),
            limit: body.len() - 1
        }
    );
    assert_eq!(e.violation().rule, Rule::TooLarge);
}

#[test]
fn default_batch_limits_are_the_protocols() {
    let l = Limits::default();
    assert_eq!(
        (
            l.max_notice_bytes,
            l.max_batch_notices,
            l.max_batch_bytes,
            l.max_keys
        ),
        (8192, 1000, 4 << 20, 100)
    );
    let item = String::from_utf8(bytes(&valid())).unwrap();
    let body = format!("[{}]", vec![item.as_str(); 1001].join(","));
    assert_eq!(
        parse_payload(body.as_bytes(), &l).unwrap_err(),
        PayloadError::TooMany {
            count: 1001,
            limit: 1000
        }
    );
    let body = format!("[{}]", vec![item.as_str(); 1000].join(","));
    assert_eq!(
        parse_payload(body.as_bytes(), &l).unwrap().results().len(),
        1000
    );
}

#[test]
fn batch_item_size_is_its_own_bytes() {
    let l = Limits::default();
    let item = String::from_utf8(bytes(&valid())).unwrap();
    let padded = format!("{{{}{}", " ".repeat(9000), &item[1..]);
    let body = format!("[{item}, {padded}]");
    let rs = parse_payload(body.as_bytes(), &l).unwrap().into_results();
    assert!(rs[0].is_ok());
    let vs = rs[1].as_ref().unwrap_err();
    assert_eq!(
        vs.iter().map(|x| x.rule).collect::<Vec<_>>(),
        [Rule::TooLarge]
    );
    assert!(
        vs[0]
            .message
            .starts_with(&format!("notice is {} bytes", padded.len()))
    );
}

#[test]
fn format_messages_name_the_member_once() {
    assert_eq!(
        message(
            &with("/id", json!("00000000-0000-0000-0000-000000000000")),
            "/id"
        ),
        "id must not be the nil or max UUID"
    );
    assert!(
        message(&with("/time", json!("2026-11-25T10:15:31+0900")), "/time")
            .starts_with("time: timestamp must be RFC 3339")
    );
    assert!(
        message(
            &with("/data/interface_version", json!("v1")),
            "/data/interface_version"
        )
        .starts_with("data.interface_version: interface version (版数) must be")
    );
    let mut v = valid();
    v["data"]["keys"] = json!(null);
    assert_eq!(
        message(&v, "/data/keys"),
        "data.keys must be an object, got null (omit data.keys when there are no keys)"
    );
}

#[test]
fn spans_locate_each_item_as_received() {
    let a = serde_json::to_string_pretty(&valid()).unwrap();
    let mut other = valid();
    other["id"] = json!("0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0f");
    let b = serde_json::to_string(&other).unwrap();
    let body = format!("\u{feff}[ {a} ,\n{b}]");
    let (p, spans) = parse_payload_spans(body.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(p.results().len(), 2);
    assert!(p.results().iter().all(Result::is_ok));
    assert_eq!(&body[spans[0].clone()], a);
    assert_eq!(&body[spans[1].clone()], b);
    let single = format!("  {b}\n");
    let (_, spans) = parse_payload_spans(single.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(spans, vec![2..2 + b.len()]);
}

#[test]
fn a_member_named_twice_makes_the_body_unreadable() {
    let one = serde_json::to_string(&valid()).unwrap();
    let twice = one.replacen(
        "\"id\":",
        "\"id\":\"0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0f\",\"id\":",
        1,
    );
    assert!(matches!(
        parse_payload(twice.as_bytes(), &Limits::default()),
        Err(PayloadError::Syntax(m)) if m.contains("\"id\" appears twice")
    ));
    let batch = format!("[{one},{twice}]");
    assert!(matches!(
        parse_payload(batch.as_bytes(), &Limits::default()),
        Err(PayloadError::Syntax(m)) if m.contains("in batch item 1")
    ));
    let e = parse_notice(twice.as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(e[0].rule, Rule::Syntax);
}
