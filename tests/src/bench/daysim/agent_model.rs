//! The agent in the virtual day: its notice-triggered pulls and sweeps, decided by the agent's
//! own pure rules ([`coalesce::hold_for`] for `min_interval`, [`coalesce::plan_read`] for the
//! coverage rule and the window, [`coalesce::cut_windows`] for pieces), so the model cannot
//! drift from the agent. Its requests are real requests to the simulator at their virtual
//! instants.
//!
//! What is modelled around those rules (the real agent's fetch and batch run on tokio's real
//! clock, which the virtual day cannot drive):
//! - A notice is stored at its change instant (relay + JetStream take milliseconds, see
//!   `latency`). A fetch returns as soon as notices are there (`batch.max_wait` bounds an idle
//!   fetch only), at most `batch.size` (500) of them; handling a batch takes [`TURNAROUND`],
//!   during which further notices wait for the next fetch.
//! - A notice held by `min_interval` is handed back with a delay and delivered again when it
//!   ends; a notice whose rows a window pull received (the agent remembers the rows' key and
//!   timestamp) is already covered at its next delivery.
//! - The checkpoint is the newest row a window pull received, stored with the pull's start and
//!   FROM; a window pull with no rows leaves it. The sweep (`sweep.interval` 1 h from the
//!   agent's start at 00:00) is the agent's own: a replayed notice at "now".
//! - Freshness of a row = the virtual instant of the request that first returned it − its
//!   change instant (request latency, milliseconds, is left out as for every strategy).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use shirase_proto::{ChangeKind, InterfaceId};
use shirase_subscriber_kit::coalesce::{
    self, LastRead, NarrowKind, PlanInput, PlanSettings, PullKind, ReadThrough, minus,
};
use shirase_subscriber_kit::pull_client::PullClient;
use shirase_subscriber_kit::read_log::ReadLog;

use super::{Strategy, advance_to, pull};
use crate::provider_sim::SimHandle;

/// Time the agent takes for one batch (fetch, pull round trip, sink, checkpoint, acks), seconds.
pub const TURNAROUND: f64 = 0.02;
/// `batch.size` (default).
const BATCH: usize = 500;
/// Row budget of a window piece: 2 × `pull.max_notices_per_window` (default 500).
const BUDGET: u64 = 1000;
/// `sweep.interval` (default), seconds.
const SWEEP_EVERY: f64 = 3600.0;

/// A notice on the consumer.
#[derive(Debug, Clone)]
struct Msg {
    iface: usize,
    updated_at: Timestamp,
    change: ChangeKind,
    atena: String,
    /// When JetStream stored it, seconds into the day.
    stored: f64,
    /// When the consumer delivers it (next), seconds into the day.
    due: f64,
    delivered: u64,
    seq: u64,
}

/// One agent configuration through the day.
#[derive(Debug)]
pub struct AgentModel {
    /// The interface's `min_interval`.
    pub min_interval: Option<Duration>,
    /// `pull.overlap`.
    pub overlap: Duration,
    /// The provider's maintenance window ends this many seconds into the day (it starts at
    /// 00:00): no request before (`enforce_maintenance`, the agent's default). `None`: the
    /// agent pulls through it, as the pollers do here.
    pub maintenance_end: Option<f64>,
    /// Requests, rows and freshness.
    pub st: Strategy,
    /// Requests and rows of sweeps (part of `st`).
    pub sweep_requests: u64,
    /// Rows returned to sweeps.
    pub sweep_rows: u64,
    /// Narrow pulls made.
    pub narrow_requests: u64,
    /// Notices handed back by `min_interval`.
    pub held: u64,
    queue: Vec<Msg>,
    seq: u64,
    free_at: f64,
    next_sweep: f64,
    checkpoint: Vec<Option<Timestamp>>,
    last: Vec<Option<LastRead>>,
    /// Rows known read per interface, kept as the agent keeps them: the records of its
    /// checkpoints and its whole sweeps (`PlanSettings::read_through`).
    read_log: Vec<ReadLog>,
    /// (addressee, timestamp) of rows window pulls received: `PlanInput::received`.
    received: Vec<HashSet<(String, Timestamp)>>,
    /// Timestamps of rows received, sorted: where the rows are, for cutting windows.
    rows: Vec<Vec<Timestamp>>,
    /// First instant each (addressee, history) was received.
    seen: Vec<HashMap<(String, u64), f64>>,
}

