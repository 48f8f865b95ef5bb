//! `daysim`: one virtual day of resident changes for a city of 300,000, delivered by polling
//! (every 5 min and every 1 min), by one pull per notice, and by Shirase's coalescing.
//!
//! The provider-sim runs on its manual clock: the benchmark advances it to each event's instant
//! and commits the changes there, so every DB update timestamp is the virtual time of the
//! change. Every strategy's requests are real HTTP requests (the agent's own `PullClient`,
//! OAuth included) against that simulator, issued in time order at their virtual instants, so
//! provider requests and rows transferred are counted by the simulator, and rows missed are
//! computed from what each strategy received.
//!
//! Shirase is **modelled** ([`agent_model`]): the agent's own pure planning functions decide
//! every request (the coverage rule: a window from just past the checkpoint, narrow pulls for
//! late notices, no blind re-read except the hourly sweep; `min_interval` holds), around a model
//! of its fetch loop in virtual time (the real agent's batch wait runs on tokio's real clock,
//! which the virtual day cannot drive). Four configurations run side by side: no
//! `min_interval` (the default) and `min_interval` 1 s, 10 s and 60 s. Each is compared with
//! the offline optimum for its freshness bound ([`agent_model::optimum_requests`]: pull exactly
//! when the oldest unread change reaches that age). Rows per row version = rows transferred /
//! rows the one-pull-per-notice strategy transferred (it reads exactly the row versions each
//! change committed).
//!
//! **(d) watcher** is modelled the same way from the relay watcher's rules, for a
//! provider that cannot publish notices and [`WATCH_SUBSCRIBERS`] subscribers: per interface
//! one poll on the adaptive schedule (60 s at first, halved after changes down to 15 s, ×1.5
//! when idle up to 120 s), window `[cursor, poll − 2 s)`, never inside the provider's
//! 00:00–03:00 maintenance window (its first poll after the window reads all of it); a window
//! with rows becomes notices, and every subscriber's agent makes one window pull 1 s later
//! (its batch wait). Requests = the watcher's polls + every subscriber's pulls, all real.
//! The pollers above are single consumers and poll through the maintenance window (the
//! simulator does not enforce it here); the summary multiplies them by the subscriber count.
//! So do the agent rows, except the last: the defaults keeping the window as the agent does
//! unless `enforce_maintenance = false` (nothing sent 00:00–03:00; the night batch's notices
//! wait on the consumer and are read after it).
//!
//! The day (JST): counter hours 08:30–17:15 with morning (09:30–11:00) and afternoon
//! (13:30–15:30) peaks, 1,400 changes; a night batch at 02:00–02:20 of 6,000 changes; a
//! retroactive correction burst of 1,500 changes in one minute at 16:00; 2 interfaces.
//! The E0004 threshold is raised to 100,000 rows so the pollers need no bisection.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shirase_proto::{ChangeKind, InterfaceId};
use shirase_subscriber_kit::limiter::Limiter;
use shirase_subscriber_kit::pull_client::{Outcome, PullClient, PullRequest};
use tokio_util::sync::CancellationToken;

mod agent_model;

use agent_model::AgentModel;

use super::{CLIENT, Options, Report, interfaces, percentiles_ms, round};
use crate::provider_sim::{self, ChangeSpec, ClockMode, InterfaceSpec, ProviderSim};

const SECRET: &str = "bench-only-secret-daysim";
const DAY: i64 = 86_400;
/// Subscribers of the watched provider in row (d).
pub const WATCH_SUBSCRIBERS: u64 = 5;

/// The watcher model's state per interface (row (d)).
struct WatchModel {
    next: Vec<f64>,
    interval: Vec<f64>,
    cursor: Vec<Timestamp>,
    /// The watcher's own requests (the provider's polling load).
    polls: u64,
    /// The subscribers' data pulls after a window with rows.
    pulls: u64,
    /// Freshness of changes made outside the maintenance window.
    fresh_outside: Vec<Duration>,
    /// End of the maintenance window (00:00-03:00 JST) of the simulated day.
    window_end: Timestamp,
}

