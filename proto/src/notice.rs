//! The notice: a CloudEvents 1.0 event in structured JSON mode.
//!
//! Every field is a newtype whose constructor ([`std::str::FromStr`]) enforces its format, so a
//! [`Notice`] value is always well formed. Serialization is exact: `parse(serialize(n)) == n` and
//! `serialize(parse(s)) == s` for any `s` that came from `serialize` (timestamps keep the offset
//! the provider wrote).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::check_digit;

/// The CloudEvents `specversion` every notice carries.
pub const SPEC_VERSION: &str = "1.0";
/// The CloudEvents `type` of a change notice, version 1 of the data schema.
pub const EVENT_TYPE: &str = "jp.lg.shirase.change.v1";
/// Most addressee numbers a single notice may carry in `data.keys.atena_no`.
pub const MAX_KEYS: usize = 100;

/// Why a field value was refused. The message names the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What the value should look like, written for a provider's engineer.
    pub message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

fn all_ascii_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

macro_rules! string_newtype_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Municipality code (市区町村コード, 全国地方公共団体コード): 6 digits, the last a JIS X 0402
/// check digit. `131016` (Chiyoda, Tokyo) and `011002` (Sapporo) are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MunicipalityCode([u8; 6]);

impl MunicipalityCode {
    /// The six digits as a string slice.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII digits by construction.
        std::str::from_utf8(&self.0).unwrap_or("000000")
    }
}

impl FromStr for MunicipalityCode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() != 6 || !all_ascii_digits(s) {
            return Err(ParseError::new(format!(
                "municipality code must be 6 digits (JIS X 0402, e.g. 131016), got {:?}",
                truncate(s)
            )));
        }
        if !check_digit::municipality_code_is_valid(s) {
            let expected = check_digit::municipality_check_digit(&s[..5]).unwrap_or(0);
            return Err(ParseError::new(format!(
                "municipality code {s} fails the JIS X 0402 check digit (expected last digit {expected})"
            )));
        }
        let mut b = [0u8; 6];
        b.copy_from_slice(s.as_bytes());
        Ok(Self(b))
    }
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
string_newtype_serde!(MunicipalityCode);

/// Business id (業務ID): the 3 digits that start an interface id; `001` is the resident registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusinessId([u8; 3]);

impl BusinessId {
    /// The three digits as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000")
    }
}

impl FromStr for BusinessId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() != 3 || !all_ascii_digits(s) {
            return Err(ParseError::new(format!(
                "business id (業務ID) must be 3 digits (e.g. 001), got {:?}",
                truncate(s)
            )));
        }
        let mut b = [0u8; 3];
        b.copy_from_slice(s.as_bytes());
        Ok(Self(b))
    }
}

impl fmt::Display for BusinessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
string_newtype_serde!(BusinessId);

/// Interface id (連携ID): `NNNoNN-NN`, e.g. `001o05-00`. The first three digits are the
/// providing business id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceId([u8; 9]);

impl InterfaceId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000o00-00")
    }
    /// The business id that provides this interface (the first three digits).
    pub fn business_id(&self) -> BusinessId {
        BusinessId([self.0[0], self.0[1], self.0[2]])
    }
}

impl FromStr for InterfaceId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        let ok = b.len() == 9
            && b[..3].iter().all(u8::is_ascii_digit)
            && b[3] == b'o'
            && b[4..6].iter().all(u8::is_ascii_digit)
            && b[6] == b'-'
            && b[7..9].iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(ParseError::new(format!(
                "interface id (連携ID) must look like NNNoNN-NN (e.g. 001o05-00), got {:?}",
                truncate(s)
            )));
        }
        let mut a = [0u8; 9];
        a.copy_from_slice(b);
        Ok(Self(a))
    }
}

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
string_newtype_serde!(InterfaceId);

/// Interface version (版数): 1 to 3 dot-separated numbers of 1 to 3 digits, e.g. `1.0`, `2.1.3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceVersion(String);

