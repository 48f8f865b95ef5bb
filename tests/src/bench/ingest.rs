//! `ingest`: raw async-nats JetStream acked publish (512 in flight, ~400-byte notices) versus
//! HTTP batch ingest through the relay (in-process, port 0) on the same stream settings, with
//! the default fsync policy and with `sync_interval: always`; also JetStream atomic batches
//! (ADR-50) raw and through the relay, and what atomic batches do with duplicate ids.
//!
//! **Pinned** (default sync): the same raw and relay measurements with nats-server pinned to
//! CPU 0 and this process (the relay, in-process, its HTTP client and the raw publisher) to
//! CPU 1 with `taskset`, as deployed (relay and NATS on separate hosts); without pinning they
//! take each other's CPU on a 2-core machine. Needs 2 CPUs; skipped (no `ratio_pinned`) else.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use shirase_proto::{AtenaNo, ChangeKind, Keys, Notice, OffsetTimestamp, Sequence};
use shirase_relay::Config;
use tokio_util::sync::CancellationToken;

use super::{Options, Report, round};
use crate::harness::{self, NatsServer};

/// One measured line of a table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    /// What was measured.
    name: String,
    /// Server fsync policy.
    sync: String,
    /// Messages (notices) stored.
    messages: usize,
    /// Wall time.
    seconds: f64,
    /// Throughput.
    msgs_per_sec: f64,
    /// Anything to know about the row.
    note: String,
}

const IN_FLIGHT: usize = 512;

fn bench_config(url: &str) -> anyhow::Result<Config> {
    let mut c = Config::load(Some(
        &harness::workspace_root().join("deploy/dev/relay.toml"),
    ))?;
    c.nats.urls = vec![url.to_owned()];
    c.nats.publish_timeout = Duration::from_secs(30);
    // A benchmark measures the relay, not the per-provider rate limit.
    c.http.provider_rate_per_sec = 1_000_000.0;
    c.http.provider_burst = 1_000_000;
    Ok(c)
}

/// A notice of about 400 bytes (one addressee number key, like a typical keyed notice).
fn make_notice(i: usize) -> Notice {
    let ifs = ["001o05-00", "001o06-00"];
    let keys = Keys {
        atena_no: vec![
            format!("{:015}", i)
                .parse::<AtenaNo>()
                .unwrap_or_else(|_| unreachable_atena()),
        ],
    };
    Notice::new(
        "131016".parse().unwrap_or_else(|_| unreachable!()),
        ifs[i % 2].parse().unwrap_or_else(|_| unreachable!()),
        "1.0".parse().unwrap_or_else(|_| unreachable!()),
        Sequence(i as u64),
        OffsetTimestamp::from_instant_jst(jiff::Timestamp::now()),
        ChangeKind::Update,
        Some(keys),
    )
}

fn unreachable_atena() -> AtenaNo {
    // 15 zero-padded digits always parse.
    unreachable!("a 15-digit number is a valid addressee number")
}

async fn purge(js: &jetstream::Context) -> anyhow::Result<()> {
    js.get_stream("SHIRASE_NOTICES").await?.purge().await?;
    Ok(())
}

async fn stored(js: &jetstream::Context) -> anyhow::Result<u64> {
    Ok(js
        .get_stream("SHIRASE_NOTICES")
        .await?
        .info()
        .await?
        .state
        .messages)
}

fn row(name: &str, sync: &str, messages: usize, elapsed: Duration, note: impl Into<String>) -> Row {
    let seconds = elapsed.as_secs_f64();
    Row {
        name: name.into(),
        sync: sync.into(),
        messages,
        seconds,
        msgs_per_sec: messages as f64 / seconds,
        note: note.into(),
    }
}