impl WatchModel {
    const START: f64 = 60.0;
    const MIN: f64 = 15.0;
    const MAX: f64 = 120.0;
    const SETTLE: i64 = 2;
    /// 00:00–03:00 JST, seconds into the day.
    const WINDOW_END: f64 = 3.0 * 3600.0;

    /// The interface with the earliest poll at or before `s`.
    fn due(&self, s: f64) -> Option<usize> {
        (0..self.next.len())
            .filter(|i| self.next[*i] <= s)
            .min_by(|a, b| self.next[*a].total_cmp(&self.next[*b]))
    }
}

/// Every watcher poll due up to `s` (seconds into the day), in time order.
#[allow(clippy::too_many_arguments)]
async fn watcher_until(
    client: &PullClient,
    ifaces: &[InterfaceId],
    sim: &provider_sim::SimHandle,
    s: f64,
    at: impl Fn(f64) -> Timestamp + Copy,
    w: &mut WatchModel,
    st: &mut Strategy,
    committed: &[HashMap<(String, u64), Timestamp>],
) -> anyhow::Result<()> {
    while let Some(i) = w.due(s) {
        let ws = w.next[i];
        advance_to(sim, at(ws));
        watcher_poll(client, ifaces[i], i, ws, at, w, st, &committed[i]).await?;
    }
    Ok(())
}

/// One watcher poll of interface `i` at `s` (seconds into the day): the watcher's request,
/// then, when it found rows, one window pull by each subscriber 1 s later.
#[allow(clippy::too_many_arguments)]
async fn watcher_poll(
    client: &PullClient,
    iface: InterfaceId,
    i: usize,
    s: f64,
    at: impl Fn(f64) -> Timestamp,
    w: &mut WatchModel,
    st: &mut Strategy,
    committed: &HashMap<(String, u64), Timestamp>,
) -> anyhow::Result<()> {
    if s < WatchModel::WINDOW_END {
        // Inside the maintenance window: no request; poll once it is over.
        w.next[i] = WatchModel::WINDOW_END;
        return Ok(());
    }
    let horizon = at(s) - SignedDuration::from_secs(WatchModel::SETTLE);
    let from = w.cursor[i];
    let before: BTreeSet<(String, u64)> = st.got[i].clone();
    let rows = pull(client, iface, from, horizon, st, i).await?;
    w.polls += 1;
    w.cursor[i] = horizon;
    if rows.is_empty() {
        w.interval[i] = (w.interval[i] * 1.5).min(WatchModel::MAX);
    } else {
        w.interval[i] = (w.interval[i] / 2.0).max(WatchModel::MIN);
        for _ in 0..WATCH_SUBSCRIBERS {
            pull(client, iface, from, horizon, st, i).await?;
            w.pulls += 1;
        }
        let delivered = at(s + 1.0);
        for c in st.got[i]
            .difference(&before)
            .filter_map(|k| committed.get(k))
        {
            let d = Duration::from_micros(
                (delivered.as_microsecond() - c.as_microsecond()).max(0) as u64
            );
            st.freshness.push(d);
            if *c >= w.window_end {
                w.fresh_outside.push(d);
            }
        }
    }
    w.next[i] = s + w.interval[i];
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A change on interface index `.0` of kind retroactive (`true`) or update.
    Change(usize, bool),
    /// A poll of interface `.1` by poller `.0` (0 = 5 min, 1 = 1 min).
    Poll(usize, usize),
}

