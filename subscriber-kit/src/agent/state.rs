//! What a worker remembers per interface between batches: one [`IfaceState`] per interface, all
//! in one map behind one lock ([`States`]). The methods on [`IfaceState`] are pure bookkeeping
//! on plain data; the lock is held only for them, never across I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use shirase_proto::InterfaceId;

/// Most row timestamps remembered per interface for cutting sweeps' overlap re-reads (16 bytes each);
/// beyond it the oldest are forgotten and bisection handles what they would have told.
pub(super) const RECENT_ROWS_CAP: usize = 200_000;

/// How long the density of rows a window pull met stays good for the next pull: long enough
/// to carry across the batches of a burst, short enough that a burst's density does not cut
/// the sparse pulls after it into pieces.
pub(super) const DENSITY_MEMORY: Duration = Duration::from_secs(10);

/// The consumer's delivery sequences this worker received, to tell whether it received every
/// message of its consumer (one replica) or shares it with others (whose deliveries leave
/// holes here): only then does a missing notice sequence mean a lost notice.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    last: Option<u64>,
    /// The batch noted last had a hole ([`Deliveries::whole`]).
    holed: bool,
}

impl Deliveries {
    /// Note a batch's delivery sequences (the consumer's, one per delivery, redeliveries
    /// included); whether they follow the last batch's without a hole (the first batch
    /// always does, and so does the first after the consumer was created anew: its delivery
    /// sequence starts again from 1).
    pub(super) fn follow(&mut self, seqs: &[u64]) -> bool {
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut whole = true;
        let restarted = sorted
            .first()
            .is_some_and(|f| self.last.is_some_and(|l| *f <= l));
        let mut prev = if restarted { None } else { self.last };
        for s in sorted {
            if prev.is_some_and(|p| s > p + 1) {
                whole = false;
            }
            prev = Some(prev.map_or(s, |p| p.max(s)));
        }
        self.last = prev;
        self.holed = !whole;
        whole
    }

    /// Whether the batch noted last followed the one before without a hole (gaps count only
    /// then).
    pub(super) fn whole(&self) -> bool {
        !self.holed
    }
}

/// One interface's state in this process.
#[derive(Debug, Default)]
pub(super) struct IfaceState {
    /// Highest notice sequence seen, for gap detection.
    pub(super) last_seq: Option<u64>,
    /// Sequences found missing and not arrived since (a suspected gap: a provider's re-sent
    /// notice arrives after later ones), oldest first; confirmed once `sweep.gap_grace` old.
    pub(super) suspects: Vec<Suspect>,
    /// A sequence gap was confirmed, or the checkpoint was rewound by an operator, and the
    /// sweeper has not taken it yet (either asks for an immediate sweep).
    pub(super) gapped: bool,
    /// DB timestamps of rows received by recent window pulls (sorted, pruned to the overlap
    /// below the newest). They say how many rows an overlap re-read will meet, so the window
    /// can be cut before the provider refuses it.
    pub(super) recent_rows: Vec<Timestamp>,
    /// (DB timestamp, addressee-number hash) of the rows received by recent window pulls
    /// (sorted, pruned like `recent_rows`): a notice at or below the checkpoint whose every key
    /// has a row at exactly its timestamp here was received, whenever its notice was stored (a
    /// window read it ahead of its notice).
    pub(super) recent_keys: Vec<(Timestamp, u64)>,
    /// Rows known read: the records of the checkpoints read (every batch reads the key, so
    /// its own stores too), and the whole sweeps
    /// (`ReadThrough::swept`). A sweep starts above the span that reaches down to the overlap
    /// below the checkpoint (`coalesce::sweep_from`). Kept in memory only: after a restart the
    /// first sweep reads the whole overlap unless the stored record proves it read.
    pub(super) read_log: crate::read_log::ReadLog,
    /// The density of rows the last window pull met in its last piece with rows, and when:
    /// the next pull, if it starts within [`DENSITY_MEMORY`], cuts its pieces by it from the
    /// first one (a burst drained batch by batch).
    pub(super) density: Option<(super::plan::Density, Timestamp)>,
    /// Notice id → first failure time, for a dead letter's `first_failure`.
    pub(super) first_failure: HashMap<String, Timestamp>,
    /// Interface versions (版数) seen in notices other than the configured one, each logged
    /// once.
    pub(super) other_versions: std::collections::BTreeSet<String>,
}

