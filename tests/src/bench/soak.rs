//! `shirase-bench soak --seconds N --seed S`: a randomized fault soak of the production shape.
//!
//! The dev topology's providers (resident registry `001`, individual resident tax `010`) and
//! subscribers (`tax`, `delinquency`) on a 3-node JetStream cluster on loopback (R3,
//! `sync_interval: always`), with two relay replicas and two replicas of each agent
//! ([`stack`]). For `N` seconds the providers commit changes at a steady rate with bursts and
//! late commits, their notices POSTed to either relay, while a schedule derived from the seed
//! ([`schedule`], printed at the start so a failure replays with the same `--seed`) injects
//! faults: `kill -9` and restart of relays, agents and nats-server nodes, SIGSTOP / SIGCONT of
//! a node, provider outages, maintenance answers, E0004 and bare-503 storms, and a provider
//! clock running ahead of the agents'. Then the faults stop and, within a bound, every row
//! version the providers committed must be in every subscriber's sink ([`ledger`]) and every
//! consumer must have nothing pending or unacked. The report (faults per kind, notices, rows,
//! duplicates, the longest time a change waited) goes to `target/bench/soak.json`; a loss
//! sets [`Report::failure`] and the binary exits non-zero.

pub mod ledger;
pub mod schedule;
pub mod stack;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use shirase_proto::ChangeKind;
use tokio_util::sync::CancellationToken;

use self::ledger::{Ledger, Version};
use self::schedule::Planned;
use self::stack::{PROVIDERS, REPLICAS, SUBSCRIBERS, Stack};
use super::{Options, Report, notice_of, round};
use crate::provider_sim::{self, ChangeSpec};

/// After the faults stop: the most time the notices, rows and acks may take to settle. Far
/// beyond what recovery needs (a killed agent's notices wait the ack wait, 10 s; the agent's
/// retry backoff is at most 10 s); reached only when something is lost.
pub const DRAIN_BOUND: Duration = Duration::from_secs(300);
/// How often the providers commit (steady rate: 1–2 changes per provider per tick).
const TICK: Duration = Duration::from_millis(200);

/// The soak's settings.
#[derive(Debug, Clone, Copy)]
pub struct SoakOptions {
    /// How long changes are committed and faults injected.
    pub seconds: u64,
    /// The schedule's seed.
    pub seed: u64,
}

/// The `shirase-bench` entry: `--seconds` (default here 60) and `--seed` (default: from the
/// clock, printed).
pub async fn run(o: Options) -> anyhow::Result<Report> {
    let seed = o.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    soak(SoakOptions {
        seconds: o.soak_seconds,
        seed,
    })
    .await
}

