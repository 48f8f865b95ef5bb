//! Validation of file-ready notices (`type` [`FILE_EVENT_TYPE`]), and of bodies that may hold
//! either kind of notice: an item whose `type` is [`FILE_EVENT_TYPE`] is checked as a file-ready
//! notice, any other as a change notice (whose `type` rule then names the change type).
//!
//! The same [`Rule`]s and JSON Pointer paths as change notices; in addition `data.path` must be
//! a [`SharePath`] (relative, no `..`), `data.size` and `data.record_count` non-negative
//! integers, `data.sha256` 64 lowercase hex digits. The personal-data guard covers every string,
//! number and member name (the file name included) except `/id`, `/data/sha256` and
//! `/data/size`: a UUID, a digest and a byte count, checked as such.

use serde_json::Value;

use crate::strict_json::{Json, Object};

use super::{
    Check, Field, ItemCheck, Kind, Limits, Payload, PayloadError, Rule, Violation, check_sized,
    check_walk, compact_len, json_type, parse_with, payload_with,
};
use crate::notice::file::{
    AnyNotice, FILE_EVENT_TYPE, FileData, FileNotice, MAX_PATH_CHARS, Sha256Hex, SharePath,
};
use crate::notice::{OffsetTimestamp, SPEC_VERSION};

const DATA_MEMBERS: [&str; 9] = [
    "interface_id",
    "interface_version",
    "municipality_code",
    "provider",
    "path",
    "size",
    "sha256",
    "record_count",
    "completed_at",
];

const FILE_TYPE: Field = Field {
    name: "type",
    min: 21,
    max: 21,
    hint: "the event type \"jp.lg.shirase.file.v1\"",
};
const PATH: Field = Field {
    name: "data.path",
    min: 1,
    max: MAX_PATH_CHARS,
    hint: "the file's path relative to the provider's share, '/'-separated, e.g. 015o02/tainou-20261125.csv",
};
const SHA256: Field = Field {
    name: "data.sha256",
    min: 64,
    max: 64,
    hint: "the SHA-256 of the file's contents, 64 lowercase hexadecimal digits",
};
const COMPLETED_AT: Field = Field {
    name: "data.completed_at",
    min: 20,
    max: 35,
    hint: "when the file was complete (the completion marker's time), RFC 3339 with offset",
};

/// Members exempt from the personal-data guard (checked by their own formats).
const EXEMPT: [&str; 3] = ["/id", "/data/sha256", "/data/size"];

impl Check<'_> {
    /// A required or optional non-negative integer member.
    fn count(
        &mut self,
        obj: &Object<'_>,
        key: &str,
        name: &str,
        required: bool,
    ) -> Option<Option<u64>> {
        let path = format!("/data/{key}");
        let Some(value) = obj.get(key) else {
            if required {
                self.push(
                    path,
                    Rule::Required,
                    format!("{name} is required: a non-negative integer"),
                );
                return None;
            }
            return Some(None);
        };
        match value {
            Json::Number(n) => match n.as_u64() {
                Some(v) => Some(Some(v)),
                None => {
                    self.push(
                        path,
                        Rule::Format,
                        format!("{name} must be a non-negative integer up to 18446744073709551615"),
                    );
                    None
                }
            },
            other => {
                self.push(
                    path,
                    Rule::Type,
                    format!(
                        "{name} must be a number (a non-negative integer), got {}",
                        json_type(other)
                    ),
                );
                None
            }
        }
    }

    fn file_data(&mut self, value: &Json<'_>) -> Option<FileData> {
        let obj = self.object(value, "/data", "data")?;
        self.unknown_members(obj, "/data", "data", &DATA_MEMBERS);
        let origin = self.origin(obj);
        let path = self.parsed::<SharePath>(obj, "/data", "path", &PATH);
        let size = self.count(obj, "size", "data.size", true);
        let sha256 = self.parsed::<Sha256Hex>(obj, "/data", "sha256", &SHA256);
        let record_count = self.count(obj, "record_count", "data.record_count", false);
        let completed_at =
            self.parsed::<OffsetTimestamp>(obj, "/data", "completed_at", &COMPLETED_AT);
        Some(FileData {
            interface_id: origin.interface_id?,
            interface_version: origin.interface_version?,
            municipality_code: origin.municipality_code?,
            provider: origin.provider?,
            path: path?,
            size: size??,
            sha256: sha256?,
            record_count: record_count?,
            completed_at: completed_at?,
        })
    }

    fn file_notice(&mut self, value: &Json<'_>) -> Option<FileNotice> {
        let kind = Kind {
            type_field: &FILE_TYPE,
            event_type: FILE_EVENT_TYPE,
            sequence_required: false,
            data_hint: "data is required: an object with interface_id, interface_version, municipality_code, provider, path, size, sha256, completed_at and optionally record_count",
        };
        let e = self.envelope(value, &kind, Self::file_data)?;
        Some(FileNotice {
            specversion: SPEC_VERSION.to_owned(),
            id: e.id,
            source: e.source,
            event_type: FILE_EVENT_TYPE.to_owned(),
            time: e.time,
            subject: e.subject,
            sequence: e.sequence,
            datacontenttype: e.datacontenttype,
            data: e.data,
        })
    }
}

