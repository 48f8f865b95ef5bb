//! A model of the agent's delivery protocol, checked exhaustively (breadth first) with
//! `stateright`.
//!
//! The model's world: a provider with two row versions (each with its DB update timestamp;
//! the first may be a long transaction that becomes visible one tick after its timestamp),
//! one change notice per row published (and stored by JetStream, its publish time recorded)
//! when the row becomes visible, the durable consumer (fetch, ack, nak, redelivery after a
//! crash and after an ack-wait expiry while the replica is still working), the checkpoint key
//! (value, the record of the window pull that stored it — `read_at`, `read_from` — and the
//! revision a compare-and-set names, as `Checkpoints::advance_read` does it), the sink, two
//! agent replicas that may crash at any step (losing what they remember in memory: the rows
//! their window pulls received, a pending rewind sweep), the scheduled sweep and an operator
//! resync (the checkpoint rewound to tick 0 without a pull record, its resync count one
//! higher; every replica watching the key starts an immediate sweep).
//!
//! The replicas' decisions are the agent's own pure functions: [`plan::admit`],
//! [`plan::plan_pulls_read`] (with `coalesce::plan_read`: already covered, narrow pull,
//! window; a sweep starting above the rows its previous whole sweep and the checkpoint's
//! record prove read, `coalesce::sweep_from`),
//! [`plan::cut_windows`], `IfaceState::received` / `remember_keys` (rows a window
//! already received), [`settle::Received::of`], `Reached::checkpoint` and
//! [`settle::settle_pulled_narrow`] (with `coverage`). Only the I/O between them is modelled,
//! one atomic step each, in the worker's order: fetch → read the checkpoint and plan (its
//! "now" is the pull's `read_at`) → per narrow window, then per window piece: pull, sink →
//! store the checkpoint (compare-and-set) → settle (ack / nak). A narrow pull is a pull of
//! just the rows at its windows; it never moves the checkpoint. A replica runs one batch or
//! one sweep at a time (in the agent the sweeper runs next to the worker; the second replica
//! covers that concurrency).
//!
//! Time is abstract: a tick is 10 s, more than `coalesce::CLOCK_SKEW_MARGIN`, so a notice
//! stored a tick before a pull started counts as read by it and one stored in the same tick
//! does not. The overlap of sweeps and first pulls is half a tick: less than a late commit's
//! lag, so no sweep's overlap re-read hides a late row or an undone resync.
//!
//! Run: `cargo test -p shirase-subscriber-kit model -- --nocapture` (prints the state counts
//! and, for the properties expected to fail, the counterexample traces).

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::{
    AtenaNo, ChangeKind, InterfaceId, Keys, MunicipalityCode, Notice, OffsetTimestamp, Sequence,
};
use stateright::{Checker, HasDiscoveries, Model, Property};

use super::plan::{self, Admission, Pulls};
use super::settle::{self, NarrowReached, Received};
use super::state::{IfaceState, key_hash};
use super::{Decision, Item, Pulled, SWEEP_IDX, Streamed};
use crate::coalesce::{LastRead, NarrowKind, PlanSettings, PullKind, ReadThrough};
use crate::read_log::ReadLog;

/// Row versions (and notices: notice `i` announces row `i`).
const ROWS: usize = 2;
/// The rows' DB update timestamps, in ticks.
const ROW_TS: [u8; ROWS] = [1, 2];
/// The last tick of the busy period (rows commit, notices flow, replicas crash, an operator
/// resyncs).
const LAST_TICK: u8 = 3;
/// A tick long after the busy period, reached once everything is quiet: the next scheduled
/// sweep runs then (fairness: the hourly sweep eventually runs).
const QUIET_TICK: u8 = 4;
/// Seconds per tick.
const TICK_SECS: i64 = 10;
/// `pull.overlap` (sweeps and first pulls only), in seconds.
const OVERLAP: Duration = Duration::from_secs(5);
/// `pull.max_notices_per_window`: one, so a window over both notices is cut into two pieces.
const MAX_NOTICES_PER_WINDOW: u64 = 1;
const BASE_SECS: i64 = 1_800_000_000;

fn ts(tick: u8) -> Timestamp {
    Timestamp::from_second(BASE_SECS + TICK_SECS * i64::from(tick)).expect("valid")
}

/// Seconds since tick 0 (a window's FROM may lie between ticks, or before tick 0).
fn secs(t: Timestamp) -> i16 {
    i16::try_from(t.as_second() - BASE_SECS).expect("near tick 0")
}

fn from_secs(s: i16) -> Timestamp {
    Timestamp::from_second(BASE_SECS + i64::from(s)).expect("valid")
}

fn mask(r: usize) -> u8 {
    1 << r
}

/// The row whose DB timestamp is `t`.
fn row_at(t: Timestamp) -> usize {
    (0..ROWS)
        .find(|&i| ts(ROW_TS[i]) == t)
        .expect("a row's timestamp")
}

/// The rows among `rows` inside any of `windows`.
fn rows_in(rows: u8, windows: &[(Timestamp, Timestamp)]) -> u8 {
    (0..ROWS)
        .filter(|&i| rows & mask(i) != 0)
        .filter(|&i| windows.iter().any(|w| (w.0..w.1).contains(&ts(ROW_TS[i]))))
        .fold(0, |m, i| m | mask(i))
}

