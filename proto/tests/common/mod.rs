//! proptest strategies shared by the integration tests: valid notices, arbitrary JSON values,
//! individual numbers (個人番号) that pass the check digit.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;
use shirase_proto::check_digit::{individual_number_check_digit, municipality_check_digit};
use shirase_proto::{
    AtenaNo, ChangeKind, EVENT_TYPE, InterfaceId, InterfaceVersion, Keys, MunicipalityCode, Notice,
    NoticeData, NoticeId, OffsetTimestamp, SPEC_VERSION, Sequence, Source,
};

pub fn municipality() -> impl Strategy<Value = MunicipalityCode> {
    (0u32..100_000).prop_map(|n| {
        let first5 = format!("{n:05}");
        let d = municipality_check_digit(&first5).unwrap();
        format!("{first5}{d}").parse().unwrap()
    })
}

pub fn interface_id() -> impl Strategy<Value = InterfaceId> {
    (0u16..1000, 0u8..100, 0u8..100)
        .prop_map(|(b, n, v)| format!("{b:03}o{n:02}-{v:02}").parse().unwrap())
}

pub fn interface_version() -> impl Strategy<Value = InterfaceVersion> {
    "[0-9]{1,3}(\\.[0-9]{1,3}){0,2}".prop_map(|s| s.parse().unwrap())
}

/// RFC 3339 timestamps with an offset, in every shape the protocol allows.
pub fn timestamp() -> impl Strategy<Value = OffsetTimestamp> {
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("+09:00".to_owned()),
        (prop::bool::ANY, 0u8..24, 0u8..60)
            .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
    ];
    let fraction = prop::option::of("[0-9]{1,9}");
    (
        1900u16..2200,
        1u8..=12,
        1u8..=28,
        0u8..24,
        0u8..60,
        0u8..60,
        fraction,
        offset,
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
                .parse()
                .unwrap()
        })
}

pub fn notice_id() -> impl Strategy<Value = NoticeId> {
    any::<u128>()
        .prop_filter("nil and max are refused", |u| *u != 0 && *u != u128::MAX)
        .prop_map(|u| NoticeId(uuid::Uuid::from_u128(u)))
}

pub fn change() -> impl Strategy<Value = ChangeKind> {
    prop_oneof![
        Just(ChangeKind::Update),
        Just(ChangeKind::Retroactive),
        Just(ChangeKind::Delete)
    ]
}

pub fn keys() -> impl Strategy<Value = Option<Keys>> {
    prop::option::of(
        prop::collection::vec(
            "[0-9]{15}".prop_map(|s| s.parse::<AtenaNo>().unwrap()),
            0..=100,
        )
        .prop_map(|atena_no| Keys { atena_no }),
    )
}

/// Any valid notice.
pub fn notice() -> impl Strategy<Value = Notice> {
    (
        (
            notice_id(),
            municipality(),
            interface_id(),
            interface_version(),
            any::<u64>(),
        ),
        (timestamp(), timestamp(), change(), keys(), prop::bool::ANY),
    )
        .prop_map(
            |((id, m, i, v, seq), (time, updated_at, change, keys, ct))| {
                let provider = i.business_id();
                Notice {
                    specversion: SPEC_VERSION.to_owned(),
                    id,
                    source: Source {
                        municipality: m,
                        provider,
                    },
                    event_type: EVENT_TYPE.to_owned(),
                    time,
                    subject: i,
                    sequence: Sequence(seq),
                    datacontenttype: ct.then(|| "application/json".to_owned()),
                    data: NoticeData {
                        interface_id: i,
                        interface_version: v,
                        municipality_code: m,
                        provider,
                        updated_at,
                        change,
                        keys,
                    },
                }
            },
        )
}

/// Arbitrary JSON, nested (recursive strategy), with strings that sometimes look like the
/// protocol's values.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[0-9]{10,14}".prop_map(Value::String),
        prop_oneof![
            Just("1.0"),
            Just("001o05-00"),
            Just("131016"),
            Just("urn:jp:lg:131016:001"),
            Just("2026-11-25T10:15:30+09:00")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        let key = prop_oneof![
            Just("data".to_owned()),
            Just("keys".to_owned()),
            Just("atena_no".to_owned()),
            Just("id".to_owned()),
            "[a-z_~/]{0,12}",
            any::<String>(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A 12-digit individual number (個人番号) that passes the check digit.
pub fn individual_number() -> impl Strategy<Value = String> {
    "[0-9]{11}".prop_map(|first11| {
        let d = individual_number_check_digit(&first11).unwrap();
        format!("{first11}{d}")
    })
}

/// JSON Pointers of every string value in `v`, and of every member (for its name).
pub fn string_pointers(v: &Value) -> (Vec<String>, Vec<String>) {
    fn walk(v: &Value, path: &str, strings: &mut Vec<String>, members: &mut Vec<String>) {
        match v {
            Value::String(_) => strings.push(path.to_owned()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}/{i}"), strings, members);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    members.push(p.clone());
                    walk(item, &p, strings, members);
                }
            }
            _ => {}
        }
    }
    let (mut s, mut m) = (Vec::new(), Vec::new());
    walk(v, "", &mut s, &mut m);
    (s, m)
}