fn check_file_sized(
    value: &Json<'_>,
    size: usize,
    limits: &Limits,
) -> Result<FileNotice, Vec<Violation>> {
    check_walk(value, size, limits, Check::file_notice, &EXEMPT)
}

fn check_any_sized(
    value: &Json<'_>,
    size: usize,
    limits: &Limits,
) -> Result<AnyNotice, Vec<Violation>> {
    if value.get("type").and_then(Json::as_str) == Some(FILE_EVENT_TYPE) {
        check_file_sized(value, size, limits).map(AnyNotice::File)
    } else {
        check_sized(value, size, limits).map(AnyNotice::Change)
    }
}

/// Parse and validate one file-ready notice from bytes; every violation, sorted by path.
pub fn parse_file_notice(bytes: &[u8], limits: &Limits) -> Result<FileNotice, Vec<Violation>> {
    parse_with(bytes, limits, check_file_sized)
}

/// Validate an already-parsed JSON value as a file-ready notice (size: its compact form).
pub fn check_file_value(value: &Value, limits: &Limits) -> Result<FileNotice, Vec<Violation>> {
    let tree = Json::from_value(value);
    check_file_sized(&tree, compact_len(&tree), limits)
}

/// Parse one notice of either kind, chosen by its `type`.
pub fn parse_any_notice(bytes: &[u8], limits: &Limits) -> Result<AnyNotice, Vec<Violation>> {
    parse_with(bytes, limits, check_any_sized as ItemCheck<AnyNotice>)
}

