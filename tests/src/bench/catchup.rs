//! `catchup`: a backlog accumulated during a maintenance pause, then drained after resume.
//!
//! The `tax_001` consumer is paused with JetStream consumer pause (what the relay's maintenance
//! scheduler does), the simulator commits the backlog across 3 interfaces (100,000 by default,
//! 1,000,000 with `--full`) and POSTs every notice to the relay; then the consumer is resumed.
//! Measured: drain time after resume, PULL calls, peak concurrent provider requests (from the
//! simulator's request log: arrival + duration), rows missing from the sink, the `shirase-agent`
//! child process's RSS. Reference in the same run: a raw durable pull consumer created before
//! the backlog on the same stream, drained (fetch 1,000 + ack) after Shirase finished, and the
//! one-pull-per-notice call count.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::json;

use super::burst::sink_rows;
use super::{
    AgentProcess, Env, EnvOptions, Options, Report, commit_updates, peak_in_flight, round, rss_mib,
};
use crate::harness;

/// Run the scenario.
pub async fn run(o: Options) -> anyhow::Result<Report> {
    let total: usize = if o.full { 1_000_000 } else { 100_000 };
    let env = Env::start(
        &EnvOptions {
            interfaces: 3,
            population: 200_000,
            request_log: 1_000_000,
            ack_wait_secs: 120,
            ..EnvOptions::default()
        },
        true,
    )
    .await?;
    let stream = env
        .js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await?;
    // The reference consumer: created before the backlog so it holds it too.
    let raw: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bench_raw".into()),
            filter_subject: String::new(),
            ..Default::default()
        })
        .await?;
    let until_ns = (jiff::Timestamp::now().as_nanosecond()) + 3_600_000_000_000i128;
    stream
        .pause_consumer(
            "tax_001",
            async_nats::datetime::from_nanos(until_ns).map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .await?;

    let port = harness::free_port()?;
    let toml = env.agent_toml(
        1000,
        1000,
        "rate_per_sec = 50.0\nconcurrency = 4",
        &format!("127.0.0.1:{port}"),
    );
    let agent = AgentProcess::start(env.dir.path(), &toml, port).await?;
    let idle = rss_mib(agent.pid());

    let t_commit = Instant::now();
    let mut expected: Vec<BTreeSet<(String, u64)>> = vec![BTreeSet::new(); env.ifaces.len()];
    let per = total / env.ifaces.len();
    for (i, iface) in env.ifaces.iter().enumerate() {
        let n = if i == 0 {
            total - per * (env.ifaces.len() - 1)
        } else {
            per
        };
        for c in commit_updates(&env.sim, *iface, n)? {
            expected[i].insert((c.atena_no.to_string(), u64::from(c.history_no)));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let c = env.sim.counters();
        if c.notices_delivered >= c.changes_committed {
            break;
        }
        if Instant::now() > deadline {
            bail!("backlog not ingested within 1200 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ingest = t_commit.elapsed();
    let backlog_rss = rss_mib(agent.pid());
    let before = env.sim.counters();
    let log_before = env.sim.requests().len();

    let t0 = Instant::now();
    stream.resume_consumer("tax_001").await?;
    let mut peak_rss = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if let Some((_, hwm)) = rss_mib(agent.pid()) {
            peak_rss = peak_rss.max(hwm);
        }
        if env.unfinished().await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("backlog not drained within 1800 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = t0.elapsed();
    let after = env.sim.counters();
    let data = |c: &crate::provider_sim::Counters| c.requests - c.token_issued - c.token_refused;
    let pulls = data(&after) - data(&before);
    let peak_conc = peak_in_flight(&env.sim);
    let log_len = env.sim.requests().len() - log_before;
    let mut missing = 0;
    for (i, iface) in env.ifaces.iter().enumerate() {
        let (got, _) = sink_rows(&env.sink_dir(), iface.as_str());
        missing += expected[i].difference(&got).count();
    }
    let end_rss = rss_mib(agent.pid());
    agent.stop();

    // Reference: drain the raw consumer (fetch 1,000 + ack each).
    let t1 = Instant::now();
    let mut raw_n = 0usize;
    while raw_n < total {
        let mut b = raw
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        let mut got = 0;
        while let Some(m) = b.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            got += 1;
        }
        if got == 0 {
            break;
        }
        raw_n += got;
    }
    let raw_drain = t1.elapsed();
    env.stop().await?;

    let rows = vec![
        json!({
            "path": "shirase agent (3 interfaces)", "backlog": total, "drain_s": round(drain.as_secs_f64()),
            "notices_per_s": round(total as f64 / drain.as_secs_f64()), "pull_calls": pulls,
            "pulls_per_notice": (pulls as f64 / total as f64 * 10_000.0).round() / 10_000.0,
            "peak_concurrent_requests": peak_conc, "e0004": after.too_many - before.too_many,
            "rows_returned": after.rows_returned - before.rows_returned, "rows_missing": missing,
            "agent_peak_rss_mib": peak_rss,
        }),
        json!({
            "path": "raw consumer fetch+ack (reference)", "backlog": total, "drain_s": round(raw_drain.as_secs_f64()),
            "notices_per_s": round(raw_n as f64 / raw_drain.as_secs_f64()), "pull_calls": total,
            "pulls_per_notice": 1.0, "peak_concurrent_requests": null, "e0004": null,
            "rows_returned": null, "rows_missing": null, "agent_peak_rss_mib": null,
        }),
    ];
    let summary = json!({
        "agent": "shirase-agent child process: batch.size 1000, max_wait 1s, max_notices_per_window 500; provider concurrency 4, rate_per_sec 50",
        "pause": "JetStream consumer pause of tax_001 (1 h), resumed after the backlog was stored",
        "backlog_ingest_s": round(ingest.as_secs_f64()),
        "request_log_entries_in_drain": log_len,
        "agent_rss_idle_mib": idle.map(|r| r.0),
        "agent_rss_with_backlog_before_resume_mib": backlog_rss.map(|r| r.0),
        "agent_rss_end_mib": end_rss.map(|r| r.0),
        "raw_reference_received": raw_n,
        "peak_concurrency_method": "simulator request log: intervals [arrival, arrival + duration_ms] (1 ms resolution, at least 1 ms) of /api/ requests during the whole run",
        "full": o.full,
    });
    Ok(Report::new("catchup", rows, summary))
}