/// Change instants (seconds into the day) with their interface and kind.
fn day_plan(seed: u64) -> Vec<(f64, Ev)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    // Counter hours: a base rate plus two peaks (rejection sampling on the rate curve).
    let rate = |s: f64| -> f64 {
        let h = s / 3600.0;
        if !(8.5..17.25).contains(&h) {
            0.0
        } else if (9.5..11.0).contains(&h) || (13.5..15.5).contains(&h) {
            3.0
        } else {
            1.0
        }
    };
    let mut n = 0;
    while n < 1_400 {
        let s = rng.random_range(8.5 * 3600.0..17.25 * 3600.0);
        if rng.random_range(0.0..3.0) < rate(s) {
            out.push((s, Ev::Change(rng.random_range(0..2), rng.random_bool(0.1))));
            n += 1;
        }
    }
    for _ in 0..6_000 {
        out.push((
            rng.random_range(2.0 * 3600.0..2.0 * 3600.0 + 1200.0),
            Ev::Change(rng.random_range(0..2), false),
        ));
    }
    for _ in 0..1_500 {
        out.push((
            rng.random_range(16.0 * 3600.0..16.0 * 3600.0 + 60.0),
            Ev::Change(0, true),
        ));
    }
    out
}

/// Requests, rows and freshness of one strategy.
#[derive(Debug)]
pub struct Strategy {
    name: &'static str,
    requests: u64,
    rows: u64,
    got: Vec<BTreeSet<(String, u64)>>,
    freshness: Vec<Duration>,
}

impl Strategy {
    /// A strategy with nothing done yet.
    pub fn new(name: &'static str, ifaces: usize) -> Self {
        Self {
            name,
            requests: 0,
            rows: 0,
            got: vec![BTreeSet::new(); ifaces],
            freshness: Vec::new(),
        }
    }
}

/// One real request; returns each row's (addressee, history number, timestamp).
async fn pull(
    client: &PullClient,
    iface: InterfaceId,
    from: Timestamp,
    to: Timestamp,
    s: &mut Strategy,
    i: usize,
) -> anyhow::Result<Vec<(Option<String>, Option<u64>, Timestamp)>> {
    s.requests += 1;
    match client
        .pull(&PullRequest {
            interface: iface,
            from: Some(from),
            to: Some(to),
            keys: vec![],
        })
        .await
    {
        Outcome::Data(rows) => {
            s.rows += rows.len() as u64;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                if let (Some(a), Some(h)) = (&r.atena_no, r.history_no) {
                    s.got[i].insert((a.clone(), h));
                }
                out.push((r.atena_no, r.history_no, r.updated_at));
            }
            Ok(out)
        }
        other => bail!(
            "{}: pull of {iface} [{from}, {to}) answered {other:?}",
            s.name
        ),
    }
}

