//! The file-ready notice (格納完了通知): a completed file on the municipality's file server.
//!
//! For interfaces exchanged by file integration (ファイル連携, データ連携WT 1.1.3: the daily
//! changes of 001o05, 001o06 and 015o02 go by file through the common functions' file server,
//! one folder per business system), a file-ready notice says that one file is complete and
//! which interface version (版数, データ連携WT 2.2.2: the storage-completion notice file
//! 格納完了通知ファイル carries it) it follows. It travels in the same CloudEvents envelope as a
//! change notice, with its own `type` ([`FILE_EVENT_TYPE`]), on the same subject
//! (`shirase.notice.<municipality>.<business id>.<interface id>`), so durable consumers,
//! replays, dead letters and maintenance pauses apply unchanged. It names the file (a path
//! relative to the provider's share, its size and SHA-256); it never carries the file's
//! contents, and its path never carries personal data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    BusinessId, InterfaceId, InterfaceVersion, MunicipalityCode, NoticeId, OffsetTimestamp,
    ParseError, SPEC_VERSION, Sequence, Source, truncate,
};

/// The CloudEvents `type` of a file-ready notice, version 1 of its data schema.
pub const FILE_EVENT_TYPE: &str = "jp.lg.shirase.file.v1";
/// Longest share path, in characters.
pub const MAX_PATH_CHARS: usize = 1024;

/// A file's path relative to the provider's share: `/`-separated, never absolute, no empty,
/// `.` or `..` segment, no backslash, no control character, no drive letter (`C:`), at most
/// [`MAX_PATH_CHARS`] characters. A receiver joins it to its own mount of the share and cannot
/// leave that directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharePath(String);