impl AgentModel {
    /// A model for `ifaces` interfaces with `min_interval` on every one and `pull.overlap`
    /// `overlap`.
    pub fn new(
        name: &'static str,
        ifaces: usize,
        min_interval: Option<Duration>,
        overlap: Duration,
        maintenance_end: Option<f64>,
    ) -> Self {
        Self {
            min_interval,
            overlap,
            maintenance_end,
            st: Strategy::new(name, ifaces),
            sweep_requests: 0,
            sweep_rows: 0,
            narrow_requests: 0,
            held: 0,
            queue: Vec::new(),
            seq: 0,
            free_at: 0.0,
            next_sweep: SWEEP_EVERY,
            checkpoint: vec![None; ifaces],
            last: vec![None; ifaces],
            read_log: vec![ReadLog::default(); ifaces],
            received: vec![HashSet::new(); ifaces],
            rows: vec![Vec::new(); ifaces],
            seen: vec![HashMap::new(); ifaces],
        }
    }

    /// A notice stored at `s` (seconds into the day) for a change of `atena` at `updated_at`.
    pub fn notice(
        &mut self,
        s: f64,
        iface: usize,
        updated_at: Timestamp,
        change: ChangeKind,
        atena: String,
    ) {
        self.seq += 1;
        self.queue.push(Msg {
            iface,
            updated_at,
            change,
            atena,
            stored: s,
            due: s,
            delivered: 0,
            seq: self.seq,
        });
    }

    /// Whether notices are still on the consumer.
    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Every batch and sweep that starts before `s`, in time order.
    pub async fn run_until(
        &mut self,
        s: f64,
        client: &PullClient,
        ifaces: &[InterfaceId],
        sim: &SimHandle,
        at: impl Fn(f64) -> Timestamp + Copy,
    ) -> anyhow::Result<()> {
        loop {
            let batch_at = self
                .queue
                .iter()
                .map(|m| m.due)
                .min_by(f64::total_cmp)
                .map(|d| d.max(self.free_at));
            let sweep_first = batch_at.is_none_or(|b| self.next_sweep <= b);
            let t = if sweep_first {
                self.next_sweep
            } else {
                batch_at.unwrap_or(f64::INFINITY)
            };
            if t >= s {
                return Ok(());
            }
            if let Some(end) = self.maintenance_end.filter(|&end| t < end) {
                // Inside the window the agent sends nothing: a sweep is skipped, notices wait.
                if sweep_first {
                    self.next_sweep += SWEEP_EVERY;
                } else {
                    self.free_at = self.free_at.max(end);
                }
                continue;
            }
            advance_to(sim, at(t));
            if sweep_first {
                for (i, iface) in ifaces.iter().enumerate() {
                    self.sweep(client, *iface, i, t, at).await?;
                }
                self.next_sweep += SWEEP_EVERY;
            } else {
                self.batch(client, ifaces, t, at).await?;
                self.free_at = t + TURNAROUND;
            }
        }
    }

