//! Shared setup of the agent tests: a real nats-server provisioned by the relay's own
//! provisioning (deploy/dev/relay.toml topology), provider-sim instances publishing their
//! notices straight to JetStream, and agents run in-process with `Agent::run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::Value;
use shirase_proto::InterfaceId;
use shirase_subscriber_kit::metrics::Metrics;
use shirase_subscriber_kit::{Agent, Config};
use shirase_tests::harness::{NatsServer, workspace_root};
use shirase_tests::provider_sim::{self, NoticeTarget, ProviderSim, SimHandle};
use tokio_util::sync::CancellationToken;

pub const IFACE: &str = "001o05-00";
pub const CLIENT: &str = "tax-agent";
pub const SECRET: &str = "dev-only-secret-tax";

pub fn iface() -> InterfaceId {
    IFACE.parse().unwrap()
}

/// nats-server + relay provisioning + one provider-sim (business 001).
pub struct Env {
    pub nats: NatsServer,
    pub js: jetstream::Context,
    pub sim: SimHandle,
    #[allow(dead_code)]
    pub sim_stop: CancellationToken,
    pub dir: tempfile::TempDir,
}

/// The dev relay topology provisioned on `url` with the relay's own `provision`.
pub async fn provision(url: &str) -> jetstream::Context {
    let mut c =
        shirase_relay::Config::load(Some(&workspace_root().join("deploy/dev/relay.toml"))).unwrap();
    c.nats.urls = vec![url.to_owned()];
    // Short ack_wait so a killed agent's notices come back within the test's patience.
    for sub in &mut c.subscribers {
        sub.ack_wait = Duration::from_secs(5);
    }
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let desired = shirase_relay::topology::desired(&c);
    shirase_relay::provision::provision(&js, &desired, false)
        .await
        .unwrap();
    js
}

impl Env {
    /// The simulator commits `n` updates of the test interface (and publishes their notices
    /// as configured).
    pub fn commit_updates(&self, n: usize) {
        self.sim
            .commit_changes(
                provider_sim::ChangeSpec::new(n)
                    .interface(iface())
                    .kind(shirase_proto::ChangeKind::Update),
            )
            .unwrap();
    }

    /// Start everything; `tune` adjusts the simulator's config (threshold, timeout...).
    pub async fn start(tune: impl FnOnce(&mut provider_sim::Config)) -> Env {
        Self::start_on(NatsServer::start().unwrap(), tune).await
    }

    /// [`Env::start`] on a server the test configured (authorization...).
    pub async fn start_on(nats: NatsServer, tune: impl FnOnce(&mut provider_sim::Config)) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let js = provision(&nats.url()).await;
        let mut sc =
            provider_sim::Config::for_business("001".parse().unwrap()).with_client(CLIENT, SECRET);
        sc.population = 500;
        sc.notice_target = NoticeTarget::Nats { url: nats.url() };
        tune(&mut sc);
        let sim_stop = CancellationToken::new();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ProviderSim::start(sc, l, sim_stop.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        Env {
            nats,
            js,
            sim,
            sim_stop,
            dir,
        }
    }

    pub fn sink_dir(&self) -> PathBuf {
        self.dir.path().join("sink")
    }

    /// Agent config for subscriber `tax` reading 001o05-00 from the simulator; `extra` is TOML
    /// appended at the top level (before the provider tables) and `provider_extra` inside
    /// `[[providers]]`.
    pub fn agent_config(&self, extra: &str, provider_extra: &str) -> Config {
        Config::from_toml_str(&self.agent_toml(extra, provider_extra)).unwrap()
    }