/// Run the soak; `Ok` with [`Report::failure`] set when something was lost.
pub async fn soak(o: SoakOptions) -> anyhow::Result<Report> {
    let run = Duration::from_secs(o.seconds);
    println!(
        "soak: seed {seed}, {secs} s of faults (replay: shirase-bench soak --seconds {secs} --seed {seed})",
        seed = o.seed,
        secs = o.seconds
    );
    let mut stack = Stack::start(o.seed).await?;
    let plan = schedule::plan(o.seed, run, stack.shape());
    println!("soak: {} faults scheduled", plan.len());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for (subscriber, _, provs) in SUBSCRIBERS {
        let dirs: Vec<_> = stack
            .agents
            .iter()
            .filter(|a| a.subscriber == subscriber)
            .map(|a| a.sink.clone())
            .collect();
        for p in provs.iter() {
            lock(&ledger).follow(subscriber, PROVIDERS[*p].1, &dirs);
        }
    }
    let start_ts = stack
        .providers
        .iter()
        .map(|p| p.sim.now())
        .min()
        .unwrap_or_else(Timestamp::now);
    let stop = CancellationToken::new();
    let scanner = tokio::spawn(scan_forever(ledger.clone()));
    let committer = tokio::spawn(commit_forever(
        committer_inputs(&stack),
        ledger.clone(),
        o.seed,
        stop.clone(),
        stack.posts.clone(),
    ));
    let t0 = Instant::now();
    let injected = inject(&mut stack, &plan, t0).await;
    tokio::time::sleep_until((t0 + run).into()).await;
    stop.cancel();
    let committed = committer.await??;
    println!(
        "soak: t+{:>7.1}s faults over, {committed} changes committed; draining",
        t0.elapsed().as_secs_f64()
    );
    let exited = exited_by_themselves(&mut stack);
    stack.ensure_running().await?;
    let drain_start = Instant::now();
    let outcome = drain(&stack, &ledger, start_ts).await?;
    let drained = drain_start.elapsed();
    scanner.abort();
    // Nothing reads the sinks any more: the report owns what the ledger gathered.
    let ledger = std::mem::take(&mut *lock(&ledger));
    let report = report(Figures {
        o,
        plan: &plan,
        injected,
        committed,
        stack: &stack,
        ledger: &ledger,
        outcome: &outcome,
        exited: &exited,
        drained,
    })
    .await;
    stack.stop().await;
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Apply the schedule in time order: each fault at its start, undone at its end. Returns the
/// faults injected per kind; a fault that could not be applied is printed and not counted.
async fn inject(stack: &mut Stack, plan: &[Planned], t0: Instant) -> BTreeMap<&'static str, u64> {
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        events.push((p.at, false, i));
        if !p.lasts.is_zero() {
            events.push((p.at + p.lasts, true, i));
        }
    }
    // Ends before starts at the same instant: a target is free again before its next fault.
    events.sort_by_key(|(at, undo, _)| (*at, !*undo));
    let mut injected: BTreeMap<&'static str, u64> =
        schedule::Fault::KINDS.iter().map(|k| (*k, 0)).collect();
    for (at, undo, i) in events {
        tokio::time::sleep_until((t0 + at).into()).await;
        let f = plan[i].fault;
        match stack.apply(f, undo).await {
            Ok(()) if !undo => {
                *injected.entry(f.kind()).or_insert(0) += 1;
                println!(
                    "soak: t+{:>7.1}s {} {}",
                    t0.elapsed().as_secs_f64(),
                    f.kind(),
                    serde_json::to_string(&f).unwrap_or_default()
                );
            }
            Ok(()) => {}
            Err(e) => println!(
                "soak: t+{:>7.1}s {} {}: {e:#}",
                t0.elapsed().as_secs_f64(),
                if undo { "ending" } else { "injecting" },
                f.kind()
            ),
        }
    }
    injected
}

/// Relays and agents that are not running although no fault holds them down.
fn exited_by_themselves(stack: &mut Stack) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in stack.relays.iter_mut().enumerate() {
        if !r.running() {
            out.push(format!("relay {i}: {}", r.tail(20)));
        }
    }
    for (i, a) in stack.agents.iter_mut().enumerate() {
        if !a.proc.running() {
            out.push(format!("agent {i} ({}): {}", a.subscriber, a.proc.tail(20)));
        }
    }
    out
}

