//! `latency`: relay accept → sink write, p50/p99/max at paced notice rates, against raw
//! JetStream publish → consumer receive at the same rates on the same server.
//!
//! Method. Every 10 ms a pacer commits `rate / 100` updates in the simulator (one interface),
//! builds their notices (same id, sequence, timestamp, key as the simulator's) and POSTs them to
//! the relay as one batch, recording per (addressee, history number) the instant the POST was
//! sent. The agent runs in-process with a timing sink ([`TimingSink`], the agent's `Sink` trait)
//! that records the first instant each (addressee, history number) row is delivered. Latency =
//! sink instant − POST start, so it includes the relay's HTTP handling and publish, the
//! consumer fetch (batch `max_wait`), the PULL request and the sink call.
//! The reference publishes ~400-byte messages with async-nats to a separate R1/R3 stream at the
//! same pace and measures publish start → receipt by a pull consumer (`messages()`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use shirase_subscriber_kit::sink::{Delivery, Record, Sink, SinkError};
use shirase_subscriber_kit::{Agent, Config};
use tokio_util::sync::CancellationToken;

use super::{Env, EnvOptions, Options, Report, commit_updates, notice_of, percentiles_ms};

/// Each notice sent, by (interface, sequence), with when it was sent.
type SentLog = Arc<Mutex<Vec<((String, u64), Instant)>>>;

/// A sink that only records when each row first arrived.
#[derive(Debug, Default)]
pub struct TimingSink {
    first: Mutex<HashMap<(String, u64), Instant>>,
}

impl TimingSink {
    /// When the row (addressee, history number) was first delivered.
    pub fn seen(&self, key: &(String, u64)) -> Option<Instant> {
        self.first.lock().ok()?.get(key).copied()
    }
    /// Rows seen so far.
    pub fn len(&self) -> usize {
        self.first.lock().map(|m| m.len()).unwrap_or(0)
    }
    /// No rows yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sink for TimingSink {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SinkError>> {
        let now = Instant::now();
        Box::pin(async move {
            if let Ok(mut m) = self.first.lock() {
                for r in &d.records {
                    if let Record::Row(row) = r
                        && let (Some(a), Some(h)) = (&row.atena_no, row.history_no)
                    {
                        m.entry((a.clone(), h)).or_insert(now);
                    }
                }
            }
            Ok(())
        })
    }
}