impl IfaceState {
    /// The density the last window pull met, if it was measured within [`DENSITY_MEMORY`]
    /// before `now`.
    pub(super) fn recent_density(&self, now: Timestamp) -> Option<super::plan::Density> {
        let memory = SignedDuration::try_from(DENSITY_MEMORY).unwrap_or(SignedDuration::MAX);
        self.density
            .filter(|(_, at)| now.duration_since(*at) <= memory)
            .map(|(d, _)| d)
    }

    /// Note a notice naming `version` other than the configured one; true the first time
    /// (to log it once).
    pub(super) fn first_other_version(&mut self, version: &str) -> bool {
        self.other_versions.insert(version.to_owned())
    }

    /// Record the sequences of a batch's first deliveries (not replayed, not redelivered) seen
    /// at `now`; returns how many sequences are newly missing between the highest seen before
    /// and these, and among these (each becomes a [`Suspect`]; one that arrives later is no
    /// longer missing). JetStream delivers new messages in stream order, so while this replica
    /// receives every delivery of its consumer, the first deliveries' sequences follow each
    /// other, unless the provider re-sent one after later ones. `whole`: it received every
    /// delivery since the last batch ([`Deliveries::follow`]); otherwise another replica took
    /// some, maybe of higher sequences than any seen here, so nothing is counted and the next
    /// batch compares with this one's highest only (none: nothing to compare). A redelivered
    /// notice says nothing of what came after it: it was first delivered before.
    pub(super) fn observe_sequences(
        &mut self,
        mut seqs: Vec<u64>,
        whole: bool,
        now: Timestamp,
    ) -> u64 {
        seqs.sort_unstable();
        seqs.dedup();
        for &s in &seqs {
            self.arrived(s);
        }
        if !whole {
            self.last_seq = seqs.last().copied();
            return 0;
        }
        let mut missing = 0u64;
        let mut prev = self.last_seq;
        for s in seqs {
            if let Some(p) = prev
                && s > p + 1
            {
                missing += s - p - 1;
                self.suspects.push(Suspect {
                    lo: p + 1,
                    hi: s - 1,
                    since: now,
                });
            }
            prev = Some(prev.map_or(s, |p| p.max(s)));
        }
        self.last_seq = prev;
        if self.suspects.len() > MAX_SUSPECTS {
            // Beyond the cap one range holds them all, dated by the oldest: it may count
            // sequences that arrived meanwhile, never fewer than are missing.
            let lo = self.suspects.iter().map(|s| s.lo).min().unwrap_or(0);
            let hi = self.suspects.iter().map(|s| s.hi).max().unwrap_or(0);
            let since = self.suspects.iter().map(|s| s.since).min().unwrap_or(now);
            self.suspects = vec![Suspect { lo, hi, since }];
        }
        missing
    }

    /// Sequence `s` arrived: it is no longer missing.
    fn arrived(&mut self, s: u64) {
        let Some(k) = self.suspects.iter().position(|r| r.lo <= s && s <= r.hi) else {
            return;
        };
        let r = self.suspects.remove(k);
        if s > r.lo {
            self.suspects.insert(k, Suspect { hi: s - 1, ..r });
        }
        if s < r.hi {
            let at = if s > r.lo { k + 1 } else { k };
            self.suspects.insert(at, Suspect { lo: s + 1, ..r });
        }
    }

    /// Confirm the suspects missing for `grace` at `now`: how many sequences they hold (a
    /// confirmed gap asks for an immediate sweep).
    pub(super) fn confirm_gaps(&mut self, now: Timestamp, grace: Duration) -> u64 {
        let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
        let mut confirmed = 0;
        self.suspects.retain(|r| {
            let due = now.duration_since(r.since) >= grace;
            if due {
                confirmed += r.hi - r.lo + 1;
            }
            !due
        });
        if confirmed > 0 {
            self.gapped = true;
        }
        confirmed
    }

    /// When the oldest suspect will have been missing for `grace`.
    pub(super) fn next_gap_due(&self, grace: Duration) -> Option<Timestamp> {
        let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
        self.suspects
            .iter()
            .map(|r| r.since.checked_add(grace).unwrap_or(Timestamp::MAX))
            .min()
    }

