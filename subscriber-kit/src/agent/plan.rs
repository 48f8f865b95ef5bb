//! Pure decisions before a request leaves: whether one interface's notices of a batch may be
//! worked on at all, and which pulls they need (one coalesced plan from [`coalesce::plan_read`]:
//! the window or keyed pull, and the narrow pull for notices at or below the checkpoint that
//! the pull behind it may have missed; the window cut into pieces the provider accepts, the
//! keyed pulls' fallback windows, and where a refused piece is bisected). Plain data in, plain
//! data out: no clock, no I/O.

use std::time::Duration;

use std::collections::BTreeSet;

use jiff::Timestamp;
use shirase_proto::{AtenaNo, InterfaceId, MunicipalityCode};

use super::Item;
use crate::coalesce::{self, LastRead, Plan, PlanInput, PlanSettings, PullKind};

/// Whether one interface's notices may be worked on now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admission {
    /// The provider is in its maintenance window for this long: hand every notice back until
    /// it ends, without a request.
    Wait(Duration),
    /// The notices can never succeed here: dead-letter them all for this reason.
    DeadLetter(String),
    /// Plan and pull.
    Proceed,
}

/// Admit one interface's notices: no work inside a maintenance window (`maintenance` is the
/// time left of it), none for an interface this agent is not configured for, none for another
/// municipality than the agent's.
pub(super) fn admit(
    maintenance: Option<Duration>,
    iface: &InterfaceId,
    configured: bool,
    items: &[Item],
    municipality: MunicipalityCode,
) -> Admission {
    if let Some(wait) = maintenance {
        return Admission::Wait(wait);
    }
    if !configured {
        return Admission::DeadLetter(format!(
            "interface {iface} is not configured for this agent (providers.interfaces)"
        ));
    }
    if items
        .iter()
        .any(|it| it.notice.data.municipality_code != municipality)
    {
        return Admission::DeadLetter(format!(
            "notice for a municipality other than {municipality}"
        ));
    }
    Admission::Proceed
}

/// The interface versions (版数) other than `configured` that `items` name, each with how
/// many notices name it, sorted. Such notices are still pulled, from the configured version
/// (the path's `{version}`): the subscriber reads the version it was built for, and a
/// provider serves old and new versions side by side during a transition (旧版準拠API).
pub(super) fn other_versions(
    items: &[Item],
    configured: &shirase_proto::InterfaceVersion,
) -> Vec<(String, u64)> {
    let mut out: std::collections::BTreeMap<String, u64> = Default::default();
    for it in items
        .iter()
        .filter(|it| it.notice.data.interface_version != *configured)
    {
        *out.entry(it.notice.data.interface_version.to_string())
            .or_default() += 1;
    }
    out.into_iter().collect()
}

/// The notice sequences that say whether a notice went missing: those of first deliveries.
/// A replayed notice (an operator's replay, a sweep) is old on purpose, and a redelivered one
/// was first delivered before, maybe before notices this replica never saw (another replica
/// took them); neither says anything of what came after it.
pub(super) fn gap_sequences(items: &[Item]) -> Vec<u64> {
    items
        .iter()
        .filter(|it| !it.replay && it.delivered == 1)
        .map(|it| it.notice.sequence.0)
        .collect()
}

/// Which of one interface's notices to hand back under its `min_interval`, and for how long
/// ([`coalesce::hold_for`], from the oldest one's store time): the fresh first deliveries.
/// `None`: pull now. A replay or a sweep is never held, and a notice delivered again (after a
/// hold, or after a failure) is never held twice: those are decided at once, and a pull they
/// need reads the held notices' rows too (covered at their next delivery).
pub(super) fn min_interval_hold(
    items: &[Item],
    min_interval: Option<Duration>,
    now: Timestamp,
) -> Option<(Duration, Vec<usize>)> {
    let min_interval = min_interval?;
    let fresh: Vec<usize> = (0..items.len())
        .filter(|&i| !items[i].replay && items[i].delivered <= 1 && items[i].published.is_some())
        .collect();
    let oldest = fresh.iter().filter_map(|&i| items[i].published).min()?;
    coalesce::hold_for(oldest, now, min_interval).map(|wait| (wait, fresh))
}

