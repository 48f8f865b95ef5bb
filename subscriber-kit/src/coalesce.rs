//! Coalescing: the notices of one fetched batch that concern one interface become one plan —
//! at most one PULL request (before bisection) however many notices there are.
//!
//! Rules (differential fetch by update date/time FROM–TO, データ連携WT 1.2.8):
//! - `delete` notices become tombstones: a pull cannot return a deleted row.
//! - The notices say what a pull must cover. A provider sends a notice after its commit, so a
//!   notice JetStream stored *before* a window pull started names a row that pull saw if its
//!   `updated_at` lies inside the pull's window. The stored checkpoint remembers the window
//!   pull that produced it ([`LastRead`]: when it started, its FROM). A fresh notice whose
//!   `updated_at` is at or below the checkpoint is therefore already covered only if it lies
//!   at or above that pull's FROM and was stored more than [`CLOCK_SKEW_MARGIN`] before the
//!   pull started ([`already_read`]). Otherwise (stored after the pull started: a long
//!   transaction whose row carries the timestamp of its start but became visible only at its
//!   commit; below the pull's FROM; or a checkpoint that does not say, e.g. written by an
//!   older agent or by an operator's resync) it gets a **narrow pull** ([`NarrowPull`]) for
//!   exactly those notices: their addressee numbers when keyed pulls are allowed and every
//!   such notice names its keys, else `[updated_at, updated_at + 1 µs)` per distinct
//!   timestamp (adjacent ones merged, at most [`MAX_NARROW_WINDOWS`] requests). A narrow pull
//!   never moves the checkpoint.
//! - The rest share one pull. A window pull asks `[FROM, TO)` with FROM = just past the
//!   checkpoint when the checkpoint says which window pull stored it (that pull received every
//!   row at the checkpoint's instant committed before it started; a row committed later at
//!   that instant has a notice stored after the pull started, which asks for it by a narrow
//!   pull: re-reading the checkpoint's rows on every pull would read each changed row about
//!   twice when notices come one by one), the checkpoint itself (inclusive: windows chain
//!   without holes) when it does not, or, when replayed notices are involved
//!   (an operator's replay, a sweep), min(checkpoint, oldest replayed notice) − overlap, or,
//!   without a checkpoint, oldest notice − overlap. A notice-triggered pull never re-reads
//!   below the checkpoint blindly: the notices of late rows ask for them. TO = now (or just
//!   past the newest notice if the provider's clock runs ahead of ours) when the consumer is
//!   drained, but just past the newest notice in hand when more notices are pending: rows
//!   beyond what this batch knows about are left to the next batch, whose notices say where
//!   they are. A window reaching now reads rows ahead of their notices, which JetStream
//!   stores after the pull started; such a notice is still already covered when the agent
//!   remembers receiving a row of each of its keys at exactly its `updated_at`
//!   (`PlanInput::received`). A replayed notice (operator replay) is never "already
//!   covered": the operator asked for that range again.
//! - A window that would hold more than the provider's row threshold is cut before the first
//!   request ([`cut_windows`]) at notice timestamps (and at the timestamps of rows already
//!   received in the overlap), so that each piece holds at most `max_notices_per_window`
//!   notices. The pieces tile `[FROM, TO)` without holes. Bisection ([`split_point`]) stays
//!   the fallback when a piece still draws `E0004` or a bare 503.
//! - A keyed pull (addressee numbers) replaces the window when the interface allows it, every
//!   notice in the pull names its keys, the distinct keys are at most `keyed_pull_max_keys`,
//!   no sequence gap was seen and no replay is involved. A keyed pull sees only those keys, so
//!   it never moves the checkpoint.
//!
//! Everything here is pure and deterministic (the caller passes `now`).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use shirase_proto::{AtenaNo, ChangeKind};

/// Clock-skew margin between JetStream's clock (when a notice was stored) and the agent's
/// (when a pull started): a notice counts as stored before a pull only if it was stored at
/// least this long before the pull's start by the agent's clock. Servers and agents keep
/// their clocks by NTP (well under a second apart); a notice stored within the margin merely
/// costs a narrow pull.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(2);

/// Most requests of one narrow window pull: beyond it the narrow windows of one batch are
/// merged across their smallest gaps (a redelivered batch of notices must not cost one
/// request each).
pub const MAX_NARROW_WINDOWS: usize = 16;

/// The window pull that produced the stored checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRead {
    /// When it started: the agent's wall clock, taken before its first request.
    pub at: Timestamp,
    /// Its FROM (inclusive).
    pub from: Timestamp,
}

/// What the planner needs to know of one notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    /// DB update timestamp of the change.
    pub updated_at: Timestamp,
    /// Kind of change.
    pub change: ChangeKind,
    /// Addressee numbers named by the notice (may be empty).
    pub keys: Vec<AtenaNo>,
    /// Came from the subscriber's replay subject.
    pub replay: bool,
    /// When JetStream stored the notice (the server's clock); `None` when unknown (a sweep's
    /// synthetic notice).
    pub published: Option<Timestamp>,
    /// A recent window pull already received a row of each of its keys at exactly its
    /// `updated_at` (it read the change ahead of its notice).
    pub received: bool,
}

/// Settings of the planner for one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSettings {
    /// Overlap subtracted from FROM of a sweep, a replay and a first pull without checkpoint
    /// (never of a notice-triggered pull from a checkpoint).
    pub overlap: Duration,
    /// Keyed pull threshold (0 = never).
    pub keyed_pull_max_keys: usize,
    /// A sequence gap was detected for this interface: force a window pull.
    pub gap: bool,
    /// More notices are pending on the consumer beyond this batch: TO stops just past the
    /// newest notice in hand instead of reaching now.
    pub more_pending: bool,
    /// This plan is a sweep, and the rows of this span are known read (by the previous sweep,
    /// or by pulls that ran long after their rows: [`crate::read_log::ReadLog`]): FROM may
    /// start at [`sweep_from`] instead of the overlap below the checkpoint. `None` for
    /// everything else (notices, an operator's replay) and when nothing is known.
    pub read_through: Option<ReadThrough>,
}

/// Every row with an update timestamp in `[from, through]` (both inclusive) has been read and
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadThrough {
    /// Lowest timestamp.
    pub from: Timestamp,
    /// Highest timestamp.
    pub through: Timestamp,
}

