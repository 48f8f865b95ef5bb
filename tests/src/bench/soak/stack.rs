//! The soak's running topology: a 3-node JetStream cluster (R3, `sync_interval: always`), two
//! `shirase-relay` replicas and two `shirase-agent` processes per subscriber (child processes,
//! so a fault can `kill -9` them), and the two providers of the dev topology as in-process
//! simulators, whose notices a poster task sends to either relay (the other one when a POST
//! fails). Applying and undoing each [`Fault`] lives here too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use shirase_proto::{InterfaceId, Notice};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::schedule::{Fault, Shape};
use crate::harness::{NatsCluster, free_port};
use crate::provider_sim::{self, FaultsUpdate, InterfaceSpec, ProviderSim, SimHandle};

const MUNICIPALITY: &str = "131016";
/// (business id, interface, relay token) of the dev topology's two providers.
pub const PROVIDERS: [(&str, &str, &str); 2] = [
    ("001", "001o05-00", "soak-only-relay-token-provider-001"),
    ("010", "010o01-00", "soak-only-relay-token-provider-010"),
];
/// (subscriber, OAuth client id, interfaces by provider index) of the dev topology's agents.
pub const SUBSCRIBERS: [(&str, &str, &[usize]); 2] = [
    ("tax", "tax-agent", &[0]),
    ("delinquency", "delinquency-agent", &[0, 1]),
];
const SECRET: &str = "soak-only-client-secret";
/// Replicas of each agent and of the relay.
pub const REPLICAS: usize = 2;
/// The consumers' ack wait: how long a killed agent's notices wait before redelivery.
pub const ACK_WAIT: &str = "10s";

/// The agents' log filter (see [`Stack::agent_log_counts`]).
const AGENT_LOG_FILTER: &str =
    "warn,shirase_subscriber_kit::agent::worker=info,shirase_subscriber_kit::sweep=info";