    async fn batch(
        &mut self,
        client: &PullClient,
        ifaces: &[InterfaceId],
        t: f64,
        at: impl Fn(f64) -> Timestamp + Copy,
    ) -> anyhow::Result<()> {
        let mut ready: Vec<usize> = (0..self.queue.len())
            .filter(|&k| self.queue[k].due <= t)
            .collect();
        ready.sort_by(|&a, &b| {
            let (a, b) = (&self.queue[a], &self.queue[b]);
            a.due.total_cmp(&b.due).then(a.seq.cmp(&b.seq))
        });
        let more_pending = ready.len() > BATCH;
        ready.truncate(BATCH);
        let now = at(t);
        let mut done: HashSet<usize> = HashSet::new();
        for (i, iface) in ifaces.iter().enumerate() {
            let mine: Vec<usize> = ready
                .iter()
                .copied()
                .filter(|&k| self.queue[k].iface == i)
                .collect();
            if mine.is_empty() {
                continue;
            }
            for &k in &mine {
                self.queue[k].delivered += 1;
            }
            // The agent's hold (plan::min_interval_hold): its first deliveries, from the
            // oldest store time; notices delivered again are decided now.
            let fresh: Vec<usize> = mine
                .iter()
                .copied()
                .filter(|&k| self.queue[k].delivered == 1)
                .collect();
            let oldest = fresh
                .iter()
                .map(|&k| self.queue[k].stored)
                .min_by(f64::total_cmp);
            let hold = self
                .min_interval
                .zip(oldest)
                .and_then(|(m, o)| coalesce::hold_for(at(o), now, m));
            let mine: Vec<usize> = match hold {
                Some(wait) => {
                    for &k in &fresh {
                        self.queue[k].due = t + wait.as_secs_f64();
                    }
                    self.held += fresh.len() as u64;
                    mine.into_iter().filter(|k| !fresh.contains(k)).collect()
                }
                None => mine,
            };
            if mine.is_empty() {
                continue;
            }
            let inputs: Vec<PlanInput> = mine
                .iter()
                .map(|&k| {
                    let m = &self.queue[k];
                    PlanInput {
                        updated_at: m.updated_at,
                        change: m.change,
                        keys: vec![],
                        replay: false,
                        published: Some(at(m.stored)),
                        received: self.received[i].contains(&(m.atena.clone(), m.updated_at)),
                    }
                })
                .collect();
            self.pull_plan(client, *iface, i, &inputs, more_pending, None, t, at)
                .await?;
            done.extend(mine);
        }
        let mut k = 0;
        self.queue.retain(|_| {
            k += 1;
            !done.contains(&(k - 1))
        });
        Ok(())
    }

    /// The agent's sweep of one interface: a replayed notice at `t`.
    async fn sweep(
        &mut self,
        client: &PullClient,
        iface: InterfaceId,
        i: usize,
        t: f64,
        at: impl Fn(f64) -> Timestamp + Copy,
    ) -> anyhow::Result<()> {
        let input = PlanInput {
            updated_at: at(t),
            change: ChangeKind::Update,
            keys: vec![],
            replay: true,
            published: None,
            received: false,
        };
        let (r0, n0) = (self.st.requests, self.st.rows);
        let read_through =
            self.checkpoint[i].and_then(|c| self.read_log[i].around(minus(c, self.overlap)));
        if let Some(from) = self
            .pull_plan(client, iface, i, &[input], false, read_through, t, at)
            .await?
        {
            self.read_log[i].insert(ReadThrough::swept(from, at(t), self.overlap));
        }
        self.sweep_requests += self.st.requests - r0;
        self.sweep_rows += self.st.rows - n0;
        Ok(())
    }

    /// Plan with the agent's rules and make the planned requests. Returns the plan's blind
    /// FROM (`Plan::blind_from`: a sweep records it for the next one).
    #[allow(clippy::too_many_arguments)]
    async fn pull_plan(
        &mut self,
        client: &PullClient,
        iface: InterfaceId,
        i: usize,
        inputs: &[PlanInput],
        more_pending: bool,
        read_through: Option<ReadThrough>,
        t: f64,
        at: impl Fn(f64) -> Timestamp + Copy,
    ) -> anyhow::Result<Option<Timestamp>> {
        let now = at(t);
        let settings = PlanSettings {
            overlap: self.overlap,
            keyed_pull_max_keys: 0,
            gap: false,
            more_pending,
            read_through,
        };
        let plan = coalesce::plan_read(inputs, self.checkpoint[i], self.last[i], now, settings);
        if let Some(n) = &plan.narrow {
            let NarrowKind::Windows(ws) = &n.kind else {
                anyhow::bail!("a keyed narrow pull without keyed pulls configured");
            };
            for &(from, to) in ws {
                self.narrow_requests += 1;
                self.request(client, iface, i, from, to, t, false).await?;
            }
        }
        let blind_from = plan.blind_from;
        let Some(p) = plan.pull else {
            return Ok(blind_from);
        };
        let PullKind::Window { from, to } = p.kind else {
            anyhow::bail!("a keyed pull without keyed pulls configured");
        };
        // Where the rows are: 2 per notice, 1 per row already received (plan::cut_windows).
        let mut points: Vec<(Timestamp, u64)> = p
            .covers
            .iter()
            .filter(|&&k| !inputs[k].replay)
            .map(|&k| (inputs[k].updated_at, 2))
            .collect();
        let rows = &self.rows[i];
        let lo = rows.partition_point(|r| *r < from);
        let hi = rows.partition_point(|r| *r < to);
        points.extend(rows[lo..hi].iter().map(|r| (*r, 1)));
        points.sort_unstable();
        let mut newest = None;
        for (a, b) in coalesce::cut_windows(from, to, &points, BUDGET) {
            let m = self.request(client, iface, i, a, b, t, true).await?;
            newest = newest.max(m);
        }
        if let Some(m) = newest {
            self.checkpoint[i] = Some(self.checkpoint[i].map_or(m, |c| c.max(m)));
            self.last[i] = Some(LastRead { at: now, from });
            // The agent's record of this pull: every row in [FROM, its newest] visible now.
            self.read_log[i].record(from, m, now, self.overlap);
            self.read_log[i].forget_below(minus(m, self.overlap));
        }
        Ok(blind_from)
    }