/// Run the scenario.
pub async fn run(_o: Options) -> anyhow::Result<Report> {
    let wall = Instant::now();
    let ifaces: Vec<InterfaceId> = interfaces(2);
    // Midnight JST of a fixed day, so runs are comparable.
    let day0: Timestamp = "2026-11-24T15:00:00Z".parse()?;
    let mut sc = provider_sim::Config::for_business("001".parse()?).with_client(CLIENT, SECRET);
    sc.interfaces = ifaces.iter().map(|i| InterfaceSpec::v1(*i)).collect();
    sc.population = 300_000;
    sc.row_threshold = 100_000;
    sc.request_log_capacity = 1_000;
    sc.token_lifetime = Duration::from_secs(3600);
    sc.clock = ClockMode::Manual(day0);
    let stop = CancellationToken::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ProviderSim::start(sc, l, stop.clone()).await?;
    let pcfg: shirase_subscriber_kit::config::ProviderConfig =
        toml_provider(sim.base_url(), sim.token_url())?;
    let client = PullClient::with_secret(
        (&pcfg).into(),
        SECRET.as_bytes().to_vec(),
        Arc::new(Limiter::new(4, 100_000.0)),
    )?;

    let mut plan = day_plan(7);
    for (p, period) in [(0usize, 300i64), (1, 60)] {
        for k in 1..=DAY / period {
            for i in 0..ifaces.len() {
                plan.push(((k * period) as f64, Ev::Poll(p, i)));
            }
        }
    }
    plan.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let at = |s: f64| day0 + SignedDuration::from_micros((s * 1e6) as i64);

    let mut strategies = [
        Strategy::new("poll every 5 min", ifaces.len()),
        Strategy::new("poll every 1 min", ifaces.len()),
        Strategy::new("one pull per notice", ifaces.len()),
        Strategy::new(
            "(d) watcher, 5 subscribers, no provider notices",
            ifaces.len(),
        ),
    ];
    let mut agents: Vec<AgentModel> = AGENT_ROWS
        .iter()
        .map(|(name, mi, overlap, maintenance)| {
            AgentModel::new(
                name,
                ifaces.len(),
                mi.map(Duration::from_secs),
                Duration::from_secs(*overlap),
                maintenance.then_some(WatchModel::WINDOW_END),
            )
        })
        .collect();
    let mut last_poll = [[day0; 2]; 2];
    // Committed (iface, atena, history) → commit instant; the freshness references.
    let mut committed: Vec<HashMap<(String, u64), Timestamp>> = vec![HashMap::new(); ifaces.len()];
    // Change instants per interface (seconds into the day), for the offline optimum.
    let mut instants: Vec<Vec<f64>> = vec![Vec::new(); ifaces.len()];

    let mut watch = WatchModel {
        next: vec![WatchModel::START; ifaces.len()],
        interval: vec![WatchModel::START; ifaces.len()],
        cursor: vec![day0; ifaces.len()],
        polls: 0,
        pulls: 0,
        fresh_outside: Vec::new(),
        window_end: day0 + SignedDuration::from_secs(3 * 3600),
    };

    for &(s, ev) in &plan {
        watcher_until(
            &client,
            &ifaces,
            &sim,
            s,
            at,
            &mut watch,
            &mut strategies[3],
            &committed,
        )
        .await?;
        for a in &mut agents {
            a.run_until(s, &client, &ifaces, &sim, at).await?;
        }
        let t = at(s);
        advance_to(&sim, t);
        match ev {
            Ev::Change(i, retro) => {
                let kind = if retro {
                    ChangeKind::Retroactive
                } else {
                    ChangeKind::Update
                };
                let c = sim.commit_changes(ChangeSpec::new(1).interface(ifaces[i]).kind(kind))?;
                for c in c {
                    let ts: Timestamp = c
                        .updated_at
                        .parse::<shirase_proto::OffsetTimestamp>()?
                        .instant();
                    committed[i].insert((c.atena_no.to_string(), u64::from(c.history_no)), ts);
                    instants[i].push(s);
                    // (b) one pull per notice, right away.
                    let to = ts + SignedDuration::from_micros(1);
                    pull(&client, ifaces[i], ts, to, &mut strategies[2], i).await?;
                    strategies[2].freshness.push(Duration::ZERO);
                    for a in &mut agents {
                        a.notice(s, i, ts, kind, c.atena_no.to_string());
                    }
                }
            }
            Ev::Poll(p, i) => {
                let from = last_poll[p][i];
                let before: BTreeSet<(String, u64)> = strategies[p].got[i].clone();
                pull(&client, ifaces[i], from, t, &mut strategies[p], i).await?;
                let fresh: Vec<Duration> = strategies[p].got[i]
                    .difference(&before)
                    .filter_map(|k| committed[i].get(k))
                    .map(|c| {
                        Duration::from_micros(
                            (t.as_microsecond() - c.as_microsecond()).max(0) as u64
                        )
                    })
                    .collect();
                strategies[p].freshness.extend(fresh);
                last_poll[p][i] = t;
            }
        }
    }
    // The watcher's polls until the end of the day (and one past it, for the last changes).
    let end = DAY as f64 + WatchModel::MAX;
    watcher_until(
        &client,
        &ifaces,
        &sim,
        end,
        at,
        &mut watch,
        &mut strategies[3],
        &committed,
    )
    .await?;
    for a in &mut agents {
        // The day's last sweep is at 24:00; every held notice is pulled by then.
        a.run_until(end, &client, &ifaces, &sim, at).await?;
        if a.pending() {
            bail!(
                "{}: notices left on the consumer at the end of the day",
                a.st.name
            );
        }
        a.finish(&committed, day0);
    }
    stop.cancel();
    sim.stopped().await;
    let versions = strategies[2].rows;
    let mut rows = Vec::new();
    for st in strategies
        .iter_mut()
        .chain(agents.iter_mut().map(|a| &mut a.st))
    {
        rows.push(strategy_row(st, &committed, versions));
    }
    let summary = summary(&rows, &agents, &instants, &watch, versions, wall);
    Ok(Report::new("daysim", rows, summary))
}