impl ReadThrough {
    /// What a sweep that started at `at` with FROM `from` and delivered its whole window proves
    /// read: every row above `from` visible at `at`, which under the overlap rule is every row
    /// before `at − overlap`.
    pub fn swept(from: Timestamp, at: Timestamp, overlap: Duration) -> ReadThrough {
        let through = minus(at, overlap);
        ReadThrough {
            from,
            through: through
                .checked_sub(SignedDuration::from_micros(1))
                .unwrap_or(through),
        }
    }
}

/// The request part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullKind {
    /// Differential pull `[from, to)`.
    Window {
        /// Inclusive lower bound.
        from: Timestamp,
        /// Exclusive upper bound.
        to: Timestamp,
    },
    /// Pull by addressee numbers, narrowed to `updated_at >= from`.
    Keyed {
        /// Inclusive lower bound.
        from: Timestamp,
        /// Distinct keys, sorted.
        keys: Vec<AtenaNo>,
    },
}

/// The request of a narrow pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NarrowKind {
    /// Pull by addressee numbers, narrowed to `updated_at >= from`.
    Keyed {
        /// Inclusive lower bound: the oldest notice's timestamp.
        from: Timestamp,
        /// Distinct keys, sorted.
        keys: Vec<AtenaNo>,
    },
    /// Minimal windows `[from, to)` around the notices' timestamps, in time order.
    Windows(Vec<(Timestamp, Timestamp)>),
}

/// A narrow pull: the rows of notices at or below the checkpoint that the pull behind the
/// checkpoint may have missed. It never moves the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarrowPull {
    /// What to ask.
    pub kind: NarrowKind,
    /// Indices of the notices it must cover.
    pub covers: Vec<usize>,
}

/// One planned request and the notices (indices into the input) it must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPull {
    /// What to ask.
    pub kind: PullKind,
    /// Indices of the notices this pull must cover.
    pub covers: Vec<usize>,
}

/// The plan for one interface of one batch. Every input index appears in exactly one of
/// `tombstones`, `already_covered`, `narrow.covers` or `pull.covers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// `delete` notices: deliver tombstones.
    pub tombstones: Vec<usize>,
    /// Notices covered by the window pull behind the stored checkpoint.
    pub already_covered: Vec<usize>,
    /// The request, if any notice needs one.
    pub pull: Option<PlannedPull>,
    /// The narrow pull for notices at or below the checkpoint that are not already covered.
    pub narrow: Option<NarrowPull>,
    /// With replayed notices (a sweep, an operator's replay): the FROM of the blind overlap
    /// re-read, before [`sweep_from`] raised it. A sweep that reads its whole window records
    /// it as the FROM of its span ([`ReadThrough::swept`]): every row above it that became
    /// visible before the sweep started has been read, by this sweep or by the pulls whose
    /// span raised its FROM.
    pub blind_from: Option<Timestamp>,
}

/// `t − d`, saturating at the earliest timestamp.
pub fn minus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// `t + 1 µs` (the provider's precision), saturating.
pub(crate) fn plus_micro(t: Timestamp) -> Timestamp {
    t.checked_add(SignedDuration::from_micros(1)).unwrap_or(t)
}

/// Was the fresh notice `n`, at or below `checkpoint`, read by the window pull behind it
/// (`last`)? Only if it lies at or above that pull's FROM and JetStream stored it at least
/// [`CLOCK_SKEW_MARGIN`] before the pull started: its row was committed before the notice was
/// sent, so before the pull read the provider. Without `last` (an older agent's or an
/// operator's checkpoint) or without a publish time, nothing is known to be read.
/// A notice whose rows a recent window pull received (`received`) is read as well, whenever it
/// was stored.
pub fn already_read(n: &PlanInput, checkpoint: Timestamp, last: Option<LastRead>) -> bool {
    !n.replay
        && n.updated_at <= checkpoint
        && (n.received
            || last.is_some_and(|r| {
                r.from <= n.updated_at
                    && n.published
                        .is_some_and(|p| p < minus(r.at, CLOCK_SKEW_MARGIN))
            }))
}

/// Plan the pull of one interface's notices from a checkpoint that does not say which pull
/// stored it: [`plan_read`] without [`LastRead`] (every notice at or below the checkpoint gets
/// a narrow pull).
pub fn plan(
    notices: &[PlanInput],
    checkpoint: Option<Timestamp>,
    now: Timestamp,
    s: PlanSettings,
) -> Plan {
    plan_read(notices, checkpoint, None, now, s)
}

/// Plan the pulls of one interface's notices from the stored `checkpoint` and the window pull
/// that stored it (`last`).
pub fn plan_read(
    notices: &[PlanInput],
    checkpoint: Option<Timestamp>,
    last: Option<LastRead>,
    now: Timestamp,
    s: PlanSettings,
) -> Plan {
    let mut p = Plan::default();
    let mut need: Vec<usize> = Vec::new();
    let mut narrow: Vec<usize> = Vec::new();
    for (i, n) in notices.iter().enumerate() {
        if n.change == ChangeKind::Delete {
            p.tombstones.push(i);
        } else if n.replay {
            need.push(i);
        } else if let Some(c) = checkpoint.filter(|c| n.updated_at <= *c) {
            if already_read(n, c, last) {
                p.already_covered.push(i);
            } else {
                narrow.push(i);
            }
        } else {
            need.push(i);
        }
    }
    p.narrow = narrow_pull(notices, narrow, s.keyed_pull_max_keys);
    if need.is_empty() {
        return p;
    }
    let oldest = need
        .iter()
        .map(|&i| notices[i].updated_at)
        .min()
        .unwrap_or(now);
    let newest = need
        .iter()
        .map(|&i| notices[i].updated_at)
        .max()
        .unwrap_or(now);
    let oldest_replay = need
        .iter()
        .filter(|&&i| notices[i].replay)
        .map(|&i| notices[i].updated_at)
        .min();
    // The overlap only where no notice says what to read: a sweep or replay, a first pull.
    let overlap = if checkpoint.is_none() || oldest_replay.is_some() {
        s.overlap
    } else {
        Duration::ZERO
    };
    let from = match (checkpoint, oldest_replay) {
        (Some(c), Some(r)) => {
            let blind = minus(c.min(r), overlap);
            p.blind_from = Some(blind);
            // Not above the checkpoint, nor at it unless the pull behind it read its instant.
            let ceiling = if r >= c && last.is_some() {
                plus_micro(c)
            } else {
                c.min(r)
            };
            sweep_from(blind, ceiling, s.read_through)
        }
        // The pull behind the checkpoint read its instant (see the module's rules).
        (Some(c), None) if last.is_some() => plus_micro(c),
        (Some(c), None) => c,
        (None, _) => {
            let blind = minus(oldest, overlap);
            p.blind_from = oldest_replay.map(|_| blind);
            blind
        }
    };
    let keys: BTreeSet<AtenaNo> = need
        .iter()
        .flat_map(|&i| notices[i].keys.iter().copied())
        .collect();
    let keyed = s.keyed_pull_max_keys > 0
        && !s.gap
        && oldest_replay.is_none()
        && need.iter().all(|&i| !notices[i].keys.is_empty())
        && keys.len() <= s.keyed_pull_max_keys;
    let kind = if keyed {
        PullKind::Keyed {
            from: minus(oldest, overlap),
            keys: keys.into_iter().collect(),
        }
    } else {
        // TO is exclusive: it must lie past the newest notice even if our clock is behind the
        // provider's, or that notice could never be covered.
        let past_newest = plus_micro(newest);
        let to = if s.more_pending {
            past_newest
        } else {
            now.max(past_newest)
        };
        PullKind::Window { from, to }
    };
    p.pull = Some(PlannedPull { kind, covers: need });
    p
}

