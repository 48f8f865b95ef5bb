//! `shirase-bench` scenarios: each starts its own nats-server(s), relay, provider-sim and agent,
//! measures Shirase and its reference in the same run, prints a table and writes
//! `target/bench/<scenario>.json`; [`summary`] merges each scenario's headline figure into
//! `target/bench/summary.json`.
//!
//! One file per scenario ([`ingest`], [`latency`], [`burst`], [`catchup`], [`daysim`],
//! [`memory`], [`latecommit`], and [`soak`], the randomized fault soak, which `all` leaves out);
//! this module holds what they share: the [`Report`] format, the environment
//! ([`Env`]: nats-server, in-process relay on port 0, provider-sim, agent in-process or as a
//! `shirase-agent` child process), percentiles and RSS readings.
//!
//! Benchmarks are binaries, not tests: nothing here asserts timings.

pub mod burst;
pub mod catchup;
pub mod daysim;
pub mod ingest;
pub mod latecommit;
pub mod latency;
pub mod memory;
pub mod soak;
pub mod summary;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use serde::Serialize;
use serde_json::{Value, json};
use shirase_proto::{ChangeKind, InterfaceId, Keys, Notice, OffsetTimestamp, Sequence};
use tokio_util::sync::CancellationToken;

use crate::harness::{self, NatsCluster, NatsServer};
use crate::provider_sim::{
    self, CommittedChange, InterfaceSpec, NoticeTarget, ProviderSim, SimHandle,
};

/// Options shared by every scenario (parsed by the `shirase-bench` binary).
#[derive(Debug, Clone)]
pub struct Options {
    /// ingest: messages per measurement with the default fsync policy.
    pub messages: usize,
    /// ingest: messages per measurement with `sync_interval: always`.
    pub messages_sync: usize,
    /// ingest: notices per HTTP request (and per atomic batch).
    pub http_batch: usize,
    /// ingest: HTTP requests in flight.
    pub http_concurrency: usize,
    /// The full sizes (1,000,000 backlogs...), longer than two minutes.
    pub full: bool,
    /// latency: seconds of paced load per rate.
    pub seconds: u64,
    /// latency: the agent's `batch.max_wait`, in milliseconds.
    pub max_wait_ms: u64,
    /// soak: seconds of faults (`--seconds` for the soak).
    pub soak_seconds: u64,
    /// soak: the fault schedule's seed (`None`: from the clock, printed).
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            messages: 100_000,
            messages_sync: 10_000,
            http_batch: 128,
            http_concurrency: 4,
            full: false,
            seconds: 5,
            max_wait_ms: 20,
            soak_seconds: 60,
            seed: None,
        }
    }
}

/// What a scenario produces: rows of a table (objects with the same keys) and a summary.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name (the JSON file name).
    pub scenario: String,
    /// Table rows.
    pub rows: Vec<Value>,
    /// Ratios, settings and findings.
    pub summary: Value,
    /// Machine and load when the scenario ran.
    pub machine: Value,
    /// Why the scenario failed its own check (the soak: what was lost); the binary exits
    /// non-zero after printing the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Report {
    /// A report with the machine description filled in.
    pub fn new(scenario: &str, rows: Vec<Value>, summary: Value) -> Self {
        Self {
            scenario: scenario.into(),
            rows,
            summary,
            machine: machine(),
            failure: None,
        }
    }

    /// Print the table (columns = the first row's keys) and the summary.
    pub fn print(&self) {
        println!("\n== {} ==", self.scenario);
        let Some(Value::Object(first)) = self.rows.first() else {
            println!("(no rows)");
            return;
        };
        let cols: Vec<&String> = first.keys().collect();
        let cell = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.2}"),
                _ => n.to_string(),
            },
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                cols.iter()
                    .map(|c| cell(r.get(c.as_str()).unwrap_or(&Value::Null)))
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].len())
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |vals: Vec<String>| {
            vals.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        println!("{}", line(cols.iter().map(|c| (*c).clone()).collect()));
        println!(
            "{}",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-|-")
        );
        for r in cells {
            println!("{}", line(r));
        }
        println!(
            "summary: {}",
            serde_json::to_string_pretty(&self.summary).unwrap_or_default()
        );
        println!(
            "machine: {}",
            serde_json::to_string(&self.machine).unwrap_or_default()
        );
    }

    /// Write `target/bench/<scenario>.json` (or under `CARGO_TARGET_DIR`).
    pub fn write_json(&self) -> anyhow::Result<PathBuf> {
        let dir = bench_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.scenario));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// `target/bench` (or under `CARGO_TARGET_DIR`).
pub fn bench_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness::workspace_root().join("target"))
        .join("bench")
}