/// The pulls planned for one interface's notices of a batch.
#[derive(Debug, Clone)]
pub(super) struct Pulls {
    /// The coalesced plan (indices into the batch's items of this interface).
    pub(super) plan: Plan,
    /// The notices as the planner saw them.
    pub(super) inputs: Vec<PlanInput>,
    /// The notices' DB timestamps, sorted: where rows are, for cutting and bisecting windows.
    pub(super) hints: Vec<Timestamp>,
    /// The settings the plan was made with.
    pub(super) settings: PlanSettings,
    /// The stored checkpoint the plan started from.
    pub(super) checkpoint: Option<Timestamp>,
    /// The window pull that stored it, if the record says.
    pub(super) last: Option<LastRead>,
    /// "Now" of the plan (the wall clock, only for TO and the delivery's `pulled_at`).
    pub(super) now: Timestamp,
}

/// Plan the pulls of one interface's `items` from the stored `checkpoint`, not knowing which
/// pull stored it ([`plan_pulls_read`] without [`LastRead`]).
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn plan_pulls(
    items: &[Item],
    checkpoint: Option<Timestamp>,
    now: Timestamp,
    settings: PlanSettings,
) -> Pulls {
    plan_pulls_read(items, &[], checkpoint, None, now, settings)
}

/// Plan the pulls of one interface's `items` from the stored `checkpoint` and the window pull
/// that stored it (`last`). `received[i]`: a recent window pull received the rows of item `i`
/// (missing entries: no). `now` is also the start of the window pull this plan makes (its
/// `read_at`): it is taken before any of the plan's requests.
pub(super) fn plan_pulls_read(
    items: &[Item],
    received: &[bool],
    checkpoint: Option<Timestamp>,
    last: Option<LastRead>,
    now: Timestamp,
    settings: PlanSettings,
) -> Pulls {
    let inputs: Vec<PlanInput> = items
        .iter()
        .enumerate()
        .map(|(i, it)| PlanInput {
            updated_at: it.notice.data.updated_at.instant(),
            change: it.notice.data.change,
            keys: it
                .notice
                .data
                .keys
                .as_ref()
                .map(|k| k.atena_no.clone())
                .unwrap_or_default(),
            replay: it.replay,
            published: it.published,
            received: received.get(i).copied().unwrap_or(false),
        })
        .collect();
    let plan = coalesce::plan_read(&inputs, checkpoint, last, now, settings);
    let mut hints: Vec<Timestamp> = inputs.iter().map(|i| i.updated_at).collect();
    hints.sort_unstable();
    Pulls {
        plan,
        inputs,
        hints,
        settings,
        checkpoint,
        last,
        now,
    }
}

impl Pulls {
    /// The window to pull instead of a keyed pull the provider refused (too many rows for
    /// the keys): the same notices planned without keyed pulls.
    pub(super) fn keyed_fallback(&self) -> Option<(Timestamp, Timestamp)> {
        let settings = PlanSettings {
            keyed_pull_max_keys: 0,
            ..self.settings
        };
        match coalesce::plan_read(&self.inputs, self.checkpoint, self.last, self.now, settings)
            .pull
            .map(|p| p.kind)
        {
            Some(PullKind::Window { from, to }) => Some((from, to)),
            _ => None,
        }
    }

    /// The minimal windows to pull instead of a keyed narrow pull the provider refused: one
    /// around each of its notices' timestamps ([`coalesce::narrow_windows`]).
    pub(super) fn narrow_fallback(&self) -> Vec<(Timestamp, Timestamp)> {
        let times: Vec<Timestamp> = self
            .plan
            .narrow
            .iter()
            .flat_map(|n| &n.covers)
            .map(|&i| self.inputs[i].updated_at)
            .collect();
        coalesce::narrow_windows(&times, coalesce::MAX_NARROW_WINDOWS)
    }
}