/// FROM of a sweep whose blind FROM is `blind` (the overlap below the checkpoint), given a
/// span of rows known read (`read`). The sweep exists for changes whose notices never came,
/// on the rule that a row becomes visible at most `overlap` after its update timestamp. When
/// the span reaches down to `blind`, the sweep can skip it: while the checkpoint stands still
/// (a quiet night after a batch), successive sweeps no longer read the same overlap again
/// ([`ReadThrough::swept`]), and after pulls that ran long after their rows (the backlog of the
/// maintenance window) the first sweep does not read them again either.
///
/// It never starts above `ceiling`: the checkpoint (just past it when the pull behind it read
/// its instant). Rows above the checkpoint may have been read, but an operator who rewound the
/// checkpoint there (a resync) wants every one of them delivered again, and a span cannot tell
/// whether a rewind came after it. In the usual case that costs nothing: the pulls moved the
/// checkpoint past what they read. A checkpoint rewound below the span gets the whole overlap.
pub fn sweep_from(blind: Timestamp, ceiling: Timestamp, read: Option<ReadThrough>) -> Timestamp {
    match read {
        Some(r) if r.from <= blind => blind.max(plus_micro(r.through).min(ceiling)),
        _ => blind,
    }
}

/// The narrow pull of the notices `idx`: keyed when allowed (`keyed_pull_max_keys`) and every
/// one names its keys, else [`narrow_windows`].
fn narrow_pull(
    notices: &[PlanInput],
    idx: Vec<usize>,
    keyed_pull_max_keys: usize,
) -> Option<NarrowPull> {
    let oldest = idx.iter().map(|&i| notices[i].updated_at).min()?;
    let keys: BTreeSet<AtenaNo> = idx
        .iter()
        .flat_map(|&i| notices[i].keys.iter().copied())
        .collect();
    let keyed = keyed_pull_max_keys > 0
        && idx.iter().all(|&i| !notices[i].keys.is_empty())
        && keys.len() <= keyed_pull_max_keys;
    let kind = if keyed {
        NarrowKind::Keyed {
            from: oldest,
            keys: keys.into_iter().collect(),
        }
    } else {
        let times: Vec<Timestamp> = idx.iter().map(|&i| notices[i].updated_at).collect();
        NarrowKind::Windows(narrow_windows(&times, MAX_NARROW_WINDOWS))
    };
    Some(NarrowPull { kind, covers: idx })
}

/// The minimal windows around `times`: `[t, t + 1 µs)` per distinct timestamp (the provider's
/// precision), adjacent ones merged, sorted. Beyond `max` windows, the ones separated by the
/// smallest gaps are merged, so that at most `max` remain (`max` 0 counts as 1).
pub fn narrow_windows(times: &[Timestamp], max: usize) -> Vec<(Timestamp, Timestamp)> {
    let mut ts = times.to_vec();
    ts.sort_unstable();
    ts.dedup();
    let mut w: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(ts.len());
    for t in ts {
        match w.last_mut() {
            Some(last) if last.1 >= t => last.1 = last.1.max(plus_micro(t)),
            _ => w.push((t, plus_micro(t))),
        }
    }
    let max = max.max(1);
    if w.len() <= max {
        return w;
    }
    // Keep the max − 1 largest gaps as boundaries (ties: the earlier gap).
    let mut gaps: Vec<(SignedDuration, usize)> = w
        .windows(2)
        .enumerate()
        .map(|(i, p)| (p[1].0.duration_since(p[0].1), i))
        .collect();
    gaps.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut cut: Vec<usize> = gaps.iter().take(max - 1).map(|g| g.1).collect();
    cut.sort_unstable();
    let mut out = Vec::with_capacity(max);
    let mut start = 0;
    for c in cut.into_iter().chain(std::iter::once(w.len() - 1)) {
        out.push((w[start].0, w[c].1));
        start = c + 1;
    }
    out
}