/// nproc, CPU model, RAM, nats-server version and the load average now.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let nats_version = harness::nats_server_bin()
        .ok()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_gib": round(mem_kib as f64 / 1024.0 / 1024.0),
        "nats_server": nats_version,
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

/// Two decimals.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// p50, p99 and max of durations, in milliseconds (nearest-rank).
pub fn percentiles_ms(samples: &mut [Duration]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        round(samples[i].as_secs_f64() * 1000.0)
    };
    (
        at(0.50),
        at(0.99),
        round(samples[samples.len() - 1].as_secs_f64() * 1000.0),
    )
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| round(kib / 1024.0))
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The simulator's OAuth client of the benchmark agent.
pub const CLIENT: &str = "tax-agent";
const SECRET: &str = "bench-only-secret-tax";
/// The provider's relay credential (benchmarks only; the relay holds its sha256).
pub const TOKEN: &str = "bench-only-relay-token-provider-001";
/// The operator's credential for the relay's operator API (benchmarks only).
pub const OPS_TOKEN: &str = "bench-only-operator-token";

/// The interfaces a scenario uses: 001o05-00, 001o06-00, 001o07-00... (business 001).
pub fn interfaces(n: usize) -> Vec<InterfaceId> {
    (0..n)
        .filter_map(|i| format!("001o{:02}-00", 5 + i).parse().ok())
        .collect()
}

/// How to build an [`Env`].
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// Interfaces served, published and subscribed to by `tax`.
    pub interfaces: usize,
    /// `sync_interval: always` on the server(s).
    pub sync_always: bool,
    /// A 3-node cluster and R3 streams instead of one server and R1.
    pub cluster: bool,
    /// Residents generated by the simulator.
    pub population: usize,
    /// The simulator's E0004 threshold.
    pub row_threshold: usize,
    /// Request log entries kept by the simulator.
    pub request_log: usize,
    /// The `tax` consumer's ack_wait.
    pub ack_wait_secs: u64,
    /// The simulator publishes its notices straight to JetStream, one by one (instead of the
    /// relay target or none).
    pub notices_to_nats: bool,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            interfaces: 1,
            sync_always: false,
            cluster: false,
            population: 20_000,
            row_threshold: 1_000,
            request_log: 10_000,
            ack_wait_secs: 60,
            notices_to_nats: false,
        }
    }
}

/// The servers a benchmark runs on.
#[allow(missing_debug_implementations)]
pub enum Servers {
    /// One nats-server.
    Single(NatsServer),
    /// A 3-node cluster.
    Cluster(NatsCluster),
}

impl Servers {
    /// Client URLs.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Self::Single(s) => vec![s.url()],
            Self::Cluster(c) => c.urls(),
        }
    }
}

/// nats-server(s) provisioned by the relay's own provisioning, the relay in-process on port 0,
/// and a provider-sim (business 001, notices posted by the benchmark itself unless a scenario
/// sets the target).
#[allow(missing_debug_implementations)]
pub struct Env {
    /// The servers (stopped on drop).
    pub servers: Servers,
    /// JetStream of the benchmark's own connection.
    pub js: jetstream::Context,
    /// The relay's base URL.
    pub relay_url: String,
    relay_stop: CancellationToken,
    relay_task: tokio::task::JoinHandle<Result<(), shirase_relay::serve::ServeError>>,
    /// The simulator.
    pub sim: SimHandle,
    sim_stop: CancellationToken,
    /// Temp dir: secrets, sinks, configs.
    pub dir: tempfile::TempDir,
    /// The interfaces in use.
    pub ifaces: Vec<InterfaceId>,
    /// HTTP client for the relay.
    pub http: reqwest::Client,
}

/// The relay's config for a benchmark. Atomic batches follow the relay's own advice
/// (relay.default.toml): on with `sync_interval: always`, where they save an fsync per notice;
/// off with the default sync policy, where the server stages each batch in files of its own
/// (`batches/<id>/` under the stream's store, created and removed per HTTP request) and on this
/// machine's disk that made deliveries stall for 50–500 ms (found with strace during `latency`).
fn relay_toml(
    urls: &[String],
    ifaces: &[InterfaceId],
    replicas: usize,
    ack_wait: u64,
    sync_always: bool,
) -> String {
    let digest = hex::encode(shirase_relay::config::token_digest(TOKEN));
    let ops_digest = hex::encode(shirase_relay::config::token_digest(OPS_TOKEN));
    let urls = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        r#"
municipality_code = "131016"
[http]
listen = "127.0.0.1:0"
# A benchmark measures the relay, not the per-provider rate limit.
provider_rate_per_sec = 1000000.0
provider_burst = 1000000
[nats]
urls = [{urls}]
publish_timeout = "30s"
atomic_batches = {sync_always}
[stream]
replicas = {replicas}
# The maintenance scheduler would pause every consumer 00:00-03:00 JST (the tests' wall
# clock): off, as in deploy/dev/relay.toml; its own tests drive it with a clock.
[maintenance]
scheduler = false
[[providers]]
business_id = "001"
name = "resident registry"
pull_api_base_url = "http://127.0.0.1:9001"
credentials = {{ token_sha256 = ["{digest}"] }}
[[operators]]
name = "bench-operator"
role = "operator"
credentials = {{ token_sha256 = ["{ops_digest}"] }}
"#
    );
    for i in ifaces {
        s.push_str(&format!(
            "[[interfaces]]\nid = \"{i}\"\nversion = \"1.0\"\nprovider = \"001\"\n"
        ));
    }
    let list = ifaces
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    s.push_str(&format!(
        "[[subscribers]]\nid = \"tax\"\ninterfaces = [{list}]\nack_wait = \"{ack_wait}s\"\n"
    ));
    s
}