/// Read the sinks every 250 ms until aborted (the drain needs it after the run too).
async fn scan_forever(ledger: Arc<Mutex<Ledger>>) {
    loop {
        if let Err(e) = lock(&ledger).scan() {
            tracing::warn!(error = %e, "soak: reading a sink failed; retrying");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the committer needs of each provider.
type CommitterInput = Vec<(
    provider_sim::SimHandle,
    shirase_proto::InterfaceId,
    tokio::sync::mpsc::UnboundedSender<Vec<shirase_proto::Notice>>,
)>;

fn committer_inputs(stack: &Stack) -> CommitterInput {
    stack
        .providers
        .iter()
        .map(|p| (p.sim.clone(), p.iface, p.notices.clone()))
        .collect()
}

/// Commit changes until stopped: every tick 1–2 per provider (updates, some retroactive), now
/// and then a late commit (its DB timestamp up to 2 s before it becomes visible) and a burst
/// of 50–250. Each change's notice goes to the poster. Returns the changes committed.
async fn commit_forever(
    providers: CommitterInput,
    ledger: Arc<Mutex<Ledger>>,
    seed: u64,
    stop: CancellationToken,
    posts: Arc<stack::PostStats>,
) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0de);
    let started = Instant::now();
    let mut total = 0u64;
    while !stop.is_cancelled() {
        for (sim, iface, tx) in &providers {
            let mut spec = ChangeSpec::new(rng.random_range(1..=2)).interface(*iface);
            spec.kind = Some(if rng.random_bool(0.15) {
                ChangeKind::Retroactive
            } else {
                ChangeKind::Update
            });
            // Late commits only once the run is under way, so every row version the run
            // commits is newer than the start instant the check counts from.
            if started.elapsed() > Duration::from_secs(5) && rng.random_bool(0.05) {
                spec.late_by_ms = Some(rng.random_range(200..=2_000));
            } else if rng.random_bool(0.01) {
                spec.count = rng.random_range(50..=250);
            }
            let changes = commit(sim, spec)?;
            let now = Instant::now();
            let mut notices = Vec::with_capacity(changes.len());
            {
                let mut l = lock(&ledger);
                for c in &changes {
                    l.committed(&iface.to_string(), c.atena_no.as_str(), c.history_no, now);
                    notices.push(notice_of(c)?);
                }
            }
            total += changes.len() as u64;
            for chunk in notices.chunks(100) {
                posts
                    .outstanding
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                tx.send(chunk.to_vec())?;
            }
        }
        tokio::time::sleep(TICK).await;
    }
    Ok(total)
}

fn commit(
    sim: &provider_sim::SimHandle,
    spec: ChangeSpec,
) -> anyhow::Result<Vec<provider_sim::CommittedChange>> {
    let mut out = Vec::new();
    let mut left = spec.count;
    while left > 0 {
        let n = left.min(provider_sim::MAX_CHANGES_PER_CALL);
        let mut s = spec.clone();
        s.count = n;
        out.extend(sim.commit_changes(s)?);
        left -= n;
    }
    Ok(out)
}

/// How the run ended up after the drain.
#[derive(Debug, Default)]
struct Outcome {
    /// Row versions committed during the run, by interface.
    expected: BTreeMap<String, BTreeSet<Version>>,
    /// What each subscriber's sink lacks.
    missing: Vec<ledger::Missing>,
    /// (consumer, num_pending, num_ack_pending) of every consumer still unfinished.
    pending: Vec<(String, u64, u64)>,
    /// Notices no relay accepted.
    unaccepted: u64,
}

impl Outcome {
    fn settled(&self) -> bool {
        self.missing.is_empty() && self.pending.is_empty() && self.unaccepted == 0
    }
}

/// Wait (at most [`DRAIN_BOUND`]) until every notice is accepted, every committed row version
/// is in every subscriber's sink and no consumer has anything pending or unacked.
async fn drain(
    stack: &Stack,
    ledger: &Arc<Mutex<Ledger>>,
    start_ts: Timestamp,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + DRAIN_BOUND;
    let mut expected: Option<BTreeMap<String, BTreeSet<Version>>> = None;
    let mut last_said = Instant::now();
    loop {
        let mut o = Outcome {
            unaccepted: stack.posts.outstanding.load(Ordering::SeqCst),
            ..Outcome::default()
        };
        // Nothing is committed any more: the providers' rows are final once read.
        let exp = match &expected {
            Some(e) => e.clone(),
            None => {
                let e = committed_versions(stack, start_ts)?;
                expected = Some(e.clone());
                e
            }
        };
        o.missing = lock(ledger).missing(&exp);
        o.expected = exp;
        let over = Instant::now() > deadline;
        if (o.missing.is_empty() && o.unaccepted == 0) || over {
            o.pending = pending(&stack.js).await;
        }
        if o.settled() || over {
            return Ok(o);
        }
        if last_said.elapsed() >= Duration::from_secs(10) {
            last_said = Instant::now();
            let lost: usize = o.missing.iter().map(|m| m.versions.len()).sum();
            println!(
                "soak: draining for {:.0} s: {} notices not accepted yet, {lost} row versions not in a sink yet, consumers unfinished: {:?}",
                DRAIN_BOUND.as_secs_f64()
                    - deadline
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64(),
                o.unaccepted,
                o.pending
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every current row version of each provider's interface with a DB timestamp at or after
/// the run's start: what the run committed (each change's new row, and the previous row its
/// commit touched), as the PULL API shows it now.
fn committed_versions(
    stack: &Stack,
    start_ts: Timestamp,
) -> anyhow::Result<BTreeMap<String, BTreeSet<Version>>> {
    let mut out = BTreeMap::new();
    for p in &stack.providers {
        let mut set = BTreeSet::new();
        for r in p.sim.rows(&p.iface)? {
            let at: Timestamp = r.updated_at.parse()?;
            if at >= start_ts {
                set.insert((r.atena_no.to_string(), r.history_no, at));
            }
        }
        out.insert(p.iface.to_string(), set);
    }
    Ok(out)
}

/// Consumers with notices pending or unacked (a consumer that cannot be read counts as
/// unfinished).
async fn pending(js: &jetstream::Context) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for (subscriber, _, provs) in SUBSCRIBERS {
        for p in provs.iter() {
            let name = format!("{subscriber}_{}", PROVIDERS[*p].0);
            let info = match js
                .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                    &name,
                    shirase_proto::subject::NOTICE_STREAM,
                )
                .await
            {
                Ok(mut c) => c
                    .info()
                    .await
                    .map(|i| (i.num_pending, i.num_ack_pending as u64))
                    .ok(),
                Err(_) => None,
            };
            match info {
                Some((0, 0)) => {}
                Some((p, a)) => out.push((name, p, a)),
                None => out.push((name, u64::MAX, u64::MAX)),
            }
        }
    }
    out
}

/// Messages in a stream (0 when it cannot be read).
async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Everything the report is made of.
struct Figures<'a> {
    o: SoakOptions,
    plan: &'a [Planned],
    injected: BTreeMap<&'static str, u64>,
    committed: u64,
    stack: &'a Stack,
    ledger: &'a Ledger,
    outcome: &'a Outcome,
    exited: &'a [String],
    drained: Duration,
}

async fn report(f: Figures<'_>) -> Report {
    let mut rows: Vec<Value> = f
        .injected
        .iter()
        .map(|(k, n)| json!({"figure": format!("faults: {k}"), "value": n}))
        .collect();
    let waits = f.ledger.waits();
    let at = |q: f64| {
        let i = ((q * waits.len() as f64).ceil() as usize).clamp(1, waits.len().max(1)) - 1;
        waits.get(i).map_or(0.0, |d| round(d.as_secs_f64()))
    };
    let posts = &f.stack.posts;
    let stored = stream_messages(&f.stack.js, shirase_proto::subject::NOTICE_STREAM).await;
    let dead = stream_messages(&f.stack.js, shirase_proto::subject::DLQ_STREAM).await;
    let versions: usize = f.outcome.expected.values().map(BTreeSet::len).sum();
    // The agents' own words (their metrics restart with each kill): confirmed gaps, and the
    // sweeper's immediate sweeps of gaps and rewound checkpoints (its line only, not the
    // rewind watch's).
    let said = f
        .stack
        .agent_log_counts(&["sequence gap:", "sweeping at once ("]);
    let lost: usize = f.outcome.missing.iter().map(|m| m.versions.len()).sum();
    let figures: Vec<(&str, Value)> = vec![
        ("faults injected", json!(f.injected.values().sum::<u64>())),
        ("changes committed (= notices)", json!(f.committed)),
        (
            "notices accepted (202)",
            json!(posts.accepted.load(Ordering::SeqCst)),
        ),
        ("notices stored in the stream", json!(stored)),
        (
            "POSTs re-sent (other relay)",
            json!(posts.resent.load(Ordering::SeqCst)),
        ),
        ("row versions committed", json!(versions)),
        (
            "row lines written (all sinks)",
            json!(f.ledger.rows_written()),
        ),
        ("duplicates delivered", json!(f.ledger.duplicates())),
        ("most copies of one version", json!(f.ledger.max_copies())),
        ("wait p50 (s)", json!(at(0.50))),
        ("wait p99 (s)", json!(at(0.99))),
        ("longest wait (s)", json!(at(1.0))),
        ("sequence gaps confirmed (agent logs)", json!(said[0])),
        ("immediate sweeps (agent logs)", json!(said[1])),
        ("dead letters", json!(dead)),
        ("drain (s)", json!(round(f.drained.as_secs_f64()))),
        ("row versions lost", json!(lost)),
        ("consumers unfinished", json!(f.outcome.pending.len())),
    ];
    rows.extend(
        figures
            .into_iter()
            .map(|(k, v)| json!({"figure": k, "value": v})),
    );
    let failure = failure(&f);
    let mut report = Report::new(
        "soak",
        rows,
        json!({
            "seed": f.o.seed,
            "seconds": f.o.seconds,
            "command": format!("shirase-bench soak --seconds {} --seed {}", f.o.seconds, f.o.seed),
            "topology": format!(
                "3 nats-server nodes (R3, sync_interval always), {REPLICAS} relays, {REPLICAS} agents each of {}, providers {}",
                SUBSCRIBERS.iter().map(|s| s.0).collect::<Vec<_>>().join(", "),
                PROVIDERS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "),
            ),
            "sinks": f.ledger.per_feed().into_iter().map(|(s, i, v, l, m)| json!({
                "subscriber": s, "interface": i, "versions": v, "row_lines": l, "most_copies": m,
            })).collect::<Vec<_>>(),
            "notices_by_relay": posts.by_relay.iter().map(|n| n.load(Ordering::SeqCst)).collect::<Vec<_>>(),
            "drain_bound_s": DRAIN_BOUND.as_secs(),
            "lost": lost,
            "pending": f.outcome.pending,
            "ok": failure.is_none(),
            "schedule": f.plan,
        }),
    );
    report.failure = failure;
    report
}

/// What was lost, said so the run can be investigated (no 宛名番号: the history number and
/// the DB timestamp of a few missing versions).
fn failure(f: &Figures<'_>) -> Option<String> {
    let mut problems = Vec::new();
    for m in &f.outcome.missing {
        let examples: Vec<String> = m
            .versions
            .iter()
            .take(5)
            .map(|(_, h, at)| format!("history {h} at {at}"))
            .collect();
        problems.push(format!(
            "{} row versions of {} never reached subscriber {}'s sink (e.g. {})",
            m.versions.len(),
            m.iface,
            m.subscriber,
            examples.join(", ")
        ));
    }
    for (c, p, a) in &f.outcome.pending {
        problems.push(format!(
            "consumer {c}: num_pending {p}, num_ack_pending {a} after the drain bound"
        ));
    }
    if f.outcome.unaccepted > 0 {
        problems.push(format!(
            "{} notices were never accepted by either relay",
            f.outcome.unaccepted
        ));
    }
    for e in f.exited {
        problems.push(format!("exited by itself: {e}"));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "soak seed {} lost data or did not settle within {} s: {}",
            f.o.seed,
            DRAIN_BOUND.as_secs(),
            problems.join("; ")
        )
    })
}
