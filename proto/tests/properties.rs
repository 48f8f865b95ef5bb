//! Property tests of the notice format and its validator: generated valid notices always
//! validate and round-trip exactly; arbitrary bytes and arbitrary JSON are refused cleanly
//! (never a panic, every violation well formed); an individual number (個人番号) injected
//! anywhere is refused with `Rule::PersonalData`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;
use serde_json::Value;
use shirase_proto::validate::check_value;
use shirase_proto::{Limits, Notice, Payload, Rule, Violation, parse_notice, parse_payload};

/// Invariants every refusal keeps, whatever the input: a non-empty list, sorted by path, each
/// path a JSON Pointer that resolves in `value` (the member itself, or for `Required` its
/// parent), each message non-empty.
fn well_formed(violations: &[Violation], value: Option<&Value>) {
    assert!(!violations.is_empty());
    for w in violations.windows(2) {
        assert!(w[0].path <= w[1].path, "not sorted: {violations:?}");
    }
    for v in violations {
        assert!(!v.message.is_empty(), "{v:?}");
        assert!(v.path.is_empty() || v.path.starts_with('/'), "{v:?}");
        if let Some(value) = value {
            // A masked member name cannot resolve; everything else must.
            if v.path.contains("************") {
                continue;
            }
            let target = if v.rule == Rule::Required {
                v.path.rsplit_once('/').unwrap().0
            } else {
                v.path.as_str()
            };
            assert!(
                value.pointer(target).is_some(),
                "{v:?} does not resolve in {value}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_notices_validate(n in common::notice()) {
        let json = n.to_json();
        prop_assert_eq!(parse_notice(&json, &Limits::default()), Ok(n.clone()));
        let value: Value = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(check_value(&value, &Limits::default()), Ok(n));
    }

    #[test]
    fn serde_round_trip_is_exact(n in common::notice()) {
        // parse(serialize(n)) == n
        let s = n.to_json();
        let parsed: Notice = serde_json::from_slice(&s).unwrap();
        prop_assert_eq!(&parsed, &n);
        // serialize(parse(s)) == s, through the validator as well as through serde
        prop_assert_eq!(parsed.to_json(), s.clone());
        prop_assert_eq!(parse_notice(&s, &Limits::default()).unwrap().to_json(), s.clone());
        // Whitespace a provider's serializer adds changes nothing but the bytes.
        let pretty = serde_json::to_vec_pretty(&n).unwrap();
        prop_assert_eq!(parse_notice(&pretty, &Limits::default()).unwrap().to_json(), s);
    }

    #[test]
    fn batches_of_generated_notices_keep_their_order(ns in prop::collection::vec(common::notice(), 1..20)) {
        let body = serde_json::to_vec(&ns).unwrap();
        let Payload::Batch(rs) = parse_payload(&body, &Limits::default()).unwrap() else { panic!("not a batch") };
        let got: Vec<Notice> = rs.into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(got, ns);
    }

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        match parse_notice(&bytes, &Limits::default()) {
            Ok(n) => prop_assert_eq!(parse_notice(&n.to_json(), &Limits::default()), Ok(n)),
            Err(vs) => {
                well_formed(&vs, value.as_ref());
                if value.is_none() && std::str::from_utf8(&bytes).map(|t| t.trim_start_matches('\u{feff}')).ok().and_then(|t| serde_json::from_str::<Value>(t).ok()).is_none() {
                    prop_assert_eq!(vs.iter().map(|v| v.rule).collect::<Vec<_>>(), vec![Rule::Syntax]);
                }
            }
        }
        match parse_payload(&bytes, &Limits::default()) {
            Ok(p) => for r in p.results() {
                if let Err(vs) = r { well_formed(vs, None) }
            },
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_json_is_refused_cleanly(value in common::json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        match parse_notice(&bytes, &Limits::default()) {
            Ok(n) => prop_assert_eq!(serde_json::to_value(&n).unwrap(), value.clone()),
            Err(vs) => well_formed(&vs, Some(&value)),
        }
        match check_value(&value, &Limits::default()) {
            Ok(_) => {}
            Err(vs) => well_formed(&vs, Some(&value)),
        }
        match parse_payload(&bytes, &Limits::default()) {
            Ok(Payload::Single(r)) => {
                prop_assert!(value.is_object());
                if let Err(vs) = r { well_formed(&vs, Some(&value)) }
            }
            Ok(Payload::Batch(rs)) => {
                let items = value.as_array().unwrap();
                prop_assert_eq!(rs.len(), items.len());
                for (r, item) in rs.iter().zip(items) {
                    if let Err(vs) = r { well_formed(vs, Some(item)) }
                }
            }
            Err(e) => prop_assert!(
                !(value.is_object() || value.as_array().is_some_and(|a| !a.is_empty() && a.len() <= 1000)),
                "{e} for {value}"
            ),
        }
    }

    #[test]
    fn unknown_members_anywhere_are_named(n in common::notice(), extra in common::json(), at in 0usize..3, name in "[a-z]{1,8}") {
        let mut v = serde_json::to_value(&n).unwrap();
        let (parent, path) = match at {
            0 => ("", format!("/x{name}")),
            1 => ("/data", format!("/data/x{name}")),
            _ => ("/data/keys", format!("/data/keys/x{name}")),
        };
        if at == 2 && v["data"].get("keys").is_none() {
            v["data"]["keys"] = serde_json::json!({"atena_no": []});
        }
        v.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(format!("x{name}"), extra);
        let vs = check_value(&v, &Limits::default()).unwrap_err();
        well_formed(&vs, Some(&v));
        prop_assert!(vs.iter().any(|x| x.path == path && x.rule == Rule::UnknownField), "{vs:?}");
    }

    #[test]
    fn size_limit_applies_to_the_compact_serialization(n in common::notice(), extra in common::json()) {
        let mut v = serde_json::to_value(&n).unwrap();
        v["x"] = extra;
        let size = serde_json::to_vec(&v).unwrap().len();
        let at = Limits { max_notice_bytes: size, ..Limits::default() };
        let under = Limits { max_notice_bytes: size - 1, ..Limits::default() };
        prop_assert!(!check_value(&v, &at).unwrap_err().iter().any(|x| x.rule == Rule::TooLarge));
        prop_assert!(check_value(&v, &under).unwrap_err().iter().any(|x| x.rule == Rule::TooLarge && x.path.is_empty()));
    }

    /// Any string of a valid notice but `/id` (exempt by design: a UUID whose last group may be
    /// twelve digits) carrying an individual number is refused with `PersonalData` at its path;
    /// no message or path repeats the number.
    #[test]
    fn individual_number_injected_into_any_string_is_refused(
        n in common::notice(),
        number in common::individual_number(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        replace in any::<bool>(),
    ) {
        let mut v = serde_json::to_value(&n).unwrap();
        let (strings, _) = common::string_pointers(&v);
        let strings: Vec<String> = strings.into_iter().filter(|p| p != "/id").collect();
        let path = which.get(&strings).clone();
        let Value::String(s) = v.pointer_mut(&path).unwrap() else { unreachable!() };
        if replace {
            *s = number.clone();
        } else {
            // Between non-digits, so the run stays exactly twelve digits long.
            let cuts: Vec<usize> = (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
            s.insert_str(*at.get(&cuts), &format!("/{number}/"));
        }
        let vs = check_value(&v, &Limits::default()).unwrap_err();
        prop_assert!(vs.iter().any(|x| x.path == path && x.rule == Rule::PersonalData), "{path}: {vs:?}");
        for x in &vs {
            prop_assert!(!x.message.contains(&number) && !x.path.contains(&number), "{x:?}");
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        prop_assert!(parse_notice(&bytes, &Limits::default()).unwrap_err().iter().any(|x| x.path == path && x.rule == Rule::PersonalData));
    }

    /// The same for member names and numbers anywhere.
    #[test]
    fn individual_number_in_member_names_and_numbers_is_refused(
        n in common::notice(),
        number in common::individual_number(),
        which in any::<prop::sample::Index>(),
        as_number in any::<bool>(),
    ) {
        // A JSON number cannot start with 0: such a number is not twelve digits as a number.
        prop_assume!(!(as_number && number.starts_with('0')));
        let mut v = serde_json::to_value(&n).unwrap();
        let (_, members) = common::string_pointers(&v);
        let member = which.get(&members).clone();
        let (parent, _) = member.rsplit_once('/').unwrap();
        let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        if as_number {
            obj.insert("n".to_owned(), Value::from(number.parse::<u64>().unwrap()));
        } else {
            obj.insert(format!("k{number}"), Value::Bool(true));
        }
        let want = if as_number { format!("{parent}/n") } else { format!("{parent}/k************") };
        let vs = check_value(&v, &Limits::default()).unwrap_err();
        prop_assert!(vs.iter().any(|x| x.path == want && x.rule == Rule::PersonalData), "{want}: {vs:?}");
        for x in &vs {
            prop_assert!(!x.message.contains(&number) && !x.path.contains(&number), "{x:?}");
        }
    }
}

#[test]
fn hundred_thousand_nested_arrays_are_a_clean_syntax_error() {
    let depth = 100_000;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let big = Limits {
        max_notice_bytes: 1 << 20,
        ..Limits::default()
    };
    let vs = parse_notice(body.as_bytes(), &big).unwrap_err();
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].rule, Rule::Syntax);
    let err = parse_payload(body.as_bytes(), &big).unwrap_err();
    assert_eq!(err.rule(), Rule::Syntax);
    assert!(
        err.to_string().contains("nested more than 127 levels"),
        "{err}"
    );
}
