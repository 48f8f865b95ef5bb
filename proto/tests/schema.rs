//! `schema/notice.v1.json` and the Rust validator agree on every golden example in
//! `examples/valid` and `examples/invalid`, and on generated notices and mutations of them.
//!
//! Every invalid example is named after the rule it breaks (`missing-id.json` → `Required`);
//! the test checks that the Rust validator refuses it with that rule. The schema must refuse it
//! too, except for the rules JSON Schema cannot express, listed in [`SCHEMA_CANNOT_EXPRESS`]:
//! for those the schema must *accept* the example and Rust must refuse it, so that the list
//! stays exact. The JIS X 0402 check digit, cross-member consistency, the u64 range of
//! `sequence` and the byte size as received are among them. The personal-data guard
//! (個人番号) cannot be expressed either, but its examples are refused by the schema too: in a
//! notice the schema accepts every string has a strict pattern, so an individual number can only
//! sit where the schema refuses something else (an unknown member, a wrong pattern).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;
use shirase_proto::{Limits, Rule, parse_notice};

/// Invalid examples the schema cannot refuse: file name → why.
const SCHEMA_CANNOT_EXPRESS: &[(&str, &str)] = &[
    (
        "bad-municipality-check-digit.json",
        "JIS X 0402 check digit",
    ),
    (
        "bad-sequence-overflow.json",
        "sequence above u64::MAX (20 digits fit the pattern)",
    ),
    (
        "inconsistent-subject.json",
        "subject = data.interface_id is a cross-member rule",
    ),
    (
        "inconsistent-provider.json",
        "data.provider = interface business id is a cross-member rule",
    ),
    (
        "inconsistent-source-municipality.json",
        "source = data.municipality_code is a cross-member rule",
    ),
    (
        "inconsistent-source-provider.json",
        "source = data.provider is a cross-member rule",
    ),
    (
        "oversized.json",
        "size in bytes as received (whitespace) is not a JSON value property",
    ),
];