impl InterfaceVersion {
    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InterfaceVersion {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let parts: Vec<&str> = s.split('.').collect();
        let ok = (1..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && all_ascii_digits(p));
        if !ok {
            return Err(ParseError::new(format!(
                "interface version (版数) must be 1 to 3 dot-separated numbers of up to 3 digits (e.g. 1.0), got {:?}",
                truncate(s)
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for InterfaceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_newtype_serde!(InterfaceVersion);

/// Addressee number (宛名番号): the person key shared across business systems, written as
/// exactly 15 digits (zero-padded) as the standard's data dictionary defines it.
///
/// Fifteen digits also keep a key from ever being mistaken for a 12-digit individual number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtenaNo([u8; 15]);

impl AtenaNo {
    /// The number as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000000000000000")
    }
}

impl FromStr for AtenaNo {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() != 15 || !all_ascii_digits(s) {
            return Err(ParseError::new(format!(
                "addressee number (宛名番号) must be exactly 15 digits, zero-padded, got {:?}",
                truncate(s)
            )));
        }
        let mut a = [0u8; 15];
        a.copy_from_slice(s.as_bytes());
        Ok(Self(a))
    }
}

impl fmt::Display for AtenaNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
string_newtype_serde!(AtenaNo);

/// The provider's per-interface counter (CloudEvents `sequence` extension), written as exactly
/// 20 zero-padded digits so that string order equals numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sequence(pub u64);

impl FromStr for Sequence {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() != 20 || !all_ascii_digits(s) {
            return Err(ParseError::new(format!(
                "sequence must be exactly 20 digits, zero-padded (e.g. 00000000000000000042), got {:?}",
                truncate(s)
            )));
        }
        s.parse::<u64>().map(Sequence).map_err(|_| {
            ParseError::new(format!("sequence {s} is larger than 18446744073709551615"))
        })
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0)
    }
}
string_newtype_serde!(Sequence);

/// Notice id: a UUID (version 7 recommended) chosen by the provider; the de-duplication key
/// (`Nats-Msg-Id`). Written in lowercase hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoticeId(pub uuid::Uuid);

impl NoticeId {
    /// A fresh time-ordered UUID v7 id.
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl FromStr for NoticeId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            ParseError::new(format!(
                "id must be a UUID in lowercase hyphenated form (UUID v7 recommended), got {:?}",
                truncate(s)
            ))
        };
        if s.len() != 36 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let u = uuid::Uuid::parse_str(s).map_err(|_| bad())?;
        if u.is_nil() || u.is_max() {
            return Err(ParseError::new("id must not be the nil or max UUID"));
        }
        Ok(Self(u))
    }
}

impl fmt::Display for NoticeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}
string_newtype_serde!(NoticeId);

/// CloudEvents `source`: `urn:jp:lg:<municipality code>:<business id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// The municipality the provider serves.
    pub municipality: MunicipalityCode,
    /// The providing business.
    pub provider: BusinessId,
}

impl FromStr for Source {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            ParseError::new(format!(
                "source must be urn:jp:lg:<municipality code>:<business id> (e.g. urn:jp:lg:131016:001), got {:?}",
                truncate(s)
            ))
        };
        let rest = s.strip_prefix("urn:jp:lg:").ok_or_else(bad)?;
        let (m, b) = rest.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            municipality: m.parse()?,
            provider: b.parse()?,
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "urn:jp:lg:{}:{}", self.municipality, self.provider)
    }
}
string_newtype_serde!(Source);

/// An RFC 3339 timestamp that must carry an explicit UTC offset (`+09:00` or `Z`). The text is
/// kept exactly as written, so serialization round-trips byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetTimestamp {
    raw: String,
    instant: jiff::Timestamp,
}

impl OffsetTimestamp {
    /// The instant in time.
    pub fn instant(&self) -> jiff::Timestamp {
        self.instant
    }
    /// The timestamp as the provider wrote it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// Write an instant in Japan Standard Time (`+09:00`), the form providers are expected to use.
    pub fn from_instant_jst(instant: jiff::Timestamp) -> Self {
        let offset = jiff::tz::Offset::constant(9);
        let raw = instant.display_with_offset(offset).to_string();
        Self { raw, instant }
    }
}

impl PartialOrd for OffsetTimestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OffsetTimestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.instant
            .cmp(&other.instant)
            .then_with(|| self.raw.cmp(&other.raw))
    }
}

