//! `latecommit`: a change committed long after its update timestamp (a long transaction), and
//! an operator's resync with no change after it → seconds until the rows are in the sink.
//!
//! The agent is the `shirase-agent` release binary as a child process (defaults: batch.size
//! 500, max_wait 1 s, sweep every hour, so no sweep runs here); the relay serves in-process
//! (the same code as `shirase-relay serve`); the simulator POSTs each change's notice to it
//! after the commit, as a provider does. While ordinary changes keep coming (one every 100 ms),
//! a change is committed with its timestamp 5 minutes, then 30 minutes, in the past: below the
//! agent's checkpoint. Late commit = from the commit (its notice is sent right after) until its
//! row is in the file sink (polled every 10 ms). Then the traffic stops, everything drains, and
//! the `shirase-relay resync` command (a child process through the operator API) rewinds the
//! checkpoint to before the first change; resync = from starting the command until the row of
//! every change since then has a new line in the sink, with no new change or notice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use shirase_proto::{AtenaNo, ChangeKind, OffsetTimestamp};
use tokio_util::sync::CancellationToken;

use super::{AgentProcess, Env, EnvOptions, OPS_TOKEN, Options, Report, round};
use crate::harness;
use crate::provider_sim::ChangeSpec;

/// Lines per (addressee, history number) in the file sink of `iface`.
fn sink_lines(dir: &Path, iface: &str) -> BTreeMap<(String, u64), usize> {
    let text = std::fs::read_to_string(dir.join(format!("{iface}.jsonl"))).unwrap_or_default();
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if let (Some(a), Some(h)) = (
            v["row"]["atena_no"].as_str(),
            v["row"]["history_no"].as_u64(),
        ) {
            *out.entry((a.to_owned(), h)).or_default() += 1;
        }
    }
    out
}