    /// Remember the DB timestamps of rows a window pull received, pruned to `overlap` below
    /// the newest one (`max`, or the newest remembered) and to [`RECENT_ROWS_CAP`].
    pub(super) fn remember_rows(
        &mut self,
        mut new: Vec<Timestamp>,
        max: Option<Timestamp>,
        overlap: Duration,
    ) {
        let v = &mut self.recent_rows;
        new.sort_unstable();
        // Rows come in time order, so appending keeps the list sorted; sort only otherwise.
        let in_order = v.last().zip(new.first()).is_none_or(|(a, b)| a <= b);
        v.extend(new);
        if !in_order {
            v.sort_unstable();
        }
        if let Some(m) = max.or(v.last().copied()) {
            let floor = m
                .checked_sub(SignedDuration::try_from(overlap).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MIN);
            let keep = v.partition_point(|t| *t < floor);
            v.drain(..keep);
        }
        if v.len() > RECENT_ROWS_CAP {
            let extra = v.len() - RECENT_ROWS_CAP;
            v.drain(..extra);
        }
    }
}

impl IfaceState {
    /// Remember the (timestamp, key hash) pairs of rows a window pull received, pruned to
    /// `overlap` below `max` (or the newest remembered) and to [`RECENT_ROWS_CAP`].
    pub(super) fn remember_keys(
        &mut self,
        mut new: Vec<(Timestamp, u64)>,
        max: Option<Timestamp>,
        overlap: Duration,
    ) {
        let v = &mut self.recent_keys;
        new.sort_unstable();
        let in_order = v.last().zip(new.first()).is_none_or(|(a, b)| a <= b);
        v.extend(new);
        if !in_order {
            v.sort_unstable();
        }
        if let Some(m) = max.or(v.last().map(|p| p.0)) {
            let floor = m
                .checked_sub(SignedDuration::try_from(overlap).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MIN);
            let keep = v.partition_point(|p| p.0 < floor);
            v.drain(..keep);
        }
        if v.len() > RECENT_ROWS_CAP {
            let extra = v.len() - RECENT_ROWS_CAP;
            v.drain(..extra);
        }
    }

    /// Did a recent window pull receive, for each of `keys`, a row at exactly `at`? (False
    /// without keys: a row of another transaction may share the instant.)
    pub(super) fn received(&self, at: Timestamp, keys: &[shirase_proto::AtenaNo]) -> bool {
        !keys.is_empty()
            && keys.iter().all(|k| {
                self.recent_keys
                    .binary_search(&(at, key_hash(k.as_str())))
                    .is_ok()
            })
    }
}

/// A 64-bit hash of an addressee number (remembered instead of the number: 8 bytes, and no
/// personal identifier kept in memory longer than the pull).
pub(super) fn key_hash(k: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

/// Keep only about the newest `cap` of `times` once they exceed `2 × cap` (a sweep over a
/// day's backlog must not hold them all; the newest is always kept).
pub(super) fn keep_newest<T: Ord>(times: &mut Vec<T>, cap: usize) {
    if times.len() > 2 * cap {
        times.sort_unstable();
        let extra = times.len() - cap;
        times.drain(..extra);
    }
}

/// Sequences `lo..=hi` of an interface's notices, missing since `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Suspect {
    pub(super) lo: u64,
    pub(super) hi: u64,
    pub(super) since: Timestamp,
}

/// Suspected gaps kept per interface; beyond it they merge into one.
pub(super) const MAX_SUSPECTS: usize = 64;

/// Every interface's state of one worker.
#[derive(Debug, Default)]
pub(super) struct States(Mutex<BTreeMap<InterfaceId, IfaceState>>);