/// The rule an invalid example's file name announces, and rules it may break on the way.
fn announced(file: &str) -> (Rule, &'static [Rule]) {
    let table: &[(&str, Rule, &'static [Rule])] = &[
        ("syntax-", Rule::Syntax, &[]),
        ("wrong-type-", Rule::Type, &[]),
        ("missing-", Rule::Required, &[]),
        ("unknown-field-", Rule::UnknownField, &[]),
        ("timestamp-", Rule::Format, &[]),
        ("bad-", Rule::Format, &[]),
        ("constant-", Rule::Constant, &[]),
        ("oversized", Rule::TooLarge, &[]),
        ("too-many-", Rule::TooMany, &[]),
        // An individual number can only appear where something else is wrong too.
        (
            "personal-data-",
            Rule::PersonalData,
            &[Rule::UnknownField, Rule::Format],
        ),
        ("inconsistent-", Rule::Inconsistent, &[]),
    ];
    table
        .iter()
        .find(|(prefix, _, _)| file.starts_with(prefix))
        .map(|(_, rule, extra)| (*rule, *extra))
        .unwrap_or_else(|| panic!("{file}: name does not start with a known rule prefix"))
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(dir().join("schema/notice.v1.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert!(
        jsonschema::meta::is_valid(&schema),
        "the schema is not a valid JSON Schema"
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Whether the schema accepts these bytes (bytes that are not JSON are refused by any validator).
fn schema_accepts(v: &jsonschema::Validator, bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|value| v.is_valid(&value))
}

fn examples(kind: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir().join("examples").join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn valid_examples_pass_both() {
    let v = schema();
    let valid = examples("valid");
    assert!(valid.len() >= 6, "{} valid examples", valid.len());
    for (name, bytes) in &valid {
        if let Err(vs) = parse_notice(bytes, &Limits::default()) {
            panic!("{name}: Rust refuses: {vs:?}");
        }
        let value: Value = serde_json::from_slice(bytes).unwrap();
        let errors: Vec<String> = v
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: schema refuses: {errors:?}");
    }
}

#[test]
fn invalid_examples_are_refused_with_the_rule_their_name_announces() {
    let invalid = examples("invalid");
    for (name, bytes) in &invalid {
        let (rule, extra) = announced(name);
        let vs = parse_notice(bytes, &Limits::default())
            .err()
            .unwrap_or_else(|| panic!("{name}: Rust accepts it"));
        assert!(
            vs.iter().any(|x| x.rule == rule),
            "{name}: expected {rule}, got {vs:?}"
        );
        for x in &vs {
            assert!(
                x.rule == rule || extra.contains(&x.rule),
                "{name}: breaks more than {rule}: {x:?}"
            );
        }
    }
    // Every rule has at least one invalid example.
    for rule in Rule::ALL {
        assert!(
            invalid.iter().any(|(name, _)| announced(name).0 == rule),
            "no invalid example for {rule}"
        );
    }
}

#[test]
fn schema_and_rust_agree_on_invalid_examples_except_the_listed_rules() {
    let v = schema();
    let invalid = examples("invalid");
    for (name, bytes) in &invalid {
        let rust_refuses = parse_notice(bytes, &Limits::default()).is_err();
        assert!(rust_refuses, "{name}");
        let inexpressible = SCHEMA_CANNOT_EXPRESS.iter().find(|(f, _)| f == name);
        match inexpressible {
            Some((_, why)) => assert!(
                schema_accepts(&v, bytes),
                "{name} is listed as inexpressible ({why}) but the schema refuses it: update SCHEMA_CANNOT_EXPRESS"
            ),
            None => assert!(
                !schema_accepts(&v, bytes),
                "{name}: Rust refuses it but the schema accepts it"
            ),
        }
    }
    for (name, why) in SCHEMA_CANNOT_EXPRESS {
        assert!(
            invalid.iter().any(|(n, _)| n == name),
            "listed example {name} ({why}) does not exist"
        );
    }
}

/// Strings near the protocol's formats: the values on which a pattern and a hand-written
/// parser are most likely to disagree.
fn near_miss() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|z|[+-][0-9]{2}:?[0-9]{2})?",
        "[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{11,13}",
        "[0-9]{2,4}o[0-9]{1,3}-[0-9]{1,3}",
        "[0-9]{1,4}(\\.[0-9]{0,4}){0,3}",
        "[0-9]{5,7}",
        "[0-9]{2,4}",
        "[0-9]{14,16}",
        "[0-9]{19,21}",
        "urn:jp:lg:[0-9]{5,7}:[0-9]{2,4}",
        prop_oneof![Just("update"), Just("retroactive"), Just("delete"), Just("Update"), Just("1.0"), Just("application/json")]
            .prop_map(str::to_owned),
    ]
    .prop_map(Value::String)
}

/// Characters a one-character tweak uses: digits, the separators of the formats, look-alikes.
const TWEAK_CHARS: &str = "0159aAfgoOTtZz.:-+_ /\n０";

fn rust_only_rule(message: &str, rule: Rule) -> bool {
    rule == Rule::Inconsistent
        || (rule == Rule::Format
            && (message.contains("check digit")
                || message.contains("larger than 18446744073709551615")
                || message.contains("no such date or time")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn schema_accepts_every_generated_notice(n in common::notice()) {
        let value = serde_json::to_value(&n).unwrap();
        let v = schema();
        prop_assert!(v.is_valid(&value), "{value}");
    }

    /// Each string of a valid notice tweaked by one character (replaced, inserted, removed) or
    /// replaced by a near-miss string, and one member replaced by arbitrary JSON or removed:
    /// wherever the schema refuses, Rust refuses; wherever only Rust refuses, it is for a rule
    /// the schema cannot express.
    #[test]
    fn schema_and_rust_agree_on_mutated_notices(
        n in common::notice(),
        tweaks in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(TWEAK_CHARS.chars().collect::<Vec<_>>())), 16),
        near in prop::collection::vec(near_miss(), 16),
        which in any::<prop::sample::Index>(),
        remove in any::<bool>(),
        arbitrary in common::json(),
    ) {
        let v = schema();
        let original = serde_json::to_value(&n).unwrap();
        let (strings, members) = common::string_pointers(&original);
        let mut mutants = Vec::new();
        for (k, path) in strings.iter().enumerate() {
            let (at, op, ch) = &tweaks[k % tweaks.len()];
            let mut m = original.clone();
            let Value::String(s) = m.pointer_mut(path).unwrap() else { unreachable!() };
            let mut chars: Vec<char> = s.chars().collect();
            let i = at.index(chars.len() + 1);
            match op {
                0 if i < chars.len() => chars[i] = *ch,
                1 => chars.insert(i, *ch),
                _ if i < chars.len() => { chars.remove(i); }
                _ => chars.push(*ch),
            }
            *s = chars.into_iter().collect();
            mutants.push(m);
            let mut m = original.clone();
            *m.pointer_mut(path).unwrap() = near[k % near.len()].clone();
            mutants.push(m);
        }
        let member = which.get(&members);
        let mut m = original.clone();
        if remove {
            let (parent, key) = member.rsplit_once('/').unwrap();
            m.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
        } else {
            *m.pointer_mut(member).unwrap() = arbitrary;
        }
        mutants.push(m);
        for value in mutants {
            let bytes = serde_json::to_vec(&value).unwrap();
            let rust = parse_notice(&bytes, &Limits::default());
            match (&rust, v.is_valid(&value)) {
                (Ok(_), true) | (Err(_), false) => {}
                (Ok(_), false) => prop_assert!(false, "schema refuses what Rust accepts: {value}"),
                (Err(vs), true) => {
                    for x in vs {
                        prop_assert!(rust_only_rule(&x.message, x.rule), "schema accepts, Rust refuses for {x:?}: {value}");
                    }
                }
            }
        }
    }
}