/// [`super::parse_payload`] for bodies whose items may be change or file-ready notices.
pub fn parse_any_payload(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Payload<AnyNotice>, PayloadError> {
    payload_with(bytes, limits, check_any_sized).map(|(p, _)| p)
}

/// [`parse_any_payload`], also returning where each item lies in `bytes` (one range per result,
/// in order), so that each valid notice can be stored as the bytes it was validated from.
pub fn parse_any_payload_spans(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Payload<AnyNotice>, Vec<std::ops::Range<usize>>), PayloadError> {
    payload_with(bytes, limits, check_any_sized)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn valid() -> Value {
        serde_json::json!({
            "specversion": "1.0",
            "id": "0d3f4c5e-7a1b-8c2d-9e3f-4a5b6c7d8e9f",
            "source": "urn:jp:lg:131016:015",
            "type": "jp.lg.shirase.file.v1",
            "time": "2026-11-25T02:00:05+09:00",
            "subject": "015o02-00",
            "data": {
                "interface_id": "015o02-00",
                "interface_version": "1.0",
                "municipality_code": "131016",
                "provider": "015",
                "path": "015o02/tainou-20261125.csv",
                "size": 123456,
                "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
                "record_count": 1200,
                "completed_at": "2026-11-25T02:00:00+09:00"
            }
        })
    }

    fn rules(v: &Value) -> Vec<(String, Rule)> {
        check_file_value(v, &Limits::default())
            .unwrap_err()
            .into_iter()
            .map(|x| (x.path, x.rule))
            .collect()
    }

    #[test]
    fn a_valid_file_notice_round_trips() {
        let v = valid();
        let n = check_file_value(&v, &Limits::default()).unwrap();
        assert_eq!(n.data.size, 123456);
        assert_eq!(n.data.record_count, Some(1200));
        assert_eq!(serde_json::to_value(&n).unwrap(), v);
        let any = parse_any_notice(&serde_json::to_vec(&v).unwrap(), &Limits::default()).unwrap();
        assert!(matches!(any, AnyNotice::File(_)));
    }

    #[test]
    fn paths_leaving_the_share_are_refused() {
        for bad in ["../etc/passwd", "/abs/x.csv", "a/../../b"] {
            let mut v = valid();
            v["data"]["path"] = bad.into();
            assert_eq!(
                rules(&v),
                vec![("/data/path".to_owned(), Rule::Format)],
                "{bad}"
            );
        }
    }

    #[test]
    fn an_individual_number_in_the_file_name_is_refused_but_not_in_the_digest() {
        let mut v = valid();
        v["data"]["path"] = "015o02/123456789018.csv".into();
        assert_eq!(
            rules(&v),
            vec![("/data/path".to_owned(), Rule::PersonalData)]
        );
        let mut v = valid();
        // A digest whose digits happen to hold such a run is still a digest.
        v["data"]["sha256"] =
            "123456789018aaaa5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d0".into();
        assert!(check_file_value(&v, &Limits::default()).is_ok());
        let mut v = valid();
        v["data"]["record_count"] = 123456789018u64.into();
        assert_eq!(
            rules(&v),
            vec![("/data/record_count".to_owned(), Rule::PersonalData)]
        );
    }

    #[test]
    fn counts_must_be_non_negative_integers() {
        let mut v = valid();
        v["data"]["size"] = (-1).into();
        v["data"]["record_count"] = "12".into();
        assert_eq!(
            rules(&v),
            vec![
                ("/data/record_count".to_owned(), Rule::Type),
                ("/data/size".to_owned(), Rule::Format)
            ]
        );
        let mut v = valid();
        v["data"].as_object_mut().unwrap().remove("size");
        assert_eq!(rules(&v), vec![("/data/size".to_owned(), Rule::Required)]);
    }

    #[test]
    fn mixed_batches_check_each_item_by_its_type() {
        let change = r#"{"specversion":"1.0","id":"01936b2e-8f00-7000-8000-000000000001","source":"urn:jp:lg:131016:001","type":"jp.lg.shirase.change.v1","time":"2026-11-25T10:15:31+09:00","subject":"001o05-00","sequence":"00000000000000000001","data":{"interface_id":"001o05-00","interface_version":"1.0","municipality_code":"131016","provider":"001","updated_at":"2026-11-25T10:15:30+09:00","change":"update"}}"#;
        let body = format!("[{change},{}]", valid());
        let p = parse_any_payload(body.as_bytes(), &Limits::default()).unwrap();
        let r = p.results();
        assert!(matches!(r[0], Ok(AnyNotice::Change(_))));
        assert!(matches!(r[1], Ok(AnyNotice::File(_))));
        let mut bad = valid();
        bad["type"] = "jp.lg.shirase.files.v1".into();
        let e =
            parse_any_notice(&serde_json::to_vec(&bad).unwrap(), &Limits::default()).unwrap_err();
        assert!(
            e.iter()
                .any(|x| x.path == "/type" && x.rule == Rule::Constant)
        );
    }
}
