//! Every newtype: accepted and refused values (with boundaries), Display/FromStr and serde
//! round trips.

use std::fmt::Display;
use std::str::FromStr;

use super::*;

/// `s` parses, prints back as `s`, and serializes as the JSON string `s`.
fn round_trips<T>(s: &str) -> T
where
    T: FromStr<Err = ParseError>
        + Display
        + Serialize
        + for<'de> Deserialize<'de>
        + PartialEq
        + fmt::Debug,
{
    let t: T = s.parse().unwrap_or_else(|e| panic!("{s:?} refused: {e}"));
    assert_eq!(t.to_string(), s);
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(json, serde_json::to_string(s).unwrap());
    assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
    t
}

/// `s` is refused by FromStr and by serde, with a message containing `needle`.
fn refused<T>(s: &str, needle: &str)
where
    T: FromStr<Err = ParseError> + for<'de> Deserialize<'de> + fmt::Debug,
{
    match s.parse::<T>() {
        Ok(t) => panic!("{s:?} accepted as {t:?}"),
        Err(e) => assert!(
            e.message.contains(needle),
            "{s:?}: {:?} lacks {needle:?}",
            e.message
        ),
    }
    assert!(serde_json::from_str::<T>(&serde_json::to_string(s).unwrap()).is_err());
}

#[test]
fn municipality_code() {
    for s in ["131016", "011002", "271004", "472018", "000001"] {
        round_trips::<MunicipalityCode>(s);
    }
    refused::<MunicipalityCode>("131017", "expected last digit 6");
    refused::<MunicipalityCode>("011001", "expected last digit 2");
    refused::<MunicipalityCode>("13101", "6 digits");
    refused::<MunicipalityCode>("1310160", "6 digits");
    refused::<MunicipalityCode>("13101６", "6 digits");
    refused::<MunicipalityCode>("", "6 digits");
    refused::<MunicipalityCode>("+31016", "6 digits");
    assert_eq!(
        "131016".parse::<MunicipalityCode>().unwrap().as_str(),
        "131016"
    );
}

#[test]
fn business_id() {
    for s in ["001", "000", "999", "010"] {
        round_trips::<BusinessId>(s);
    }
    for s in ["01", "0001", "0a1", "", " 01", "１２３"] {
        refused::<BusinessId>(s, "3 digits");
    }
}

#[test]
fn interface_id() {
    let i = round_trips::<InterfaceId>("001o05-00");
    assert_eq!(i.business_id().as_str(), "001");
    assert_eq!(
        round_trips::<InterfaceId>("015o02-11")
            .business_id()
            .as_str(),
        "015"
    );
    round_trips::<InterfaceId>("999o99-99");
    for s in [
        "001O05-00",
        "001o05_00",
        "001o5-00",
        "001o05-000",
        "01o05-00",
        "a01o05-00",
        "001x05-00",
        "",
        "001o05-0a",
    ] {
        refused::<InterfaceId>(s, "NNNoNN-NN");
    }
}

#[test]
fn interface_version() {
    for s in ["1", "1.0", "2.1.3", "999.999.999", "0"] {
        round_trips::<InterfaceVersion>(s);
    }
    for s in [
        "", "1.", ".1", "1..0", "1.0.0.0", "1000", "v1", "1.0a", "1,0", "１.０",
    ] {
        refused::<InterfaceVersion>(s, "版数");
    }
}

#[test]
fn atena_no() {
    for s in ["000000000000000", "999999999999999", "000000000012345"] {
        round_trips::<AtenaNo>(s);
    }
    for s in [
        "12345",
        "00000000001234",
        "0000000000123456",
        "00000000001234x",
        "",
        "-00000000001234",
    ] {
        refused::<AtenaNo>(s, "exactly 15 digits");
    }
}

#[test]
fn sequence() {
    assert_eq!(round_trips::<Sequence>("00000000000000000000"), Sequence(0));
    assert_eq!(
        round_trips::<Sequence>("00000000000000000042"),
        Sequence(42)
    );
    assert_eq!(
        round_trips::<Sequence>("18446744073709551615"),
        Sequence(u64::MAX)
    );
    assert_eq!(Sequence(7).to_string(), "00000000000000000007");
    refused::<Sequence>("18446744073709551616", "larger than 18446744073709551615");
    refused::<Sequence>("99999999999999999999", "larger than");
    for s in [
        "42",
        "0000000000000000042",
        "000000000000000000042",
        "0000000000000000004x",
        "+0000000000000000042",
        "",
    ] {
        refused::<Sequence>(s, "exactly 20 digits");
    }
    // String order is numeric order.
    assert!(Sequence(9).to_string() < Sequence(10).to_string());
}