/// Poll until `done` holds for the sink's lines, at most `limit`; the time it took.
async fn until_sink(
    dir: &Path,
    iface: &str,
    limit: Duration,
    done: impl Fn(&BTreeMap<(String, u64), usize>) -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if done(&sink_lines(dir, iface)) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// One change every 100 ms on the addressees of `pool`, until `stop`.
fn ordinary_traffic(env: &Env, pool: Vec<AtenaNo>, stop: CancellationToken) {
    let sim = env.sim.clone();
    let iface = env.ifaces[0];
    tokio::spawn(async move {
        let mut i = 0usize;
        while !stop.is_cancelled() {
            let spec = ChangeSpec::new(1)
                .interface(iface)
                .kind(ChangeKind::Update)
                .atena_no(pool[i % pool.len()]);
            if sim.commit_changes(spec).is_err() {
                return;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Wait until every notice the simulator made was delivered and the consumer is drained.
async fn drained(env: &Env, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let c = env.sim.counters();
        if c.notices_delivered >= c.changes_committed && env.unfinished().await? == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not drained within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run the scenario.
pub async fn run(_o: Options) -> anyhow::Result<Report> {
    let env = Env::start(
        &EnvOptions {
            population: 2_000,
            ..EnvOptions::default()
        },
        true,
    )
    .await?;
    let port = harness::free_port()?;
    let toml = env.agent_toml(500, 1000, "", &format!("127.0.0.1:{port}"));
    let agent = AgentProcess::start(env.dir.path(), &toml, port).await?;
    let iface = env.ifaces[0];
    let sink = env.sink_dir();
    let first = super::commit_updates(&env.sim, iface, 20)?;
    drained(&env, Duration::from_secs(30)).await?;
    let people = env.sim.atena_numbers();
    let late_people = [people[400], people[401]];
    let pool: Vec<AtenaNo> = people
        .iter()
        .filter(|a| !late_people.contains(a))
        .take(200)
        .copied()
        .collect();
    let traffic = CancellationToken::new();
    ordinary_traffic(&env, pool, traffic.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows = Vec::new();
    let mut late = BTreeMap::new();
    for (minutes, who) in [(5u64, late_people[0]), (30, late_people[1])] {
        let t0 = Instant::now();
        let c = env
            .sim
            .commit_changes(
                ChangeSpec::new(1)
                    .interface(iface)
                    .kind(ChangeKind::Update)
                    .atena_no(who)
                    .late_by(Duration::from_secs(minutes * 60)),
            )?
            .remove(0);
        let key = (c.atena_no.to_string(), u64::from(c.history_no));
        let got = until_sink(&sink, iface.as_str(), Duration::from_secs(120), |l| {
            l.contains_key(&key)
        })
        .await;
        let s = got.map(|d| round(d.as_secs_f64()));
        println!(
            "  late commit of {minutes} min: {}",
            s.map_or("not in the sink within 120 s".into(), |s| format!(
                "row in the sink {s} s after its commit"
            ))
        );
        late.insert(minutes, s);
        rows.push(json!({
            "case": format!("change committed {minutes} min after its update timestamp, traffic continuing"),
            "seconds_to_sink": s,
            "limit_s": 2,
            "waited_s": round(t0.elapsed().as_secs_f64()),
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    traffic.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drained(&env, Duration::from_secs(60)).await?;

    // Resync to just before the first change; nothing changes afterwards.
    let to = first
        .iter()
        .map(|c| c.updated_at.parse::<OffsetTimestamp>().map(|t| t.instant()))
        .collect::<Result<Vec<Timestamp>, _>>()?
        .into_iter()
        .min()
        .context("no first round")?
        - SignedDuration::from_millis(1);
    // The rows of every change after `to` (the late ones lie before it) and their lines now.
    let all = sink_lines(&sink, iface.as_str());
    let mut before = BTreeMap::new();
    for c in env.sim.changes() {
        let at = c.updated_at.parse::<OffsetTimestamp>()?.instant();
        let key = (c.atena_no.to_string(), u64::from(c.history_no));
        if at > to {
            before.insert(key.clone(), all.get(&key).copied().unwrap_or(0));
        }
    }
    let changes_before = env.sim.changes().len();
    let t0 = Instant::now();
    resync(&env, iface.as_str(), to)?;
    let back = until_sink(&sink, iface.as_str(), Duration::from_secs(120), |l| {
        before.iter().all(|(k, n)| l.get(k).is_some_and(|m| m > n))
    })
    .await;
    let resync_s = back.map(|d| round(d.as_secs_f64()));
    let new_changes = env.sim.changes().len() - changes_before;
    println!(
        "  resync: {} ({} rows, {new_changes} new changes)",
        resync_s.map_or("rows not back within 120 s".into(), |s| format!(
            "rows back in the sink {s} s after the command started"
        )),
        before.len()
    );
    rows.push(json!({
        "case": "shirase-relay resync to before the first change, no new change",
        "seconds_to_sink": resync_s,
        "limit_s": 5,
        "waited_s": round(t0.elapsed().as_secs_f64()),
    }));
    agent.stop();
    env.stop().await?;
    let summary = json!({
        "late_commit_seconds": late.get(&5).copied().flatten(),
        "late_commit_30min_seconds": late.get(&30).copied().flatten(),
        "resync_seconds": resync_s,
        "resync_rows": before.len(),
        "resync_new_changes": new_changes,
        "agent": "shirase-agent child process, defaults (batch.size 500, max_wait 1s, sweep 1h); relay in-process; notices POSTed by the simulator after each commit",
        "clock": "late commit: from the commit call (its notice follows it) to the row in the file sink; resync: from starting `shirase-relay resync` to a new line in the sink for the row of every change after the new checkpoint",
    });
    Ok(Report::new("latecommit", rows, summary))
}

/// `shirase-relay resync --subscriber tax --interface <iface> --to <to>` against the relay.
fn resync(env: &Env, iface: &str, to: Timestamp) -> anyhow::Result<()> {
    let token = env.dir.path().join("operator.token");
    std::fs::write(&token, format!("{OPS_TOKEN}\n"))?;
    let bin = super::relay_bin()?;
    let out = Command::new(&bin)
        .args(["resync", "--url", &env.relay_url, "--token-file"])
        .arg(&token)
        .args(["--subscriber", "tax", "--interface", iface, "--to"])
        .arg(to.to_string())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "shirase-relay resync failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