/// Raw async-nats: publish with Nats-Msg-Id, keep IN_FLIGHT PubAcks outstanding.
async fn raw_publish(js: &jetstream::Context, notices: &[Notice]) -> anyhow::Result<Duration> {
    let msgs: Vec<_> = notices
        .iter()
        .map(|n| {
            (
                n.subject(),
                shirase_proto::publish::headers(n),
                bytes::Bytes::from(n.to_json()),
            )
        })
        .collect();
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for (subject, headers, payload) in msgs {
        if pending.len() >= IN_FLIGHT
            && let Some(r) = pending.next().await
        {
            r?;
        }
        pending.push(
            js.publish_with_headers(subject, headers, payload)
                .await?
                .into_future(),
        );
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(start.elapsed())
}

/// Raw atomic batches of `http_batch`, `http_concurrency` batches concurrently.
async fn raw_atomic(
    client: &async_nats::Client,
    notices: &[Notice],
    o: &Options,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let chunks: Vec<Vec<&Notice>> = notices
        .chunks(o.http_batch)
        .map(|c| c.iter().collect())
        .collect();
    let mut pending = FuturesUnordered::new();
    for chunk in &chunks {
        if pending.len() >= o.http_concurrency
            && let Some(r) = pending.next().await
        {
            r?;
        }
        pending.push(shirase_relay::publisher::publish_atomic(
            client,
            chunk,
            Duration::from_secs(30),
        ));
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(start.elapsed())
}

/// The request bodies of `notices` in batches of `http_batch` (JSON arrays).
fn http_bodies(notices: &[Notice], o: &Options) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(notices
        .chunks(o.http_batch)
        .map(|c| serde_json::to_vec(&c.iter().collect::<Vec<_>>()))
        .collect::<Result<_, _>>()?)
}

/// HTTP batches of `http_batch` through the relay, `http_concurrency` requests concurrently.
async fn http_ingest(
    base: &str,
    token: &str,
    notices: &[Notice],
    o: &Options,
) -> anyhow::Result<Duration> {
    let bodies = http_bodies(notices, o)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = format!("{base}/v1/notices");
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for body in bodies {
        if pending.len() >= o.http_concurrency
            && let Some(r) = pending.next().await
        {
            let () = r?;
        }
        let req = http
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        pending.push(async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            if status != 202 {
                bail!(
                    "relay answered {status}: {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            Ok(())
        });
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(start.elapsed())
}

struct Relay {
    base: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), shirase_relay::serve::ServeError>>,
}

async fn start_relay(config: Config) -> anyhow::Result<Relay> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(shirase_relay::run(config, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().as_u16() == 200
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("relay not ready within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Relay {
        base,
        shutdown,
        task,
    })
}

/// What atomic batches do with `Nats-Msg-Id` duplicates, observed on the real server.
async fn atomic_findings(
    client: &async_nats::Client,
    js: &jetstream::Context,
) -> anyhow::Result<serde_json::Value> {
    purge(js).await?;
    let a: Vec<Notice> = (0..3).map(make_notice).collect();
    let refs: Vec<&Notice> = a.iter().collect();
    let first =
        shirase_relay::publisher::publish_atomic(client, &refs, Duration::from_secs(5)).await;
    let after_first = stored(js).await?;
    let again =
        shirase_relay::publisher::publish_atomic(client, &refs, Duration::from_secs(5)).await;
    let after_again = stored(js).await?;
    let fresh: Vec<Notice> = (3..5).map(make_notice).collect();
    let mixed: Vec<&Notice> = vec![&fresh[0], &a[0], &fresh[1]];
    let mixed_r =
        shirase_relay::publisher::publish_atomic(client, &mixed, Duration::from_secs(5)).await;
    let after_mixed = stored(js).await?;
    // Are a committed batch's sequences contiguous (so per-notice seqs can be derived)?
    let mut seqs = Vec::new();
    let stream = js.get_stream("SHIRASE_NOTICES").await?;
    let ids: HashSet<String> = a.iter().map(|n| n.id.to_string()).collect();
    let info = stream.get_info().await?;
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            if ids.contains(&id) {
                seqs.push(seq);
            }
        }
    }
    purge(js).await?;
    Ok(serde_json::json!({
        "new_batch_of_3": format!("{first:?}"),
        "stored_after_new_batch": after_first,
        "same_batch_resent": format!("{again:?}"),
        "stored_after_resend": after_again,
        "batch_of_2_new_and_1_already_stored_id": format!("{mixed_r:?}"),
        "stored_after_mixed_batch": after_mixed,
        "sequences_of_the_committed_batch": seqs,
    }))
}