/// Cut `[from, to)` into consecutive windows `[b0, b1), [b1, b2), …` (b0 = `from`, last =
/// `to`) so that each holds at most `budget` rows by estimate. `points` are sorted
/// `(timestamp, rows)` pairs: a notice weighs the rows one change can produce (its new row
/// plus the previous latest row it demotes, so 2), a row already received in an earlier pull
/// (the overlap re-read) weighs 1. Cuts fall only on a point's timestamp, so the points of one
/// instant stay together (a piece may exceed the budget only when one instant alone does, or
/// by at most a tenth of it when a small remainder joins the last piece).
/// Points outside `[from, to)` are ignored.
pub fn cut_windows(
    from: Timestamp,
    to: Timestamp,
    points: &[(Timestamp, u64)],
    budget: u64,
) -> Vec<(Timestamp, Timestamp)> {
    let mut out = Vec::new();
    if from >= to {
        return vec![(from, to)];
    }
    let lo = points.partition_point(|p| p.0 < from);
    let hi = points.partition_point(|p| p.0 < to);
    let mut start = from;
    let mut acc = 0u64;
    let mut i = lo;
    while i < hi {
        let t = points[i].0;
        let mut group = 0u64;
        while i < hi && points[i].0 == t {
            group = group.saturating_add(points[i].1);
            i += 1;
        }
        if acc > 0 && acc.saturating_add(group) > budget && t > start {
            out.push((start, t));
            start = t;
            acc = 0;
        }
        acc = acc.saturating_add(group);
    }
    // A last piece of at most a tenth of the budget joins the previous one rather than cost a
    // request of its own (typically the row at the checkpoint, re-read by FROM, tipping the
    // count by one). The estimate counts 2 rows per notice while most changes bring about
    // 1.05, so 10 % slack stays under the provider's threshold; bisection catches the rest.
    match out.last_mut() {
        Some(last) if acc <= budget / 10 => last.1 = to,
        _ => out.push((start, to)),
    }
    out
}

/// Where to split `[from, to)` after E0004 or a bare 503: the median of the known notice
/// timestamps strictly inside the window (`hints`, sorted), because rows crowd where the
/// changes were; without such hints, the midpoint ([`bisect`]). Halving time alone resolves a
/// burst of changes committed within milliseconds only after ~20 levels of a 10-minute window;
/// the notices say where the rows are.
pub fn split_point(from: Timestamp, to: Timestamp, hints: &[Timestamp]) -> Option<Timestamp> {
    let lo = hints.partition_point(|h| *h <= from);
    let hi = hints.partition_point(|h| *h < to);
    if hi > lo {
        let inside = &hints[lo..hi];
        let m = inside[inside.len() / 2];
        if m > from && m < to {
            return Some(m);
        }
    }
    bisect(from, to)
}

/// How long to hold an interface's notices under its `min_interval` before pulling them:
/// until the oldest of them (stored by JetStream at `oldest_stored`) is `min_interval` old, so
/// all that arrive meanwhile share one pull. `None`: pull now. Every notice is then pulled at
/// most `min_interval` after it was stored, and consecutive pulls lie at least that far apart
/// (a pull takes every notice stored before it; the next waits for a notice stored after it).
/// For a freshness bound B that is the fewest pulls possible: pulling exactly when the oldest
/// unread change reaches age B.
pub fn hold_for(
    oldest_stored: Timestamp,
    now: Timestamp,
    min_interval: Duration,
) -> Option<Duration> {
    let age = now.duration_since(oldest_stored);
    let min = SignedDuration::try_from(min_interval).unwrap_or(SignedDuration::MAX);
    (age < min)
        .then(|| Duration::try_from(min - age.max(SignedDuration::ZERO)).ok())
        .flatten()
        .filter(|d| !d.is_zero())
}