impl Env {
    /// Start servers, provision, start the relay and the simulator (`target` = where the
    /// simulator's own notices go; [`NoticeTarget::None`] when the benchmark posts them).
    pub async fn start(o: &EnvOptions, relay_target: bool) -> anyhow::Result<Env> {
        let servers = if o.cluster {
            Servers::Cluster(NatsCluster::start_with(3, o.sync_always)?)
        } else {
            Servers::Single(NatsServer::start_with(harness::Config {
                sync_always: o.sync_always,
                ..harness::Config::default()
            })?)
        };
        let urls = servers.urls();
        let ifaces = interfaces(o.interfaces);
        let rc = shirase_relay::Config::from_toml_str(
            &relay_toml(
                &urls,
                &ifaces,
                if o.cluster { 3 } else { 1 },
                o.ack_wait_secs,
                o.sync_always,
            ),
            None,
        )?;
        let addrs = urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let client = async_nats::connect(addrs).await?;
        let js = jetstream::new(client);
        // A fresh cluster may still be electing its meta leader.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match shirase_relay::provision::provision(
                &js,
                &shirase_relay::topology::desired(&rc),
                false,
            )
            .await
            {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("provision not yet: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let relay_stop = CancellationToken::new();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let relay_url = format!("http://{}", l.local_addr()?);
        let relay_task = tokio::spawn(shirase_relay::run(rc, l, relay_stop.clone()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{relay_url}/readyz")).send().await
                && r.status().as_u16() == 200
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("relay not ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let mut sc = provider_sim::Config::for_business("001".parse()?).with_client(CLIENT, SECRET);
        sc.interfaces = ifaces.iter().map(|i| InterfaceSpec::v1(*i)).collect();
        sc.population = o.population;
        sc.row_threshold = o.row_threshold;
        sc.request_log_capacity = o.request_log;
        if relay_target {
            sc.notice_target = NoticeTarget::Relay {
                url: relay_url.clone(),
                token: TOKEN.into(),
            };
        } else if o.notices_to_nats {
            sc.notice_target = NoticeTarget::Nats {
                url: urls[0].clone(),
            };
        }
        let sim_stop = CancellationToken::new();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim = ProviderSim::start(sc, l, sim_stop.clone()).await?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n"))?;
        Ok(Env {
            servers,
            js,
            relay_url,
            relay_stop,
            relay_task,
            sim,
            sim_stop,
            dir,
            ifaces,
            http,
        })
    }

    /// `agent.toml` for subscriber `tax` reading every interface, file sink under the temp dir.
    pub fn agent_toml(
        &self,
        batch_size: usize,
        max_wait_ms: u64,
        provider_extra: &str,
        http_listen: &str,
    ) -> String {
        let urls = self
            .servers
            .urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            r#"
subscriber = "tax"
municipality = "131016"
[batch]
size = {batch_size}
max_wait = "{max_wait_ms}ms"
[nats]
urls = [{urls}]
[http]
listen = "{http_listen}"
[sink]
kind = "file"
dir = "{sink}"
[[providers]]
business_id = "001"
pull_api_base_url = "{base}"
token_url = "{token}"
insecure_http = true
client_id = "{CLIENT}"
client_secret_file = "{secret}"
enforce_maintenance = false
{provider_extra}
"#,
            sink = self.sink_dir().display(),
            base = self.sim.base_url(),
            token = self.sim.token_url(),
            secret = self.dir.path().join("secret").display(),
        );
        for i in &self.ifaces {
            s.push_str(&format!(
                "[[providers.interfaces]]\nid = \"{i}\"\nversion = \"1.0\"\n"
            ));
        }
        s
    }

    /// The file sink's directory.
    pub fn sink_dir(&self) -> PathBuf {
        self.dir.path().join("sink")
    }

    /// POST notices to the relay (one batch); error unless 202.
    pub async fn post(&self, notices: &[Notice]) -> anyhow::Result<()> {
        post_notices(&self.http, &self.relay_url, notices).await
    }

    /// Notices still pending or unacked on the `tax` consumers (one per provider: `tax_001`).
    pub async fn unfinished(&self) -> anyhow::Result<u64> {
        let mut c: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream("tax_001", shirase_proto::subject::NOTICE_STREAM)
            .await?;
        let i = c.info().await?;
        Ok(i.num_pending + i.num_ack_pending as u64)
    }

    /// Stop the relay and the simulator (servers stop on drop).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.sim_stop.cancel();
        self.sim.stopped().await;
        self.relay_stop.cancel();
        self.relay_task.await??;
        Ok(())
    }
}

/// POST notices to a relay; error unless 202.
pub async fn post_notices(
    http: &reqwest::Client,
    relay_url: &str,
    notices: &[Notice],
) -> anyhow::Result<()> {
    let r = http
        .post(format!("{relay_url}/v1/notices"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(notices)?)
        .send()
        .await?;
    let status = r.status().as_u16();
    if status != 202 {
        bail!(
            "relay answered {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// The notice a provider sends for a change the simulator committed (same id, sequence,
/// timestamp and key as the simulator's own).
pub fn notice_of(c: &CommittedChange) -> anyhow::Result<Notice> {
    let updated_at: OffsetTimestamp = c.updated_at.parse()?;
    let mut n = Notice::new(
        "131016".parse()?,
        c.interface_id,
        "1.0".parse()?,
        Sequence(c.sequence),
        updated_at,
        c.kind,
        Some(Keys {
            atena_no: vec![c.atena_no],
        }),
    );
    n.id = c.notice_id;
    Ok(n)
}

/// Commit `count` updates on `iface` (in chunks the simulator accepts).
pub fn commit_updates(
    sim: &SimHandle,
    iface: InterfaceId,
    count: usize,
) -> anyhow::Result<Vec<CommittedChange>> {
    let mut out = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let n = left.min(provider_sim::MAX_CHANGES_PER_CALL);
        out.extend(
            sim.commit_changes(
                provider_sim::ChangeSpec::new(n)
                    .interface(iface)
                    .kind(ChangeKind::Update),
            )?,
        );
        left -= n;
    }
    Ok(out)
}

/// A `shirase-agent` child process (release binary next to this one), for RSS readings.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    /// Its `/metrics` URL.
    pub metrics_url: String,
}

impl AgentProcess {
    /// Write `toml` to the temp dir and start the binary with it; waits for `/healthz`.
    pub async fn start(dir: &Path, toml: &str, http_port: u16) -> anyhow::Result<Self> {
        let bin = agent_bin()?;
        let cfg = dir.join("agent.toml");
        std::fs::write(&cfg, toml)?;
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .env("SHIRASE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let me = Self {
            child,
            metrics_url: format!("http://127.0.0.1:{http_port}/metrics"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{http_port}/healthz"))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
                bail!("shirase-agent not healthy within 30 s; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(me)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of a counter family in its `/metrics` (all label sets).
    pub async fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        let text = reqwest::get(&self.metrics_url).await?.text().await?;
        Ok(text
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// SIGTERM, then wait (kill after 20 s).
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `shirase-relay` next to the running binary (target/release), or `SHIRASE_RELAY_BIN`.
pub fn relay_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("SHIRASE_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or(std::env::current_exe()?.with_file_name("shirase-relay"));
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p shirase-relay --bin shirase-relay`",
            bin.display()
        );
    }
    Ok(bin)
}

/// `shirase-agent` next to the running binary (target/release), or `SHIRASE_AGENT_BIN`.
pub fn agent_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHIRASE_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("shirase-agent");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p shirase-subscriber-kit --bin shirase-agent` (or set SHIRASE_AGENT_BIN)",
            p.display()
        );
    }
    Ok(p)
}

/// Poll `f` every 20 ms until true or `limit` passes; returns whether it became true.
pub async fn wait_for<F, Fut>(limit: Duration, mut f: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Peak number of data requests in flight, from the simulator's request log (arrival `at` on
/// the sim clock plus `duration_ms`), for requests whose path starts with `/api/`.
pub fn peak_in_flight(sim: &SimHandle) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for e in sim.requests() {
        if !e.path.starts_with("/api/") {
            continue;
        }
        let Ok(t) = e.at.parse::<jiff::Timestamp>() else {
            continue;
        };
        let start = t.as_microsecond();
        let end = start + (e.duration_ms as i64).max(1) * 1000;
        edges.push((start, 1));
        edges.push((end, -1));
    }
    edges.sort_unstable();
    let (mut cur, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        peak = peak.max(cur);
    }
    peak.max(0) as usize
}

/// Shared by scenarios that keep an `Arc` of something across tasks.
pub type Shared<T> = Arc<std::sync::Mutex<T>>;