/// A notice as the durable consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Msg {
    /// The row is not committed yet, so its notice is not published.
    Unpublished,
    /// Waiting to be delivered (first delivery or redelivery).
    Pending,
    /// Delivered, not acked yet.
    InFlight,
    Acked,
}

/// The checkpoint key: its value (a tick), the record of the window pull that stored it
/// (`read_at` as a tick, `read_from` in seconds; none for an operator's resync) and its
/// revision (0: the key is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Kv {
    value: Option<u8>,
    read: Option<(u8, i16)>,
    revision: u8,
    /// Resyncs of the key (`Stored::resyncs`): a resync adds one, agents copy it.
    resyncs: u8,
}

impl Kv {
    fn last(&self) -> Option<LastRead> {
        self.read.map(|(at, from)| LastRead {
            at: ts(at),
            from: from_secs(from),
        })
    }
}

/// Where a replica's work on a batch stands: the next step it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Stage {
    /// Request the next piece (the narrow windows first, then the window's pieces).
    Pull,
    /// Hand the piece's rows to the sink.
    Sink,
    /// Store the checkpoint (compare-and-set).
    Store,
    /// Ack / nak the notices.
    Settle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Phase {
    Idle,
    /// A batch fetched (notices, as a mask), or a sweep's synthetic item.
    Fetched {
        batch: u8,
        sweep: bool,
    },
    Working(Work),
}