/// Cut `[from, to)` into pieces of at most `budget` rows by estimate ([`coalesce::cut_windows`]).
/// Where the rows are: each notice (`hints`, sorted) may bring 2 rows (its own and the
/// previous latest row it demotes), each row already received (`rows`, sorted) 1. Only the
/// part of both lists inside the window is merged (sorting all remembered rows on every batch
/// was the agent's top CPU cost at 2,000 notices/s).
pub(super) fn cut_windows(
    from: Timestamp,
    to: Timestamp,
    rows: &[Timestamp],
    hints: &[Timestamp],
    budget: u64,
) -> Vec<(Timestamp, Timestamp)> {
    let inside = |v: &[Timestamp]| v.partition_point(|t| *t < from)..v.partition_point(|t| *t < to);
    let rows = &rows[inside(rows)];
    let notes = &hints[inside(hints)];
    let mut points: Vec<(Timestamp, u64)> = Vec::with_capacity(rows.len() + notes.len());
    let (mut i, mut j) = (0, 0);
    while i < rows.len() || j < notes.len() {
        if j >= notes.len() || (i < rows.len() && rows[i] <= notes[j]) {
            points.push((rows[i], 1));
            i += 1;
        } else {
            points.push((notes[j], 2));
            j += 1;
        }
    }
    coalesce::cut_windows(from, to, &points, budget)
}

/// A piece of a window pull: `[from, to)` at bisection depth `depth`.
pub(super) type Piece = (Timestamp, Timestamp, u32);

/// The two halves of a piece the provider refused (E0004 or a bare 503), split where the
/// notices are ([`coalesce::split_point`]), at whole seconds when the provider's bounds are
/// (`whole_seconds`: a split inside a second would ask the same second twice); `None` once
/// `max_depth` is reached or the piece holds one instant ([`one_instant`]).
pub(super) fn bisect(
    piece: Piece,
    max_depth: u32,
    hints: &[Timestamp],
    whole_seconds: bool,
) -> Option<[Piece; 2]> {
    let (from, to, depth) = piece;
    if depth >= max_depth || one_instant(from, to, whole_seconds) {
        return None;
    }
    let mid = if whole_seconds {
        split_whole_seconds(from, to, hints)?
    } else {
        coalesce::split_point(from, to, hints)?
    };
    Some([(from, mid, depth + 1), (mid, to, depth + 1)])
}

/// Rows per piece a density split aims at, as a share of the piece budget: the density of
/// the last piece is an estimate, and a piece over the provider's threshold costs a refusal.
const DENSITY_TARGET_PERCENT: u64 = 90;

/// The density of rows a window pull last met: `rows` in a piece `span` long (rows > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Density {
    /// Rows the piece returned.
    pub(super) rows: u64,
    /// Its length.
    pub(super) span: jiff::SignedDuration,
}

impl Density {
    /// The density of a piece `[from, to)` that returned `rows`; `None` without rows (nothing
    /// to scale by) or without length.
    pub(super) fn of(from: Timestamp, to: Timestamp, rows: usize) -> Option<Self> {
        let span = to.duration_since(from);
        (rows > 0 && span.is_positive()).then_some(Self {
            rows: rows as u64,
            span,
        })
    }

    /// Rows a piece `[from, to)` holds at this density.
    pub(super) fn estimate(&self, from: Timestamp, to: Timestamp) -> u64 {
        let est = i128::from(self.rows) * to.duration_since(from).as_nanos()
            / self.span.as_nanos().max(1);
        u64::try_from(est.max(0)).unwrap_or(u64::MAX)
    }
}