    /// The TOML text of [`Env::agent_config`].
    pub fn agent_toml(&self, extra: &str, provider_extra: &str) -> String {
        // The baseline calendar (24:00-27:00 JST) would stall every test run at night in
        // Japan: tests enforce maintenance only when they ask for it.
        let enforce = if provider_extra.contains("enforce_maintenance") {
            ""
        } else {
            "enforce_maintenance = false"
        };
        format!(
            r#"
subscriber = "tax"
municipality = "131016"
{extra}
[nats]
urls = ["{nats}"]
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
{enforce}
{provider_extra}
[[providers.interfaces]]
id = "{IFACE}"
version = "1.0"
"#,
            nats = self.nats.url(),
            sink = self.sink_dir().display(),
            base = self.sim.base_url(),
            token = self.sim.token_url(),
            secret = self.dir.path().join("secret").display(),
        )
    }

    /// Every (atena_no, history_no) the simulator created by update/retroactive changes.
    pub fn expected_rows(&self) -> BTreeSet<(String, u64)> {
        self.sim
            .changes()
            .iter()
            .filter(|c| c.kind != shirase_proto::ChangeKind::Delete)
            .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
            .collect()
    }

    pub fn sink_lines(&self) -> Vec<Value> {
        sink_lines(&self.sink_dir(), IFACE)
    }

    /// The sink's rows as (atena_no, history_no) with their multiplicity.
    pub fn sink_rows(&self) -> BTreeMap<(String, u64), usize> {
        let mut m = BTreeMap::new();
        for l in self.sink_lines() {
            if l["kind"] == "row" {
                let k = (
                    l["row"]["atena_no"].as_str().unwrap().to_owned(),
                    l["row"]["history_no"].as_u64().unwrap(),
                );
                *m.entry(k).or_insert(0) += 1;
            }
        }
        m
    }

    pub async fn checkpoint(&self) -> Option<jiff::Timestamp> {
        let kv = self
            .js
            .get_key_value(shirase_proto::subject::CHECKPOINT_BUCKET)
            .await
            .unwrap();
        let v = kv.get(format!("tax.131016.{IFACE}")).await.unwrap()?;
        let s: Value = serde_json::from_slice(&v).unwrap();
        Some(
            s["updated_at"]
                .as_str()
                .unwrap()
                .parse::<shirase_proto::OffsetTimestamp>()
                .unwrap()
                .instant(),
        )
    }

    /// Number of notices still pending or unacked on the tax consumer.
    pub async fn unfinished(&self) -> u64 {
        let mut c: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream("tax_001", shirase_proto::subject::NOTICE_STREAM)
            .await
            .unwrap();
        let i = c.info().await.unwrap();
        i.num_pending + i.num_ack_pending as u64
    }
}

/// Lines of `<dir>/<iface>.jsonl` (a partial last line is skipped, as a reader should).
pub fn sink_lines(dir: &Path, iface: &str) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{iface}.jsonl"))) else {
        return vec![];
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An agent running in-process.
pub struct RunningAgent {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), shirase_subscriber_kit::AgentError>>,
    pub metrics: Arc<Metrics>,
}

impl RunningAgent {
    pub fn start(cfg: Config) -> RunningAgent {
        Self::start_agent(Agent::new(cfg).unwrap())
    }

    /// Run an agent built by the test (clock, sink...).
    pub fn start_agent(agent: Agent) -> RunningAgent {
        let metrics = agent.metrics();
        let stop = CancellationToken::new();
        let task = tokio::spawn(agent.run(None, stop.clone()));
        RunningAgent {
            stop,
            task,
            metrics,
        }
    }

    /// Graceful stop; returns what `run` returned.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("agent stops within 30 s")
            .unwrap()
            .unwrap();
    }

    pub fn pulls(&self) -> u64 {
        self.metrics.pulls_total("001", IFACE)
    }
    pub fn pulls_of(&self, outcome: &str) -> u64 {
        self.metrics.pulls_count("001", IFACE, outcome)
    }
}

/// Poll `f` every 50 ms until it is true; panic with `what` after `secs`.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the simulator's emitter delivered every committed notice to JetStream.
pub async fn wait_notices_published(env: &Env) {
    wait_until(60, "notices published", || async {
        let c = env.sim.counters();
        c.notices_delivered >= c.changes_committed
    })
    .await;
}
