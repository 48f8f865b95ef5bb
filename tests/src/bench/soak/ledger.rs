//! What the soak checks: the agents' file sinks read as they grow (so the time each change
//! waited is known), every committed row version against them at the end, and the
//! duplicates among them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// A row version: (宛名番号, history number, DB update timestamp).
pub type Version = (String, u32, Timestamp);

/// One subscriber's view of one interface: every replica's sink file of it.
#[derive(Debug)]
struct Feed {
    subscriber: String,
    iface: String,
    /// (file, bytes read so far).
    files: Vec<(PathBuf, u64)>,
    /// Copies of each row version written, over all replicas.
    copies: BTreeMap<Version, usize>,
    /// When each (宛名番号, history number) was first seen.
    first_seen: HashMap<(String, u32), Instant>,
}

/// The sinks, read incrementally, and the changes' commit instants.
#[derive(Debug, Default)]
pub struct Ledger {
    feeds: Vec<Feed>,
    /// (interface, 宛名番号, history number) → when it was committed.
    committed: HashMap<(String, String, u32), Instant>,
}

/// What one subscriber's sink lacks for one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The subscriber.
    pub subscriber: String,
    /// The interface.
    pub iface: String,
    /// Row versions committed but not in any replica's sink.
    pub versions: Vec<Version>,
}

impl Ledger {
    /// Follow `subscriber`'s `iface` in these sink directories (one per replica).
    pub fn follow(&mut self, subscriber: &str, iface: &str, dirs: &[PathBuf]) {
        self.feeds.push(Feed {
            subscriber: subscriber.into(),
            iface: iface.into(),
            files: dirs
                .iter()
                .map(|d| (d.join(format!("{iface}.jsonl")), 0))
                .collect(),
            copies: BTreeMap::new(),
            first_seen: HashMap::new(),
        });
    }

    /// A change was committed now.
    pub fn committed(&mut self, iface: &str, atena_no: &str, history_no: u32, at: Instant) {
        self.committed
            .insert((iface.into(), atena_no.into(), history_no), at);
    }

    /// Read what the sinks gained since the last scan (whole lines only).
    pub fn scan(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        for feed in &mut self.feeds {
            for (path, offset) in &mut feed.files {
                let Ok(mut f) = std::fs::File::open(&*path) else {
                    continue; // not created yet
                };
                f.seek(SeekFrom::Start(*offset))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
                    continue;
                };
                *offset += end as u64 + 1;
                for line in buf[..end].split(|b| *b == b'\n') {
                    if let Some(v) = row_version(line) {
                        feed.first_seen.entry((v.0.clone(), v.1)).or_insert(now);
                        *feed.copies.entry(v).or_insert(0) += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The versions of `expected` (by interface) each subscriber's sink lacks.
    pub fn missing(&self, expected: &BTreeMap<String, BTreeSet<Version>>) -> Vec<Missing> {
        let mut out = Vec::new();
        for feed in &self.feeds {
            let Some(want) = expected.get(&feed.iface) else {
                continue;
            };
            let versions: Vec<Version> = want
                .iter()
                .filter(|v| !feed.copies.contains_key(*v))
                .cloned()
                .collect();
            if !versions.is_empty() {
                out.push(Missing {
                    subscriber: feed.subscriber.clone(),
                    iface: feed.iface.clone(),
                    versions,
                });
            }
        }
        out
    }

    /// Row lines written beyond the first copy of each version, over every sink.
    pub fn duplicates(&self) -> usize {
        self.feeds
            .iter()
            .flat_map(|f| f.copies.values())
            .map(|n| n - 1)
            .sum()
    }

    /// Row lines written, over every sink.
    pub fn rows_written(&self) -> usize {
        self.feeds.iter().flat_map(|f| f.copies.values()).sum()
    }

    /// Per subscriber and interface: (subscriber, interface, distinct versions, row lines,
    /// most copies of one version).
    pub fn per_feed(&self) -> Vec<(String, String, usize, usize, usize)> {
        self.feeds
            .iter()
            .map(|f| {
                (
                    f.subscriber.clone(),
                    f.iface.clone(),
                    f.copies.len(),
                    f.copies.values().sum(),
                    f.copies.values().copied().max().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The most copies of one version in one subscriber's sink.
    pub fn max_copies(&self) -> usize {
        self.feeds
            .iter()
            .flat_map(|f| f.copies.values().copied())
            .max()
            .unwrap_or(0)
    }

    /// From commit to the first sight in a subscriber's sink, for every change seen there
    /// (sorted); the resolution is the scan interval.
    pub fn waits(&self) -> Vec<Duration> {
        let mut out = Vec::new();
        for feed in &self.feeds {
            for ((iface, atena, history), at) in &self.committed {
                if *iface != feed.iface {
                    continue;
                }
                if let Some(seen) = feed.first_seen.get(&(atena.clone(), *history)) {
                    out.push(seen.saturating_duration_since(*at));
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// The row version of a sink line, `None` for other records (tombstones) and torn lines.
fn row_version(line: &[u8]) -> Option<Version> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if v["kind"] != "row" {
        return None;
    }
    let r = &v["row"];
    Some((
        r["atena_no"].as_str()?.to_owned(),
        u32::try_from(r["history_no"].as_u64()?).ok()?,
        r["updated_at"].as_str()?.parse().ok()?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn line(atena: &str, h: u32, at: &str) -> String {
        format!(
            "{{\"kind\":\"row\",\"row\":{{\"atena_no\":\"{atena}\",\"history_no\":{h},\"updated_at\":\"{at}\"}}}}\n"
        )
    }

    #[test]
    fn scans_grow_per_replica_and_count_missing_duplicates_and_waits() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let mut l = Ledger::default();
        l.follow("tax", "001o05-00", &[a.clone(), b.clone()]);
        let t0 = Instant::now();
        l.committed("001o05-00", "000000000000001", 2, t0);
        let at = "2026-12-06T17:00:00.000001+09:00";
        let f = a.join("001o05-00.jsonl");
        // A torn last line is read only once it is whole.
        std::fs::write(
            &f,
            format!("{}{{\"kind\":\"row\"", line("000000000000001", 2, at)),
        )
        .unwrap();
        l.scan().unwrap();
        std::fs::write(
            &f,
            format!(
                "{}{}",
                line("000000000000001", 2, at),
                line("000000000000001", 1, at)
            ),
        )
        .unwrap();
        std::fs::write(b.join("001o05-00.jsonl"), line("000000000000001", 2, at)).unwrap();
        l.scan().unwrap();
        assert_eq!(l.rows_written(), 3);
        assert_eq!(l.duplicates(), 1, "version (1, 2) in both replicas' sinks");
        assert_eq!(l.max_copies(), 2);
        assert_eq!(l.waits().len(), 1);
        let ts: Timestamp = at.parse().unwrap();
        let want: BTreeMap<String, BTreeSet<Version>> = [(
            "001o05-00".to_owned(),
            [
                ("000000000000001".to_owned(), 2, ts),
                ("000000000000002".to_owned(), 1, ts),
            ]
            .into(),
        )]
        .into();
        let m = l.missing(&want);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].subscriber, "tax");
        assert_eq!(m[0].versions, vec![("000000000000002".to_owned(), 1, ts)]);
    }
}