/// Split a piece before asking for it when the density of the piece before it (in the same
/// pull) says it holds more than `budget` rows: the first part is cut to about
/// [`DENSITY_TARGET_PERCENT`] % of the budget at that density, on the provider's precision
/// (`whole_seconds`). Bisection halves a refused piece and then asks the upper half, usually
/// refused again in a dense burst (a refusal for every two answers); cutting by the density
/// just measured asks pieces that fit. A piece that met fewer rows lowers the density, so a
/// burst's sparse tail is asked in few large pieces; a piece without rows gives no density
/// and the next piece is asked whole. Keeps the depth: nothing was refused.
///
/// Only pieces that read ahead of the pull's notices (ending past `newest_notice`) or that
/// come from a refusal (depth > 0) are cut: the pieces [`cut_windows`] planned within the
/// notices are sized by them, which is better than the density of another stretch of time.
pub(super) fn density_split(
    piece: Piece,
    density: Option<Density>,
    budget: u64,
    whole_seconds: bool,
    newest_notice: Option<Timestamp>,
) -> Option<[Piece; 2]> {
    let (from, to, depth) = piece;
    let past_notices = newest_notice.is_none_or(|n| {
        to > n
            .checked_add(jiff::SignedDuration::from_micros(1))
            .unwrap_or(n)
    });
    if depth == 0 && !past_notices {
        return None;
    }
    let d = density?;
    if d.estimate(from, to) <= budget {
        return None;
    }
    let target = i128::from((budget * DENSITY_TARGET_PERCENT / 100).max(1));
    let len =
        jiff::SignedDuration::from_nanos_i128(target * d.span.as_nanos() / i128::from(d.rows));
    let mut mid = from.checked_add(len).ok()?;
    if whole_seconds {
        mid = floor_second(mid);
        if mid <= floor_second(from) {
            mid = floor_second(from).checked_add(ONE_SECOND).ok()?;
        }
    } else {
        // The provider's timestamps have microsecond precision.
        mid = Timestamp::from_microsecond(mid.as_microsecond()).ok()?;
        if mid <= from {
            mid = Timestamp::from_microsecond(from.as_microsecond() + 1).ok()?;
        }
    }
    (mid > from && mid < to).then_some([(from, mid, depth), (mid, to, depth)])
}

fn floor_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second() - i64::from(t.subsec_nanosecond() < 0)).unwrap_or(t)
}

const ONE_SECOND: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// Does `[from, to)` hold one instant at the provider's precision, so that no narrower window
/// exists? At whole seconds: it lies inside one second (the request asks that whole second);
/// else under 2 µs (the DB timestamps' microseconds).
pub(super) fn one_instant(from: Timestamp, to: Timestamp, whole_seconds: bool) -> bool {
    if whole_seconds {
        floor_second(from)
            .checked_add(ONE_SECOND)
            .is_ok_and(|end| end >= to)
    } else {
        to.duration_since(from) < jiff::SignedDuration::from_micros(2)
    }
}

/// Where to split `[from, to)` at whole seconds: the second of the median notice inside it;
/// when that is the piece's first second (a burst sits there), the end of that second, so
/// the burst gets a piece of its own in one step.
fn split_whole_seconds(from: Timestamp, to: Timestamp, hints: &[Timestamp]) -> Option<Timestamp> {
    let first = floor_second(from);
    let after_first = first.checked_add(ONE_SECOND).ok()?;
    let lo = hints.partition_point(|h| *h < from);
    let hi = hints.partition_point(|h| *h < to);
    let candidate = if hi > lo {
        floor_second(hints[lo + (hi - lo) / 2])
    } else {
        floor_second(coalesce::bisect(from, to)?)
    };
    let mid = if candidate <= first {
        after_first
    } else {
        candidate
    };
    (mid > from && mid < to).then_some(mid)
}

/// What to do with a refused piece that holds one instant ([`one_instant`]): a night batch
/// committing thousands of rows in one second at whole-second precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Burst {
    /// Pull the addressee numbers (宛名番号) the pull's notices at that instant name, in
    /// these groups (each small enough for the provider's threshold), restricted to the
    /// instant.
    Keyed(Vec<Vec<AtenaNo>>),
    /// No notice of this pull is at that instant and it lies at or below the checkpoint: the
    /// pull behind the checkpoint read it; rows committed there later come with notices, whose
    /// narrow pulls ask for them. Go on after it.
    Skip,
    /// No notice of this pull is at that instant, above the checkpoint: end the window before
    /// it (the notices above stay uncovered and come back; the notices of that instant, when
    /// they arrive, name its keys).
    Stop,
    /// A notice at that instant names no addressee number: there is nothing narrower to ask.
    NoKeys,
}