/// The midpoint of `[from, to)` for bisection, or `None` when the window is too narrow to
/// split (under 2 µs; the provider's timestamps have microsecond precision).
pub fn bisect(from: Timestamp, to: Timestamp) -> Option<Timestamp> {
    let span = to.duration_since(from);
    if span < SignedDuration::from_micros(2) {
        return None;
    }
    let half = SignedDuration::from_nanos_i128(span.as_nanos() / 2);
    // Round to whole microseconds so the query string stays in the provider's precision.
    let mid = from.checked_add(half).ok()?;
    let micros = mid.as_microsecond();
    let mid = Timestamp::from_microsecond(micros).ok()?;
    (mid > from && mid < to).then_some(mid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }
    fn n(s: i64) -> PlanInput {
        PlanInput {
            updated_at: ts(s),
            change: ChangeKind::Update,
            keys: vec![],
            replay: false,
            published: None,
            received: false,
        }
    }
    /// A notice at `ts(s)` stored by JetStream at `ts(p)`.
    fn np(s: i64, p: i64) -> PlanInput {
        PlanInput {
            published: Some(ts(p)),
            ..n(s)
        }
    }
    fn us(t: Timestamp, micros: i64) -> Timestamp {
        Timestamp::from_microsecond(t.as_microsecond() + micros).unwrap()
    }
    fn key(k: u64) -> AtenaNo {
        format!("{k:015}").parse().unwrap()
    }
    const S: PlanSettings = PlanSettings {
        overlap: Duration::from_secs(600),
        keyed_pull_max_keys: 0,
        gap: false,
        more_pending: false,
        read_through: None,
    };

    #[test]
    fn min_interval_holds_until_the_oldest_notice_is_that_old() {
        let m = Duration::from_secs(60);
        assert_eq!(hold_for(ts(100), ts(100), m), Some(m));
        assert_eq!(hold_for(ts(100), ts(130), m), Some(Duration::from_secs(30)));
        assert_eq!(hold_for(ts(100), ts(160), m), None, "old enough: pull");
        assert_eq!(hold_for(ts(100), ts(500), m), None);
        // A notice stored by a server clock ahead of ours is held for the whole interval.
        assert_eq!(hold_for(ts(110), ts(100), m), Some(m));
    }

    #[test]
    fn from_lies_just_past_a_checkpoint_whose_pull_is_known() {
        // The pull behind checkpoint 900 started at 950: it read the rows at 900, so the next
        // window starts 1 µs later and re-reads none of them.
        let last = Some(LastRead {
            at: ts(950),
            from: ts(800),
        });
        let p = plan_read(&[np(1000, 1000)], Some(ts(900)), last, ts(2000), S);
        assert_eq!(
            p.pull.unwrap().kind,
            PullKind::Window {
                from: us(ts(900), 1),
                to: ts(2000)
            }
        );
        // A row committed later at the checkpoint's instant: its notice asks for it.
        let p = plan_read(&[np(900, 960)], Some(ts(900)), last, ts(2000), S);
        assert_eq!(p.pull, None);
        assert_eq!(
            p.narrow.unwrap().kind,
            NarrowKind::Windows(vec![(ts(900), us(ts(900), 1))])
        );
    }

    #[test]
    fn many_notices_one_window_from_the_checkpoint() {
        let notices: Vec<_> = (0..500).map(|i| n(1000 + i)).collect();
        let p = plan(&notices, Some(ts(900)), ts(2000), S);
        let pull = p.pull.unwrap();
        // No blind overlap re-read below the checkpoint.
        assert_eq!(
            pull.kind,
            PullKind::Window {
                from: ts(900),
                to: ts(2000)
            }
        );
        assert_eq!(pull.covers.len(), 500);
        assert!(p.tombstones.is_empty() && p.already_covered.is_empty() && p.narrow.is_none());
    }

    const READ: Option<LastRead> = None;
    fn read(at: i64, from: i64) -> Option<LastRead> {
        Some(LastRead {
            at: ts(at),
            from: ts(from),
        })
    }

    #[test]
    fn a_notice_stored_before_the_pull_behind_the_checkpoint_is_covered() {
        // The pull [100, …) started at 300 and reached 200; the notice at 150 was stored at 250.
        let p = plan_read(&[np(150, 250)], Some(ts(200)), read(300, 100), ts(400), S);
        assert_eq!(p.already_covered, vec![0]);
        assert!(p.pull.is_none() && p.narrow.is_none());
        // At the pull's FROM and at the checkpoint itself: covered too.
        let p = plan_read(
            &[np(100, 250), np(200, 250)],
            Some(ts(200)),
            read(300, 100),
            ts(400),
            S,
        );
        assert_eq!(p.already_covered, vec![0, 1]);
    }

    #[test]
    fn a_notice_stored_after_the_pull_started_gets_a_narrow_pull() {
        // A long transaction: its row carries 150 but was committed (and announced) at 320,
        // after the pull behind the checkpoint started at 300.
        let p = plan_read(&[np(150, 320)], Some(ts(200)), read(300, 100), ts(400), S);
        assert!(p.already_covered.is_empty() && p.pull.is_none());
        assert_eq!(
            p.narrow,
            Some(NarrowPull {
                kind: NarrowKind::Windows(vec![(ts(150), us(ts(150), 1))]),
                covers: vec![0]
            })
        );
        // Within the clock-skew margin before the pull's start: narrow as well.
        let p = plan_read(&[np(150, 299)], Some(ts(200)), read(300, 100), ts(400), S);
        assert_eq!(p.narrow.map(|n| n.covers), Some(vec![0]));
    }

    #[test]
    fn a_notice_whose_rows_were_received_is_covered_whenever_it_was_stored() {
        // Read ahead: a window reaching now received its row before JetStream stored it.
        let mut ahead = np(150, 320);
        ahead.received = true;
        let p = plan_read(&[ahead], Some(ts(200)), read(300, 100), ts(400), S);
        assert_eq!(p.already_covered, vec![0]);
        assert!(p.narrow.is_none());
    }

    #[test]
    fn a_notice_below_the_pulls_from_gets_a_narrow_pull() {
        let p = plan_read(&[np(50, 250)], Some(ts(200)), read(300, 100), ts(400), S);
        assert!(p.already_covered.is_empty());
        assert_eq!(p.narrow.map(|n| n.covers), Some(vec![0]));
    }

    #[test]
    fn a_checkpoint_without_its_pull_covers_nothing() {
        // An older agent's record, or an operator's resync: no read_at.
        let p = plan_read(&[np(150, 250)], Some(ts(200)), READ, ts(400), S);
        assert!(p.already_covered.is_empty());
        assert_eq!(p.narrow.map(|n| n.covers), Some(vec![0]));
        // A notice without a publish time (none in practice) neither.
        let p = plan_read(&[n(150)], Some(ts(200)), read(300, 100), ts(400), S);
        assert_eq!(p.narrow.map(|n| n.covers), Some(vec![0]));
    }

    #[test]
    fn narrow_and_window_pulls_share_a_batch() {
        let s = PlanSettings {
            keyed_pull_max_keys: 3,
            ..S
        };
        let mut late = np(150, 320);
        late.keys = vec![key(7)];
        let mut fresh = np(250, 320);
        fresh.keys = vec![key(8)];
        let p = plan_read(
            &[late.clone(), fresh, np(120, 250)],
            Some(ts(200)),
            read(300, 100),
            ts(400),
            s,
        );
        assert_eq!(p.already_covered, vec![2]);
        assert_eq!(
            p.narrow,
            Some(NarrowPull {
                kind: NarrowKind::Keyed {
                    from: ts(150),
                    keys: vec![key(7)]
                },
                covers: vec![0]
            })
        );
        assert_eq!(
            p.pull,
            Some(PlannedPull {
                kind: PullKind::Keyed {
                    from: ts(250),
                    keys: vec![key(8)]
                },
                covers: vec![1]
            })
        );
        // A narrow notice without keys: windows.
        let p = plan_read(
            &[late, np(160, 320)],
            Some(ts(200)),
            read(300, 100),
            ts(400),
            s,
        );
        assert_eq!(
            p.narrow.unwrap().kind,
            NarrowKind::Windows(vec![(ts(150), us(ts(150), 1)), (ts(160), us(ts(160), 1))])
        );
    }

    #[test]
    fn narrow_windows_merge_adjacent_and_stay_few() {
        let t = ts(0);
        assert_eq!(
            narrow_windows(&[us(t, 1), t, us(t, 1), us(t, 5)], 16),
            vec![(t, us(t, 2)), (us(t, 5), us(t, 6))]
        );
        // 5 windows, at most 3: the two largest gaps (after 10 and after 40) stay.
        let times = [0, 10, 30, 31, 40].map(ts);
        assert_eq!(
            narrow_windows(&times, 3),
            vec![
                (ts(0), us(ts(0), 1)),
                (ts(10), us(ts(10), 1)),
                (ts(30), us(ts(40), 1))
            ]
        );
        assert_eq!(narrow_windows(&times, 1), vec![(ts(0), us(ts(40), 1))]);
    }

    #[test]
    fn without_checkpoint_from_is_oldest_notice_minus_overlap() {
        let p = plan(&[n(50), n(10), n(30)], None, ts(100), S);
        assert_eq!(
            p.pull.unwrap().kind,
            PullKind::Window {
                from: ts(10 - 600),
                to: ts(100)
            }
        );
    }

    #[test]
    fn notices_read_behind_the_checkpoint_need_no_pull_but_replays_do() {
        let mut r = n(100);
        r.replay = true;
        let p = plan_read(
            &[np(100, 220), np(200, 220)],
            Some(ts(200)),
            read(250, 50),
            ts(300),
            S,
        );
        assert_eq!(p.already_covered, vec![0, 1]);
        assert!(p.pull.is_none() && p.narrow.is_none());
        let p = plan_read(&[np(150, 220), r], Some(ts(200)), read(250, 50), ts(300), S);
        assert_eq!(p.already_covered, vec![0]);
        // A replay re-reads the overlap below it and reaches now.
        assert_eq!(
            p.pull.unwrap().kind,
            PullKind::Window {
                from: ts(100 - 600),
                to: ts(300)
            }
        );
    }

    #[test]
    fn deletes_become_tombstones() {
        let mut d = n(10);
        d.change = ChangeKind::Delete;
        let p = plan(&[d, n(20)], None, ts(30), S);
        assert_eq!(p.tombstones, vec![0]);
        assert_eq!(p.pull.unwrap().covers, vec![1]);
    }

    #[test]
    fn to_lies_past_a_notice_from_a_clock_ahead_of_ours() {
        let p = plan(&[n(500)], None, ts(100), S);
        let PullKind::Window { to, .. } = p.pull.unwrap().kind else {
            panic!()
        };
        assert!(to > ts(500));
    }

    #[test]
    fn keyed_pull_only_when_all_notices_have_few_keys_and_no_gap() {
        let s = PlanSettings {
            keyed_pull_max_keys: 3,
            ..S
        };
        let mut a = n(10);
        a.keys = vec![key(2), key(1)];
        let mut b = n(20);
        b.keys = vec![key(1)];
        let p = plan(&[a.clone(), b.clone()], Some(ts(0)), ts(30), s);
        assert_eq!(
            p.pull.unwrap().kind,
            PullKind::Keyed {
                from: ts(10),
                keys: vec![key(1), key(2)]
            }
        );
        // A gap forces the window.
        let p = plan(
            &[a.clone(), b.clone()],
            Some(ts(0)),
            ts(30),
            PlanSettings { gap: true, ..s },
        );
        assert!(matches!(p.pull.unwrap().kind, PullKind::Window { .. }));
        // A notice without keys forces the window.
        let p = plan(&[a.clone(), n(15)], Some(ts(0)), ts(30), s);
        assert!(matches!(p.pull.unwrap().kind, PullKind::Window { .. }));
        // Too many keys.
        let mut c = n(25);
        c.keys = vec![key(3), key(4)];
        let p = plan(&[a, b, c], Some(ts(0)), ts(30), s);
        assert!(matches!(p.pull.unwrap().kind, PullKind::Window { .. }));
    }

    #[test]
    fn more_pending_stops_to_just_past_the_newest_notice() {
        let p = plan(
            &[n(10), n(20)],
            Some(ts(0)),
            ts(100),
            PlanSettings {
                more_pending: true,
                read_through: None,
                ..S
            },
        );
        let PullKind::Window { to, .. } = p.pull.unwrap().kind else {
            panic!()
        };
        assert_eq!(
            to,
            Timestamp::from_microsecond(ts(20).as_microsecond() + 1).unwrap()
        );
    }

    #[test]
    fn cut_windows_respects_the_budget_and_tiles_the_range() {
        // 1,000 notices one µs apart (2 rows each), budget 1,000 rows: 500 notices per piece.
        let base = ts(100).as_microsecond();
        let pts: Vec<_> = (0..1000)
            .map(|i| (Timestamp::from_microsecond(base + i).unwrap(), 2))
            .collect();
        let w = cut_windows(ts(0), ts(200), &pts, 1000);
        assert_eq!(
            w,
            vec![
                (ts(0), Timestamp::from_microsecond(base + 500).unwrap()),
                (Timestamp::from_microsecond(base + 500).unwrap(), ts(200))
            ]
        );
        // Points of one instant are never separated.
        let same = vec![(ts(5), 2); 10];
        assert_eq!(cut_windows(ts(0), ts(10), &same, 4), vec![(ts(0), ts(10))]);
        // Nothing known: one window.
        assert_eq!(cut_windows(ts(0), ts(10), &[], 4), vec![(ts(0), ts(10))]);
    }

    #[test]
    fn bisect_halves_and_stops_at_microseconds() {
        assert_eq!(bisect(ts(0), ts(10)), Some(ts(5)));
        let a = Timestamp::from_microsecond(1_000_000).unwrap();
        assert_eq!(
            bisect(a, Timestamp::from_microsecond(1_000_001).unwrap()),
            None
        );
        assert_eq!(
            bisect(a, Timestamp::from_microsecond(1_000_002).unwrap()),
            Some(Timestamp::from_microsecond(1_000_001).unwrap())
        );
    }

    #[test]
    fn split_point_follows_the_notices() {
        let hints = [ts(100), ts(101), ts(102), ts(103)];
        assert_eq!(split_point(ts(0), ts(1000), &hints), Some(ts(102)));
        assert_eq!(split_point(ts(0), ts(102), &hints), Some(ts(101)));
        // Only the lowest hint inside: it equals from after one split, so halve time.
        assert_eq!(
            split_point(ts(100), ts(101), &hints),
            Some(Timestamp::from_microsecond(ts(100).as_microsecond() + 500_000).unwrap())
        );
        // No notice inside (past the newest, or in the overlap before them): halve.
        assert_eq!(split_point(ts(200), ts(400), &hints), Some(ts(300)));
        // Before the notices (the overlap): halve.
        assert_eq!(split_point(ts(0), ts(100), &hints), Some(ts(50)));
    }

    /// A sweep's synthetic notice: replayed, at `now`.
    fn sweep_notice(now: i64) -> PlanInput {
        PlanInput {
            replay: true,
            ..n(now)
        }
    }

    fn window(p: &Plan) -> (Timestamp, Timestamp) {
        match p.pull.as_ref().map(|p| &p.kind) {
            Some(PullKind::Window { from, to }) => (*from, *to),
            k => panic!("expected a window pull, got {k:?}"),
        }
    }

    #[test]
    fn a_sweep_starts_where_the_previous_whole_sweep_left_off() {
        // Checkpoint still at 10,000 (a quiet night); the previous sweep started at 13,600
        // and read from 9,400 (the checkpoint − 600).
        let prev = ReadThrough::swept(ts(9_400), ts(13_600), Duration::from_secs(600));
        // TO: just past the synthetic notice at now.
        let end = us(ts(17_200), 1);
        // A sweep at 17,200 from checkpoint `cp` after `prev`.
        let plan = |cp, prev| {
            let s = PlanSettings {
                read_through: prev,
                ..S
            };
            window(&plan_read(
                &[sweep_notice(17_200)],
                Some(ts(cp)),
                None,
                ts(17_200),
                s,
            ))
        };
        // Without it: the overlap below the checkpoint, again.
        assert_eq!(plan(10_000, None), (ts(9_400), end));
        // With it: from the checkpoint (the previous sweep read the overlap below it; nothing
        // above it can be skipped, a rewind to it must be delivered again).
        assert_eq!(plan(10_000, Some(prev)), (ts(10_000), end));
        // With the record of the pull behind the checkpoint (it read the checkpoint's
        // instant): just past the checkpoint.
        let s = PlanSettings {
            read_through: Some(prev),
            ..S
        };
        let last = Some(LastRead {
            at: ts(10_050),
            from: ts(9_000),
        });
        let p = plan_read(
            &[sweep_notice(17_200)],
            Some(ts(10_000)),
            last,
            ts(17_200),
            s,
        );
        assert_eq!(window(&p), (us(ts(10_000), 1), end));
        // The checkpoint moved past the previous sweep: the overlap below the checkpoint.
        assert_eq!(plan(16_000, Some(prev)), (ts(15_400), end));
        // An operator rewound the checkpoint below the previous sweep's FROM: the whole
        // overlap below the rewound checkpoint.
        assert_eq!(plan(5_000, Some(prev)), (ts(4_400), end));
    }

    #[test]
    fn sweeps_over_a_still_checkpoint_chain_on_the_blind_from() {
        // Hourly sweeps, the checkpoint at 10,000 all along: each records the blind FROM
        // (9,400), so every sweep after the first reads from the checkpoint, not the overlap
        // below it every hour.
        let mut prev = None;
        let mut froms = vec![];
        for now in [12_000, 15_600, 19_200, 22_800] {
            let s = PlanSettings {
                read_through: prev,
                ..S
            };
            let p = plan_read(&[sweep_notice(now)], Some(ts(10_000)), None, ts(now), s);
            assert_eq!(p.blind_from, Some(ts(9_400)));
            froms.push(window(&p).0);
            prev = Some(ReadThrough::swept(
                p.blind_from.unwrap(),
                ts(now),
                S.overlap,
            ));
        }
        assert_eq!(froms, [ts(9_400), ts(10_000), ts(10_000), ts(10_000)]);
        // A notice-triggered pull has no blind FROM.
        let p = plan_read(&[n(10_500)], Some(ts(10_000)), None, ts(12_000), S);
        assert_eq!(p.blind_from, None);
    }

    #[test]
    fn sweep_from_keeps_the_blind_from_unless_the_previous_sweep_read_below_it() {
        let ov = Duration::from_secs(600);
        let prev = |at, from| Some(ReadThrough::swept(ts(from), ts(at), ov));
        // The checkpoint at 1,600: blind FROM 1,000.
        let sweep = |prev| sweep_from(ts(1_000), ts(1_600), prev);
        assert_eq!(sweep(None), ts(1_000));
        // Never above the checkpoint (a rewind to it must be delivered again)...
        assert_eq!(sweep(prev(5_000, 1_000)), ts(1_600));
        // ...and otherwise from the previous sweep's start less the overlap.
        assert_eq!(sweep(prev(2_000, 1_000)), ts(1_400));
        // A previous sweep that read from above the blind FROM (the checkpoint was rewound
        // below it since) gives the whole overlap.
        assert_eq!(sweep(prev(5_000, 1_001)), ts(1_000));
        // A previous sweep that started within the overlap of the blind FROM adds nothing.
        assert_eq!(sweep(prev(1_300, 500)), ts(1_000));
    }

    proptest! {
        /// Sweeps alone (every notice lost): each row becomes visible at most the overlap
        /// after its timestamp, the checkpoint is the newest row a sweep read, and an operator
        /// may rewind it between sweeps. Starting each sweep where the previous one left off
        /// (`swept`), or above what the records of the stored checkpoints prove read as the
        /// agent does (`logged`: [`crate::read_log::ReadLog`], the previous sweep included),
        /// finds every row the blind overlap finds, never reads more rows, and the sweep after
        /// a rewind reads again every visible row at or above the rewind point (the consumer
        /// lost them: a resync).
        #[test]
        fn sweeps_from_the_previous_sweep_miss_nothing_the_blind_overlap_finds(
            rows in proptest::collection::vec((0i64..20_000, 0i64..=600), 1..120),
            gaps in proptest::collection::vec((1i64..4_000, proptest::option::of(0i64..20_000)), 1..12),
        ) {
            #[derive(Debug, Clone, Copy, PartialEq)]
            enum Mode { Blind, Swept, Logged }
            // (timestamp, commit) with commit − timestamp ≤ the overlap (600 s).
            let rows: Vec<(i64, i64)> = rows.iter().map(|&(t, lag)| (t, t + lag)).collect();
            let run = |mode: Mode| -> Result<Vec<u32>, TestCaseError> {
                let mut read = vec![0u32; rows.len()];
                let mut cp: Option<i64> = None;
                let mut prev: Option<ReadThrough> = None;
                let mut log = crate::read_log::ReadLog::default();
                let mut now = 0i64;
                for &(gap, rewind) in &gaps {
                    now += gap;
                    // Rows the consumer lost at a rewind: visible, at or above the point.
                    let mut owed = Vec::new();
                    if let (Some(r), Some(c)) = (rewind, cp)
                        && r < c
                    {
                        cp = Some(r);
                        owed = (0..rows.len()).filter(|&k| rows[k].0 >= r && rows[k].1 < now).collect();
                    }
                    let read_through = match mode {
                        Mode::Blind => None,
                        Mode::Swept => prev,
                        Mode::Logged => cp.and_then(|c| log.around(minus(ts(c), S.overlap))),
                    };
                    let s = PlanSettings { read_through, ..S };
                    let p = plan_read(&[sweep_notice(now)], cp.map(ts), None, ts(now), s);
                    let (from, to) = window(&p);
                    let mut this = vec![false; rows.len()];
                    for (k, &(t, c)) in rows.iter().enumerate() {
                        if c < now && ts(t) >= from && ts(t) < to {
                            read[k] += 1;
                            this[k] = true;
                            cp = Some(cp.map_or(t, |x| x.max(t)));
                        }
                    }
                    for k in owed {
                        prop_assert!(this[k], "row {k} {:?} not read again after the rewind ({mode:?}, FROM {from})", rows[k]);
                    }
                    prev = p.blind_from.map(|from| ReadThrough::swept(from, ts(now), S.overlap));
                    // The record stored with the checkpoint: [FROM, checkpoint] read at now.
                    if let Some(c) = cp.map(ts).filter(|&c| c >= from) {
                        log.record(from, c, ts(now), S.overlap);
                    }
                    if let Some(swept) = prev {
                        log.insert(swept);
                    }
                }
                Ok(read)
            };
            let blind = run(Mode::Blind)?;
            for mode in [Mode::Swept, Mode::Logged] {
                let fewer = run(mode)?;
                for k in 0..rows.len() {
                    prop_assert!(blind[k] == 0 || fewer[k] > 0,
                        "row {k} {:?} read by the blind sweeps but not by {mode:?}", rows[k]);
                }
                prop_assert!(fewer.iter().sum::<u32>() <= blind.iter().sum::<u32>());
            }
        }

        #[test]
        fn split_point_is_strictly_inside(a in 0i64..1_000_000, len in 2i64..1_000_000, hs in proptest::collection::vec(0i64..2_000_000, 0..50)) {
            let base = 1_700_000_000_000_000i64;
            let from = Timestamp::from_microsecond(base + a).unwrap();
            let to = Timestamp::from_microsecond(base + a + len).unwrap();
            let mut hints: Vec<Timestamp> = hs.iter().map(|h| Timestamp::from_microsecond(base + h).unwrap()).collect();
            hints.sort();
            let m = split_point(from, to, &hints).unwrap();
            prop_assert!(from < m && m < to);
        }

        #[test]
        fn every_notice_is_planned_exactly_once_and_windows_contain_what_they_cover(
            secs in proptest::collection::vec((0i64..10_000, 0u8..3, any::<bool>(), proptest::option::of(0i64..12_000)), 1..200),
            cp in proptest::option::of(0i64..10_000),
            last in proptest::option::of((0i64..12_000, 0i64..10_000)),
            now in 0i64..12_000,
        ) {
            let notices: Vec<PlanInput> = secs.iter().map(|&(s, k, r, p)| PlanInput {
                updated_at: ts(s),
                change: [ChangeKind::Update, ChangeKind::Retroactive, ChangeKind::Delete][k as usize],
                keys: vec![],
                replay: r,
                published: p.map(ts),
                received: false,
            }).collect();
            let last = last.map(|(at, from)| LastRead { at: ts(at), from: ts(from) });
            let p = plan_read(&notices, cp.map(ts), last, ts(now), S);
            let mut seen: Vec<usize> = p.tombstones.iter().chain(&p.already_covered).copied().collect();
            if let Some(narrow) = &p.narrow {
                seen.extend(&narrow.covers);
                let NarrowKind::Windows(w) = &narrow.kind else { panic!("no keys, so windows") };
                prop_assert!(w.len() <= MAX_NARROW_WINDOWS);
                for &i in &narrow.covers {
                    let u = notices[i].updated_at;
                    prop_assert!(!notices[i].replay && Some(u) <= cp.map(ts));
                    prop_assert!(w.iter().any(|&(f, t)| f <= u && u < t));
                }
            }
            if let Some(pull) = &p.pull {
                seen.extend(&pull.covers);
                let PullKind::Window { from, to } = pull.kind else { panic!("no keys, so a window") };
                for &i in &pull.covers {
                    prop_assert!(from <= notices[i].updated_at && notices[i].updated_at < to);
                }
                if let Some(c) = cp {
                    // Windows chain: FROM never above the checkpoint, or just past it (one
                    // microsecond) when the pull behind it is known to have read its instant.
                    let bound = if last.is_some() { plus_micro(ts(c)) } else { ts(c) };
                    prop_assert!(from <= bound);
                }
            }
            seen.sort();
            prop_assert_eq!(seen, (0..notices.len()).collect::<Vec<_>>());
            for &i in &p.already_covered {
                // Read by the pull behind the checkpoint: inside its window, stored before it
                // started.
                let (n, l) = (&notices[i], last.unwrap());
                prop_assert!(!n.replay && Some(n.updated_at) <= cp.map(ts));
                prop_assert!(l.from <= n.updated_at);
                prop_assert!(n.published.unwrap() < minus(l.at, CLOCK_SKEW_MARGIN));
            }
        }

        #[test]
        fn cut_windows_tile_and_stay_within_budget(
            hs in proptest::collection::vec((0i64..1_000, 1u64..3), 0..300),
            budget in 1u64..50,
        ) {
            let mut pts: Vec<(Timestamp, u64)> = hs.iter().map(|&(h, w)| (ts(h), w)).collect();
            pts.sort();
            let w = cut_windows(ts(-10), ts(2_000), &pts, budget);
            prop_assert_eq!(w[0].0, ts(-10));
            prop_assert_eq!(w[w.len() - 1].1, ts(2_000));
            for p in w.windows(2) {
                prop_assert_eq!(p[0].1, p[1].0);
            }
            for &(f, t) in &w {
                prop_assert!(f < t);
                let inside: Vec<_> = pts.iter().filter(|p| f <= p.0 && p.0 < t).collect();
                let load: u64 = inside.iter().map(|p| p.1).sum();
                let distinct = inside.iter().map(|p| p.0).collect::<std::collections::BTreeSet<_>>().len();
                prop_assert!(load <= budget + budget / 10 || distinct <= 1, "window [{f}, {t}) holds {load} > {budget}");
            }
        }

        #[test]
        fn bisect_midpoint_is_strictly_inside(a in 0i64..1_000_000_000, len in 0i64..1_000_000_000) {
            let from = Timestamp::from_microsecond(1_700_000_000_000_000 + a).unwrap();
            let to = Timestamp::from_microsecond(1_700_000_000_000_000 + a + len).unwrap();
            match bisect(from, to) {
                Some(m) => prop_assert!(from < m && m < to),
                None => prop_assert!(len < 2),
            }
        }
    }
}
