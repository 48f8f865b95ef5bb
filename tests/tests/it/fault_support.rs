//! The production shape on loopback, for the fault tests: a 3-node JetStream cluster with R3
//! streams, the built `shirase-relay` and `shirase-agent` binaries as child processes (so a test
//! can `kill -9` them), and provider-sim POSTing every notice to the relay over HTTP while a
//! publisher task commits changes continuously. A sampler records when rows reach the agent's
//! file sink, so each fault's delivery gap and recovery time can be measured.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::Value;
use shirase_proto::ChangeKind;
use shirase_tests::harness::{NatsCluster, free_port};
use shirase_tests::provider_sim::{self, ChangeSpec, NoticeTarget, ProviderSim, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::agent_support::{sink_lines, wait_until};

/// The interface the subscriber `tax` reads.
pub const I05: &str = "001o05-00";
/// Provider 001's relay token (test only; the relay knows its sha256).
pub const TOKEN: &str = "test-only-relay-token-provider-001";
const CLIENT: &str = "tax-agent";
const SECRET: &str = "dev-only-secret-tax";
/// The agent's `batch.size` in these tests: the most notices one fetch hands it, so the most
/// notices whose processing one interruption can cut short.
pub const BATCH_SIZE: usize = 200;
/// Row versions one change can produce: the new history row plus the previous latest row of
/// the same addressee, whose latest flag the same commit clears (same `updated_at`).
const VERSIONS_PER_CHANGE: usize = 2;

/// `target/debug/<name>`, next to the test binary's `deps/` directory.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first (deploy/dev/test.sh does)",
        bin.display()
    );
    bin
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    child: Option<Child>,
    /// Where its stderr goes (appended across restarts).
    pub log: PathBuf,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    /// Spawn `bin args...` with `env`, stdout and stderr appended to `log`.
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Proc {
        let mut p = Proc {
            child: None,
            log,
            cmd: std::iter::once(bin.display().to_string())
                .chain(args.iter().map(|s| (*s).to_owned()))
                .collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        p.start();
        p
    }

    /// Start again (after [`Proc::kill9`]).
    pub fn start(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Only what the test sets: a developer's SHIRASE_* or RUST_LOG must not change the run.
        for (k, _) in std::env::vars() {
            if k.starts_with("SHIRASE_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.child = Some(c.spawn().unwrap());
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running (not exited by itself).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Graceful stop (SIGTERM), waiting up to 30 s.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Log levels of the child processes.
#[derive(Debug, Clone, Copy)]
pub struct LogLevels {
    /// `SHIRASE_LOG` of the relay.
    pub relay: &'static str,
    /// `RUST_LOG` of the agent.
    pub agent: &'static str,
}

impl Default for LogLevels {
    fn default() -> Self {
        Self {
            relay: "info",
            agent: "info",
        }
    }
}

/// Everything running.
pub struct ClusterEnv {
    pub cluster: NatsCluster,
    pub js: jetstream::Context,
    pub dir: tempfile::TempDir,
    pub relay_url: String,
    pub relay: Proc,
    pub agent: Proc,
    pub sim: SimHandle,
    pub sim_stop: CancellationToken,
    publishing: Arc<AtomicBool>,
    publisher: Option<tokio::task::JoinHandle<()>>,
    /// (when, rows in the sink) every 100 ms.
    pub samples: Arc<Mutex<Vec<(Instant, usize)>>>,
    sampler_stop: CancellationToken,
}

pub fn relay_toml(urls: &[String], port: u16, replicas: usize) -> String {
    let digest = hex::encode(shirase_relay::config::token_digest(TOKEN));
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"
municipality_code = "131016"
[http]
listen = "127.0.0.1:{port}"
retry_after = "1s"
[nats]
urls = [{urls}]
publish_timeout = "2s"
publish_attempts = 3
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
[[interfaces]]
id = "{I05}"
version = "1.0"
provider = "001"
[[subscribers]]
id = "tax"
interfaces = ["{I05}"]
ack_wait = "5s"
"#,
        urls = urls.join(", ")
    )
}

fn agent_toml(urls: &[String], sim: &SimHandle, dir: &Path) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"
subscriber = "tax"
municipality = "131016"
[batch]
size = {BATCH_SIZE}
max_wait = "200ms"
[nats]
urls = [{urls}]
[http]
listen = ""
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
rate_per_sec = 200.0
enforce_maintenance = false
[[providers.interfaces]]
id = "{I05}"
version = "1.0"
"#,
        urls = urls.join(", "),
        sink = dir.join("sink").display(),
        base = sim.base_url(),
        token = sim.token_url(),
        secret = dir.join("secret").display(),
    )
}

/// A JetStream context on every node, reconnecting forever.
pub async fn cluster_js(urls: &[String]) -> jetstream::Context {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .connect(addrs)
        .await
        .unwrap();
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(3))
        .build(client)
}