/// Decide a refused one-instant piece `[from, to)` of a pull covering the notices `covers`
/// (indices into `inputs`), from the stored `checkpoint`; `group` is the most keys one
/// request may name (`pull.max_notices_per_window`: each key brings about two rows at that
/// instant, its new row and the one it demoted).
pub(super) fn burst(
    from: Timestamp,
    to: Timestamp,
    inputs: &[PlanInput],
    covers: &[usize],
    checkpoint: Option<Timestamp>,
    whole_seconds: bool,
    group: usize,
) -> Burst {
    let start = if whole_seconds {
        floor_second(from)
    } else {
        from
    };
    let at: Vec<&PlanInput> = covers
        .iter()
        .filter_map(|&i| inputs.get(i))
        .filter(|n| start <= n.updated_at && n.updated_at < to)
        .collect();
    if at.is_empty() {
        return if checkpoint.is_some_and(|c| start <= c) {
            Burst::Skip
        } else {
            Burst::Stop
        };
    }
    if at.iter().any(|n| n.keys.is_empty()) {
        return Burst::NoKeys;
    }
    let keys: BTreeSet<AtenaNo> = at.iter().flat_map(|n| n.keys.iter().copied()).collect();
    let keys: Vec<AtenaNo> = keys.into_iter().collect();
    Burst::Keyed(keys.chunks(group.max(1)).map(<[AtenaNo]>::to_vec).collect())
}