/// One paced run through Shirase: returns the latencies and how many notices were sent.
async fn shirase_at(
    env: &Env,
    sink: &TimingSink,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(Vec<Duration>, usize, usize)> {
    let iface = env.ifaces[0];
    let sent: SentLog = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let ticks = seconds * 100;
    let mut owed = 0.0f64;
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..ticks {
        tick.tick().await;
        owed += rate as f64 / 100.0;
        let k = owed.floor() as usize;
        owed -= k as f64;
        if k == 0 {
            continue;
        }
        let changes = commit_updates(&env.sim, iface, k)?;
        let notices = changes
            .iter()
            .map(notice_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let keys: Vec<(String, u64)> = changes
            .iter()
            .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
            .collect();
        let http = env.http.clone();
        let url = env.relay_url.clone();
        let sent = sent.clone();
        let errors = errors.clone();
        posts.spawn(async move {
            let t0 = Instant::now();
            if let Ok(mut s) = sent.lock() {
                s.extend(keys.into_iter().map(|k| (k, t0)));
            }
            if super::post_notices(&http, &url, &notices).await.is_err() {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while posts.join_next().await.is_some() {}
    let sent = std::mem::take(&mut *sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.iter().any(|(k, _)| sink.seen(k).is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat = Vec::with_capacity(sent.len());
    let mut missing = 0;
    for (k, t0) in &sent {
        match sink.seen(k) {
            Some(t) => lat.push(t.saturating_duration_since(*t0)),
            None => missing += 1,
        }
    }
    let e = errors.load(std::sync::atomic::Ordering::Relaxed);
    if e > 0 {
        bail!("{e} relay POSTs failed at {rate}/s");
    }
    Ok((lat, sent.len(), missing))
}

/// Wait until a new clustered stream and its consumer have leaders: before that a publish or a
/// pull request finds no responders.
async fn wait_leaders(
    mut stream: jetstream::stream::Stream,
    consumer: &mut jetstream::consumer::PullConsumer,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let led = |c: Option<&jetstream::stream::ClusterInfo>| c.is_some_and(|c| c.leader.is_some());
    loop {
        let stream_led = stream.info().await.is_ok_and(|i| led(i.cluster.as_ref()));
        let consumer_led = consumer.info().await.is_ok_and(|i| led(i.cluster.as_ref()));
        if stream_led && consumer_led {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} or its consumer got no leader in 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Raw JetStream at the same pace: publish start → pull-consumer receipt.
async fn raw_at(
    env: &Env,
    rate: u64,
    seconds: u64,
    replicas: usize,
    tag: &str,
) -> anyhow::Result<Vec<Duration>> {
    let stream_name = format!("BENCH_RAW_{tag}");
    let subject = format!("benchraw.{tag}");
    let stream = env
        .js
        .create_stream(jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            num_replicas: replicas,
            ..Default::default()
        })
        .await?;
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("raw".into()),
            ..Default::default()
        })
        .await?;
    if replicas > 1 {
        wait_leaders(stream, &mut consumer, &stream_name).await?;
    }
    let total = (rate * seconds) as usize;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let recv: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let stop = CancellationToken::new();
    let rx = {
        let recv = recv.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut msgs = consumer.messages().await?;
            loop {
                let m = tokio::select! {
                    m = msgs.next() => m,
                    () = stop.cancelled() => break,
                };
                let Some(m) = m else { break };
                let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                let now = Instant::now();
                let i = std::str::from_utf8(&m.payload[..12])
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok());
                if let (Some(i), Ok(mut r)) = (i, recv.lock())
                    && i < r.len()
                {
                    r[i].get_or_insert(now);
                }
                m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            anyhow::Ok(())
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut owed = 0.0f64;
    let mut next = 0usize;
    // PubAcks are awaited by a task of their own. Awaiting them here between ticks deadlocked
    // at 5,000/s: async-nats holds one of its 5,000 in-flight permits per unresolved ack, so
    // `publish` waited for a permit that only polling those acks would give back.
    let (ack_tx, mut ack_rx) =
        tokio::sync::mpsc::unbounded_channel::<jetstream::context::PublishAckFuture>();
    let acker = tokio::spawn(async move {
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                f = ack_rx.recv(), if open => match f {
                    Some(f) => pending.push(f.into_future()),
                    None => open = false,
                },
                Some(r) = pending.next(), if !pending.is_empty() => {
                    r.map_err(|e| anyhow::anyhow!("raw publish: {e}"))?;
                }
                else => break,
            }
        }
        anyhow::Ok(())
    });
    for _ in 0..seconds * 100 {
        tick.tick().await;
        owed += rate as f64 / 100.0;
        let k = owed.floor() as usize;
        owed -= k as f64;
        for _ in 0..k {
            if next >= total {
                break;
            }
            let mut payload = format!("{next:>12}").into_bytes();
            payload.resize(400, b'x');
            if let Ok(mut s) = sent.lock() {
                s[next] = Some(Instant::now());
            }
            let ack = env.js.publish(subject.clone(), payload.into()).await?;
            if ack_tx.send(ack).is_err() {
                break;
            }
            next += 1;
        }
    }
    drop(ack_tx);
    acker.await??;
    let deadline = Instant::now() + Duration::from_secs(30);
    while recv
        .lock()
        .map(|r| r.iter().take(next).any(Option::is_none))
        .unwrap_or(false)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    rx.await??;
    env.js.delete_stream(&stream_name).await?;
    let s = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let r = recv.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(s.iter()
        .zip(r.iter())
        .filter_map(|(a, b)| Some(b.as_ref()?.saturating_duration_since(*a.as_ref()?)))
        .collect())
}

fn lat_row(
    setup: &str,
    path: &str,
    rate: u64,
    sent: usize,
    lat: &mut [Duration],
    missing: usize,
    note: &str,
) -> Value {
    let (p50, p99, max) = percentiles_ms(lat);
    json!({
        "setup": setup, "path": path, "rate_per_s": rate, "sent": sent, "received": lat.len(),
        "missing": missing, "p50_ms": p50, "p99_ms": p99, "max_ms": max, "note": note,
    })
}

/// One setup (server kind + sync policy): start everything, run each rate for Shirase and raw.
async fn setup(
    label: &str,
    env_o: EnvOptions,
    rates: &[u64],
    o: &Options,
    max_wait_ms: u64,
    rows: &mut Vec<Value>,
) -> anyhow::Result<()> {
    let env = Env::start(&env_o, false).await?;
    // The overlap re-read (every 60 s by default) would re-read up to 10 minutes of this run's
    // rows in one pull; spaced to 300 s it happens once, at warm-up, as in a steady state where
    // it costs one larger pull per 5 minutes. Windows sized for the simulator's 5,000-row threshold.
    let toml = env
        .agent_toml(
            1000,
            max_wait_ms,
            "rate_per_sec = 1000.0\nconcurrency = 4",
            "",
        )
        .replacen("[nats]", "[pull]\nmax_notices_per_window = 2500\n[nats]", 1);
    let cfg = Config::from_toml_str(&toml)?;
    let sink = Arc::new(TimingSink::default());
    let agent = Agent::with_sink(cfg, sink.clone());
    let metrics = agent.metrics();
    let stop = CancellationToken::new();
    let task = tokio::spawn(agent.run(None, stop.clone()));
    // Warm-up: token, consumer binding, first pull (not measured).
    let (_, _, missing) = shirase_at(&env, &sink, 200, 1).await?;
    if missing > 0 {
        bail!("{label}: warm-up notices did not reach the sink within 60 s");
    }
    let replicas = if env_o.cluster { 3 } else { 1 };
    for &rate in rates {
        let (mut lat, sent, missing) = shirase_at(&env, &sink, rate, o.seconds).await?;
        let note = format!("batch.size 1000, max_wait {max_wait_ms}ms");
        let text = metrics.encode();
        let note = format!(
            "{note}; agent totals so far: pulls {}, notices uncovered {}, nak'ed {}",
            metric_sum(&text, "shirase_agent_pulls_total"),
            metric_sum(&text, "shirase_agent_notices_uncovered_total"),
            metric_sum(&text, "shirase_agent_notices_naked_total"),
        );
        rows.push(lat_row(
            label,
            "shirase accept→sink",
            rate,
            sent,
            &mut lat,
            missing,
            &note,
        ));
        let mut raw = raw_at(&env, rate, o.seconds, replicas, &format!("{rate}")).await?;
        let n = raw.len();
        rows.push(lat_row(
            label,
            "raw publish→consumer",
            rate,
            (rate * o.seconds) as usize,
            &mut raw,
            (rate * o.seconds) as usize - n,
            "async-nats, 400 B, pull consumer messages()",
        ));
        let last = &rows[rows.len() - 2];
        println!(
            "  {label} {rate}/s: shirase p50 {} p99 {} max {} ms | raw p99 {} ms | {}",
            last["p50_ms"],
            last["p99_ms"],
            last["max_ms"],
            rows[rows.len() - 1]["p99_ms"],
            last["note"]
        );
    }
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(30), task).await {
        Ok(r) => r??,
        Err(_) => bail!("{label}: agent did not stop within 30 s"),
    }
    env.stop().await?;
    Ok(())
}

/// Sum of a counter family in OpenMetrics text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Run the scenario.
pub async fn run(o: Options) -> anyhow::Result<Report> {
    let mut rows = Vec::new();
    let base = EnvOptions {
        population: 50_000,
        row_threshold: 5_000,
        ..EnvOptions::default()
    };
    let rates: &[u64] = if o.full {
        &[500, 1000, 2000, 5000]
    } else {
        &[500, 1000, 2000]
    };
    setup(
        "1 server, default sync",
        base.clone(),
        rates,
        &o,
        o.max_wait_ms,
        &mut rows,
    )
    .await?;
    if o.full {
        // The default max_wait (1 s) at 1,000/s, to show what batching costs.
        setup(
            "1 server, default sync, max_wait 1000",
            base.clone(),
            &[1000],
            &o,
            1000,
            &mut rows,
        )
        .await?;
    }
    // The extra setups report their failure as a row instead of losing the whole table.
    for (label, env_o) in [
        (
            "1 server, sync always",
            EnvOptions {
                sync_always: true,
                ..base.clone()
            },
        ),
        (
            "3-node R3",
            EnvOptions {
                cluster: true,
                ..base
            },
        ),
    ] {
        if let Err(e) = setup(label, env_o, &[1000], &o, o.max_wait_ms, &mut rows).await {
            rows.push(json!({
                "setup": label, "path": "failed", "rate_per_s": 1000, "sent": 0, "received": 0, "missing": 0,
                "p50_ms": null, "p99_ms": null, "max_ms": null, "note": format!("setup failed: {e:#}"),
            }));
        }
    }
    let summary = json!({
        "seconds_per_rate": o.seconds,
        "agent": format!("in-process, batch.size 1000, batch.max_wait {}ms (and 1s in one row), provider rate_per_sec 1000, concurrency 4", o.max_wait_ms),
        "pacing": "10 ms ticks, one relay POST of rate/100 notices per tick",
        "clock_start": "Shirase: relay POST sent; raw: publish call",
        "goal_p99_ms_at_2000": 25,
        "shirase_p99_ms_at_2000": rows.iter().find(|r| r["rate_per_s"] == 2000 && r["path"] == "shirase accept→sink").map(|r| r["p99_ms"].clone()),
    });
    Ok(Report::new("latency", rows, summary))
}