impl FromStr for OffsetTimestamp {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| {
            ParseError::new(format!(
                "timestamp must be RFC 3339 with an explicit offset (e.g. 2026-11-25T10:15:30.123+09:00){why}, got {:?}",
                truncate(s)
            ))
        };
        // RFC 3339 profile: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM). Checked by hand
        // because jiff also accepts forms (lowercase t, space separator, bracketed zones, leap
        // seconds, offsets past 23:59) that other languages' parsers and the JSON Schema's
        // pattern do not; the two must agree.
        let b = s.as_bytes();
        if b.len() > 35 {
            return Err(bad(" (at most 35 characters)"));
        }
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let num =
            |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        let shape_ok = b.len() >= 19
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        if !shape_ok {
            return Err(bad(""));
        }
        if !(1..=12).contains(&num(5..7))
            || !(1..=31).contains(&num(8..10))
            || num(11..13) > 23
            || num(14..16) > 59
            || num(17..19) > 59
        {
            return Err(bad(
                " (month 01-12, day 01-31, hour 00-23, minute and second 00-59)",
            ));
        }
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start || i - start > 9 {
                return Err(bad(" (1 to 9 fractional digits)"));
            }
        }
        let tail = &b[i..];
        if tail.is_empty() {
            return Err(bad(
                " (the UTC offset is missing: append +09:00 for JST, or Z)",
            ));
        }
        let offset_ok = tail == b"Z"
            || (tail.len() == 6
                && (tail[0] == b'+' || tail[0] == b'-')
                && digits(i + 1..i + 3)
                && tail[3] == b':'
                && digits(i + 4..i + 6)
                && num(i + 1..i + 3) <= 23
                && num(i + 4..i + 6) <= 59);
        if !offset_ok {
            return Err(bad(" (the offset must be Z or +HH:MM / -HH:MM)"));
        }
        let instant: jiff::Timestamp = s.parse().map_err(|_| bad(" (no such date or time)"))?;
        Ok(Self {
            raw: s.to_owned(),
            instant,
        })
    }
}

impl fmt::Display for OffsetTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
string_newtype_serde!(OffsetTimestamp);

/// What happened to the data behind the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// An ordinary change (異動).
    Update,
    /// A retroactive change or correction (遡及異動 / 遡及修正), ordered by change date.
    Retroactive,
    /// Rows were deleted; a pull cannot return them, so the agent delivers a tombstone.
    Delete,
}

impl ChangeKind {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::Update => "update",
            ChangeKind::Retroactive => "retroactive",
            ChangeKind::Delete => "delete",
        }
    }
}

/// Keys that narrow what changed. Only whitelisted key names exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Addressee numbers (宛名番号) concerned, at most [`MAX_KEYS`].
    pub atena_no: Vec<AtenaNo>,
}

/// The notice's `data`: what to pull, never the data itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeData {
    /// Interface id (連携ID) whose data changed.
    pub interface_id: InterfaceId,
    /// Interface version (版数) the change is visible in.
    pub interface_version: InterfaceVersion,
    /// Municipality the provider serves.
    pub municipality_code: MunicipalityCode,
    /// Providing business id; equals the first three digits of `interface_id`.
    pub provider: BusinessId,
    /// The DB update timestamp (更新年月日・更新時刻) of the change: the differential-fetch cursor.
    pub updated_at: OffsetTimestamp,
    /// What kind of change.
    pub change: ChangeKind,
    /// Optional keys of the rows concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Keys>,
}

/// A change notice: CloudEvents 1.0, structured JSON mode.
///
/// Build one with [`Notice::new`]; parse untrusted input with [`crate::validate::parse_notice`],
/// which reports every violation instead of the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Dedup key chosen by the provider.
    pub id: NoticeId,
    /// `urn:jp:lg:<municipality>:<business id>`.
    pub source: Source,
    /// Always [`EVENT_TYPE`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the provider emitted the notice.
    pub time: OffsetTimestamp,
    /// The interface id (連携ID), equal to `data.interface_id`.
    pub subject: InterfaceId,
    /// The provider's per-interface counter, for gap detection.
    pub sequence: Sequence,
    /// Always `application/json` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The change.
    pub data: NoticeData,
}

impl Notice {
    /// A notice for one change, with a fresh UUID v7 id and `time` = now (JST).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        municipality: MunicipalityCode,
        interface_id: InterfaceId,
        interface_version: InterfaceVersion,
        sequence: Sequence,
        updated_at: OffsetTimestamp,
        change: ChangeKind,
        keys: Option<Keys>,
    ) -> Self {
        let provider = interface_id.business_id();
        Notice {
            specversion: SPEC_VERSION.to_owned(),
            id: NoticeId::new_v7(),
            source: Source {
                municipality,
                provider,
            },
            event_type: EVENT_TYPE.to_owned(),
            time: OffsetTimestamp::from_instant_jst(jiff::Timestamp::now()),
            subject: interface_id,
            sequence,
            datacontenttype: None,
            data: NoticeData {
                interface_id,
                interface_version,
                municipality_code: municipality,
                provider,
                updated_at,
                change,
                keys,
            },
        }
    }

    /// Serialize to compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialization of these types cannot fail: all keys are strings.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The first 64 characters of `s` for an error message, with any individual number (個人番号)
/// masked: messages end up in logs and HTTP answers, and must never repeat personal data.
pub(crate) fn truncate(s: &str) -> String {
    check_digit::redact_individual_numbers(s)
        .chars()
        .take(64)
        .collect()
}

pub mod file;

#[cfg(test)]
mod tests;
