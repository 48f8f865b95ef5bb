//! `schema/file-ready.v1.json` and the Rust validator (`parse_file_notice`) agree on every
//! example in `examples/file-ready/valid` and `examples/file-ready/invalid`, the way
//! `tests/schema.rs` keeps `notice.v1.json` in agreement.
//!
//! Every invalid example is named after the rule it breaks; Rust must refuse it with that rule
//! and the schema must refuse it too, except for the rules JSON Schema cannot express, listed
//! in [`SCHEMA_CANNOT_EXPRESS`]: for those the schema must *accept* it (the list stays exact).
//! Unlike a change notice, a file-ready notice has a free-text member (`data.path`), so the
//! personal-data guard (個人番号 in a file name) is among them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use shirase_proto::validate::parse_file_notice;
use shirase_proto::{AnyNotice, Limits, Rule, parse_any_notice};

const SCHEMA_CANNOT_EXPRESS: &[(&str, &str)] = &[
    (
        "bad-municipality-check-digit.json",
        "JIS X 0402 check digit",
    ),
    ("inconsistent-subject.json", "subject = data.interface_id"),
    (
        "inconsistent-provider.json",
        "data.provider = interface business id",
    ),
    ("oversized.json", "size in bytes as received"),
    (
        "personal-data-in-path.json",
        "individual-number check digit in a file name",
    ),
    (
        "personal-data-in-record-count.json",
        "individual-number check digit in a number",
    ),
];

fn announced(file: &str) -> Rule {
    let table: &[(&str, Rule)] = &[
        ("syntax-", Rule::Syntax),
        ("wrong-type-", Rule::Type),
        ("missing-", Rule::Required),
        ("unknown-field-", Rule::UnknownField),
        ("timestamp-", Rule::Format),
        ("bad-", Rule::Format),
        ("constant-", Rule::Constant),
        ("oversized", Rule::TooLarge),
        ("personal-data-", Rule::PersonalData),
        ("inconsistent-", Rule::Inconsistent),
    ];
    table
        .iter()
        .find(|(prefix, _)| file.starts_with(prefix))
        .map(|(_, rule)| *rule)
        .unwrap_or_else(|| panic!("{file}: name does not start with a known rule prefix"))
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(dir().join("schema/file-ready.v1.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert!(
        jsonschema::meta::is_valid(&schema),
        "not a valid JSON Schema"
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn examples(kind: &str) -> Vec<(String, Vec<u8>)> {
    let d = dir().join("examples/file-ready").join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn schema_accepts(v: &jsonschema::Validator, bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|value| v.is_valid(&value))
}

#[test]
fn valid_file_examples_pass_both_and_dispatch_as_files() {
    let v = schema();
    let valid = examples("valid");
    assert!(valid.len() >= 5, "{} valid examples", valid.len());
    for (name, bytes) in &valid {
        if let Err(vs) = parse_file_notice(bytes, &Limits::default()) {
            panic!("{name}: Rust refuses: {vs:?}");
        }
        assert!(
            matches!(
                parse_any_notice(bytes, &Limits::default()),
                Ok(AnyNotice::File(_))
            ),
            "{name}"
        );
        let value: Value = serde_json::from_slice(bytes).unwrap();
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: schema refuses: {errors:?}");
    }
}

#[test]
fn invalid_file_examples_are_refused_with_their_rule_by_rust_and_the_schema() {
    let v = schema();
    let invalid = examples("invalid");
    for (name, bytes) in &invalid {
        let rule = announced(name);
        let vs = parse_file_notice(bytes, &Limits::default())
            .err()
            .unwrap_or_else(|| panic!("{name}: Rust accepts it"));
        assert!(
            vs.iter().all(|x| x.rule == rule),
            "{name}: expected only {rule}, got {vs:?}"
        );
        match SCHEMA_CANNOT_EXPRESS.iter().find(|(f, _)| f == name) {
            Some((_, why)) => assert!(
                schema_accepts(&v, bytes),
                "{name} is listed as inexpressible ({why}) but the schema refuses it"
            ),
            None => assert!(
                !schema_accepts(&v, bytes),
                "{name}: Rust refuses, schema accepts"
            ),
        }
    }
    // Every rule but TooMany (a file-ready notice has no list) has an example.
    for rule in Rule::ALL.into_iter().filter(|r| *r != Rule::TooMany) {
        assert!(
            invalid.iter().any(|(n, _)| announced(n) == rule),
            "no example for {rule}"
        );
    }
    for (name, _) in SCHEMA_CANNOT_EXPRESS {
        assert!(
            invalid.iter().any(|(n, _)| n == name),
            "{name} does not exist"
        );
    }
}