/// A child process killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    /// Where its stdout and stderr go (appended across restarts).
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    fn spawn(args: Vec<String>, env: &[(&str, &str)], log: PathBuf) -> anyhow::Result<Proc> {
        let mut p = Proc {
            child: None,
            log,
            args,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        p.start()?;
        Ok(p)
    }

    /// Start (again); nothing when running.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.running() {
            return Ok(());
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut c = Command::new(&self.args[0]);
        c.args(&self.args[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // Only what the soak sets: a developer's SHIRASE_* or RUST_LOG must not change the run.
        for (k, _) in std::env::vars() {
            if k.starts_with("SHIRASE_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.child = Some(
            c.spawn()
                .with_context(|| format!("starting {}", self.args[0]))?,
        );
        Ok(())
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is running (not exited by itself).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `n` lines of its log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `name` built next to this executable (target/<profile>/), or one directory up (a test
/// binary in target/<profile>/deps/).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("executable without a directory")?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{name} is not built next to {}: build it first (cargo build --workspace --bins, or --release for a release shirase-bench)",
        me.display()
    )
}

/// One provider simulator.
#[derive(Debug)]
pub struct Provider {
    /// Its handle.
    pub sim: SimHandle,
    stop: CancellationToken,
    /// Its interface.
    pub iface: InterfaceId,
    /// Where the poster sends its notices.
    pub notices: mpsc::UnboundedSender<Vec<Notice>>,
}

/// Figures of the posters.
#[derive(Debug, Default)]
pub struct PostStats {
    /// Notices the relays answered 202 for.
    pub accepted: AtomicU64,
    /// Notices sent but not yet answered 202.
    pub outstanding: AtomicU64,
    /// POSTs that failed and were re-sent (to the other relay).
    pub resent: AtomicU64,
    /// Notices accepted by each relay.
    pub by_relay: [AtomicU64; REPLICAS],
}

/// An agent process and the sink directory it writes.
#[derive(Debug)]
pub struct AgentProc {
    /// The process.
    pub proc: Proc,
    /// Its subscriber.
    pub subscriber: &'static str,
    /// Its file sink's directory.
    pub sink: PathBuf,
}

/// Everything running.
#[derive(Debug)]
pub struct Stack {
    /// The nats-server nodes (locked only to kill, pause or restart one).
    pub cluster: Arc<Mutex<NatsCluster>>,
    /// A connection to the cluster, reconnecting forever.
    pub js: jetstream::Context,
    /// Configs, logs and sinks.
    pub dir: tempfile::TempDir,
    /// The relay replicas.
    pub relays: Vec<Proc>,
    /// The agents, `REPLICAS` per subscriber in [`SUBSCRIBERS`] order.
    pub agents: Vec<AgentProc>,
    /// The providers, in [`PROVIDERS`] order.
    pub providers: Vec<Provider>,
    /// The posters' figures.
    pub posts: Arc<PostStats>,
    posters: Vec<tokio::task::JoinHandle<()>>,
}

impl Stack {
    /// The shape the schedule plans for.
    pub fn shape(&self) -> Shape {
        Shape {
            relays: self.relays.len(),
            agents: self.agents.len(),
            nodes: REPLICAS + 1,
            providers: self.providers.len(),
        }
    }

    /// Start the cluster, provision, start relays, simulators, posters and agents.
    pub async fn start(seed: u64) -> anyhow::Result<Stack> {
        let cluster = tokio::task::spawn_blocking(|| NatsCluster::start_with(3, true)).await??;
        let urls = cluster.urls();
        let dir = tempfile::tempdir()?;
        let relay_bin = sibling_binary("shirase-relay")?;
        let ports = [free_port()?, free_port()?];
        let mut relays = Vec::new();
        let mut relay_urls = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let conf = dir.path().join(format!("relay-{i}.toml"));
            std::fs::write(&conf, relay_toml(&urls, *port))?;
            if i == 0 {
                provision(&relay_bin, &conf).await?;
            }
            let conf = conf.display().to_string();
            relays.push(Proc::spawn(
                vec![
                    relay_bin.display().to_string(),
                    "serve".into(),
                    "--config".into(),
                    conf,
                ],
                &[("SHIRASE_LOG", "warn")],
                dir.path().join(format!("relay-{i}.log")),
            )?);
            relay_urls.push(format!("http://127.0.0.1:{port}"));
        }
        for u in &relay_urls {
            wait_ready(u).await?;
        }
        let posts = Arc::new(PostStats::default());
        let mut providers = Vec::new();
        let mut posters = Vec::new();
        for (i, (business, iface, token)) in PROVIDERS.iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            posters.push(tokio::spawn(post_forever(
                rx,
                relay_urls.clone(),
                (*token).to_owned(),
                posts.clone(),
                i,
            )));
            providers.push(start_provider(business, iface, seed.wrapping_add(i as u64), tx).await?);
        }
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n"))?;
        let agent_bin = sibling_binary("shirase-agent")?;
        let mut agents = Vec::new();
        for (subscriber, client, provs) in SUBSCRIBERS {
            for r in 0..REPLICAS {
                let name = format!("{subscriber}-{r}");
                let sink = dir.path().join(format!("sink-{name}"));
                let conf = dir.path().join(format!("agent-{name}.toml"));
                let toml = agent_toml(
                    &urls,
                    subscriber,
                    client,
                    provs,
                    &providers,
                    &sink,
                    dir.path(),
                );
                std::fs::write(&conf, toml)?;
                let proc = Proc::spawn(
                    vec![
                        agent_bin.display().to_string(),
                        "--config".into(),
                        conf.display().to_string(),
                    ],
                    // Warnings, and the sweeper's and worker's info lines: the report counts
                    // the confirmed sequence gaps and the sweeps they started.
                    &[("SHIRASE_LOG", AGENT_LOG_FILTER)],
                    dir.path().join(format!("agent-{name}.log")),
                )?;
                agents.push(AgentProc {
                    proc,
                    subscriber,
                    sink,
                });
            }
        }
        let js = connect(&urls).await?;
        Ok(Stack {
            cluster: Arc::new(Mutex::new(cluster)),
            js,
            dir,
            relays,
            agents,
            providers,
            posts,
            posters,
        })
    }

    /// How many lines of every agent's log (all its runs) contain each of `needles`.
    pub fn agent_log_counts(&self, needles: &[&str]) -> Vec<u64> {
        let mut counts = vec![0u64; needles.len()];
        for a in &self.agents {
            let text = std::fs::read_to_string(&a.proc.log).unwrap_or_default();
            for line in text.lines() {
                for (c, n) in counts.iter_mut().zip(needles) {
                    *c += u64::from(line.contains(n));
                }
            }
        }
        counts
    }

    /// Apply a fault (`undo` = false) or end it.
    pub async fn apply(&mut self, fault: Fault, undo: bool) -> anyhow::Result<()> {
        let sim_update = |p: usize, u: FaultsUpdate| -> anyhow::Result<()> {
            self.providers[p].sim.set_faults(u)?;
            Ok(())
        };
        match fault {
            Fault::KillRelay { relay } if undo => self.relays[relay].start()?,
            Fault::KillRelay { relay } => self.relays[relay].kill9(),
            Fault::KillAgent { agent } if undo => self.agents[agent].proc.start()?,
            Fault::KillAgent { agent } => self.agents[agent].proc.kill9(),
            Fault::KillNats { node } if undo => self.restart_node(node).await?,
            Fault::KillNats { node } => lock(&self.cluster).nodes[node].kill(),
            Fault::PauseNats { node } if undo => lock(&self.cluster).nodes[node].resume(),
            Fault::PauseNats { node } => lock(&self.cluster).nodes[node].pause(),
            Fault::ProviderOutage { provider } => sim_update(
                provider,
                FaultsUpdate {
                    outage: Some(!undo),
                    ..FaultsUpdate::default()
                },
            )?,
            Fault::Maintenance { provider } => sim_update(
                provider,
                FaultsUpdate {
                    maintenance: Some(!undo),
                    ..FaultsUpdate::default()
                },
            )?,
            Fault::E0004Storm {
                provider,
                threshold,
            } => sim_update(
                provider,
                FaultsUpdate {
                    row_threshold: Some(if undo { 0 } else { threshold }),
                    ..FaultsUpdate::default()
                },
            )?,
            Fault::Bare503Storm {
                provider,
                above_rows,
            } => sim_update(
                provider,
                FaultsUpdate {
                    timeout_above_rows: Some(if undo { 0 } else { above_rows }),
                    ..FaultsUpdate::default()
                },
            )?,
            Fault::ClockAhead { .. } if undo => {}
            Fault::ClockAhead { provider, ms } => self.providers[provider]
                .sim
                .advance_clock(Duration::from_millis(ms)),
        }
        Ok(())
    }

    async fn restart_node(&self, node: usize) -> anyhow::Result<()> {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || lock(&cluster).nodes[node].start_again()).await??;
        Ok(())
    }

    /// Every process running again (a restart that failed during the faults is retried).
    pub async fn ensure_running(&mut self) -> anyhow::Result<()> {
        let nodes = lock(&self.cluster).nodes.len();
        for node in 0..nodes {
            lock(&self.cluster).nodes[node].resume();
            self.restart_node(node).await?;
        }
        for r in &mut self.relays {
            r.start()?;
        }
        for a in &mut self.agents {
            a.proc.start()?;
        }
        Ok(())
    }

    /// Stop everything: agents and relays SIGKILLed (their work is checked already), the
    /// simulators and posters stopped; the cluster stops on drop.
    pub async fn stop(mut self) {
        for a in &mut self.agents {
            a.proc.kill9();
        }
        for r in &mut self.relays {
            r.kill9();
        }
        for p in &self.providers {
            p.stop.cancel();
            p.sim.stopped().await;
        }
        for t in &self.posters {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn provision(relay_bin: &Path, conf: &Path) -> anyhow::Result<()> {
    // A fresh cluster may still be settling its placement: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tokio::process::Command::new(relay_bin)
            .args(["provision", "--config"])
            .arg(conf)
            .env_remove("SHIRASE_LOG")
            .output()
            .await?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("provision failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status().as_u16() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("relay {url} not ready within 60 s")
}

async fn connect(urls: &[String]) -> anyhow::Result<jetstream::Context> {
    let addrs = urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .connect(addrs)
        .await?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client))
}

async fn start_provider(
    business: &str,
    iface: &str,
    seed: u64,
    notices: mpsc::UnboundedSender<Vec<Notice>>,
) -> anyhow::Result<Provider> {
    let iface: InterfaceId = iface.parse()?;
    let mut sc = provider_sim::Config::for_business(business.parse()?);
    for (_, client, _) in SUBSCRIBERS {
        sc = sc.with_client(client, SECRET);
    }
    sc.interfaces = vec![InterfaceSpec::v1(iface)];
    sc.seed = seed;
    sc.population = 1_000;
    // Short enough that a bare-503 storm and a maintenance answer cost seconds, not minutes.
    sc.provider_timeout = Duration::from_secs(1);
    sc.maintenance_retry_after = Duration::from_secs(2);
    let stop = CancellationToken::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ProviderSim::start(sc, l, stop.clone()).await?;
    Ok(Provider {
        sim,
        stop,
        iface,
        notices,
    })
}

/// POST each batch to a relay until it answers 202, alternating between the relays and
/// switching to the other one after a failure (the same notice ids: stored once).
async fn post_forever(
    mut rx: mpsc::UnboundedReceiver<Vec<Notice>>,
    relays: Vec<String>,
    token: String,
    stats: Arc<PostStats>,
    first: usize,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "soak poster: no HTTP client");
            return;
        }
    };
    let mut next = first;
    while let Some(batch) = rx.recv().await {
        let mut backoff = Duration::from_millis(50);
        loop {
            let relay = next % relays.len();
            next += 1;
            let r = http
                .post(format!("{}/v1/notices", relays[relay]))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&batch).unwrap_or_default())
                .send()
                .await;
            if let Ok(r) = r
                && r.status().as_u16() == 202
            {
                let n = batch.len() as u64;
                stats.accepted.fetch_add(n, Ordering::SeqCst);
                stats.by_relay[relay].fetch_add(n, Ordering::SeqCst);
                stats.outstanding.fetch_sub(n, Ordering::SeqCst);
                break;
            }
            stats.resent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