#[test]
fn notice_id() {
    let id = round_trips::<NoticeId>("0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0e");
    assert_eq!(id.0.get_version_num(), 7);
    round_trips::<NoticeId>("01234567-89ab-4def-8123-456789abcdef");
    refused::<NoticeId>(
        "0192F0C1-5E2A-7B3C-9D4E-5F6A7B8C9D0E",
        "lowercase hyphenated",
    );
    refused::<NoticeId>("0192f0c15e2a7b3c9d4e5f6a7b8c9d0e", "lowercase hyphenated");
    refused::<NoticeId>(
        "{0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0e}",
        "lowercase hyphenated",
    );
    refused::<NoticeId>(
        "0192f0c1-5e2a-7b3c-9d4e-5f6a7b8c9d0",
        "lowercase hyphenated",
    );
    refused::<NoticeId>(
        "0192f0c1-5e2a-7b3c-9d4e_5f6a7b8c9d0e",
        "lowercase hyphenated",
    );
    refused::<NoticeId>("00000000-0000-0000-0000-000000000000", "nil or max");
    refused::<NoticeId>("ffffffff-ffff-ffff-ffff-ffffffffffff", "nil or max");
    let fresh = NoticeId::new_v7();
    assert_eq!(fresh.0.get_version_num(), 7);
    assert_eq!(fresh.to_string().parse::<NoticeId>().unwrap(), fresh);
}

#[test]
fn source() {
    let s = round_trips::<Source>("urn:jp:lg:131016:001");
    assert_eq!(s.municipality.as_str(), "131016");
    assert_eq!(s.provider.as_str(), "001");
    refused::<Source>("urn:jp:lg:131017:001", "check digit");
    refused::<Source>("urn:jp:lg:131016:01", "3 digits");
    refused::<Source>(
        "urn:jp:lg:131016",
        "urn:jp:lg:<municipality code>:<business id>",
    );
    refused::<Source>(
        "urn:jp:xx:131016:001",
        "urn:jp:lg:<municipality code>:<business id>",
    );
    refused::<Source>(
        "URN:JP:LG:131016:001",
        "urn:jp:lg:<municipality code>:<business id>",
    );
    refused::<Source>("urn:jp:lg:131016:001:x", "3 digits");
}

#[test]
fn offset_timestamp_accepts_rfc3339_with_offset() {
    for s in [
        "2026-11-25T10:15:30+09:00",
        "2026-11-25T01:15:30Z",
        "2026-11-25T10:15:30.1+09:00",
        "2026-11-25T10:15:30.123456789+09:00",
        "2026-11-25T10:15:30-23:59",
        "2026-11-25T10:15:30+23:59",
        "2026-11-25T10:15:30-00:00",
        "2024-02-29T23:59:59+09:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T00:00:00+09:00",
    ] {
        round_trips::<OffsetTimestamp>(s);
    }
    let a: OffsetTimestamp = "2026-11-25T10:15:30+09:00".parse().unwrap();
    let b: OffsetTimestamp = "2026-11-25T01:15:30Z".parse().unwrap();
    assert_eq!(a.instant(), b.instant(), "same instant, different offsets");
    assert_ne!(a, b, "the text is kept as written");
    assert!(
        b < a,
        "ties on the instant are broken by text, so Ord agrees with Eq"
    );
    let jst = OffsetTimestamp::from_instant_jst(b.instant());
    assert_eq!(jst.as_str(), "2026-11-25T10:15:30+09:00");
    assert_eq!(jst.as_str().parse::<OffsetTimestamp>().unwrap(), jst);
}