/// Shirase's rows: the agent's defaults (no `min_interval`, `pull.overlap` 10 min), pulling
/// through the maintenance window like the pollers; `min_interval` 1, 10, 60 s; the defaults
/// with `pull.overlap` 5 min (what the sweep's blind re-read costs); and the defaults keeping
/// the provider's maintenance window as the agent does unless `enforce_maintenance = false`
/// (the night batch is read after 03:00). (name, `min_interval` s, `pull.overlap` s, window
/// kept)
const AGENT_ROWS: [(&str, Option<u64>, u64, bool); 6] = [
    (
        "shirase agent (modelled), defaults but pulling through 00:00-03:00",
        None,
        600,
        false,
    ),
    (
        "shirase agent (modelled), min_interval 1 s",
        Some(1),
        600,
        false,
    ),
    (
        "shirase agent (modelled), min_interval 10 s",
        Some(10),
        600,
        false,
    ),
    (
        "shirase agent (modelled), min_interval 60 s",
        Some(60),
        600,
        false,
    ),
    (
        "shirase agent (modelled), pull.overlap 5 min",
        None,
        300,
        false,
    ),
    (
        "shirase agent (modelled), defaults, maintenance 00:00-03:00 kept",
        None,
        600,
        true,
    ),
];
/// Index in [`AGENT_ROWS`] of the `pull.overlap` 5 min row.
const OVERLAP_5MIN: usize = 4;
/// Index in [`AGENT_ROWS`] of the row keeping the maintenance window.
const MAINTENANCE_KEPT: usize = 5;

/// One table row.
fn strategy_row(
    st: &mut Strategy,
    committed: &[HashMap<(String, u64), Timestamp>],
    versions: u64,
) -> serde_json::Value {
    let missed: usize = committed
        .iter()
        .enumerate()
        .map(|(i, c)| c.keys().filter(|k| !st.got[i].contains(*k)).count())
        .sum();
    let (p50, p99, max) = percentiles_ms(&mut st.freshness);
    json!({
        "strategy": st.name, "requests_per_day": st.requests, "rows_transferred": st.rows,
        "rows_per_version": round(st.rows as f64 / versions.max(1) as f64),
        "freshness_p50_s": round(p50 / 1000.0), "freshness_p99_s": round(p99 / 1000.0), "freshness_max_s": round(max / 1000.0),
        "rows_missed": missed,
    })
}

