//! Builders for the unit tests of the pure decision modules.

use jiff::Timestamp;
use shirase_proto::{ChangeKind, Notice, OffsetTimestamp, Sequence};

use super::Item;

/// A fixed instant `s` seconds after 2027-01-15T08:00:00Z.
pub(super) fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

/// Item `idx` of a batch: an update of 001o05-00 in 131016 at `ts(secs)`, first delivery.
pub(super) fn item(idx: usize, secs: i64) -> Item {
    Item {
        idx,
        notice: Notice::new(
            "131016".parse().unwrap(),
            "001o05-00".parse().unwrap(),
            "1.0".parse().unwrap(),
            Sequence(idx as u64 + 1),
            OffsetTimestamp::from_instant_jst(ts(secs)),
            ChangeKind::Update,
            None,
        ),
        replay: false,
        delivered: 1,
        raw: serde_json::Value::Null,
        published: None,
    }
}