impl ClusterEnv {
    /// Start the cluster, provision R3 with the relay binary, start relay, sim and agent, and
    /// wait until the first rows arrive.
    pub async fn start(levels: LogLevels) -> ClusterEnv {
        Self::start_with(levels, 3, 500).await
    }

    /// [`ClusterEnv::start`] with `nodes` NATS nodes (R = nodes) and a population.
    pub async fn start_with(levels: LogLevels, nodes: usize, population: usize) -> ClusterEnv {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = NatsCluster::start(nodes).unwrap();
        let urls = cluster.urls();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let relay_conf = dir.path().join("relay.toml");
        std::fs::write(&relay_conf, relay_toml(&urls, port, nodes)).unwrap();
        let relay_bin = built_binary("shirase-relay");
        let conf = relay_conf.display().to_string();
        // Provisioning as an operator would run it: the binary, on the cluster, R3.
        let out = Command::new(&relay_bin)
            .args(["provision", "--config", &conf])
            .env_remove("SHIRASE_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "provision failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let js = cluster_js(&urls).await;
        // Asked until answered: a busy cluster can leave one request unanswered.
        let replicas = Mutex::new(0);
        wait_until(30, "the notice stream's configuration", || async {
            let Ok(mut s) = js.get_stream(shirase_proto::subject::NOTICE_STREAM).await else {
                return false;
            };
            let Ok(info) = s.info().await else {
                return false;
            };
            *replicas.lock().unwrap() = info.config.num_replicas;
            true
        })
        .await;
        assert_eq!(
            replicas.into_inner().unwrap(),
            nodes,
            "the notice stream is R{nodes}"
        );

        let relay = Proc::spawn(
            &relay_bin,
            &["serve", "--config", &conf],
            &[("SHIRASE_LOG", levels.relay)],
            dir.path().join("relay.log"),
        );
        let relay_url = format!("http://127.0.0.1:{port}");
        wait_ready(&relay_url, 30).await;

        let mut sc =
            provider_sim::Config::for_business("001".parse().unwrap()).with_client(CLIENT, SECRET);
        sc.population = population;
        sc.notice_target = NoticeTarget::Relay {
            url: relay_url.clone(),
            token: TOKEN.into(),
        };
        let sim_stop = CancellationToken::new();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ProviderSim::start(sc, l, sim_stop.clone()).await.unwrap();

        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        let agent_conf = dir.path().join("agent.toml");
        std::fs::write(&agent_conf, agent_toml(&urls, &sim, dir.path())).unwrap();
        let aconf = agent_conf.display().to_string();
        let agent = Proc::spawn(
            &built_binary("shirase-agent"),
            &["--config", &aconf],
            &[("RUST_LOG", levels.agent)],
            dir.path().join("agent.log"),
        );

        let samples = Arc::new(Mutex::new(Vec::new()));
        let sampler_stop = CancellationToken::new();
        {
            let (samples, stop, sink) = (
                samples.clone(),
                sampler_stop.clone(),
                dir.path().join("sink"),
            );
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let n = sink_lines(&sink, I05)
                        .iter()
                        .filter(|l| l["kind"] == "row")
                        .count();
                    samples.lock().unwrap().push((Instant::now(), n));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        let mut env = ClusterEnv {
            cluster,
            js,
            dir,
            relay_url,
            relay,
            agent,
            sim,
            sim_stop,
            publishing: Arc::new(AtomicBool::new(false)),
            publisher: None,
            samples,
            sampler_stop,
        };
        env.sim
            .commit_changes(
                ChangeSpec::new(5)
                    .interface(I05.parse().unwrap())
                    .kind(ChangeKind::Update),
            )
            .unwrap();
        wait_until(60, "the first rows reach the sink", || async {
            env.rows_now() >= 5
        })
        .await;
        env.start_publishing();
        env
    }

    fn rows_now(&self) -> usize {
        self.samples.lock().unwrap().last().map_or(0, |s| s.1)
    }

    /// Commit 3 changes every 100 ms (≈ 30 notices/s through the relay) until stopped.
    fn start_publishing(&mut self) {
        self.publishing.store(true, Ordering::SeqCst);
        let (flag, sim) = (self.publishing.clone(), self.sim.clone());
        self.publisher = Some(tokio::spawn(async move {
            while flag.load(Ordering::SeqCst) {
                sim.commit_changes(
                    ChangeSpec::new(3)
                        .interface(I05.parse().unwrap())
                        .kind(ChangeKind::Update),
                )
                .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    /// Stop committing changes.
    pub async fn stop_publishing(&mut self) {
        self.publishing.store(false, Ordering::SeqCst);
        if let Some(h) = self.publisher.take() {
            h.await.unwrap();
        }
    }

    /// The stream leader's node index.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = self
                .js
                .get_stream(shirase_proto::subject::NOTICE_STREAM)
                .await
                && let Ok(i) = s.info().await
                && let Some(name) = i.cluster.as_ref().and_then(|c| c.leader.clone())
                && let Some(idx) = self.cluster.index_of(&name)
            {
                return idx;
            }
            assert!(Instant::now() < deadline, "no stream leader known");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keep publishing for a while, stop, let everything drain, check the guarantees and
    /// return the figures. `fault_at`/`restored_at` bracket the fault; `agent_restarts` is how
    /// many times the test started a new agent process (it bounds the duplicates).
    pub async fn finish(
        &mut self,
        name: &str,
        fault_at: Instant,
        restored_at: Instant,
        agent_restarts: usize,
    ) -> Figures {
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.stop_publishing().await;
        let sim = self.sim.clone();
        wait_until(90, "the relay answered 202 for every notice", || async {
            let c = sim.counters();
            c.notices_delivered >= c.changes_committed
        })
        .await;
        let expected: BTreeSet<(String, u64)> = self
            .sim
            .changes()
            .iter()
            .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
            .collect();
        let sink = self.dir.path().join("sink");
        let mut missing = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let got: BTreeSet<(String, u64)> = sink_lines(&sink, I05)
                .iter()
                .filter(|l| l["kind"] == "row")
                .map(|l| {
                    (
                        l["row"]["atena_no"].as_str().unwrap().to_owned(),
                        l["row"]["history_no"].as_u64().unwrap(),
                    )
                })
                .collect();
            missing = expected.difference(&got).count();
            if missing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let drained_at = Instant::now();
        self.sampler_stop.cancel();
        assert_eq!(
            missing,
            0,
            "{name}: {missing} of {} changes never reached the sink; agent log: {}",
            expected.len(),
            tail(&self.agent.log)
        );

        // Every notice the relay took (202) is in the stream, and the consumer finished them all.
        let stored = stream_ids(&self.js).await;
        let notices = self.sim.notices();
        let lost: Vec<String> = notices
            .iter()
            .map(shirase_proto::publish::dedup_key)
            .filter(|id| !stored.contains(id))
            .collect();
        assert!(
            lost.is_empty(),
            "{name}: {} acknowledged notices are not in the stream, e.g. {:?}",
            lost.len(),
            lost.first()
        );
        let js = self.js.clone();
        wait_until(
            60,
            "the tax consumer has nothing pending or unacked",
            || async {
                let Ok(mut c) = js
                    .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                        "tax_001",
                        shirase_proto::subject::NOTICE_STREAM,
                    )
                    .await
                else {
                    return false;
                };
                c.info()
                    .await
                    .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            },
        )
        .await;
        // Components recovered by themselves: both processes still running, the relay ready.
        assert!(
            self.relay.running(),
            "{name}: the relay exited: {}",
            tail(&self.relay.log)
        );
        assert!(
            self.agent.running(),
            "{name}: the agent exited: {}",
            tail(&self.agent.log)
        );
        wait_ready(&self.relay_url, 10).await;

        // Duplicates: the same row version (atena_no, history_no, updated_at) written twice.
        let mut versions: BTreeMap<(String, u64, String), usize> = BTreeMap::new();
        for l in sink_lines(&sink, I05).iter().filter(|l| l["kind"] == "row") {
            let r = &l["row"];
            *versions
                .entry((
                    r["atena_no"].as_str().unwrap().to_owned(),
                    r["history_no"].as_u64().unwrap(),
                    r["updated_at"].as_str().unwrap().to_owned(),
                ))
                .or_insert(0) += 1;
        }
        let duplicates: usize = versions.values().map(|n| n - 1).sum();
        let max_copies = versions.values().copied().max().unwrap_or(0);
        // The bounds on duplicates. A row version reaches the sink again only when a pull
        // covers it a second time:
        // - steady running: a window starts at the checkpoint (inclusive), so the row at the
        //   checkpoint comes again with the next window; a window ending at "now" reads rows
        //   ahead of their notices, which then find them received (no second pull), but a
        //   notice stored just after the pull behind the checkpoint started whose row was not
        //   received gets it once more (a narrow pull). A version comes twice at most: at most
        //   2 copies, at most one duplicate per distinct version;
        // - each interruption adds at most one more copy: the batch the fault cut short (sink
        //   written, checkpoint CAS or acks failed) is redelivered and pulled again, at most
        //   BATCH_SIZE notices, each one change of at most VERSIONS_PER_CHANGE versions;
        // - a new agent process (kill -9, restart) resumes from the checkpoint and pulls the
        //   killed process's unacked batch again after ack_wait (narrow pulls for the notices
        //   below the checkpoint).
        // Notice-triggered windows never re-read the overlap below the checkpoint.
        let interruptions = 1 + agent_restarts;
        let max_copies_bound = 2 + interruptions;
        let duplicate_bound =
            (1 + agent_restarts) * (versions.len() + BATCH_SIZE * VERSIONS_PER_CHANGE);

        let samples = self.samples.lock().unwrap().clone();
        let mut max_gap = Duration::ZERO;
        let mut last_growth: Option<(Instant, usize)> = None;
        let mut recovery = None;
        for &(t, n) in &samples {
            match last_growth {
                Some((lt, ln)) if n > ln => {
                    max_gap = max_gap.max(t - lt);
                    if recovery.is_none() && t > restored_at {
                        recovery = Some(t.saturating_duration_since(restored_at));
                    }
                    last_growth = Some((t, n));
                }
                None => last_growth = Some((t, n)),
                _ => {}
            }
        }
        let c = self.sim.counters();
        let f = Figures {
            name: name.to_owned(),
            sent: notices.len() as u64,
            acked: c.notices_delivered,
            retries: c.notice_retries,
            changes: expected.len(),
            rows_written: versions.values().sum(),
            duplicates,
            duplicate_bound,
            max_copies,
            max_gap,
            fault: restored_at - fault_at,
            recovery: recovery.unwrap_or_default(),
            drained_after: drained_at - restored_at,
        };
        println!("{f}");
        assert!(
            f.duplicates <= f.duplicate_bound,
            "{name}: {} duplicate row versions, more than {} ((1 + agent restarts) x (distinct versions + batch.size x versions per change))",
            f.duplicates,
            f.duplicate_bound
        );
        assert!(
            f.max_copies <= max_copies_bound,
            "{name}: a row version was written {} times: more than twice (its read-ahead and its own notice) plus once per interruption ({interruptions})",
            f.max_copies
        );
        f
    }

    /// Stop everything gracefully.
    pub async fn shutdown(mut self) {
        self.stop_publishing().await;
        self.agent.terminate();
        self.relay.terminate();
        self.sim_stop.cancel();
    }
}

/// What one fault did.
#[derive(Debug)]
pub struct Figures {
    pub name: String,
    /// Notices the simulator emitted.
    pub sent: u64,
    /// Notices the relay answered 202 for.
    pub acked: u64,
    /// Re-sends by the simulator (503 or connection failure).
    pub retries: u64,
    /// Distinct changes (atena_no, history_no), all of which reached the sink.
    pub changes: usize,
    /// Row lines written to the sink.
    pub rows_written: usize,
    /// Row versions written more than once (beyond the first).
    pub duplicates: usize,
    /// The most duplicates the test allows (see [`ClusterEnv::finish`]).
    pub duplicate_bound: usize,
    /// The most times one row version was written.
    pub max_copies: usize,
    /// Longest time without a new row in the sink.
    pub max_gap: Duration,
    /// How long the fault lasted (injection to restart/resume).
    pub fault: Duration,
    /// From the restart/resume to the next new row in the sink.
    pub recovery: Duration,
    /// From the restart/resume until every change was in the sink.
    pub drained_after: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FAULT {:<28} notices sent {:>5} acked(202) {:>5} re-sent {:>4} | changes {:>5} all delivered, rows written {:>5}, duplicate row versions {:>4} (bound {}, most copies of one {}) | fault {:>5.1}s, max delivery gap {:>5.1}s, recovery {:>5.1}s, drained {:>5.1}s after restore",
            self.name,
            self.sent,
            self.acked,
            self.retries,
            self.changes,
            self.rows_written,
            self.duplicates,
            self.duplicate_bound,
            self.max_copies,
            self.fault.as_secs_f64(),
            self.max_gap.as_secs_f64(),
            self.recovery.as_secs_f64(),
            self.drained_after.as_secs_f64(),
        )
    }
}

/// Poll `<url>/readyz` until 200.
pub async fn wait_ready(url: &str, secs: u64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    wait_until(secs, "the relay is ready", || async {
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
}

/// Every Nats-Msg-Id in SHIRASE_NOTICES. Read with an ephemeral consumer; right after a fault
/// its first pull requests can find no responder while the cluster settles (seen in CI after a
/// stream-leader kill), so a failed read starts over with a new consumer, up to 5 times.
pub async fn stream_ids(js: &jetstream::Context) -> BTreeSet<String> {
    let mut last = String::new();
    for _ in 0..5 {
        match read_stream_ids(js).await {
            Ok(ids) => return ids,
            Err(e) => {
                last = e;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    panic!("reading SHIRASE_NOTICES failed 5 times: {last}");
}

async fn read_stream_ids(js: &jetstream::Context) -> Result<BTreeSet<String>, String> {
    let mut stream = js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let total = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages as usize;
    let c = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeSet::new();
    let mut msgs = c
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = 0;
    while seen < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .map_err(|_| format!("no message for 10 s after {seen} of {total}"))?
            .ok_or("the consumer's message stream ended")?
            .map_err(|e| e.to_string())?;
        seen += 1;
        if let Some(id) = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
            out.insert(id.to_string());
        }
    }
    Ok(out)
}

/// The last 30 lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Rows of `lines` as JSON (for scanning).
#[allow(dead_code)]
pub fn rows(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == "row")
        .map(|l| &l["row"])
        .collect()
}