/// The scenario's summary: ratios against polling, the watcher's figures and each agent row
/// against the offline optimum for its freshness bound.
fn summary(
    rows: &[serde_json::Value],
    agents: &[AgentModel],
    instants: &[Vec<f64>],
    watch: &WatchModel,
    versions: u64,
    wall: Instant,
) -> serde_json::Value {
    let req = |i: usize| rows[i]["requests_per_day"].as_f64().unwrap_or(f64::NAN);
    let p99 = |i: usize| rows[i]["freshness_p99_s"].as_f64().unwrap_or(f64::NAN);
    let subs = WATCH_SUBSCRIBERS as f64;
    let mut fresh = watch.fresh_outside.clone();
    let (w50, w99, _) = percentiles_ms(&mut fresh);
    let base = rows.len() - agents.len();
    let mut vs_optimum = serde_json::Map::new();
    for (k, a) in agents.iter().enumerate() {
        let Some(m) = a.min_interval else { continue };
        let bound = m.as_secs_f64();
        let optimum = agent_model::optimum_requests(instants, bound);
        let shirase = req(base + k);
        vs_optimum.insert(
            format!("{}s", m.as_secs()),
            json!({
                "bound_s": bound,
                "optimum_requests": optimum,
                "shirase_requests": shirase,
                "shirase_freshness_p99_s": p99(base + k),
                "shirase_sweep_requests": a.sweep_requests,
                "shirase_narrow_requests": a.narrow_requests,
                "notices_held": a.held,
                "ratio": round(shirase / optimum.max(1) as f64),
            }),
        );
    }
    let d = &agents[0];
    json!({
        "changes": instants.iter().map(Vec::len).sum::<usize>(),
        "row_versions_committed": versions,
        "interfaces": instants.len(),
        "population": 300_000,
        "shirase": format!("modelled with the agent's own planning functions (coalesce::plan_read, cut_windows, hold_for); defaults: batch.size 500, max_notices_per_window 500, overlap 600 s for sweeps only, sweep every 1 h; a batch takes {} s; its requests are real requests to the simulator", agent_model::TURNAROUND),
        "rows_per_version_day": round(d.st.rows as f64 / versions.max(1) as f64),
        "shirase_defaults_sweep_requests": d.sweep_requests,
        "shirase_defaults_sweep_rows": d.sweep_rows,
        "shirase_defaults_narrow_requests": d.narrow_requests,
        "rows_per_version_without_sweeps": round((d.st.rows - d.sweep_rows) as f64 / versions.max(1) as f64),
        "rows_per_version_overlap_5min": round(agents[OVERLAP_5MIN].st.rows as f64 / versions.max(1) as f64),
        "rows_per_version_day_maintenance_kept": round(agents[MAINTENANCE_KEPT].st.rows as f64 / versions.max(1) as f64),
        "shirase_maintenance_kept_sweep_rows": agents[MAINTENANCE_KEPT].sweep_rows,
        "requests_vs_optimum": vs_optimum,
        "optimum": "per interface, pull exactly when the oldest unread change reaches the bound (every change committed until then in one pull), cut into requests of at most 500 notices like the agent's windows; computed offline from the change instants",
        "requests_ratio_1min_poll_to_shirase_defaults": round(req(1) / req(base)),
        "watcher": "modelled from the relay watcher's rules (adaptive 60/15/120 s, settle 2 s, no poll 00:00-03:00 JST); 5 subscribers each pull once per window with rows; every request is real",
        "watched_subscribers": WATCH_SUBSCRIBERS,
        "requests_5_subscribers_polling_1min": req(1) * subs,
        "requests_5_subscribers_polling_5min": req(0) * subs,
        "requests_watcher_with_5_subscribers": req(3),
        "watcher_polls": watch.polls,
        "watcher_subscriber_pulls": watch.pulls,
        "watcher_freshness_outside_maintenance_p50_s": round(w50 / 1000.0),
        "watcher_freshness_outside_maintenance_p99_s": round(w99 / 1000.0),
        "requests_ratio_5x1min_poll_to_watcher": round(req(1) * subs / req(3)),
        "wall_seconds": round(wall.elapsed().as_secs_f64()),
    })
}

/// Move the simulator's clock forward to `t` (never back).
fn advance_to(sim: &provider_sim::SimHandle, t: Timestamp) {
    let now = sim.now();
    if t > now {
        let d = t.as_microsecond() - now.as_microsecond();
        sim.advance_clock(Duration::from_micros(d as u64));
    }
}

fn toml_provider(
    base: &str,
    token: &str,
) -> anyhow::Result<shirase_subscriber_kit::config::ProviderConfig> {
    let s = format!(
        r#"
subscriber = "daysim"
municipality = "131016"
[sink]
kind = "file"
dir = "/nonexistent-daysim"
[[providers]]
business_id = "001"
pull_api_base_url = "{base}"
token_url = "{token}"
insecure_http = true
client_id = "{CLIENT}"
client_secret_file = "/nonexistent-daysim-secret"
enforce_maintenance = false
[[providers.interfaces]]
id = "001o05-00"
version = "1.0"
"#
    );
    let c = shirase_subscriber_kit::Config::from_toml_str(&s)?;
    c.providers
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no provider in the generated config"))
}