impl SharePath {
    /// The path as written (`/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The path's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
    /// The last segment: the file name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl FromStr for SharePath {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| {
            ParseError::new(format!(
                "path must be relative to the share, '/'-separated ({why}), e.g. 015o02/tainou-20261125.csv, got {:?}",
                truncate(s)
            ))
        };
        let n = s.chars().count();
        if n == 0 || n > MAX_PATH_CHARS {
            return Err(bad(&format!("1 to {MAX_PATH_CHARS} characters")));
        }
        if s.starts_with('/') {
            return Err(bad("not absolute"));
        }
        if s.contains('\\') {
            return Err(bad("no backslash"));
        }
        if s.chars().any(char::is_control) {
            return Err(bad("no control character"));
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(bad("no empty, '.' or '..' segment"));
            }
        }
        let first = s.split('/').next().unwrap_or("");
        if first.len() == 2 && first.ends_with(':') {
            return Err(bad("no drive letter"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for SharePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_newtype_serde!(SharePath);

/// A SHA-256 digest written as 64 lowercase hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(pub [u8; 32]);

impl FromStr for Sha256Hex {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        if b.len() != 64
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        {
            return Err(ParseError::new(format!(
                "sha256 must be 64 lowercase hexadecimal digits, got {:?}",
                truncate(s)
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks(2).enumerate() {
            let hex = |c: u8| {
                if c.is_ascii_digit() {
                    c - b'0'
                } else {
                    c - b'a' + 10
                }
            };
            out[i] = hex(pair[0]) << 4 | hex(pair[1]);
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
string_newtype_serde!(Sha256Hex);

/// The file-ready notice's `data`: which file, how to check it; never its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileData {
    /// Interface id (連携ID) the file belongs to.
    pub interface_id: InterfaceId,
    /// Interface version (版数) the file follows.
    pub interface_version: InterfaceVersion,
    /// Municipality the provider serves.
    pub municipality_code: MunicipalityCode,
    /// Providing business id; equals the first three digits of `interface_id`.
    pub provider: BusinessId,
    /// The file's path relative to the provider's share.
    pub path: SharePath,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents.
    pub sha256: Sha256Hex,
    /// Number of records, when the provider said (completion marker or its own notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_count: Option<u64>,
    /// When the file was complete: the completion marker's time, or (without a marker) the
    /// file's last modification.
    pub completed_at: OffsetTimestamp,
}

/// A file-ready notice: CloudEvents 1.0, structured JSON mode, `type` [`FILE_EVENT_TYPE`].
///
/// Build one with [`FileNotice::new`] (deterministic id); parse untrusted input with
/// [`crate::validate::parse_file_notice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotice {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Dedup key: [`FileNotice::derive_id`] of the file.
    pub id: NoticeId,
    /// `urn:jp:lg:<municipality>:<business id>`.
    pub source: Source,
    /// Always [`FILE_EVENT_TYPE`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the notice was emitted.
    pub time: OffsetTimestamp,
    /// The interface id (連携ID), equal to `data.interface_id`.
    pub subject: InterfaceId,
    /// Optional per-interface counter (files are announced one by one, each on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Sequence>,
    /// Always `application/json` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The file.
    pub data: FileData,
}

impl FileNotice {
    /// A notice for one completed file, with the id [`FileNotice::derive_id`] and `time` = now
    /// (JST).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        municipality: MunicipalityCode,
        interface_id: InterfaceId,
        interface_version: InterfaceVersion,
        path: SharePath,
        size: u64,
        sha256: Sha256Hex,
        record_count: Option<u64>,
        completed_at: OffsetTimestamp,
    ) -> Self {
        let provider = interface_id.business_id();
        let id = Self::derive_id(municipality, interface_id, &path, size, &sha256);
        FileNotice {
            specversion: SPEC_VERSION.to_owned(),
            id,
            source: Source {
                municipality,
                provider,
            },
            event_type: FILE_EVENT_TYPE.to_owned(),
            time: OffsetTimestamp::from_instant_jst(jiff::Timestamp::now()),
            subject: interface_id,
            sequence: None,
            datacontenttype: None,
            data: FileData {
                interface_id,
                interface_version,
                municipality_code: municipality,
                provider,
                path,
                size,
                sha256,
                record_count,
                completed_at,
            },
        }
    }

    /// The notice id of a file: a UUID version 8 whose bits are the SHA-256 of (municipality,
    /// interface, path, size, contents' SHA-256). The same file announced twice (a restarted
    /// watcher, a second replica) has the same id and JetStream stores it once; a file replaced
    /// under the same name (new contents) gets a new id.
    pub fn derive_id(
        municipality: MunicipalityCode,
        interface_id: InterfaceId,
        path: &SharePath,
        size: u64,
        sha256: &Sha256Hex,
    ) -> NoticeId {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [
            "shirase-file-v1",
            municipality.as_str(),
            interface_id.as_str(),
            path.as_str(),
            &size.to_string(),
            &sha256.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        NoticeId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// Serialize to compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A notice of either kind, as a relay receives them or an agent reads them from the stream.
// Boxing would change a public shape for a few hundred bytes, as for `Payload`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyNotice {
    /// A change notice (`jp.lg.shirase.change.v1`).
    Change(super::Notice),
    /// A file-ready notice (`jp.lg.shirase.file.v1`).
    File(FileNotice),
}

impl AnyNotice {
    /// The notice id (the de-duplication key).
    pub fn id(&self) -> NoticeId {
        match self {
            AnyNotice::Change(n) => n.id,
            AnyNotice::File(f) => f.id,
        }
    }
    /// The CloudEvents source.
    pub fn source(&self) -> Source {
        match self {
            AnyNotice::Change(n) => n.source,
            AnyNotice::File(f) => f.source,
        }
    }
    /// The interface id.
    pub fn interface_id(&self) -> InterfaceId {
        match self {
            AnyNotice::Change(n) => n.data.interface_id,
            AnyNotice::File(f) => f.data.interface_id,
        }
    }
    /// The providing business id (`data.provider`).
    pub fn provider(&self) -> BusinessId {
        match self {
            AnyNotice::Change(n) => n.data.provider,
            AnyNotice::File(f) => f.data.provider,
        }
    }
    /// The municipality (`data.municipality_code`).
    pub fn municipality(&self) -> MunicipalityCode {
        match self {
            AnyNotice::Change(n) => n.data.municipality_code,
            AnyNotice::File(f) => f.data.municipality_code,
        }
    }
    /// The interface version (版数).
    pub fn interface_version(&self) -> &InterfaceVersion {
        match self {
            AnyNotice::Change(n) => &n.data.interface_version,
            AnyNotice::File(f) => &f.data.interface_version,
        }
    }
    /// The NATS subject.
    pub fn subject(&self) -> String {
        match self {
            AnyNotice::Change(n) => n.subject(),
            AnyNotice::File(f) => f.subject(),
        }
    }
    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            AnyNotice::Change(n) => n.to_json(),
            AnyNotice::File(f) => f.to_json(),
        }
    }
}

/// What publishing needs of a notice of either kind: its id (`Nats-Msg-Id`), subject,
/// provider and bytes.
pub trait Envelope {
    /// The notice id.
    fn notice_id(&self) -> NoticeId;
    /// The NATS subject.
    fn subject(&self) -> String;
    /// The providing business id.
    fn provider(&self) -> BusinessId;
    /// Compact JSON.
    fn to_json(&self) -> Vec<u8>;
}

impl<T: Envelope + ?Sized> Envelope for &T {
    fn notice_id(&self) -> NoticeId {
        (**self).notice_id()
    }
    fn subject(&self) -> String {
        (**self).subject()
    }
    fn provider(&self) -> BusinessId {
        (**self).provider()
    }
    fn to_json(&self) -> Vec<u8> {
        (**self).to_json()
    }
}

impl Envelope for super::Notice {
    fn notice_id(&self) -> NoticeId {
        self.id
    }
    fn subject(&self) -> String {
        super::Notice::subject(self)
    }
    fn provider(&self) -> BusinessId {
        self.data.provider
    }
    fn to_json(&self) -> Vec<u8> {
        super::Notice::to_json(self)
    }
}

impl Envelope for FileNotice {
    fn notice_id(&self) -> NoticeId {
        self.id
    }
    fn subject(&self) -> String {
        FileNotice::subject(self)
    }
    fn provider(&self) -> BusinessId {
        self.data.provider
    }
    fn to_json(&self) -> Vec<u8> {
        FileNotice::to_json(self)
    }
}

impl Envelope for AnyNotice {
    fn notice_id(&self) -> NoticeId {
        self.id()
    }
    fn subject(&self) -> String {
        AnyNotice::subject(self)
    }
    fn provider(&self) -> BusinessId {
        AnyNotice::provider(self)
    }
    fn to_json(&self) -> Vec<u8> {
        AnyNotice::to_json(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sha(c: char) -> Sha256Hex {
        c.to_string().repeat(64).parse().unwrap()
    }

    #[test]
    fn share_paths_stay_inside_the_share() {
        for ok in ["a.csv", "015o02/滞納-20261125.csv", "a/b/c.end", "x..y"] {
            assert_eq!(ok.parse::<SharePath>().unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "C:/x",
            "a\nb",
        ] {
            let e = bad.parse::<SharePath>().unwrap_err();
            assert!(e.message.starts_with("path must be relative"), "{bad}: {e}");
        }
        assert!("x".repeat(MAX_PATH_CHARS).parse::<SharePath>().is_ok());
        assert!("x".repeat(MAX_PATH_CHARS + 1).parse::<SharePath>().is_err());
    }

    #[test]
    fn sha256_round_trips_lowercase_only() {
        let s = "00ff".repeat(16);
        assert_eq!(s.parse::<Sha256Hex>().unwrap().to_string(), s);
        assert!("00FF".repeat(16).parse::<Sha256Hex>().is_err());
        assert!("00f".repeat(16).parse::<Sha256Hex>().is_err());
    }

    #[test]
    fn the_id_depends_on_path_size_and_hash_only() {
        let m = "131016".parse().unwrap();
        let i = "015o02-00".parse().unwrap();
        let p: SharePath = "a/b.csv".parse().unwrap();
        let id = FileNotice::derive_id(m, i, &p, 10, &sha('a'));
        assert_eq!(id, FileNotice::derive_id(m, i, &p, 10, &sha('a')));
        assert_eq!(id.0.get_version_num(), 8);
        assert_ne!(id, FileNotice::derive_id(m, i, &p, 11, &sha('a')));
        assert_ne!(id, FileNotice::derive_id(m, i, &p, 10, &sha('b')));
        let q: SharePath = "a/c.csv".parse().unwrap();
        assert_ne!(id, FileNotice::derive_id(m, i, &q, 10, &sha('a')));
        let n = FileNotice::new(
            m,
            i,
            "1.0".parse().unwrap(),
            p,
            10,
            sha('a'),
            Some(3),
            "2026-11-25T02:00:00+09:00".parse().unwrap(),
        );
        assert_eq!(n.id, id);
        assert_eq!(n.subject(), "shirase.notice.131016.015.015o02-00");
        let back: FileNotice = serde_json::from_slice(&n.to_json()).unwrap();
        assert_eq!(back, n);
    }
}
