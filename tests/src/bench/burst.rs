//! `burst`: a burst of notices for one interface at once (10,000, then 100,000)
//! → PULL calls, pulls per notice, drain time, rows delivered, agent peak RSS.
//!
//! The simulator commits the burst in one go and its emitter POSTs every notice to the relay
//! (batches), as a provider would. The agent is the `shirase-agent` release binary as a child
//! process (defaults: batch.size 500, max_wait 1s, max_notices_per_window 500, against
//! the simulator's E0004 threshold of 1,000 rows), so its RSS is its own. Drain = from the
//! commit until the `tax` consumer has nothing pending or unacked. PULL calls come from the
//! simulator's counters (data requests; token requests excluded). The reference is one pull per
//! notice (the calls a naive notice-triggered consumer would make). The simulator's request
//! log of each burst goes to `target/bench/burst-<n>-requests.jsonl`.
//!
//! **Trickle** (the summary's `trickle_requests`): 10,000 changes committed at once whose
//! notices the simulator publishes to JetStream one by one while a fresh agent drains them (as
//! `agent_burst::burst_drained_while_published_reads_ahead_of_its_notices` does in-process):
//! the agent sees a few notices per batch, and a window reaching "now" reads rows whose notices
//! are still on their way. Requests = the simulator's data requests.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::{AgentProcess, Env, EnvOptions, Options, Report, commit_updates, round, rss_mib};
use crate::harness;

fn data_requests(c: &crate::provider_sim::Counters) -> u64 {
    c.requests - c.token_issued - c.token_refused
}

/// Rows in the file sink of `iface` as distinct (addressee, history number), and total lines.
pub fn sink_rows(dir: &std::path::Path, iface: &str) -> (BTreeSet<(String, u64)>, usize) {
    let text = std::fs::read_to_string(dir.join(format!("{iface}.jsonl"))).unwrap_or_default();
    let mut set = BTreeSet::new();
    let mut lines = 0;
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if v["kind"] == "row" {
            lines += 1;
            if let (Some(a), Some(h)) = (
                v["row"]["atena_no"].as_str(),
                v["row"]["history_no"].as_u64(),
            ) {
                set.insert((a.to_owned(), h));
            }
        }
    }
    (set, lines)
}

