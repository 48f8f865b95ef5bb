//! From the rows of one window to notices: one notice per group of at most
//! `max_keys_per_notice` addressee numbers (宛名番号), plus one without keys for rows that have
//! no addressee number, each carrying the largest DB update timestamp of its rows.
//!
//! Everything here is a pure function of (municipality, interface, window, first sequence,
//! the set of (key, timestamp) pairs): ids are UUID v7 whose time part is the group's update
//! timestamp and whose other bits are a SHA-256 of those inputs, `time` is the window's end.
//! Two replicas, or one replica before and after a crash, reading the same window produce
//! byte-identical notices, and JetStream stores each once.

use std::collections::BTreeMap;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use shirase_proto::{
    AtenaNo, ChangeKind, InterfaceId, InterfaceVersion, Keys, MunicipalityCode, Notice, NoticeId,
    OffsetTimestamp, Sequence,
};

/// The identity of one window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Municipality.
    pub municipality: MunicipalityCode,
    /// Interface.
    pub interface: InterfaceId,
    /// Interface version the notices name.
    pub version: InterfaceVersion,
    /// Inclusive start.
    pub from: Timestamp,
    /// Exclusive end.
    pub to: Timestamp,
    /// Sequence of the first notice.
    pub first_sequence: u64,
}

/// The notices announcing `rows` (addressee number as read, DB update timestamp), in sequence
/// order. The input order does not matter.
pub fn build(w: &Window, rows: &[(Option<String>, Timestamp)], max_keys: usize) -> Vec<Notice> {
    let max_keys = max_keys.clamp(1, shirase_proto::notice::MAX_KEYS);
    let mut keyed: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut keyless: Option<Timestamp> = None;
    for (k, t) in rows {
        // A value that is not a valid addressee number cannot go into a notice; its row is
        // announced by a notice without keys (the agent then reads the window).
        match k.as_deref().filter(|k| k.parse::<AtenaNo>().is_ok()) {
            Some(k) => {
                let e = keyed.entry(k.to_owned()).or_insert(*t);
                *e = (*e).max(*t);
            }
            None => keyless = Some(keyless.map_or(*t, |m| m.max(*t))),
        }
    }
    let mut groups: Vec<(Vec<String>, Timestamp)> = Vec::new();
    let entries: Vec<(String, Timestamp)> = keyed.into_iter().collect();
    for chunk in entries.chunks(max_keys) {
        let max = chunk.iter().map(|(_, t)| *t).max();
        if let Some(max) = max {
            groups.push((chunk.iter().map(|(k, _)| k.clone()).collect(), max));
        }
    }
    if let Some(t) = keyless {
        groups.push((Vec::new(), t));
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (keys, max))| notice(w, i as u64, keys, max))
        .collect()
}

fn notice(w: &Window, index: u64, keys: Vec<String>, updated_at: Timestamp) -> Notice {
    let mut h = Sha256::new();
    for part in [
        w.municipality.to_string(),
        w.interface.to_string(),
        w.version.to_string(),
        w.from.to_string(),
        w.to.to_string(),
        (w.first_sequence + index).to_string(),
    ] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    for k in &keys {
        h.update(k.as_bytes());
        h.update(b",");
    }
    let digest = h.finalize();
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(updated_at.as_millisecond()).unwrap_or(0);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rand).into_uuid();
    let keys = (!keys.is_empty()).then(|| Keys {
        atena_no: keys.iter().filter_map(|k| k.parse().ok()).collect(),
    });
    let mut n = Notice::new(
        w.municipality,
        w.interface,
        w.version.clone(),
        Sequence(w.first_sequence + index),
        OffsetTimestamp::from_instant_jst(updated_at),
        // The watcher sees rows, not the kind of change; the agent reads the rows anyway.
        ChangeKind::Update,
        keys,
    );
    n.id = NoticeId(id);
    n.time = OffsetTimestamp::from_instant_jst(w.to);
    n
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn window() -> Window {
        Window {
            municipality: "131016".parse().unwrap(),
            interface: "001o05-00".parse().unwrap(),
            version: "1.0".parse().unwrap(),
            from: "2026-11-26T00:00:00Z".parse().unwrap(),
            to: "2026-11-26T00:01:00Z".parse().unwrap(),
            first_sequence: 41,
        }
    }

    fn ts(s: u32) -> Timestamp {
        Timestamp::from_second(1_795_651_200 + i64::from(s)).unwrap()
    }

    fn key(i: u32) -> Option<String> {
        Some(format!("{:015}", 100_000 + i))
    }

    #[test]
    fn groups_keys_takes_the_max_timestamp_and_numbers_the_notices() {
        let rows = vec![
            (key(3), ts(5)),
            (key(1), ts(9)),
            (key(3), ts(7)),
            (key(2), ts(1)),
            (None, ts(4)),
            (Some("not-a-number".into()), ts(6)),
        ];
        let ns = build(&window(), &rows, 2);
        assert_eq!(ns.len(), 3);
        let keys: Vec<Vec<String>> = ns
            .iter()
            .map(|n| {
                n.data
                    .keys
                    .as_ref()
                    .map(|k| k.atena_no.iter().map(ToString::to_string).collect())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(keys[0], vec![key(1).unwrap(), key(2).unwrap()]);
        assert_eq!(keys[1], vec![key(3).unwrap()]);
        assert!(keys[2].is_empty());
        assert_eq!(ns[0].data.updated_at.instant(), ts(9));
        assert_eq!(ns[1].data.updated_at.instant(), ts(7));
        assert_eq!(
            ns[2].data.updated_at.instant(),
            ts(6),
            "keyless: max of rows without a valid key"
        );
        let seqs: Vec<u64> = ns.iter().map(|n| n.sequence.0).collect();
        assert_eq!(seqs, vec![41, 42, 43]);
        assert_eq!(ns[0].id.0.get_version_num(), 7);
    }

    #[test]
    fn same_window_same_notices_in_any_row_order() {
        let mut rows: Vec<_> = (0..250).map(|i| (key(i % 120), ts(i))).collect();
        let a = build(&window(), &rows, 100);
        rows.reverse();
        let b = build(&window(), &rows, 100);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        let ids: std::collections::HashSet<_> = a.iter().map(|n| n.id).collect();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn another_window_gives_other_ids() {
        let rows = vec![(key(1), ts(1))];
        let a = build(&window(), &rows, 100);
        let mut w = window();
        w.to = "2026-11-26T00:02:00Z".parse().unwrap();
        let b = build(&w, &rows, 100);
        assert_ne!(a[0].id, b[0].id);
    }

    #[test]
    fn notices_pass_the_validator() {
        let rows: Vec<_> = (0..100).map(|i| (key(i), ts(i))).collect();
        for n in build(&window(), &rows, 100) {
            let bytes = serde_json::to_vec(&n).unwrap();
            let parsed = shirase_proto::validate::parse_notice(&bytes, &Default::default());
            assert!(parsed.is_ok(), "{parsed:?}");
        }
    }

    #[test]
    fn no_rows_no_notices() {
        assert!(build(&window(), &[], 100).is_empty());
    }
}