    /// One request; a window pull's rows are remembered. Returns the newest row's timestamp.
    #[allow(clippy::too_many_arguments)]
    async fn request(
        &mut self,
        client: &PullClient,
        iface: InterfaceId,
        i: usize,
        from: Timestamp,
        to: Timestamp,
        t: f64,
        window: bool,
    ) -> anyhow::Result<Option<Timestamp>> {
        let got = pull(client, iface, from, to, &mut self.st, i).await?;
        let mut newest = None;
        for (a, h, ts) in got {
            newest = newest.max(Some(ts));
            if let (Some(a), Some(h)) = (a, h) {
                self.seen[i].entry((a.clone(), h)).or_insert(t);
                if window {
                    self.received[i].insert((a, ts));
                }
            }
            if window {
                let rows = &mut self.rows[i];
                let k = rows.partition_point(|r| *r <= ts);
                rows.insert(k, ts);
            }
        }
        Ok(newest)
    }

    /// Freshness of every committed row it received.
    pub fn finish(&mut self, committed: &[HashMap<(String, u64), Timestamp>], day0: Timestamp) {
        for (i, seen) in self.seen.iter().enumerate() {
            for (k, s) in seen {
                if let Some(c) = committed[i].get(k) {
                    let got = day0 + SignedDuration::from_micros((s * 1e6) as i64);
                    self.st.freshness.push(Duration::from_micros(
                        (got.as_microsecond() - c.as_microsecond()).max(0) as u64,
                    ));
                }
            }
        }
    }
}

/// The offline optimum for a freshness bound `bound`: per interface, pull exactly when the
/// oldest unread change reaches age `bound` (reading every change committed until then), each
/// pull cut into requests of at most 500 notices like the agent's windows. `changes[i]` are the
/// change instants of interface `i`, seconds into the day.
pub fn optimum_requests(changes: &[Vec<f64>], bound: f64) -> u64 {
    let mut requests = 0u64;
    for c in changes {
        let mut c = c.clone();
        c.sort_by(f64::total_cmp);
        let mut k = 0;
        while k < c.len() {
            let pull_at = c[k] + bound;
            let n = c[k..].partition_point(|x| *x <= pull_at);
            requests += n.div_ceil(500) as u64;
            k += n;
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_optimum_pulls_when_the_oldest_unread_change_reaches_the_bound() {
        // Bound 10: {0, 5, 10} in one pull at 10, {11, 20} at 21, {40} at 50.
        let day = vec![vec![0.0, 5.0, 10.0, 11.0, 20.0, 40.0]];
        assert_eq!(optimum_requests(&day, 10.0), 3);
        // Bound 0: one per distinct instant.
        assert_eq!(optimum_requests(&day, 0.0), 6);
        // 1,200 changes within the bound: one pull of 3 requests of at most 500 notices.
        let burst = vec![(0..1200).map(|k| f64::from(k) * 0.01).collect::<Vec<_>>()];
        assert_eq!(optimum_requests(&burst, 60.0), 3);
        // Interfaces are pulled separately.
        assert_eq!(optimum_requests(&[vec![0.0], vec![0.0]], 1.0), 2);
    }
}