#[test]
fn offset_timestamp_refuses_everything_else() {
    let cases = [
        ("2026-11-25T10:15:30", "offset is missing"),
        ("2026-11-25T10:15:30.123", "offset is missing"),
        ("2026-11-25 10:15:30+09:00", "RFC 3339"),
        ("2026-11-25t10:15:30+09:00", "RFC 3339"),
        ("2026-11-25T10:15:30z", "offset must be"),
        ("2026-11-25T10:15:30+0900", "offset must be"),
        ("2026-11-25T10:15:30+09", "offset must be"),
        ("2026-11-25T10:15:30+24:00", "offset must be"),
        ("2026-11-25T10:15:30+09:60", "offset must be"),
        ("2026-11-25T10:15:30+09:00[Asia/Tokyo]", "at most 35"),
        ("2026-11-25T10:15:30.+09:00", "fractional"),
        ("2026-11-25T10:15:30.1234567890Z", "fractional"),
        ("2026-11-25T10:15+09:00", "RFC 3339"),
        ("2026-1-25T10:15:30+09:00", "RFC 3339"),
        ("2026-00-25T10:15:30+09:00", "month 01-12"),
        ("2026-13-25T10:15:30+09:00", "month 01-12"),
        ("2026-11-00T10:15:30+09:00", "day 01-31"),
        ("2026-11-32T10:15:30+09:00", "day 01-31"),
        ("2026-11-25T24:00:00+09:00", "hour 00-23"),
        ("2026-11-25T10:60:00+09:00", "minute and second 00-59"),
        ("2026-12-31T23:59:60Z", "minute and second 00-59"),
        ("2026-02-29T10:15:30+09:00", "no such date"),
        ("2026-04-31T10:15:30+09:00", "no such date"),
        ("", "RFC 3339"),
        ("２０２６-11-25T10:15:30+09:00", "RFC 3339"),
        // jiff's range ends at 9999-12-30T22:00Z; the schema's date-time cannot say so.
        ("9999-12-31T00:00:00Z", "no such date or time"),
    ];
    for (s, needle) in cases {
        refused::<OffsetTimestamp>(s, needle);
    }
}

#[test]
fn change_kind_wire_names() {
    for (k, s) in [
        (ChangeKind::Update, "update"),
        (ChangeKind::Retroactive, "retroactive"),
        (ChangeKind::Delete, "delete"),
    ] {
        assert_eq!(k.as_str(), s);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{s}\""));
        assert_eq!(
            serde_json::from_str::<ChangeKind>(&format!("\"{s}\"")).unwrap(),
            k
        );
    }
    assert!(serde_json::from_str::<ChangeKind>("\"Update\"").is_err());
}

#[test]
fn error_messages_mask_individual_numbers() {
    let e = "x123456789018".parse::<InterfaceVersion>().unwrap_err();
    assert!(!e.message.contains("123456789018"), "{}", e.message);
    assert!(e.message.contains("x************"), "{}", e.message);
    // Quoting stops at 64 characters.
    let e = "9".repeat(1000).parse::<AtenaNo>().unwrap_err();
    assert!(e.message.len() < 200, "{}", e.message);
}

#[test]
fn notice_new_fills_the_envelope_consistently() {
    let n = Notice::new(
        "131016".parse().unwrap(),
        "010o01-00".parse().unwrap(),
        "2.1".parse().unwrap(),
        Sequence(5),
        "2026-11-25T10:15:30+09:00".parse().unwrap(),
        ChangeKind::Retroactive,
        Some(Keys {
            atena_no: vec!["000000000012345".parse().unwrap()],
        }),
    );
    assert_eq!(n.specversion, SPEC_VERSION);
    assert_eq!(n.event_type, EVENT_TYPE);
    assert_eq!(n.source.to_string(), "urn:jp:lg:131016:010");
    assert_eq!(n.subject.as_str(), "010o01-00");
    assert_eq!(n.data.provider.as_str(), "010");
    assert_eq!(n.id.0.get_version_num(), 7);
    assert!(n.time.as_str().ends_with("+09:00"), "{}", n.time);
    assert_eq!(n.subject(), "shirase.notice.131016.010.010o01-00");
    let json = n.to_json();
    assert_eq!(
        crate::validate::parse_notice(&json, &Default::default()).unwrap(),
        n
    );
    // Member order on the wire is the CloudEvents envelope first, then data.
    let text = String::from_utf8(json).unwrap();
    assert!(
        text.starts_with("{\"specversion\":\"1.0\",\"id\":\""),
        "{text}"
    );
    assert!(
        text.contains(
            "\"sequence\":\"00000000000000000005\",\"data\":{\"interface_id\":\"010o01-00\""
        ),
        "{text}"
    );
}