/// One batch in progress. The plan is not stored: it is recomputed from its inputs (the
/// batch, the checkpoint read, the plan's "now" and which notices' rows the replica
/// remembered receiving) by the agent's own functions at every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Work {
    batch: u8,
    sweep: bool,
    read: Kv,
    now: u8,
    /// Notices of the batch whose rows a window of this replica received (`PlanInput::received`).
    recv: u8,
    stage: Stage,
    /// The next piece to pull.
    piece: u8,
    /// Rows of the current piece not yet handed to the sink.
    staged: u8,
    /// Rows received by the window pull so far.
    got: u8,
    /// Rows received by the narrow pull.
    narrow_got: u8,
    /// Rows visible when the plan was made (at its `read_at`).
    visible_at_plan: u8,
    /// Settled already (only in the ack-before-sink variant).
    settled: bool,
    /// A sweep's previous whole sweep (the replica's, when it started), one of the spans of
    /// its `read_through`.
    prev: Option<(u8, i16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Replica {
    phase: Phase,
    /// In memory only (lost on a crash): rows its window pulls received, as
    /// `IfaceState::recent_keys` keeps them.
    remembered: u8,
    /// In memory only: its watch saw the checkpoint rewound; an immediate sweep is due.
    rewound: bool,
    /// In memory only: its last sweep that read its whole window (a span of
    /// `IfaceState::read_log`: its start tick and blind FROM in seconds).
    last_sweep: Option<(u8, i16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct State {
    clock: u8,
    /// Committed (visible) rows.
    committed: u8,
    /// The tick each committed row's notice was published (stored by JetStream).
    published: [u8; ROWS],
    notices: [Msg; ROWS],
    kv: Kv,
    /// Rows the sink ever received.
    received: u8,
    /// Rows the consumer holds now (a resync means it lost those above the rewind point).
    sink: u8,
    replicas: [Replica; 2],
    crashes: u8,
    expiries: u8,
    resyncs: u8,
    /// The scheduled sweep after the busy period completed.
    final_sweep: bool,
    // What the step into this state did wrong (cleared at every step, so that a counterexample
    // ends where the property broke):
    /// It stored a checkpoint whose record is false: a row inside [read_from, checkpoint]
    /// that was visible at read_at is not in the sink.
    hole: bool,
    /// It stored a checkpoint over a visible row the sink had not received (whenever the row
    /// became visible).
    hole_any: bool,
    /// It stored a checkpoint over a row the consumer lost at a resync (rewound to before it)
    /// and that was not delivered again: the rewind was undone.
    resync_undone: bool,
    /// It acked a notice whose row the sink had not received.
    ack_hole: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Action {
    /// Wall-clock time passes.
    Tick,
    /// The provider commits row `r` (it becomes visible) and publishes its notice.
    Commit(usize),
    /// Replica `r` fetches every pending notice.
    Fetch(usize),
    /// Replica `r` runs a sweep (scheduled, or at once after it saw a rewind).
    Sweep(usize),
    /// Replica `r` takes its next step.
    Step(usize),
    /// Replica `r` crashes and restarts.
    Crash(usize),
    /// The ack wait of notice `n` expires while it is in flight: it is redelivered.
    Expire(usize),
    /// An operator rewinds the checkpoint to tick 0 because the consumer lost its rows.
    Resync,
}

/// The model and its variant.
pub(super) struct Protocol {
    /// Row 0 is a long transaction: visible (and announced) one tick after its DB update
    /// timestamp, or at it.
    pub(super) late_commit: bool,
    /// The broken variant: settle (ack) before the rows go to the sink.
    pub(super) ack_before_sink: bool,
    /// Whether the scheduled sweep runs (`sweep.interval` > 0). It runs after the busy
    /// period. The immediate sweep after a resync runs either way.
    pub(super) sweep: bool,
    pub(super) max_crashes: u8,
    pub(super) max_expiries: u8,
    pub(super) max_resyncs: u8,
    notices: Vec<Notice>,
    keys: Vec<AtenaNo>,
    iface: InterfaceId,
    municipality: MunicipalityCode,
}

impl Protocol {
    pub(super) fn new() -> Self {
        let municipality: MunicipalityCode = "131016".parse().expect("valid");
        let iface: InterfaceId = "001o05-00".parse().expect("valid");
        let keys: Vec<AtenaNo> = (0..ROWS)
            .map(|r| format!("{:015}", r + 1).parse().expect("valid"))
            .collect();
        let notices = (0..ROWS)
            .map(|r| {
                Notice::new(
                    municipality,
                    iface,
                    "1.0".parse().expect("valid"),
                    Sequence(r as u64 + 1),
                    OffsetTimestamp::from_instant_jst(ts(ROW_TS[r])),
                    ChangeKind::Update,
                    Some(Keys {
                        atena_no: vec![keys[r]],
                    }),
                )
            })
            .collect();
        Self {
            late_commit: false,
            ack_before_sink: false,
            sweep: true,
            max_crashes: 1,
            max_expiries: 1,
            max_resyncs: 1,
            notices,
            keys,
            iface,
            municipality,
        }
    }

    /// The latest tick row `r` may become visible at.
    fn deadline(&self, r: usize) -> u8 {
        ROW_TS[r] + u8::from(self.late_commit && r == 0)
    }

    /// The batch's items as the worker builds them (a sweep is one synthetic replayed item
    /// without keys or publish time).
    fn items(&self, s: &State, batch: u8, sweep: bool, now: u8) -> Vec<Item> {
        let mut items: Vec<Item> = (0..ROWS)
            .filter(|&r| batch & mask(r) != 0)
            .map(|r| Item {
                idx: r,
                notice: self.notices[r].clone(),
                replay: false,
                delivered: 1,
                raw: serde_json::Value::Null,
                published: Some(ts(s.published[r])),
            })
            .collect();
        if sweep {
            let mut notice = self.notices[0].clone();
            notice.data.updated_at = OffsetTimestamp::from_instant_jst(ts(now));
            notice.data.keys = None;
            items.push(Item {
                idx: SWEEP_IDX,
                notice,
                replay: true,
                delivered: 1,
                raw: serde_json::Value::Null,
                published: None,
            });
        }
        items
    }

    /// A replica's memory of received rows, as the worker keeps it.
    fn memory(&self, remembered: u8) -> IfaceState {
        let mut recent_keys: Vec<(Timestamp, u64)> = (0..ROWS)
            .filter(|&i| remembered & mask(i) != 0)
            .map(|i| (ts(ROW_TS[i]), key_hash(self.keys[i].as_str())))
            .collect();
        recent_keys.sort_unstable();
        IfaceState {
            recent_keys,
            ..IfaceState::default()
        }
    }

    fn remembered(&self, m: &IfaceState) -> u8 {
        (0..ROWS)
            .filter(|&i| {
                m.recent_keys
                    .contains(&(ts(ROW_TS[i]), key_hash(self.keys[i].as_str())))
            })
            .fold(0, |acc, i| acc | mask(i))
    }

    /// What a sweep may skip, as the worker derives it: the replica's last whole sweep and the
    /// record of the checkpoint it read, in a [`ReadLog`], around the overlap below the
    /// checkpoint.
    fn read_through(w: &Work) -> Option<ReadThrough> {
        if !w.sweep {
            return None;
        }
        let c = ts(w.read.value?);
        let mut log = ReadLog::default();
        if let Some((at, from)) = w.prev {
            log.insert(ReadThrough::swept(from_secs(from), ts(at), OVERLAP));
        }
        if let Some(last) = w.read.last() {
            log.record(last.from, c, last.at, OVERLAP);
        }
        log.around(c.checked_sub(OVERLAP).expect("valid"))
    }

    /// The plan of `w` (recomputed: the agent's planning is deterministic).
    fn pulls(&self, w: &Work, items: &[Item]) -> Pulls {
        let settings = PlanSettings {
            overlap: OVERLAP,
            keyed_pull_max_keys: 0,
            gap: false,
            more_pending: false,
            read_through: Self::read_through(w),
        };
        let received: Vec<bool> = items
            .iter()
            .map(|it| it.idx != SWEEP_IDX && w.recv & mask(it.idx) != 0)
            .collect();
        plan::plan_pulls_read(
            items,
            &received,
            w.read.value.map(ts),
            w.read.last(),
            ts(w.now),
            settings,
        )
    }

    /// The pieces of the plan in the worker's order: the narrow windows, then the window
    /// pull cut as `Worker::cut` cuts it (no remembered row timestamps); and how many of them
    /// are narrow.
    fn pieces(pulls: &Pulls) -> (Vec<(Timestamp, Timestamp)>, usize) {
        let mut pieces = match pulls.plan.narrow.as_ref().map(|n| &n.kind) {
            Some(NarrowKind::Windows(w)) => w.clone(),
            Some(NarrowKind::Keyed { .. }) => unreachable!("keyed pulls are off in the model"),
            None => vec![],
        };
        let narrow = pieces.len();
        match pulls.plan.pull.as_ref().map(|p| &p.kind) {
            Some(PullKind::Window { from, to }) => pieces.extend(plan::cut_windows(
                *from,
                *to,
                &[],
                &pulls.hints,
                2 * MAX_NOTICES_PER_WINDOW,
            )),
            Some(PullKind::Keyed { .. }) => unreachable!("keyed pulls are off in the model"),
            None => {}
        }
        (pieces, narrow)
    }

    /// What the window pull of `w` reached, as the worker summarizes it.
    fn received(&self, pulls: &Pulls, got: u8) -> Received {
        let Some(PullKind::Window { from, .. }) = pulls.plan.pull.as_ref().map(|p| &p.kind) else {
            return Received::of(None);
        };
        let rows: Vec<usize> = (0..ROWS).filter(|&r| got & mask(r) != 0).collect();
        Received::of(Some(Pulled::Window(Streamed {
            count: rows.len(),
            times: rows.iter().map(|&r| ts(ROW_TS[r])).collect(),
            from: Some(*from),
            keys: rows
                .iter()
                .map(|&r| (ts(ROW_TS[r]), key_hash(self.keys[r].as_str())))
                .collect(),
            stopped: false,
        })))
    }

    /// What the narrow pull of `w` reached.
    fn narrow_reached(pulls: &Pulls, got: u8) -> NarrowReached {
        if pulls.plan.narrow.is_none() {
            return NarrowReached::Nothing;
        }
        NarrowReached::Windows(
            (0..ROWS)
                .filter(|&r| got & mask(r) != 0)
                .map(|r| ts(ROW_TS[r]))
                .collect(),
        )
    }

    /// Read the checkpoint and plan: `decide_interface` up to the pulls.
    fn start(&self, s: &State, r: usize, batch: u8, sweep: bool) -> Phase {
        let items = self.items(s, batch, sweep, s.clock);
        let admission = plan::admit(None, &self.iface, true, &items, self.municipality);
        assert_eq!(admission, Admission::Proceed);
        let memory = self.memory(s.replicas[r].remembered);
        let recv = (0..ROWS)
            .filter(|&i| batch & mask(i) != 0)
            .filter(|&i| memory.received(ts(ROW_TS[i]), &[self.keys[i]]))
            .fold(0, |m, i| m | mask(i));
        let mut w = Work {
            batch,
            sweep,
            read: s.kv,
            now: s.clock,
            recv,
            stage: Stage::Pull,
            piece: 0,
            staged: 0,
            got: 0,
            narrow_got: 0,
            visible_at_plan: s.committed,
            settled: false,
            prev: if sweep {
                s.replicas[r].last_sweep
            } else {
                None
            },
        };
        if Self::pieces(&self.pulls(&w, &items)).0.is_empty() {
            w.stage = Stage::Settle;
        }
        Phase::Working(w)
    }

    /// One step of replica `r`'s work.
    fn step(&self, s: &mut State, r: usize, mut w: Work) {
        let items = self.items(s, w.batch, w.sweep, w.now);
        let pulls = self.pulls(&w, &items);
        let (pieces, narrow) = Self::pieces(&pulls);
        let next = |w: &mut Work| -> Phase {
            let more = usize::from(w.piece) < pieces.len();
            w.stage = match (w.stage, self.ack_before_sink) {
                (Stage::Pull, false) => Stage::Sink,
                (Stage::Sink, false) if more => Stage::Pull,
                (Stage::Sink, false) => Stage::Store,
                (Stage::Store, false) => Stage::Settle,
                (Stage::Settle, false) => return Phase::Idle,
                // The broken order: pull every piece, settle, then sink and store.
                (Stage::Pull, true) if more => Stage::Pull,
                (Stage::Pull, true) => Stage::Settle,
                (Stage::Settle, true) if pieces.is_empty() => return Phase::Idle,
                (Stage::Settle, true) => Stage::Sink,
                (Stage::Sink, true) => Stage::Store,
                (Stage::Store, true) => return Phase::Idle,
            };
            Phase::Working(*w)
        };
        let phase = match w.stage {
            Stage::Pull => {
                let piece = usize::from(w.piece);
                let rows = rows_in(s.committed, &pieces[piece..=piece]);
                if piece < narrow {
                    w.narrow_got |= rows;
                } else {
                    w.got |= rows;
                }
                w.staged |= rows;
                w.piece += 1;
                next(&mut w)
            }
            Stage::Sink => {
                s.sink |= w.staged;
                s.received |= w.staged;
                w.staged = 0;
                next(&mut w)
            }
            Stage::Store => {
                let got = self.received(&pulls, w.got);
                let max = got.reached.checkpoint();
                if let Some(to) = max {
                    let tick = ROW_TS[row_at(to)];
                    let record = got.read_from.map(|from| (w.now, secs(from)));
                    if advance_read(&mut s.kv, w.read, tick, record) {
                        let below = |rows: u8, floor: i16| {
                            (0..ROWS).any(|i| {
                                rows & mask(i) != 0
                                    && ROW_TS[i] <= tick
                                    && secs(ts(ROW_TS[i])) >= floor
                            })
                        };
                        let floor = record.map_or(i16::MIN, |(_, f)| f);
                        s.hole |= below(w.visible_at_plan & !s.received, floor);
                        s.hole_any |= below(s.committed & !s.received, i16::MIN);
                        s.resync_undone |= below(s.committed & s.received & !s.sink, i16::MIN);
                    }
                }
                if let settle::Reached::Window(_) = got.reached {
                    let mut memory = self.memory(s.replicas[r].remembered);
                    memory.remember_keys(got.window_keys, max, OVERLAP);
                    s.replicas[r].remembered = self.remembered(&memory);
                    // As the worker records a whole sweep (coalesce::sweep_from).
                    if w.sweep
                        && got.read_whole
                        && let Some(from) = pulls.plan.blind_from
                    {
                        s.replicas[r].last_sweep = Some((w.now, secs(from)));
                    }
                }
                next(&mut w)
            }
            Stage::Settle => {
                let reached = self.received(&pulls, w.got).reached;
                let narrowed = Self::narrow_reached(&pulls, w.narrow_got);
                let settled = settle::settle_pulled_narrow(
                    &pulls.plan,
                    &items,
                    &reached,
                    &narrowed,
                    Duration::from_secs(1),
                );
                for (idx, d) in settled.out {
                    if idx == SWEEP_IDX {
                        continue;
                    }
                    let m = &mut s.notices[idx];
                    match d {
                        Decision::Ack => {
                            *m = Msg::Acked;
                            s.ack_hole |= s.received & mask(idx) == 0;
                        }
                        Decision::Later(_) | Decision::Nak(_) if *m == Msg::InFlight => {
                            *m = Msg::Pending
                        }
                        _ => {}
                    }
                }
                w.settled = true;
                next(&mut w)
            }
        };
        if phase == Phase::Idle && w.sweep && w.now == QUIET_TICK {
            s.final_sweep = true;
        }
        s.replicas[r].phase = phase;
    }

    /// The end: every notice acked, the resyncs done, no replica working or owing a sweep,
    /// the scheduled sweep run (nothing but a crash can happen any more).
    fn done(&self, s: &State) -> bool {
        s.clock == QUIET_TICK
            && s.resyncs == self.max_resyncs
            && (s.final_sweep || !self.sweep)
            && s.notices.iter().all(|m| *m == Msg::Acked)
            && s.replicas
                .iter()
                .all(|r| r.phase == Phase::Idle && !r.rewound)
    }

    fn sweeping(s: &State, r: usize) -> bool {
        matches!(
            s.replicas[r].phase,
            Phase::Fetched { sweep: true, .. } | Phase::Working(Work { sweep: true, .. })
        )
    }

    fn held(s: &State, r: usize) -> u8 {
        match s.replicas[r].phase {
            Phase::Idle => 0,
            Phase::Fetched { batch, .. } | Phase::Working(Work { batch, .. }) => batch,
        }
    }
}

/// `Checkpoints::advance_read` in one atomic step: the first compare-and-set names the
/// revision read before the pull; on a conflict it reads again and keeps the larger value.
/// The pull's record is written only together with a larger value. Returns whether it wrote.
fn advance_read(kv: &mut Kv, hint: Kv, to: u8, read: Option<(u8, i16)>) -> bool {
    let baseline = hint.value;
    let resyncs_read = hint.resyncs;
    let mut known = Some(hint);
    loop {
        let (current, current_read, revision, resyncs) = match known.take() {
            Some(h) if h.value.is_none_or(|c| c < to) => (h.value, h.read, h.revision, h.resyncs),
            _ => (kv.value, kv.read, kv.revision, kv.resyncs),
        };
        if current.is_some_and(|c| c >= to) {
            return false;
        }
        // A resync came after the batch read the key: kept.
        if resyncs > resyncs_read {
            return false;
        }
        // None when the batch started, now a value no pull describes: an operator's resync
        // (every agent write describes its pull), kept.
        if baseline.is_none() && current.is_some() && current_read.is_none() {
            return false;
        }
        // Moved below what the batch read: an operator's resync, kept.
        if let (Some(b), Some(c)) = (baseline, current)
            && c < b
        {
            return false;
        }
        if revision == kv.revision {
            *kv = Kv {
                value: Some(to),
                read,
                revision: kv.revision + 1,
                resyncs,
            };
            return true;
        }
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            clock: 0,
            committed: 0,
            published: [0; ROWS],
            notices: [Msg::Unpublished; ROWS],
            kv: Kv {
                value: None,
                read: None,
                revision: 0,
                resyncs: 0,
            },
            received: 0,
            sink: 0,
            replicas: [Replica {
                phase: Phase::Idle,
                remembered: 0,
                rewound: false,
                last_sweep: None,
            }; 2],
            crashes: 0,
            expiries: 0,
            resyncs: 0,
            final_sweep: false,
            hole: false,
            hole_any: false,
            resync_undone: false,
            ack_hole: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let overdue = (0..ROWS).any(|r| s.committed & mask(r) == 0 && self.deadline(r) <= s.clock);
        let quiet = s.committed == ALL_ROWS
            && s.notices.iter().all(|m| *m == Msg::Acked)
            && s.replicas
                .iter()
                .all(|r| r.phase == Phase::Idle && !r.rewound);
        if (s.clock < LAST_TICK && !overdue) || (s.clock == LAST_TICK && quiet) {
            actions.push(Action::Tick);
        }
        for (r, &at) in ROW_TS.iter().enumerate() {
            if s.committed & mask(r) == 0 && (at..=self.deadline(r)).contains(&s.clock) {
                actions.push(Action::Commit(r));
            }
        }
        let pending = s.notices.contains(&Msg::Pending);
        for r in 0..2 {
            let rep = &s.replicas[r];
            match rep.phase {
                Phase::Idle => {
                    if pending {
                        actions.push(Action::Fetch(r));
                    }
                    // The scheduled one until one completes (a crashed sweep is run again).
                    let scheduled = self.sweep
                        && s.clock == QUIET_TICK
                        && !s.final_sweep
                        && (0..2).all(|i| !Protocol::sweeping(s, i));
                    if scheduled || rep.rewound {
                        actions.push(Action::Sweep(r));
                    }
                }
                _ => actions.push(Action::Step(r)),
            }
            if s.crashes < self.max_crashes
                && (rep.phase != Phase::Idle || rep.remembered != 0 || rep.rewound)
            {
                actions.push(Action::Crash(r));
            }
        }
        if s.expiries < self.max_expiries {
            for n in 0..ROWS {
                if s.notices[n] == Msg::InFlight {
                    actions.push(Action::Expire(n));
                }
            }
        }
        if s.resyncs < self.max_resyncs && s.kv.value.is_some_and(|v| v > 0) {
            actions.push(Action::Resync);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        s.hole = false;
        s.hole_any = false;
        s.resync_undone = false;
        s.ack_hole = false;
        match action {
            Action::Tick => s.clock += 1,
            Action::Commit(r) => {
                s.committed |= mask(r);
                s.published[r] = s.clock;
                s.notices[r] = Msg::Pending;
            }
            Action::Fetch(r) => {
                let mut batch = 0;
                for n in 0..ROWS {
                    if s.notices[n] == Msg::Pending {
                        s.notices[n] = Msg::InFlight;
                        batch |= mask(n);
                    }
                }
                s.replicas[r].phase = Phase::Fetched {
                    batch,
                    sweep: false,
                };
            }
            Action::Sweep(r) => {
                s.replicas[r].rewound = false;
                s.replicas[r].phase = Phase::Fetched {
                    batch: 0,
                    sweep: true,
                };
            }
            Action::Step(r) => match s.replicas[r].phase {
                Phase::Idle => return None,
                Phase::Fetched { batch, sweep } => {
                    s.replicas[r].phase = self.start(&s, r, batch, sweep);
                }
                Phase::Working(w) => self.step(&mut s, r, w),
            },
            Action::Crash(r) => {
                s.crashes += 1;
                let mine = Self::held(&s, r) & !Self::held(&s, 1 - r);
                for n in 0..ROWS {
                    if mine & mask(n) != 0 && s.notices[n] == Msg::InFlight {
                        // Redelivered once the ack wait expires.
                        s.notices[n] = Msg::Pending;
                    }
                }
                s.replicas[r] = Replica {
                    phase: Phase::Idle,
                    remembered: 0,
                    rewound: false,
                    last_sweep: None,
                };
            }
            Action::Expire(n) => {
                s.expiries += 1;
                s.notices[n] = Msg::Pending;
            }
            Action::Resync => {
                s.resyncs += 1;
                s.sink = 0;
                s.kv = Kv {
                    value: Some(0),
                    read: None,
                    revision: s.kv.revision + 1,
                    resyncs: s.kv.resyncs + 1,
                };
                for rep in &mut s.replicas {
                    rep.rewound = true;
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(CHECKPOINT_SAFE, |_, s: &State| !s.hole),
            Property::always(CHECKPOINT_OVER_RECEIVED, |_, s: &State| !s.hole_any),
            Property::always(ACK_SAFE, |_, s: &State| !s.ack_hole),
            Property::always(RESYNC_KEPT, |_, s: &State| !s.resync_undone),
            Property::eventually(LIVE, |_, s: &State| {
                s.committed == ALL_ROWS && s.received == ALL_ROWS
            }),
            Property::eventually(RESTORED, |m: &Protocol, s: &State| {
                m.done(s) && s.committed == ALL_ROWS && s.sink == ALL_ROWS
            }),
            Property::sometimes(SOME_DONE, |_, s: &State| {
                s.sink == ALL_ROWS && s.notices.iter().all(|m| *m == Msg::Acked)
            }),
            Property::sometimes(SOME_SHARED, |_, s: &State| {
                Protocol::held(s, 0) & Protocol::held(s, 1) != 0
            }),
            Property::sometimes(SOME_CRASH_RESYNC, |_, s: &State| {
                s.crashes > 0 && s.resyncs > 0 && s.sink == ALL_ROWS
            }),
            Property::sometimes(SOME_NARROW, |_, s: &State| {
                s.replicas.iter().any(|r| {
                    matches!(r.phase, Phase::Working(w) if w.narrow_got != 0 && w.stage == Stage::Settle)
                })
            }),
            Property::sometimes(SOME_CHAINED, |m: &Protocol, s: &State| {
                s.replicas.iter().any(|r| match r.phase {
                    Phase::Working(w) if w.sweep && w.prev.is_some() => {
                        let p = m.pulls(&w, &m.items(s, w.batch, w.sweep, w.now)).plan;
                        matches!(
                            (p.pull.as_ref().map(|p| &p.kind), p.blind_from),
                            (Some(PullKind::Window { from, .. }), Some(b)) if *from > b
                        )
                    }
                    _ => false,
                })
            }),
        ]
    }
}

const ALL_ROWS: u8 = (1 << ROWS) - 1;
const CHECKPOINT_SAFE: &str = "a checkpoint is stored only with a true record: every row in [read_from, checkpoint] visible at read_at is in the sink";
const CHECKPOINT_OVER_RECEIVED: &str =
    "a checkpoint is stored only over visible rows the sink has (whenever they became visible)";
const ACK_SAFE: &str = "a notice is acked only when its row is in the sink";
const RESYNC_KEPT: &str =
    "after a resync the checkpoint passes a lost row only once it is delivered again";
const LIVE: &str = "every committed row version reaches the sink";
const RESTORED: &str =
    "every committed row version is in the consumer's sink in the end (also after a resync)";
const SOME_DONE: &str = "sometimes every notice is acked and every row is in the sink";
const SOME_SHARED: &str = "sometimes both replicas hold the same notice";
const SOME_CRASH_RESYNC: &str = "sometimes a crash and a resync and still every row in the sink";
const SOME_NARROW: &str = "sometimes a narrow pull receives a row";
const SOME_CHAINED: &str = "sometimes a sweep starts above its blind FROM (after a whole sweep)";

/// The replicas are interchangeable: a state and the one with the replicas swapped are
/// explored once (symmetry reduction).
fn representative(s: &State) -> State {
    let mut s = s.clone();
    s.replicas.sort_unstable();
    s
}

/// Run the checker to completion (no depth bound: the model's state space is finite) and
/// print its size.
fn check(name: &str, model: Protocol) -> impl Checker<Protocol> {
    let start = std::time::Instant::now();
    let checker = model
        .checker()
        .threads(2)
        .symmetry_fn(representative)
        .spawn_dfs()
        .join();
    eprintln!(
        "model {name}: {} unique states ({} generated), max depth {}, done {}, {:.1?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        checker.is_done(),
        start.elapsed()
    );
    assert!(
        checker.is_done(),
        "model {name}: the checker did not finish"
    );
    checker
}

/// The counterexample of `property`, one line per state and action.
fn trace(checker: &impl Checker<Protocol>, property: &'static str) -> Option<String> {
    let path = checker.discovery(property)?;
    let mut out = String::new();
    for (s, action) in path.into_vec() {
        let work = |r: usize| match s.replicas[r].phase {
            Phase::Idle => "idle".to_owned(),
            Phase::Fetched { batch, sweep } => {
                format!("fetched {batch:02b}{}", if sweep { "+sweep" } else { "" })
            }
            Phase::Working(w) => format!(
                "{:?} batch {:02b}{} read {:?}/{:?} now {} recv {:02b} piece {} got {:02b} narrow {:02b}",
                w.stage,
                w.batch,
                if w.sweep { "+sweep" } else { "" },
                w.read.value,
                w.read.read,
                w.now,
                w.recv,
                w.piece,
                w.got,
                w.narrow_got,
            ),
        };
        let _ = writeln!(
            out,
            "    clock {} visible {:02b} published {:?} received {:02b} sink {:02b} notices {:?} checkpoint {:?} read {:?} @{} | r0 {} (mem {:02b}{}) | r1 {} (mem {:02b}{})",
            s.clock,
            s.committed,
            s.published,
            s.received,
            s.sink,
            s.notices,
            s.kv.value,
            s.kv.read,
            s.kv.revision,
            work(0),
            s.replicas[0].remembered,
            if s.replicas[0].rewound {
                " rewound"
            } else {
                ""
            },
            work(1),
            s.replicas[1].remembered,
            if s.replicas[1].rewound {
                " rewound"
            } else {
                ""
            },
        );
        if let Some(a) = action {
            let _ = writeln!(out, "  {a:?}");
        }
    }
    Some(out)
}

/// Check the model `make` builds and assert that `holds` have no counterexample (else panic
/// with it) and that `fails` have one (a short one is printed), and that at least
/// `min_states` were explored.
fn expect(
    name: &str,
    make: fn() -> Protocol,
    holds: &[&'static str],
    fails: &[&'static str],
    min_states: usize,
) -> impl Checker<Protocol> {
    let full = check(name, make());
    let checker = &full;
    for p in holds {
        if let Some(t) = trace(checker, p) {
            panic!("model {name}: \"{p}\" fails:\n{t}");
        }
        eprintln!("model {name}: holds: {p}");
    }
    for p in fails {
        assert!(
            checker.discovery(p).is_some(),
            "model {name}: expected a counterexample to \"{p}\", the checker found none"
        );
        // The full run's counterexample is whatever path its depth-first search took: a
        // breadth-first run that stops at the first one gives a shortest trace to print.
        let short = make()
            .checker()
            .threads(1)
            .finish_when(HasDiscoveries::AnyOf([*p].into()))
            .spawn_bfs()
            .join();
        let t = trace(&short, p).expect("found by the full run");
        eprintln!("model {name}: fails: {p}; counterexample:\n{t}");
    }
    assert!(
        checker.unique_state_count() >= min_states,
        "model {name}: only {} states, expected at least {min_states}",
        checker.unique_state_count()
    );
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows become visible at their timestamps; crashes, an ack-wait expiry, a resync and the
    /// scheduled sweep. The checkpoint's record is always true, no notice is acked before its
    /// row is in the sink, and every row reaches the sink. A checkpoint may pass a row the
    /// sink has not received (a first pull's window starts an overlap below its notice; a
    /// row committed after a pull started): that row's notice is not covered by the record,
    /// so it brings the row with a narrow pull. After a resync no checkpoint passes a row the
    /// consumer lost before it is delivered again, and the consumer gets back every row it
    /// lost: a batch that read the key before the resync (a smaller resync count) keeps the
    /// key, however far other batches have moved the rewound value since.
    #[test]
    fn model_prompt_commits() {
        let checker = expect(
            "prompt commits",
            Protocol::new,
            &[CHECKPOINT_SAFE, ACK_SAFE, LIVE, RESYNC_KEPT, RESTORED],
            &[CHECKPOINT_OVER_RECEIVED],
            450_000,
        );
        for p in [SOME_DONE, SOME_SHARED, SOME_CRASH_RESYNC, SOME_NARROW] {
            assert!(checker.discovery(p).is_some(), "never reached: {p}");
        }
    }

    /// Row 0 is a long transaction (visible and announced up to one tick after its
    /// timestamp, more than the overlap). Its notice, at or below a checkpoint whose pull
    /// started before it was stored, gets a narrow pull: it is acked only once its row is in
    /// the sink, and every row reaches the sink.
    #[test]
    fn model_late_commit() {
        let checker = expect(
            "late commit",
            || Protocol {
                late_commit: true,
                max_resyncs: 0,
                ..Protocol::new()
            },
            &[CHECKPOINT_SAFE, ACK_SAFE, LIVE, RESTORED],
            &[CHECKPOINT_OVER_RECEIVED],
            50_000,
        );
        assert!(
            checker.discovery(SOME_NARROW).is_some(),
            "never reached: {SOME_NARROW}"
        );
    }

    /// The same without the scheduled sweep (`sweep.interval` 0): the late row still reaches
    /// the sink, pulled by its own notice.
    #[test]
    fn model_late_commit_without_sweep() {
        expect(
            "late commit, no sweep",
            || Protocol {
                late_commit: true,
                sweep: false,
                max_resyncs: 0,
                ..Protocol::new()
            },
            &[CHECKPOINT_SAFE, ACK_SAFE, LIVE, RESTORED],
            &[CHECKPOINT_OVER_RECEIVED],
            50_000,
        );
    }

    /// A late commit and a resync without the scheduled sweep (no ack-wait expiry, to keep
    /// the state space small): acks stay safe, every row reaches the sink, no checkpoint
    /// passes a row lost at the resync before it is delivered again, and the consumer gets
    /// back every row it lost.
    #[test]
    fn model_late_commit_resync_without_sweep() {
        expect(
            "late commit and a resync, no scheduled sweep",
            || Protocol {
                late_commit: true,
                sweep: false,
                max_expiries: 0,
                ..Protocol::new()
            },
            &[CHECKPOINT_SAFE, ACK_SAFE, LIVE, RESYNC_KEPT, RESTORED],
            &[CHECKPOINT_OVER_RECEIVED],
            150_000,
        );
    }

    /// Two resyncs, so that the second resync's immediate sweep follows the first one's, which
    /// read its whole window (a span of its `read_through`): a sweep never starts above the checkpoint it
    /// was rewound to, so no checkpoint passes a lost row and every row comes back (no
    /// ack-wait expiry and no scheduled sweep, to keep the state space small).
    #[test]
    fn model_two_resyncs_with_chained_sweeps() {
        let checker = expect(
            "two resyncs, chained sweeps",
            || Protocol {
                late_commit: true,
                sweep: false,
                max_expiries: 0,
                max_resyncs: 2,
                ..Protocol::new()
            },
            &[CHECKPOINT_SAFE, ACK_SAFE, LIVE, RESYNC_KEPT, RESTORED],
            &[CHECKPOINT_OVER_RECEIVED],
            100_000,
        );
        assert!(
            checker.discovery(SOME_CHAINED).is_some(),
            "never reached: {SOME_CHAINED}"
        );
    }

    /// The checker catches a broken agent: settling (acking) before the sink write.
    #[test]
    fn model_ack_before_sink_is_caught() {
        expect(
            "ack before sink",
            || Protocol {
                ack_before_sink: true,
                max_resyncs: 0,
                ..Protocol::new()
            },
            &[],
            &[ACK_SAFE],
            15_000,
        );
    }
}
