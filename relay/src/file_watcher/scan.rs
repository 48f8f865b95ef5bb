//! What the file watcher decides about one file, as pure functions of what it observed
//! (so every completion rule has a unit test), and the blocking reads it makes: a folder's
//! listing, a file's metadata, a marker's content, a file's SHA-256.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use shirase_proto::{InterfaceId, InterfaceVersion, Sha256Hex};

use crate::config::Completion;

/// A file's size and last modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub mtime: Timestamp,
}

/// Whether a data file is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet (no marker, or still changing).
    Wait,
    /// Complete; `completed_at` is the marker's time, or the file's last change.
    Complete {
        /// The completion time announced.
        completed_at: Timestamp,
    },
}

/// The completion rule. `stable_for` is how long the watcher has seen the data file with its
/// current size and modification time.
///
/// - Marker rule: complete when the marker exists and the data file was last modified no later
///   than the marker (the writer wrote the marker after the data). A data file modified after
///   its marker (the marker came first, or the file was rewritten) is complete only once it has
///   also been unchanged for the settle time.
/// - Settle rule: complete when unchanged for the settle time.
pub fn decide(
    completion: &Completion,
    data: Stat,
    marker: Option<Stat>,
    stable_for: Duration,
    settle: Duration,
) -> Verdict {
    let settled = stable_for >= settle;
    match completion {
        Completion::Marker(_) => match marker {
            None => Verdict::Wait,
            Some(m) if data.mtime <= m.mtime => Verdict::Complete {
                completed_at: m.mtime,
            },
            Some(_) if settled => Verdict::Complete {
                completed_at: data.mtime,
            },
            Some(_) => Verdict::Wait,
        },
        Completion::Settle if settled => Verdict::Complete {
            completed_at: data.mtime,
        },
        Completion::Settle => Verdict::Wait,
    }
}

/// What a completion marker (格納完了通知ファイル) may say. Every member is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkerInfo {
    /// `interface_id`.
    pub interface_id: Option<InterfaceId>,
    /// `interface_version` or `version` (版数).
    pub version: Option<InterfaceVersion>,
    /// `record_count`.
    pub record_count: Option<u64>,
}

/// Read a marker's content: empty, `key=value` lines (`#` comments), or a JSON object, with the
/// keys `interface_id`, `interface_version` (or `version`) and `record_count`; other keys are
/// ignored. A value that does not parse is an error naming the key.
pub fn parse_marker(text: &str) -> Result<MarkerInfo, String> {
    let text = text.trim_start_matches('\u{feff}').trim();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if text.starts_with('{') {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("marker is not a JSON object: {e}"))?;
        for (k, v) in v {
            let s = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            pairs.push((k, s));
        }
    } else {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| "marker lines must be key=value".to_owned())?;
            pairs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut info = MarkerInfo::default();
    for (k, v) in pairs {
        match k.to_ascii_lowercase().as_str() {
            "interface_id" => {
                info.interface_id =
                    Some(v.parse().map_err(|e| format!("marker interface_id: {e}"))?);
            }
            "interface_version" | "version" => {
                info.version = Some(v.parse().map_err(|e| format!("marker {k}: {e}"))?);
            }
            "record_count" => {
                info.record_count = Some(v.parse().map_err(|_| {
                    "marker record_count: must be a non-negative integer".to_owned()
                })?);
            }
            _ => {}
        }
    }
    Ok(info)
}

/// A file's size and modification time; `None` when it does not exist or is not a file.
pub fn stat(path: &Path) -> std::io::Result<Option<Stat>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let mtime = m.modified()?;
            let mtime = Timestamp::try_from(mtime).unwrap_or(Timestamp::UNIX_EPOCH);
            Ok(Some(Stat {
                size: m.len(),
                mtime,
            }))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The SHA-256 and length of a file, read in 1 MiB pieces (never whole), and whether it stayed
/// the same while it was read (its size and modification time before and after, and the bytes
/// read, agree): a file that changed is not announced.
pub fn hash(path: &Path, before: Stat) -> std::io::Result<Option<(u64, Sha256Hex)>> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n: u64 = 0;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    let after = stat(path)?;
    if after != Some(before) || n != before.size {
        return Ok(None);
    }
    Ok(Some((n, Sha256Hex(h.finalize().into()))))
}

/// Up to 64 KiB of a marker, as text.
pub fn read_marker(path: &Path) -> std::io::Result<String> {
    let f = std::fs::File::open(path)?;
    let mut s = Vec::new();
    f.take(64 * 1024).read_to_end(&mut s)?;
    Ok(String::from_utf8_lossy(&s).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn st(size: u64, secs: i64) -> Stat {
        Stat {
            size,
            mtime: Timestamp::from_second(secs).unwrap(),
        }
    }
    const SETTLE: Duration = Duration::from_secs(30);

    #[test]
    fn a_marker_written_after_its_data_completes_it_at_the_marker_time() {
        let m = Completion::Marker("{name}.end".into());
        assert_eq!(
            decide(&m, st(5, 100), None, SETTLE * 9, SETTLE),
            Verdict::Wait
        );
        assert_eq!(
            decide(&m, st(5, 100), Some(st(0, 101)), Duration::ZERO, SETTLE),
            Verdict::Complete {
                completed_at: Timestamp::from_second(101).unwrap()
            }
        );
    }

    #[test]
    fn data_written_after_its_marker_must_also_settle() {
        let m = Completion::Marker("{name}.end".into());
        assert_eq!(
            decide(&m, st(5, 102), Some(st(0, 101)), SETTLE / 2, SETTLE),
            Verdict::Wait
        );
        assert_eq!(
            decide(&m, st(5, 102), Some(st(0, 101)), SETTLE, SETTLE),
            Verdict::Complete {
                completed_at: Timestamp::from_second(102).unwrap()
            }
        );
    }

    #[test]
    fn the_settle_rule_waits_for_an_unchanged_file() {
        let s = Completion::Settle;
        assert_eq!(
            decide(&s, st(5, 100), None, SETTLE / 2, SETTLE),
            Verdict::Wait
        );
        assert_eq!(
            decide(&s, st(5, 100), None, SETTLE, SETTLE),
            Verdict::Complete {
                completed_at: Timestamp::from_second(100).unwrap()
            }
        );
    }

    #[test]
    fn markers_say_version_interface_and_count_as_lines_or_json() {
        let want = MarkerInfo {
            interface_id: Some("015o02-00".parse().unwrap()),
            version: Some("1.1".parse().unwrap()),
            record_count: Some(1200),
        };
        let lines = "# 格納完了通知\ninterface_id=015o02-00\nversion = 1.1\nrecord_count=1200\nwriter=batch7\n";
        assert_eq!(parse_marker(lines).unwrap(), want);
        let json = r#"{"interface_id":"015o02-00","interface_version":"1.1","record_count":1200}"#;
        assert_eq!(parse_marker(json).unwrap(), want);
        assert_eq!(parse_marker("").unwrap(), MarkerInfo::default());
        assert!(
            parse_marker("record_count=many")
                .unwrap_err()
                .contains("record_count")
        );
        assert!(parse_marker("version=one").unwrap_err().contains("version"));
    }

    #[test]
    fn hashing_streams_and_refuses_a_file_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, b"abc").unwrap();
        let s = stat(&p).unwrap().unwrap();
        let (n, h) = hash(&p, s).unwrap().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let stale = Stat { size: 2, ..s };
        assert_eq!(hash(&p, stale).unwrap(), None);
        assert_eq!(stat(&dir.path().join("gone")).unwrap(), None);
    }
}