/// The trickle: 10,000 notices published one by one while a fresh agent (defaults, E0004
/// threshold 1,000 rows) drains them; returns the row of the summary.
async fn trickle() -> anyhow::Result<Value> {
    let env = Env::start(
        &EnvOptions {
            population: 50_000,
            request_log: 100_000,
            notices_to_nats: true,
            ..EnvOptions::default()
        },
        false,
    )
    .await?;
    let port = harness::free_port()?;
    let toml = env.agent_toml(500, 1000, "", &format!("127.0.0.1:{port}"));
    let agent = AgentProcess::start(env.dir.path(), &toml, port).await?;
    let iface = env.ifaces[0];
    let before = env.sim.counters();
    let batches_before = agent.metric_sum("shirase_agent_batches_total").await?;
    let t0 = Instant::now();
    let changes = commit_updates(&env.sim, iface, 10_000)?;
    let expected: BTreeSet<(String, u64)> = changes
        .iter()
        .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let c = env.sim.counters();
        if c.notices_delivered >= c.changes_committed && env.unfinished().await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("trickle: not drained within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = t0.elapsed();
    let after = env.sim.counters();
    let (got, _) = sink_rows(&env.sink_dir(), iface.as_str());
    let batches = agent.metric_sum("shirase_agent_batches_total").await? - batches_before;
    agent.stop();
    env.stop().await?;
    Ok(json!({
        "notices": 10_000,
        "requests": data_requests(&after) - data_requests(&before),
        "e0004": after.too_many - before.too_many,
        "batches": batches,
        "drain_s": round(drain.as_secs_f64()),
        "rows_missing": expected.difference(&got).count(),
    }))
}

/// Run the scenario.
pub async fn run(_o: Options) -> anyhow::Result<Report> {
    let env = Env::start(
        &EnvOptions {
            population: 200_000,
            request_log: 1_000_000,
            ack_wait_secs: 120,
            ..EnvOptions::default()
        },
        true,
    )
    .await?;
    let port = harness::free_port()?;
    let toml = env.agent_toml(
        500,
        1000,
        "rate_per_sec = 50.0\nconcurrency = 2",
        &format!("127.0.0.1:{port}"),
    );
    let agent = AgentProcess::start(env.dir.path(), &toml, port).await?;
    let iface = env.ifaces[0];
    let idle = rss_mib(agent.pid());
    let mut rows = Vec::new();
    let mut expected = BTreeSet::new();
    for n in [10_000usize, 100_000] {
        let logged_before = env.sim.requests().len();
        let before = env.sim.counters();
        let pulls_before = agent.metric_sum("shirase_agent_pulls_total").await?;
        let batches_before = agent.metric_sum("shirase_agent_batches_total").await?;
        let t0 = Instant::now();
        let changes = commit_updates(&env.sim, iface, n)?;
        expected.extend(
            changes
                .iter()
                .map(|c| (c.atena_no.to_string(), u64::from(c.history_no))),
        );
        let mut ingested = None;
        let mut peak = 0.0f64;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Some((_, hwm)) = rss_mib(agent.pid()) {
                peak = peak.max(hwm);
            }
            let c = env.sim.counters();
            if c.notices_delivered >= c.changes_committed {
                ingested.get_or_insert_with(|| t0.elapsed());
                if env.unfinished().await? == 0 {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("burst of {n}: not drained within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drain = t0.elapsed();
        let after = env.sim.counters();
        let pulls = data_requests(&after) - data_requests(&before);
        let agent_pulls = agent.metric_sum("shirase_agent_pulls_total").await? - pulls_before;
        let (got, _) = sink_rows(&env.sink_dir(), iface.as_str());
        let missing = expected.difference(&got).count();
        let rows_returned = after.rows_returned - before.rows_returned;
        let batches = agent.metric_sum("shirase_agent_batches_total").await? - batches_before;
        let min_batches = n.div_ceil(500);
        rows.push(json!({
            "notices": n,
            "pull_calls": pulls,
            "agent_pulls_metric": agent_pulls,
            "pulls_per_notice": (pulls as f64 / n as f64 * 10_000.0).round() / 10_000.0,
            "reference_pulls_1_per_notice": n,
            "min_batch_windows": min_batches,
            "batch_windows": batches,
            "pulls_per_batch_window": round(pulls as f64 / batches.max(1.0)),
            "e0004": after.too_many - before.too_many,
            "ingest_s": round(ingested.unwrap_or_default().as_secs_f64()),
            "drain_s": round(drain.as_secs_f64()),
            "rows_returned": rows_returned,
            "rows_missing": missing,
            "agent_peak_rss_mib": peak,
        }));
        println!(
            "  burst {n}: {pulls} pulls, drain {:.1} s, missing {missing}",
            drain.as_secs_f64()
        );
        // Every request of the burst (query, status, code, rows; no row contents), to see
        // where refusals fall.
        let log = super::bench_dir().join(format!("burst-{n}-requests.jsonl"));
        let mut text = String::new();
        for e in env.sim.requests().iter().skip(logged_before) {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        std::fs::write(&log, text)?;
    }
    let end = rss_mib(agent.pid());
    agent.stop();
    env.stop().await?;
    let trickle = trickle().await?;
    println!(
        "  trickle 10,000: {} requests, drain {} s, missing {}",
        trickle["requests"], trickle["drain_s"], trickle["rows_missing"]
    );
    let summary = json!({
        "trickle_requests": trickle["requests"],
        "trickle": trickle,
        "agent": "shirase-agent child process: batch.size 500, max_wait 1s, max_notices_per_window 500 (defaults); rate_per_sec 50, concurrency 2",
        "simulator": "E0004 threshold 1000 rows; population 200000; notices POSTed to the in-process relay by the simulator's emitter",
        "agent_rss_idle_mib": idle.map(|r| r.0),
        "agent_rss_end_mib": end.map(|r| r.0),
        "agent_rss_peak_mib": end.map(|r| r.1),
        "pulls_per_batch_window_note": "batch_windows = the agent's shirase_agent_batches_total (fetched batches with notices of the interface); min_batch_windows = ceil(notices / batch.size), the fewest the burst can take",
    });
    Ok(Report::new("burst", rows, summary))
}