/// The two halves of a keyed group the provider refused; `None` for a single key.
pub(super) fn halve_keys(keys: &[AtenaNo]) -> Option<[Vec<AtenaNo>; 2]> {
    (keys.len() > 1).then(|| {
        let (a, b) = keys.split_at(keys.len() / 2);
        [a.to_vec(), b.to_vec()]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::test_support::{item, ts};
    use crate::coalesce::NarrowKind;

    fn settings() -> PlanSettings {
        PlanSettings {
            overlap: Duration::from_secs(600),
            keyed_pull_max_keys: 0,
            gap: false,
            more_pending: false,
            read_through: None,
        }
    }

    fn us(t: Timestamp, micros: i64) -> Timestamp {
        Timestamp::from_microsecond(t.as_microsecond() + micros).unwrap()
    }

    #[test]
    fn a_piece_denser_than_the_budget_is_cut_to_fit_before_it_is_asked() {
        // The piece before returned 900 rows in 550 µs; the next spans 1 s: about 1.6M rows.
        let d = Density::of(ts(0), us(ts(0), 550), 900);
        let piece = (ts(100), ts(101), 3);
        let [a, b] = density_split(piece, d, 1000, false, None).unwrap();
        // 90 % of 1000 rows at 900 rows / 550 µs: 550 µs.
        assert_eq!(a, (ts(100), us(ts(100), 550), 3));
        assert_eq!(b, (us(ts(100), 550), ts(101), 3));
        // A piece that fits by the estimate is asked whole.
        assert_eq!(
            density_split((ts(100), us(ts(100), 600), 0), d, 1000, false, None),
            None
        );
        // No density (the first piece, or the last one met no rows): asked whole.
        assert_eq!(density_split(piece, None, 1000, false, None), None);
        assert_eq!(Density::of(ts(0), ts(1), 0), None);
        // A sparse piece before (10 rows a second) leaves a minute-long piece whole.
        let sparse = Density::of(ts(0), ts(1), 10);
        assert_eq!(
            density_split((ts(100), ts(160), 0), sparse, 1000, false, None),
            None
        );
    }

    #[test]
    fn pieces_within_the_notices_are_asked_as_planned() {
        let d = Density::of(ts(0), us(ts(0), 550), 900);
        // A planned piece ending just past the newest notice: the notices sized it.
        let newest = Some(ts(100));
        let planned = (ts(99), us(ts(100), 1), 0);
        assert_eq!(density_split(planned, d, 1000, false, newest), None);
        // Reading ahead of the notices, or after a refusal: cut by the density.
        assert!(density_split((ts(99), ts(101), 0), d, 1000, false, newest).is_some());
        assert!(density_split((ts(99), us(ts(100), 1), 1), d, 1000, false, newest).is_some());
    }

    #[test]
    fn a_density_split_stays_on_the_providers_precision() {
        // Whole seconds: 1000 rows a second, a 10 s piece → cut at the next whole second.
        let d = Density::of(ts(0), ts(1), 1000);
        let [a, b] =
            density_split((us(ts(100), 300_000), ts(110), 0), d, 1000, true, None).unwrap();
        assert_eq!(a.1, ts(101));
        assert_eq!(b, (ts(101), ts(110), 0));
        // Microseconds: never an empty first part, never a cut at or past the end.
        let dense = Density::of(ts(0), us(ts(0), 1), 5000);
        let [a, _] =
            density_split((ts(100), us(ts(100), 10), 0), dense, 1000, false, None).unwrap();
        assert_eq!(a.1, us(ts(100), 1));
        assert_eq!(
            density_split((ts(100), us(ts(100), 1), 0), dense, 1000, false, None),
            None
        );
    }

    #[test]
    fn maintenance_hands_everything_back_before_anything_else() {
        let iface = "001o05-00".parse().unwrap();
        let items = [item(0, 100)];
        let m = "131016".parse().unwrap();
        let wait = Duration::from_secs(3 * 3600);
        assert_eq!(
            admit(Some(wait), &iface, false, &items, m),
            Admission::Wait(wait)
        );
        assert_eq!(admit(None, &iface, true, &items, m), Admission::Proceed);
        assert!(matches!(
            admit(None, &iface, false, &items, m),
            Admission::DeadLetter(r) if r.contains("not configured")
        ));
        let other = "011002".parse().unwrap();
        assert!(matches!(
            admit(None, &iface, true, &items, other),
            Admission::DeadLetter(r) if r.contains("municipality other than 011002")
        ));
    }

    #[test]
    fn min_interval_holds_fresh_notices_until_the_oldest_is_that_old() {
        let m = Some(Duration::from_secs(10));
        let mut items = [item(0, 100), item(1, 103), item(2, 90)];
        items[0].published = Some(ts(100));
        items[1].published = Some(ts(103));
        assert_eq!(
            min_interval_hold(&items[..2], None, ts(104)),
            None,
            "no minimum"
        );
        assert_eq!(
            min_interval_hold(&items[..2], m, ts(104)),
            Some((Duration::from_secs(6), vec![0, 1]))
        );
        assert_eq!(min_interval_hold(&items[..2], m, ts(110)), None);
        // Delivered again (held before, covered by a pull since): decided now; the fresh
        // notice beside it is still held.
        items[0].delivered = 2;
        assert_eq!(
            min_interval_hold(&items[..2], m, ts(104)),
            Some((Duration::from_secs(9), vec![1]))
        );
        assert_eq!(min_interval_hold(&items[..1], m, ts(104)), None);
        // A replay, or a sweep's item without a store time: never held.
        items[1].replay = true;
        assert_eq!(min_interval_hold(&items[..2], m, ts(104)), None);
        assert_eq!(min_interval_hold(&items[2..], m, ts(104)), None);
    }

    fn past(t: Timestamp) -> Timestamp {
        Timestamp::from_microsecond(t.as_microsecond() + 1).unwrap()
    }

    /// The pull behind checkpoint 200 started at 250 with FROM 50.
    fn last() -> Option<LastRead> {
        Some(LastRead {
            at: ts(250),
            from: ts(50),
        })
    }

    #[test]
    fn a_notice_read_by_the_pull_behind_the_checkpoint_needs_no_pull() {
        let mut items = [item(0, 100), item(1, 200), item(2, 300)];
        for it in &mut items {
            it.published = Some(ts(240));
        }
        let p = plan_pulls_read(&items, &[], Some(ts(200)), last(), ts(1000), settings());
        assert_eq!(p.plan.already_covered, vec![0, 1]);
        let pull = p
            .plan
            .pull
            .expect("the notice above the checkpoint is pulled");
        assert_eq!(pull.covers, vec![2]);
        assert_eq!(
            pull.kind,
            PullKind::Window {
                from: past(ts(200)),
                to: ts(1000)
            },
            "the pull behind the checkpoint read its instant"
        );
        assert_eq!(p.hints, vec![ts(100), ts(200), ts(300)]);

        let p = plan_pulls_read(
            &items[..2],
            &[],
            Some(ts(200)),
            last(),
            ts(1000),
            settings(),
        );
        assert_eq!(p.plan.pull, None, "all covered: no request at all");
        assert_eq!(p.plan.narrow, None);
    }

    #[test]
    fn a_notice_stored_after_the_pull_behind_the_checkpoint_gets_a_narrow_pull() {
        let mut items = [item(0, 100), item(1, 120)];
        items[0].published = Some(ts(240));
        items[1].published = Some(ts(260));
        let p = plan_pulls_read(&items, &[], Some(ts(200)), last(), ts(1000), settings());
        assert_eq!(p.plan.already_covered, vec![0]);
        assert_eq!(p.plan.pull, None, "the checkpoint does not move");
        let narrow = p.plan.narrow.clone().unwrap();
        assert_eq!(narrow.covers, vec![1]);
        assert_eq!(
            narrow.kind,
            NarrowKind::Windows(vec![(ts(120), past(ts(120)))])
        );
        assert_eq!(p.narrow_fallback(), vec![(ts(120), past(ts(120)))]);
        // Without knowing the pull (an older record, a resync): both.
        let p = plan_pulls(&items, Some(ts(200)), ts(1000), settings());
        assert_eq!(p.plan.narrow.unwrap().covers, vec![0, 1]);
        // Its rows already received (read ahead by a window reaching now): covered.
        let p = plan_pulls_read(
            &items,
            &[false, true],
            Some(ts(200)),
            last(),
            ts(1000),
            settings(),
        );
        assert_eq!(p.plan.already_covered, vec![0, 1]);
    }

    #[test]
    fn a_refused_keyed_pull_falls_back_to_the_window() {
        let mut items = [item(0, 300)];
        items[0].notice.data.keys = Some(shirase_proto::Keys {
            atena_no: vec!["000000000000001".parse().unwrap()],
        });
        let s = PlanSettings {
            keyed_pull_max_keys: 10,
            ..settings()
        };
        let p = plan_pulls(&items, Some(ts(200)), ts(1000), s);
        assert!(matches!(
            p.plan.pull.as_ref().map(|p| &p.kind),
            Some(PullKind::Keyed { .. })
        ));
        assert_eq!(p.keyed_fallback(), Some((ts(200), ts(1000))));
    }

    #[test]
    fn windows_are_cut_where_notices_and_known_rows_are() {
        // Budget 4: two notices (2 rows each) fill a piece; known rows weigh 1.
        let hints = [ts(10), ts(20), ts(30), ts(40)];
        let w = cut_windows(ts(0), ts(100), &[], &hints, 4);
        assert_eq!(w, vec![(ts(0), ts(30)), (ts(30), ts(100))]);
        // Four known rows and one notice: 6 by estimate, cut before the notice; the row at
        // 500 lies outside the window.
        let rows = [ts(5), ts(6), ts(7), ts(8), ts(500)];
        let w = cut_windows(ts(0), ts(100), &rows, &hints[..1], 4);
        assert_eq!(w, vec![(ts(0), ts(10)), (ts(10), ts(100))]);
    }

    #[test]
    fn a_refused_window_is_bisected_at_the_notices_until_the_depth_is_spent() {
        let hints = [ts(10), ts(11), ts(90)];
        assert_eq!(
            bisect((ts(0), ts(100), 0), 3, &hints, false),
            Some([(ts(0), ts(11), 1), (ts(11), ts(100), 1)])
        );
        // No notice inside: the midpoint.
        assert_eq!(
            bisect((ts(20), ts(80), 2), 3, &hints, false),
            Some([(ts(20), ts(50), 3), (ts(50), ts(80), 3)])
        );
        assert_eq!(
            bisect((ts(0), ts(100), 3), 3, &hints, false),
            None,
            "max depth"
        );
    }
    fn ms(t: Timestamp, millis: i64) -> Timestamp {
        Timestamp::from_millisecond(t.as_millisecond() + millis).unwrap()
    }

    #[test]
    fn at_whole_seconds_bisection_isolates_a_burst_second_and_never_splits_it() {
        // A burst at 100 (whole second), the window from the checkpoint 40 to now (130.7).
        let hints = vec![ts(100); 50];
        let to = ms(ts(130), 700);
        let [lo, hi] = bisect((ts(40), to, 0), 24, &hints, true).unwrap();
        assert_eq!(lo, (ts(40), ts(100), 1), "cut at the burst's second");
        // The burst's second is the first of the upper half: one more step isolates it.
        let [a, b] = bisect(hi, 24, &hints, true).unwrap();
        assert_eq!(a, (ts(100), ts(101), 2));
        assert_eq!(b, (ts(101), to, 2));
        // One second holds one instant: no split below the precision.
        assert!(one_instant(ts(100), ts(101), true));
        assert!(one_instant(ms(ts(100), 300), ms(ts(100), 800), true));
        assert!(!one_instant(ts(100), ms(ts(101), 1), true));
        assert_eq!(bisect(a, 24, &hints, true), None);
        // Without notices: the midpoint, floored to a second.
        assert_eq!(
            bisect((ts(0), ts(9), 0), 24, &[], true),
            Some([(ts(0), ts(4), 1), (ts(4), ts(9), 1)])
        );
        // At microseconds, one instant is under 2 µs.
        let us =
            |t: Timestamp, n: i64| Timestamp::from_microsecond(t.as_microsecond() + n).unwrap();
        assert!(one_instant(ts(100), us(ts(100), 1), false));
        assert!(!one_instant(ts(100), us(ts(100), 2), false));
    }

    fn keyed_input(secs: i64, keys: &[u64]) -> PlanInput {
        PlanInput {
            updated_at: ts(secs),
            change: shirase_proto::ChangeKind::Update,
            keys: keys
                .iter()
                .map(|k| format!("{k:015}").parse().unwrap())
                .collect(),
            replay: false,
            published: None,
            received: false,
        }
    }

    fn k(n: u64) -> AtenaNo {
        format!("{n:015}").parse().unwrap()
    }

    #[test]
    fn a_burst_second_is_read_by_its_notices_keys_in_groups() {
        let inputs = vec![
            keyed_input(100, &[5, 1]),
            keyed_input(100, &[3, 1]),
            keyed_input(100, &[2]),
            keyed_input(101, &[9]),
        ];
        // The pull covers all four; the instant [100, 101) holds the first three (keys 1, 2,
        // 3, 5), two keys a group.
        let b = burst(
            ts(100),
            ts(101),
            &inputs,
            &[0, 1, 2, 3],
            Some(ts(40)),
            true,
            2,
        );
        assert_eq!(b, Burst::Keyed(vec![vec![k(1), k(2)], vec![k(3), k(5)]]));
        // A piece starting inside the second still means the whole second.
        let b = burst(ms(ts(100), 500), ts(101), &inputs, &[2], None, true, 10);
        assert_eq!(b, Burst::Keyed(vec![vec![k(2)]]));
        // Only this pull's notices count: a narrow notice at that instant is not the window's.
        let b = burst(ts(100), ts(101), &inputs, &[3], Some(ts(100)), true, 2);
        assert_eq!(
            b,
            Burst::Skip,
            "at the checkpoint and no notice: read before"
        );
        let b = burst(ts(100), ts(101), &inputs, &[3], Some(ts(99)), true, 2);
        assert_eq!(
            b,
            Burst::Stop,
            "above the checkpoint and no notice: end the window"
        );
        let b = burst(ts(100), ts(101), &inputs, &[3], None, true, 2);
        assert_eq!(b, Burst::Stop);
        // A notice there without keys: nothing narrower to ask.
        let inputs = vec![keyed_input(100, &[1]), keyed_input(100, &[])];
        let b = burst(ts(100), ts(101), &inputs, &[0, 1], None, true, 2);
        assert_eq!(b, Burst::NoKeys);
        assert_eq!(
            halve_keys(&[k(1), k(2), k(3)]),
            Some([vec![k(1)], vec![k(2), k(3)]])
        );
        assert_eq!(halve_keys(&[k(1)]), None);
    }

    #[test]
    fn only_first_deliveries_say_whether_a_notice_went_missing() {
        let mut items = [item(0, 100), item(1, 101), item(2, 102), item(3, 103)];
        items[1].delivered = 3;
        items[2].replay = true;
        assert_eq!(gap_sequences(&items), [1, 4]);
    }

    #[test]
    fn notices_of_another_version_are_counted_by_version() {
        let mut items = [item(0, 100), item(1, 101), item(2, 102)];
        items[1].notice.data.interface_version = "2.0".parse().unwrap();
        items[2].notice.data.interface_version = "2.0".parse().unwrap();
        let configured = "1.0".parse().unwrap();
        assert_eq!(
            other_versions(&items, &configured),
            vec![("2.0".to_owned(), 2)]
        );
        assert!(other_versions(&items[..1], &configured).is_empty());
    }
}
