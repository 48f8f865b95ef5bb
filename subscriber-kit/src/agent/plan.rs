//! Pure decisions before a request leaves: whether one interface's notices of a batch may be
//! worked on at all, and which pulls they need (one coalesced plan from [`coalesce::plan_read`]:
//! the window or keyed pull, and the narrow pull for notices at or below the checkpoint that
//! the pull behind it may have missed; the window cut into pieces the provider accepts, the
//! keyed pulls' fallback windows, and where a refused piece is bisected). Plain data in, plain
//! data out: no clock, no I/O.

use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::{InterfaceId, MunicipalityCode};

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
/// notices are ([`coalesce::split_point`]); `None` once `max_depth` is reached or the piece is
/// too narrow to split: the bisection is exhausted.
pub(super) fn bisect(piece: Piece, max_depth: u32, hints: &[Timestamp]) -> Option<[Piece; 2]> {
    let (from, to, depth) = piece;
    if depth >= max_depth {
        return None;
    }
    let mid = coalesce::split_point(from, to, hints)?;
    Some([(from, mid, depth + 1), (mid, to, depth + 1)])
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
        }
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
            bisect((ts(0), ts(100), 0), 3, &hints),
            Some([(ts(0), ts(11), 1), (ts(11), ts(100), 1)])
        );
        // No notice inside: the midpoint.
        assert_eq!(
            bisect((ts(20), ts(80), 2), 3, &hints),
            Some([(ts(20), ts(50), 3), (ts(50), ts(80), 3)])
        );
        assert_eq!(bisect((ts(0), ts(100), 3), 3, &hints), None, "max depth");
    }
}