impl States {
    /// Run `f` on `iface`'s state (created empty on first use) under the lock.
    pub(super) fn with<R>(&self, iface: &InterfaceId, f: impl FnOnce(&mut IfaceState) -> R) -> R {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(*iface).or_default())
    }

    /// Confirm every interface's suspects missing for `grace` at `now`: the interfaces with
    /// a confirmed gap and how many sequences it holds, and when the next suspect is due.
    pub(super) fn confirm_gaps(
        &self,
        now: Timestamp,
        grace: Duration,
    ) -> (Vec<(InterfaceId, u64)>, Option<Timestamp>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let confirmed = all
            .iter_mut()
            .filter_map(|(i, s)| Some((*i, s.confirm_gaps(now, grace))).filter(|(_, n)| *n > 0))
            .collect();
        let next = all.values().filter_map(|s| s.next_gap_due(grace)).min();
        (confirmed, next)
    }

    /// Interfaces whose notices showed a sequence gap since the last call.
    pub(super) fn take_gaps(&self) -> Vec<InterfaceId> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter_mut()
            .filter(|(_, s)| s.gapped)
            .map(|(i, s)| {
                s.gapped = false;
                *i
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn another_version_is_logged_once_per_version() {
        let mut s = IfaceState::default();
        assert!(s.first_other_version("2.0"));
        assert!(!s.first_other_version("2.0"));
        assert!(s.first_other_version("2.1"));
    }

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn sequences_count_the_missing_ones_across_batches() {
        let mut s = IfaceState::default();
        assert_eq!(s.observe_sequences(vec![3, 1, 2, 2], true, ts(0)), 0);
        assert_eq!(s.last_seq, Some(3));
        assert_eq!(
            s.observe_sequences(vec![7, 5], true, ts(0)),
            2,
            "4 and 6 are missing"
        );
        assert_eq!(s.last_seq, Some(7));
        assert!(!s.gapped, "suspected, not confirmed");
        assert_eq!(
            s.observe_sequences(vec![2], true, ts(1)),
            0,
            "an old sequence is no gap"
        );
        assert_eq!(s.last_seq, Some(7));
        assert_eq!(s.next_gap_due(GRACE), Some(ts(10)));
        assert_eq!(s.confirm_gaps(ts(9), GRACE), 0);
        assert!(!s.gapped);
        assert_eq!(s.confirm_gaps(ts(10), GRACE), 2);
        assert!(s.gapped);
        assert_eq!(s.next_gap_due(GRACE), None);
    }

    #[test]
    fn a_sequence_arriving_within_the_grace_is_no_gap() {
        let mut s = IfaceState::default();
        // The provider re-sent 3 and 4 after 5.
        assert_eq!(s.observe_sequences(vec![1, 2, 5], true, ts(0)), 2);
        assert_eq!(s.observe_sequences(vec![4], true, ts(3)), 0);
        assert_eq!(
            s.suspects,
            [Suspect {
                lo: 3,
                hi: 3,
                since: ts(0)
            }]
        );
        assert_eq!(s.observe_sequences(vec![3], true, ts(4)), 0);
        assert!(s.suspects.is_empty());
        assert_eq!(s.confirm_gaps(ts(60), GRACE), 0);
        assert!(!s.gapped);
        // One arriving inside a range splits it; the rest is confirmed once due.
        assert_eq!(s.observe_sequences(vec![10], true, ts(30)), 4, "6 to 9");
        assert_eq!(s.observe_sequences(vec![7], true, ts(31)), 0);
        assert_eq!(
            s.suspects.iter().map(|r| (r.lo, r.hi)).collect::<Vec<_>>(),
            [(6, 6), (8, 9)]
        );
        assert_eq!(s.confirm_gaps(ts(39), GRACE), 0);
        assert_eq!(s.confirm_gaps(ts(40), GRACE), 3);
        assert!(s.gapped);
    }

    #[test]
    fn beyond_the_cap_suspects_merge_into_one_dated_by_the_oldest() {
        let mut s = IfaceState::default();
        s.observe_sequences(vec![1], true, ts(0));
        for k in 0..=MAX_SUSPECTS as u64 {
            s.observe_sequences(vec![3 + 2 * k], true, ts(k as i64));
        }
        assert_eq!(
            s.suspects,
            [Suspect {
                lo: 2,
                hi: 2 + 2 * MAX_SUSPECTS as u64,
                since: ts(0)
            }]
        );
    }

    #[test]
    fn a_batch_after_deliveries_to_another_replica_counts_no_gap() {
        let mut d = Deliveries::default();
        // The first batch: nothing known before it.
        assert!(d.follow(&[1, 2, 3]));
        assert!(d.follow(&[4, 5]));
        // 6 and 7 went to another replica: whatever sequences they held are not missing.
        assert!(!d.follow(&[8, 9]));
        // Holes inside a batch: the same.
        assert!(!d.follow(&[10, 12]));
        assert!(d.follow(&[13]));
        assert!(d.whole());
        // The consumer was created anew: its deliveries count from 1 again.
        assert!(d.follow(&[1, 2]));
        assert!(d.follow(&[3]));
        assert!(!d.follow(&[5]));
        assert!(!d.whole());
        let mut s = IfaceState::default();
        assert_eq!(s.observe_sequences(vec![1, 2], true, ts(0)), 0);
        assert_eq!(
            s.observe_sequences(vec![5, 6], false, ts(0)),
            0,
            "3 and 4 may be elsewhere"
        );
        assert!(!s.gapped);
        assert_eq!(s.last_seq, Some(6));
        assert_eq!(s.observe_sequences(vec![8], true, ts(0)), 1, "7 is missing");
        // A batch after a hole with no first delivery (only redeliveries, or none of this
        // interface): the other replica may have taken any sequence, so the next whole batch
        // has nothing to compare with (seen in a fault soak: 9 → 13 counted 3 missing that
        // the other replica had).
        assert_eq!(s.observe_sequences(vec![], false, ts(0)), 0);
        assert_eq!(s.last_seq, None);
        assert_eq!(s.observe_sequences(vec![13], true, ts(0)), 0);
        assert_eq!(
            s.observe_sequences(vec![14, 16], true, ts(0)),
            1,
            "15 is missing"
        );
        // After a hole, the batch's own highest is the base, not an older higher one.
        assert_eq!(s.observe_sequences(vec![20], false, ts(0)), 0);
        assert_eq!(s.last_seq, Some(20));
    }

    #[test]
    fn gaps_are_taken_once() {
        let states = States::default();
        let a: InterfaceId = "001o05-00".parse().unwrap();
        let b: InterfaceId = "001o06-00".parse().unwrap();
        states.with(&a, |s| s.observe_sequences(vec![1, 3], true, ts(0)));
        states.with(&b, |s| s.observe_sequences(vec![1, 2], true, ts(0)));
        assert!(states.take_gaps().is_empty(), "suspected only");
        assert_eq!(states.confirm_gaps(ts(5), GRACE), (vec![], Some(ts(10))));
        assert_eq!(states.confirm_gaps(ts(10), GRACE), (vec![(a, 1)], None));
        assert_eq!(states.take_gaps(), vec![a]);
        assert!(states.take_gaps().is_empty());
    }

    #[test]
    fn remembered_rows_stay_sorted_and_within_the_overlap() {
        let mut s = IfaceState::default();
        s.remember_rows(vec![ts(100), ts(50)], None, Duration::from_secs(60));
        assert_eq!(s.recent_rows, vec![ts(50), ts(100)]);
        s.remember_rows(
            vec![ts(30), ts(200)],
            Some(ts(200)),
            Duration::from_secs(60),
        );
        assert_eq!(
            s.recent_rows,
            vec![ts(200)],
            "below 200 - 60 s is forgotten"
        );
    }

    #[test]
    fn received_rows_are_remembered_by_timestamp_and_key() {
        let mut s = IfaceState::default();
        let a: shirase_proto::AtenaNo = "000000000000001".parse().unwrap();
        let b: shirase_proto::AtenaNo = "000000000000002".parse().unwrap();
        s.remember_keys(
            vec![(ts(100), key_hash("000000000000001")), (ts(30), 7)],
            Some(ts(100)),
            Duration::from_secs(60),
        );
        assert_eq!(s.recent_keys.len(), 1, "below 100 - 60 s is forgotten");
        assert!(s.received(ts(100), &[a]));
        assert!(!s.received(ts(100), &[a, b]), "every key");
        assert!(!s.received(ts(101), &[a]), "exactly that instant");
        assert!(!s.received(ts(100), &[]), "a notice without keys");
    }

    #[test]
    fn keep_newest_drops_the_oldest_beyond_twice_the_cap() {
        let mut t: Vec<_> = (0..5).rev().map(ts).collect();
        keep_newest(&mut t, 3);
        assert_eq!(t.len(), 5, "at most 2 × cap: untouched");
        let mut t: Vec<_> = (0..7).rev().map(ts).collect();
        keep_newest(&mut t, 3);
        assert_eq!(t, vec![ts(4), ts(5), ts(6)]);
    }
}
