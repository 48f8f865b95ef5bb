//! The records' JSON Schemas (`schema/*.v1.json`, other than the notice's) agree with the
//! Rust types of `shirase_proto::record` on every golden example in `examples/records/`:
//!
//! - every `valid/` example parses with the Rust type and validates against the schema, and
//!   the parsed value serializes back to the same JSON, up to two differences the wire format
//!   allows: a member the type does not know is dropped (readers ignore unknown members), and
//!   an optional member the example leaves out comes back as `null` where the writers always
//!   write it (a dead letter's `code`, an alert's `provider`);
//! - every `invalid/` example is refused by both.
//!
//! The schemas ship with the crate (`shirase_proto::record::schema`); the test also checks that
//! those constants are the files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shirase_proto::record::{
    Alert, AuditRecord, Checkpoint, DeadLetter, FileWatchEntry, WatcherCheckpoint,
    schema as shipped,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// One record: its schema file and example directory name, and its Rust round trip.
struct Record {
    name: &'static str,
    shipped: &'static str,
    /// Parse with the Rust type and serialize again; `Err` when the type refuses.
    round_trip: fn(&[u8]) -> Result<Value, String>,
}

fn round_trip<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<Value, String> {
    let t: T = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(&t).unwrap())
}

const RECORDS: &[Record] = &[
    Record {
        name: "checkpoint",
        shipped: shipped::CHECKPOINT,
        round_trip: round_trip::<Checkpoint>,
    },
    Record {
        name: "dead-letter",
        shipped: shipped::DEAD_LETTER,
        round_trip: round_trip::<DeadLetter>,
    },
    Record {
        name: "alert",
        shipped: shipped::ALERT,
        round_trip: round_trip::<Alert>,
    },
    Record {
        name: "audit",
        shipped: shipped::AUDIT,
        round_trip: round_trip::<AuditRecord>,
    },
    Record {
        name: "watcher-checkpoint",
        shipped: shipped::WATCHER_CHECKPOINT,
        round_trip: round_trip::<WatcherCheckpoint>,
    },
    Record {
        name: "file-watch-entry",
        shipped: shipped::FILE_WATCH_ENTRY,
        round_trip: round_trip::<FileWatchEntry>,
    },
];

fn schema_value(r: &Record) -> Value {
    let text = std::fs::read_to_string(dir().join(format!("schema/{}.v1.json", r.name))).unwrap();
    assert_eq!(
        text, r.shipped,
        "{}: the shipped constant is not the file",
        r.name
    );
    serde_json::from_str(&text).unwrap()
}

fn validator(r: &Record) -> jsonschema::Validator {
    let schema = schema_value(r);
    assert!(
        jsonschema::meta::is_valid(&schema),
        "{}: not a valid JSON Schema",
        r.name
    );
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{}",
        r.name
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn examples(r: &Record, kind: &str) -> Vec<(String, Vec<u8>)> {
    let d = dir().join("examples/records").join(r.name).join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
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

/// `again` (the Rust type's serialization) is `original` up to dropped unknown members and
/// `null` for optional members the original leaves out.
fn same_record(schema: &Value, original: &Value, again: &Value) -> Result<(), String> {
    let (Some(o), Some(a)) = (original.as_object(), again.as_object()) else {
        return if original == again {
            Ok(())
        } else {
            Err(format!("{again} != {original}"))
        };
    };
    let declared = schema["properties"].as_object().unwrap();
    for (k, v) in o {
        match a.get(k) {
            Some(w) if w == v => {}
            Some(w) => return Err(format!("/{k}: {w} != {v}")),
            None if declared.contains_key(k) => return Err(format!("/{k}: dropped")),
            None => {} // unknown member: ignored by readers
        }
    }
    for (k, w) in a {
        if !o.contains_key(k) && !w.is_null() {
            return Err(format!("/{k}: {w} added"));
        }
    }
    Ok(())
}

#[test]
fn valid_examples_parse_validate_and_round_trip() {
    for r in RECORDS {
        let schema = schema_value(r);
        let v = validator(r);
        let valid = examples(r, "valid");
        assert!(
            valid.len() >= 3,
            "{}: {} valid examples",
            r.name,
            valid.len()
        );
        for (name, bytes) in &valid {
            let original: Value = serde_json::from_slice(bytes).unwrap();
            let errors: Vec<String> = v
                .iter_errors(&original)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{}/{name}: schema refuses: {errors:?}",
                r.name
            );
            let again = (r.round_trip)(bytes)
                .unwrap_or_else(|e| panic!("{}/{name}: Rust refuses: {e}", r.name));
            if let Err(e) = same_record(&schema, &original, &again) {
                panic!("{}/{name}: does not serialize back: {e}", r.name);
            }
            assert!(
                v.is_valid(&again),
                "{}/{name}: the schema refuses what Rust writes: {again}",
                r.name
            );
        }
    }
}

#[test]
fn invalid_examples_are_refused_by_both() {
    for r in RECORDS {
        let v = validator(r);
        let invalid = examples(r, "invalid");
        assert!(
            invalid.len() >= 3,
            "{}: {} invalid examples",
            r.name,
            invalid.len()
        );
        for (name, bytes) in &invalid {
            if let Ok(again) = (r.round_trip)(bytes) {
                panic!("{}/{name}: Rust accepts it as {again}", r.name);
            }
            let schema_accepts =
                serde_json::from_slice::<Value>(bytes).is_ok_and(|value| v.is_valid(&value));
            assert!(!schema_accepts, "{}/{name}: the schema accepts it", r.name);
        }
    }
}

#[test]
fn every_schema_in_the_directory_is_tested() {
    let mut files: Vec<String> = std::fs::read_dir(dir().join("schema"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The notices' schemas are tested by tests/schema.rs and tests/file_schema.rs.
        .filter(|f| f != "notice.v1.json" && f != "file-ready.v1.json")
        .collect();
    files.sort();
    let mut tested: Vec<String> = RECORDS
        .iter()
        .map(|r| format!("{}.v1.json", r.name))
        .collect();
    tested.sort();
    assert_eq!(files, tested);
}

#[test]
fn writers_helpers_produce_records_the_schemas_accept() {
    let at: jiff::Timestamp = "2026-11-25T01:15:30.123456789Z".parse().unwrap();
    let cp = serde_json::to_value(Checkpoint::jst(at, at)).unwrap();
    assert_eq!(cp["updated_at"], "2026-11-25T10:15:30.123456789+09:00");
    assert!(validator(&RECORDS[0]).is_valid(&cp), "{cp}");
    assert!(
        cp.get("read_at").is_none(),
        "a resync's record describes no pull"
    );
    let read = serde_json::to_value(Checkpoint::jst(at, at).read_by(at, at)).unwrap();
    assert_eq!(read["read_from"], "2026-11-25T10:15:30.123456789+09:00");
    assert!(validator(&RECORDS[0]).is_valid(&read), "{read}");
}