fn relay_toml(urls: &[String], port: u16) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let mut s = format!(
        r#"
municipality_code = "{MUNICIPALITY}"
[http]
listen = "127.0.0.1:{port}"
retry_after = "1s"
[nats]
urls = [{urls}]
publish_timeout = "2s"
publish_attempts = 3
[stream]
replicas = 3
[maintenance]
scheduler = false
"#,
        urls = urls.join(", ")
    );
    for (business, iface, token) in PROVIDERS {
        let digest = hex::encode(shirase_relay::config::token_digest(token));
        s.push_str(&format!(
            "[[providers]]\nbusiness_id = \"{business}\"\nname = \"provider {business}\"\npull_api_base_url = \"http://127.0.0.1:9\"\ncredentials = {{ token_sha256 = [\"{digest}\"] }}\n[[interfaces]]\nid = \"{iface}\"\nversion = \"1.0\"\nprovider = \"{business}\"\n"
        ));
    }
    for (subscriber, _, provs) in SUBSCRIBERS {
        let list: Vec<String> = provs
            .iter()
            .map(|p| format!("{:?}", PROVIDERS[*p].1))
            .collect();
        s.push_str(&format!(
            "[[subscribers]]\nid = \"{subscriber}\"\ninterfaces = [{}]\nack_wait = \"{ACK_WAIT}\"\nmax_deliver = 20\nmax_ack_pending = 1000\n",
            list.join(", ")
        ));
    }
    s
}