/// The relay's validation of the HTTP bodies [`http_ingest`] sends, alone: the part of the
/// relay's CPU that raw publishing does not have.
fn validation_only(o: &Options) -> anyhow::Result<Duration> {
    let notices: Vec<Notice> = (0..o.messages).map(make_notice).collect();
    let bodies = http_bodies(&notices, o)?;
    let limits = shirase_proto::Limits::default();
    let start = Instant::now();
    let mut valid = 0;
    for body in &bodies {
        let (payload, _) = shirase_proto::parse_any_payload_spans(body, &limits)
            .map_err(|e| anyhow::anyhow!("a bench body was refused: {e}"))?;
        valid += payload.results().iter().filter(|r| r.is_ok()).count();
    }
    let elapsed = start.elapsed();
    if valid != o.messages {
        bail!("{valid} of {} bench notices validated", o.messages);
    }
    Ok(elapsed)
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// What each side's CPU did during one phase: "nats-server 0.41 s CPU (66 %), ...".
fn cpu_note(server_pid: u32, before: (Option<f64>, Option<f64>), wall: Duration) -> String {
    let after = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    let side = |name: &str, b: Option<f64>, a: Option<f64>| match (b, a) {
        (Some(b), Some(a)) => format!(
            "{name} {:.2} s CPU ({:.0} %)",
            a - b,
            100.0 * (a - b) / wall.as_secs_f64()
        ),
        _ => format!("{name} CPU unknown"),
    };
    format!(
        "{}, {}",
        side("nats-server", before.0, after.0),
        side("this process", before.1, after.1)
    )
}

/// `taskset -a -p -c <cpus> <pid>`: pin every thread of `pid` to `cpus`.
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()?;
    if !out.status.success() {
        bail!(
            "taskset -a -p -c {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Raw and relay ingest (default sync) with nats-server on CPU 0 and this process on CPU 1;
/// the ratio relay / raw. The process is unpinned again afterwards.
async fn pinned(opts: &Options, token: &str, rows: &mut Vec<Row>) -> anyhow::Result<f64> {
    let server = NatsServer::start()?;
    let server_pid = server
        .process_id()
        .ok_or_else(|| anyhow::anyhow!("nats-server has no process id"))?;
    let mut config = bench_config(&server.url())?;
    config.nats.atomic_batches = false;
    let js = jetstream::new(async_nats::connect(server.url()).await?);
    shirase_relay::provision::provision(&js, &shirase_relay::topology::desired(&config), false)
        .await?;
    pin(server_pid, "0")?;
    pin(std::process::id(), "1")?;
    let result = async {
        let warm: Vec<Notice> = (0..2_000).map(make_notice).collect();
        raw_publish(&js, &warm).await?;
        purge(&js).await?;
        let n = opts.messages;
        let notices: Vec<Notice> = (0..n).map(make_notice).collect();
        let cpu = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
        let raw = raw_publish(&js, &notices).await?;
        let cpu = cpu_note(server_pid, cpu, raw);
        let got = stored(&js).await?;
        rows.push(row(
            "raw async-nats publish, pinned",
            "default",
            n,
            raw,
            format!("{IN_FLIGHT} in flight; nats-server on CPU 0, publisher on CPU 1; {cpu}; stored {got}"),
        ));
        purge(&js).await?;
        let relay = start_relay(config.clone()).await?;
        let notices: Vec<Notice> = (0..n).map(make_notice).collect();
        let cpu = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
        let http = http_ingest(&relay.base, token, &notices, opts).await?;
        let cpu = cpu_note(server_pid, cpu, http);
        let got = stored(&js).await?;
        rows.push(row(
            "relay HTTP batch ingest, pinned",
            "default",
            n,
            http,
            format!(
                "batches of {}, {} concurrent; nats-server on CPU 0, relay and client on CPU 1; {cpu}; stored {got}",
                opts.http_batch, opts.http_concurrency
            ),
        ));
        relay.shutdown.cancel();
        relay.task.await??;
        anyhow::Ok(round(raw.as_secs_f64() / http.as_secs_f64()))
    }
    .await;
    pin(std::process::id(), "0-1")?;
    result
}

/// Run the scenario.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let token = std::fs::read_to_string(
        harness::workspace_root().join("deploy/dev/credentials/provider-001.token"),
    )?
    .trim()
    .to_owned();
    let size = make_notice(0).to_json().len();
    let mut rows = Vec::new();
    let mut summary = serde_json::Map::new();
    summary.insert("notice_bytes".into(), size.into());
    summary.insert("in_flight".into(), IN_FLIGHT.into());
    summary.insert("http_batch".into(), opts.http_batch.into());
    summary.insert("http_concurrency".into(), opts.http_concurrency.into());
    for (sync_always, label, n) in [
        (false, "default", opts.messages),
        (true, "always", opts.messages_sync),
    ] {
        let server = NatsServer::start_with(harness::Config {
            sync_always,
            ..harness::Config::default()
        })?;
        let mut config = bench_config(&server.url())?;
        config.nats.atomic_batches = false;
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::new(client.clone());
        let mut desired = shirase_relay::topology::desired(&config);
        // Atomic batches need the stream flag; it does not change plain publishing.
        desired.streams[0].allow_atomic_publish = true;
        shirase_relay::provision::provision(&js, &desired, false).await?;
        if !sync_always {
            summary.insert(
                "atomic_batch_dedup_findings".into(),
                atomic_findings(&client, &js).await?,
            );
        }

        // Warm up connections and the store.
        let warm: Vec<Notice> = (0..2_000).map(make_notice).collect();
        raw_publish(&js, &warm).await?;
        purge(&js).await?;

        let notices: Vec<Notice> = (0..n).map(make_notice).collect();
        let raw = raw_publish(&js, &notices).await?;
        let got = stored(&js).await?;
        rows.push(row(
            "raw async-nats publish",
            label,
            n,
            raw,
            format!("{IN_FLIGHT} in flight; stored {got}"),
        ));
        purge(&js).await?;

        let relay = start_relay(config.clone()).await?;
        let notices: Vec<Notice> = (0..n).map(make_notice).collect();
        let http = http_ingest(&relay.base, &token, &notices, &opts).await?;
        let got = stored(&js).await?;
        rows.push(row(
            "relay HTTP batch ingest",
            label,
            n,
            http,
            format!(
                "batches of {}, {} concurrent; stored {got}",
                opts.http_batch, opts.http_concurrency
            ),
        ));
        relay.shutdown.cancel();
        relay.task.await??;
        purge(&js).await?;

        let notices: Vec<Notice> = (0..n).map(make_notice).collect();
        let atomic = raw_atomic(&client, &notices, &opts).await?;
        let got = stored(&js).await?;
        rows.push(row(
            "raw atomic batch publish",
            label,
            n,
            atomic,
            format!(
                "batches of {}, {} concurrent; stored {got}",
                opts.http_batch, opts.http_concurrency
            ),
        ));
        purge(&js).await?;

        config.nats.atomic_batches = true;
        let relay = start_relay(config.clone()).await?;
        let notices: Vec<Notice> = (0..n).map(make_notice).collect();
        let http_atomic = http_ingest(&relay.base, &token, &notices, &opts).await?;
        let got = stored(&js).await?;
        rows.push(row(
            "relay HTTP batch ingest (atomic)",
            label,
            n,
            http_atomic,
            format!("nats.atomic_batches = true; stored {got}"),
        ));
        relay.shutdown.cancel();
        relay.task.await??;

        summary.insert(
            format!("ratio_relay_to_raw_{label}"),
            round(raw.as_secs_f64() / http.as_secs_f64()).into(),
        );
        summary.insert(
            format!("ratio_relay_atomic_to_raw_{label}"),
            round(raw.as_secs_f64() / http_atomic.as_secs_f64()).into(),
        );
        summary.insert(
            format!("ratio_raw_atomic_to_raw_{label}"),
            round(raw.as_secs_f64() / atomic.as_secs_f64()).into(),
        );
        drop(server);
    }
    if let Some(r) = summary.get("ratio_relay_to_raw_default").cloned() {
        summary.insert("ratio_unpinned".into(), r);
    }
    let validation = validation_only(&opts)?;
    summary.insert(
        "validation_us_per_notice".into(),
        round(validation.as_secs_f64() * 1e6 / opts.messages as f64).into(),
    );
    rows.push(row(
        "relay validation only (parse_any_payload_spans)",
        "-",
        opts.messages,
        validation,
        format!(
            "the relay's parsing and checking of the same bodies (batches of {}), no HTTP, no NATS",
            opts.http_batch
        ),
    ));
    if std::thread::available_parallelism().map_or(0, |n| n.get()) >= 2 {
        let r = pinned(&opts, &token, &mut rows).await?;
        summary.insert("ratio_pinned".into(), r.into());
    }
    let rows = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report::new(
        "ingest",
        rows,
        serde_json::Value::Object(summary),
    ))
}