fn agent_toml(
    urls: &[String],
    subscriber: &str,
    client: &str,
    provs: &[usize],
    providers: &[Provider],
    sink: &Path,
    dir: &Path,
) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let mut s = format!(
        r#"
subscriber = "{subscriber}"
municipality = "{MUNICIPALITY}"
[batch]
size = 200
max_wait = "200ms"
[nats]
urls = [{urls}]
[http]
listen = ""
[retry]
max = "10s"
[sink]
kind = "file"
dir = "{sink}"
"#,
        urls = urls.join(", "),
        sink = sink.display(),
    );
    for p in provs {
        let (business, iface, _) = PROVIDERS[*p];
        let sim = &providers[*p].sim;
        // The dev topology: the delinquency agent reads 001o05-00 with keyed pulls.
        let keyed = if subscriber == "delinquency" && *p == 0 {
            "keyed_pull_max_keys = 20\n"
        } else {
            ""
        };
        s.push_str(&format!(
            "[[providers]]\nbusiness_id = \"{business}\"\npull_api_base_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{client}\"\nclient_secret_file = \"{}\"\ninsecure_http = true\nenforce_maintenance = false\n[[providers.interfaces]]\nid = \"{iface}\"\nversion = \"1.0\"\n{keyed}",
            sim.base_url(),
            sim.token_url(),
            dir.join("secret").display(),
        ));
    }
    s
}
