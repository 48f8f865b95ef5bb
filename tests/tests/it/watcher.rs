//! The watcher against provider-sim in "no notices" mode: the provider publishes
//! nothing, the relay's watcher polls it and publishes notices, agents pull and deliver.
//!
//! What is proved here, each with the simulator's request log or the stream as the witness:
//! - every change reaches every subscriber's sink, with five subscribers;
//! - the provider sees one poller: while idle, only the watcher's client calls it, at the
//!   watcher's rate, whatever the number of subscribers;
//! - no request inside a maintenance window, and the changes made during it arrive after it;
//! - two watchers polling the same provider at once publish every window once (no duplicate);
//! - `kill -9` of the relay process mid-window, then a restart: no loss, no duplicate;
//! - switch to native notices at `watch.until`: each change announced exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_nats::jetstream;
use jiff::Timestamp;
use serde_json::Value;
use shirase_proto::maintenance::OffsetClock;
use shirase_proto::{ChangeKind, Notice};
use shirase_tests::harness::{NatsServer, free_port};
use shirase_tests::provider_sim::{
    self, ChangeSpec, CommittedChange, NoticeTarget, ProviderSim, SimHandle,
};
use tokio_util::sync::CancellationToken;

use crate::agent_e2e_relay::{agent_toml, secret_of};
use crate::agent_support::{RunningAgent, sink_lines, wait_until};
use crate::fault_support::{Proc, built_binary, wait_ready};

const I05: &str = "001o05-00";
const WATCHER_CLIENT: &str = "shirase-watcher";
const WATCHER_SECRET: &str = "test-only-watcher-secret";
/// Provider 001's relay token, for the native notices of the switch test.
const TOKEN: &str = "test-only-relay-token-provider-001";

/// Knobs of one relay configuration.
struct Setup<'a> {
    subscribers: &'a [&'a str],
    interval: &'a str,
    until: Option<Timestamp>,
    enforce_maintenance: bool,
}

fn relay_toml(
    nats: &str,
    port: u16,
    sim: &SimHandle,
    dir: &std::path::Path,
    s: &Setup<'_>,
    watch_api: &str,
) -> String {
    let digest = hex::encode(shirase_relay::config::token_digest(TOKEN));
    let until = s
        .until
        .map(|u| format!("until = \"{u}\""))
        .unwrap_or_default();
    let mut t = format!(
        r#"
municipality_code = "131016"
[http]
listen = "127.0.0.1:{port}"
[nats]
urls = ["{nats}"]
publish_timeout = "2s"
[stream]
replicas = 1
[maintenance]
scheduler = false
tick = "500ms"
lease_ttl = "2s"
[[providers]]
business_id = "001"
name = "resident registry"
pull_api_base_url = "{base}"
credentials = {{ token_sha256 = ["{digest}"] }}
[providers.watch]
token_url = "{token}"
client_id = "{WATCHER_CLIENT}"
client_secret_file = "{secret}"
interval = "{interval}"
min_interval = "{interval}"
max_interval = "{interval}"
# Under a loaded CI machine a commit can become visible a few hundred ms after its DB
# timestamp (the simulator takes the timestamp, then waits for its DB lock, as a real DB
# commit can): settle must exceed that, as in production (default 2 s).
settle = "1s"
rate_per_sec = 50.0
enforce_maintenance = {enforce}
{until}
{watch_api}
[[interfaces]]
id = "{I05}"
version = "1.0"
provider = "001"
"#,
        base = sim.base_url(),
        token = sim.token_url(),
        secret = dir.join("watcher.secret").display(),
        interval = s.interval,
        enforce = s.enforce_maintenance,
    );
    for sub in s.subscribers {
        t.push_str(&format!(
            "[[subscribers]]\nid = \"{sub}\"\ninterfaces = [\"{I05}\"]\nack_wait = \"10s\"\n"
        ));
    }
    t
}

/// nats-server, provider-sim (no notices unless `target` says so), relay config provisioned.
struct WatchEnv {
    nats: NatsServer,
    js: jetstream::Context,
    sim: SimHandle,
    dir: tempfile::TempDir,
    relay_config: shirase_relay::Config,
    relay_toml: String,
}

impl WatchEnv {
    async fn start(s: &Setup<'_>, target: impl FnOnce(&str) -> NoticeTarget) -> WatchEnv {
        Self::start_with(s, target, |_| {}, "").await
    }

    /// [`WatchEnv::start`] with the simulator's config adjusted by `tune` and `watch_api` (a
    /// `[providers.watch.api]` table) in the relay's configuration.
    async fn start_with(
        s: &Setup<'_>,
        target: impl FnOnce(&str) -> NoticeTarget,
        tune: impl FnOnce(&mut provider_sim::Config),
        watch_api: &str,
    ) -> WatchEnv {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let nats = NatsServer::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sc = provider_sim::Config::for_business("001".parse().unwrap())
            .with_client(WATCHER_CLIENT, WATCHER_SECRET);
        for sub in s.subscribers {
            sc = sc.with_client(format!("{sub}-agent"), secret_of(sub));
        }
        sc.population = 400;
        // The switch test points the simulator at the relay through `target`.
        let port = free_port().unwrap();
        sc.notice_target = target(&format!("http://127.0.0.1:{port}"));
        tune(&mut sc);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ProviderSim::start(sc, l, CancellationToken::new())
            .await
            .unwrap();
        std::fs::write(dir.path().join("watcher.secret"), WATCHER_SECRET).unwrap();
        let text = relay_toml(&nats.url(), port, &sim, dir.path(), s, watch_api);
        let relay_config = shirase_relay::Config::from_toml_str(&text, None).unwrap();
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        shirase_relay::provision::provision(
            &js,
            &shirase_relay::topology::desired(&relay_config),
            false,
        )
        .await
        .unwrap();
        WatchEnv {
            nats,
            js,
            sim,
            dir,
            relay_config,
            relay_toml: text,
        }
    }

    /// Run the relay in-process (HTTP on its configured port, watcher inside).
    async fn run_relay(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let l = tokio::net::TcpListener::bind(self.relay_config.http.listen)
            .await
            .unwrap();
        let cfg = self.relay_config.clone();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            shirase_relay::run(cfg, l, s).await.unwrap();
        });
        (stop, task)
    }

    /// A watcher of provider 001 on its own NATS connection, not yet running.
    async fn watcher(&self) -> shirase_relay::watcher::Watcher {
        let metrics = Arc::new(shirase_relay::metrics::Metrics::new());
        let client = async_nats::connect(self.nats.url()).await.unwrap();
        let publisher = shirase_relay::publisher::Publisher::new(
            client.clone(),
            3,
            Duration::from_secs(2),
            false,
            5000,
            metrics.clone(),
        );
        shirase_relay::watcher::Watcher::new(
            &self.relay_config,
            &self.relay_config.providers[0],
            jetstream::new(client),
            publisher,
            metrics,
        )
        .await
        .unwrap()
    }

    fn start_agent(&self, sub: &str) -> RunningAgent {
        std::fs::create_dir_all(self.dir.path().join(sub)).unwrap();
        std::fs::write(self.dir.path().join(sub).join("secret"), secret_of(sub)).unwrap();
        let cfg = shirase_subscriber_kit::Config::from_toml_str(&agent_toml(
            sub,
            &self.nats.url(),
            &self.sim,
            self.dir.path(),
        ))
        .unwrap();
        RunningAgent::start(cfg)
    }

    fn sink_rows(&self, sub: &str) -> BTreeSet<(String, u64)> {
        sink_lines(&self.dir.path().join(sub).join("sink"), I05)
            .iter()
            .filter(|l| l["kind"] == "row")
            .map(|l| {
                (
                    l["row"]["atena_no"].as_str().unwrap().to_owned(),
                    l["row"]["history_no"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// Every notice stored on 001o05-00's subject, in stream order.
async fn stored_notices(js: &jetstream::Context) -> Vec<Notice> {
    let mut s = js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    let info = s.info().await.unwrap();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await
            && m.subject.as_str().ends_with(I05)
        {
            out.push(serde_json::from_slice(&m.payload).unwrap());
        }
    }
    out
}

/// The watcher's checkpoint state of 001o05-00 as JSON (None before the first poll).
async fn watch_state(js: &jetstream::Context) -> Option<Value> {
    let kv = js
        .get_key_value(shirase_proto::subject::CHECKPOINT_BUCKET)
        .await
        .unwrap();
    let e = kv.get(format!("_watcher.131016.{I05}")).await.unwrap()?;
    serde_json::from_slice(&e).ok()
}

/// Changes that leave a row a differential pull returns (a delete of an addressee's only row
/// leaves none: polling cannot see it; see docs/operations.md, "watched providers").
fn visible(changes: &[CommittedChange]) -> Vec<&CommittedChange> {
    changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Delete)
        .collect()
}

/// Asserts that every change is announced by a notice naming its addressee at or after its
/// DB timestamp, and that the watcher's notices carry the sequences 1..=n exactly once each
/// (a lost window would leave a gap, a window published twice a repeated number).
fn assert_each_change_announced_once(changes: &[&CommittedChange], notices: &[Notice]) {
    let mut latest: BTreeMap<String, Timestamp> = BTreeMap::new();
    for n in notices {
        for k in n.data.keys.iter().flat_map(|k| k.atena_no.iter()) {
            let e = latest
                .entry(k.to_string())
                .or_insert(n.data.updated_at.instant());
            *e = (*e).max(n.data.updated_at.instant());
        }
    }
    let missing: Vec<_> = changes
        .iter()
        .filter(|c| {
            latest
                .get(&c.atena_no.to_string())
                .is_none_or(|t| *t < ts(&c.updated_at))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} changes have no notice, e.g. {:?}",
        missing.len(),
        changes.len(),
        missing.first()
    );
    let seqs: Vec<u64> = notices.iter().map(|n| n.sequence.0).collect();
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        seqs.len(),
        "a sequence number was stored twice: a window was published twice"
    );
    let n = seqs.len() as u64;
    assert_eq!(
        distinct,
        (1..=n).collect::<BTreeSet<u64>>(),
        "the watcher's sequences must be 1..={n} without a gap"
    );
    let ids: BTreeSet<_> = notices.iter().map(|n| n.id).collect();
    assert_eq!(ids.len(), notices.len(), "a notice id was stored twice");
}

/// Wait until the watcher finished a window ending after `t`.
async fn wait_for_cursor_past(js: &jetstream::Context, t: Timestamp) {
    wait_until(30, "the watcher's cursor past the last change", || async {
        watch_state(js).await.is_some_and(|s| {
            s["pending"].is_null()
                && s["cursor"]
                    .as_str()
                    .and_then(|c| c.parse::<Timestamp>().ok())
                    .is_some_and(|c| c > t)
        })
    })
    .await;
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn data_requests(sim: &SimHandle) -> Vec<provider_sim::RequestLogEntry> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .collect()
}

#[tokio::test]
async fn watched_changes_reach_five_subscribers_and_the_provider_sees_one_poller() {
    let subs = ["tax", "delinquency", "welfare", "health", "pension"];
    let setup = Setup {
        subscribers: &subs,
        interval: "250ms",
        until: None,
        enforce_maintenance: false,
    };
    let env = WatchEnv::start(&setup, |_| NoticeTarget::None).await;
    let (relay_stop, relay) = env.run_relay().await;
    let agents: Vec<RunningAgent> = subs.iter().map(|s| env.start_agent(s)).collect();
    wait_until(20, "the watcher's first poll", || async {
        watch_state(&env.js)
            .await
            .is_some_and(|s| s["last_poll"].is_string())
    })
    .await;

    let i05 = I05.parse().unwrap();
    for (kind, n) in [
        (ChangeKind::Update, 150),
        (ChangeKind::Retroactive, 60),
        (ChangeKind::Update, 90),
    ] {
        env.sim
            .commit_changes(ChangeSpec::new(n).interface(i05).kind(kind))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        env.sim.counters().notices_delivered,
        0,
        "the provider published nothing"
    );
    let changes = env.sim.changes();
    let expected: BTreeSet<(String, u64)> = visible(&changes)
        .iter()
        .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
        .collect();
    assert_eq!(expected.len(), 300);
    for s in subs {
        wait_until(60, &format!("every change in {s}'s sink"), || async {
            env.sink_rows(s).is_superset(&expected)
        })
        .await;
    }
    wait_for_cursor_past(&env.js, ts(&changes.last().unwrap().updated_at)).await;
    let notices = stored_notices(&env.js).await;
    assert_each_change_announced_once(&visible(&changes), &notices);
    assert!(
        notices.len() < 300,
        "rows are grouped into notices by addressee (got {} notices for 300 changes)",
        notices.len()
    );

    // One poller: over an idle stretch, every data request comes from the watcher's client,
    // about one per interval, although five subscribers read the interface.
    wait_until(30, "agents idle", || async {
        agents.iter().all(|a| a.metrics.pulls_total("001", I05) > 0)
    })
    .await;
    let before = data_requests(&env.sim).len();
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let idle: Vec<_> = data_requests(&env.sim).into_iter().skip(before).collect();
    let by_client: BTreeMap<String, usize> = idle.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.client.clone().unwrap_or_default()).or_default() += 1;
        m
    });
    assert_eq!(
        by_client.keys().cloned().collect::<Vec<_>>(),
        vec![WATCHER_CLIENT.to_owned()],
        "while idle only the watcher polls: {by_client:?}"
    );
    let polls = by_client[WATCHER_CLIENT] as f64;
    let single_poller = elapsed / 0.25;
    assert!(
        polls <= single_poller + 2.0 && polls >= single_poller / 2.0,
        "{polls} polls in {elapsed:.1} s: one poller at 250 ms makes about {single_poller:.0}"
    );

    // Status: the operator API shows the watched interface from the watcher's checkpoint.
    let st = shirase_relay::operator::status::collect(&env.js, &env.relay_config)
        .await
        .unwrap();
    assert_eq!(st.watched.len(), 1);
    let w = &st.watched[0];
    assert_eq!((w.provider.as_str(), w.interface.as_str()), ("001", I05));
    assert!(w.rows_seen >= 300, "rows seen {}", w.rows_seen);
    assert_eq!(w.notices_emitted, notices.len() as u64);
    assert!(w.lag_secs.unwrap() < 5.0, "lag {:?}", w.lag_secs);
    assert!(w.last_poll.is_some());

    for a in agents {
        a.stop().await;
    }
    relay_stop.cancel();
    relay.await.unwrap();
}

#[tokio::test]
async fn no_request_inside_a_maintenance_window_and_its_changes_arrive_after_it() {
    let setup = Setup {
        subscribers: &["tax"],
        interval: "200ms",
        until: None,
        enforce_maintenance: true,
    };
    let env = WatchEnv::start(&setup, |_| NoticeTarget::None).await;
    // Tuesday 2026-05-12 02:59:57 JST: inside Monday's 24:00-27:00 window, 3 s before its end.
    let clock = Arc::new(OffsetClock::starting_at(
        "2026-05-12T02:59:57+09:00".parse().unwrap(),
    ));
    let window_end_real = Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let w = env.watcher().await.with_clock(clock);
    let i05 = I05.parse().unwrap();
    // The first poll writes the checkpoint ("from now on") but sends nothing.
    let first = w.poll(&i05).await;
    assert!(
        matches!(first, shirase_relay::watcher::PollOutcome::Maintenance(_)),
        "{first:?}"
    );
    env.sim
        .commit_changes(ChangeSpec::new(40).interface(i05).kind(ChangeKind::Update))
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(w.run(Arc::new(AtomicBool::new(true)), stop.clone()));
    wait_until(20, "notices after the window", || async {
        !stored_notices(&env.js).await.is_empty()
            && watch_state(&env.js)
                .await
                .is_some_and(|s| s["pending"].is_null() && s["notices_emitted"].as_u64() > Some(0))
    })
    .await;
    let reqs = env.sim.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        let at = ts(&r.at);
        assert!(
            at >= window_end_real - jiff::SignedDuration::from_millis(50),
            "request {} {} at {at} is inside the window that ended at {window_end_real}",
            r.method,
            r.path
        );
    }
    let changes = env.sim.changes();
    assert_each_change_announced_once(&visible(&changes), &stored_notices(&env.js).await);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn two_watchers_polling_at_once_publish_every_window_once() {
    let setup = Setup {
        subscribers: &["tax"],
        interval: "100ms",
        until: None,
        enforce_maintenance: false,
    };
    let env = WatchEnv::start(&setup, |_| NoticeTarget::None).await;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let w = env.watcher().await;
        // Both believe they hold the lease (as two replicas might for a moment after a
        // lease expiry): the checkpoint's compare-and-set and the deterministic ids must
        // still publish each window once.
        tasks.push(tokio::spawn(
            w.run(Arc::new(AtomicBool::new(true)), stop.clone()),
        ));
    }
    let i05 = I05.parse().unwrap();
    for _ in 0..15 {
        env.sim
            .commit_changes(ChangeSpec::new(20).interface(i05).kind(ChangeKind::Update))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    wait_for_cursor_past(&env.js, env.sim.now()).await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let changes = env.sim.changes();
    let notices = stored_notices(&env.js).await;
    assert_each_change_announced_once(&visible(&changes), &notices);
    let st = watch_state(&env.js).await.unwrap();
    assert_eq!(st["notices_emitted"].as_u64(), Some(notices.len() as u64));
    assert_eq!(st["next_sequence"].as_u64(), Some(notices.len() as u64 + 1));
}

#[tokio::test]
#[ignore = "slow: relay process killed and restarted"]
async fn relay_killed_mid_window_then_restarted_loses_and_duplicates_nothing() {
    let setup = Setup {
        subscribers: &["tax"],
        interval: "200ms",
        until: None,
        enforce_maintenance: false,
    };
    let env = WatchEnv::start(&setup, |_| NoticeTarget::None).await;
    let cfg = env.dir.path().join("relay.toml");
    std::fs::write(&cfg, &env.relay_toml).unwrap();
    let url = format!("http://{}", env.relay_config.http.listen);
    let mut relay = Proc::spawn(
        &built_binary("shirase-relay"),
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("SHIRASE_LOG", "info")],
        env.dir.path().join("relay.log"),
    );
    wait_ready(&url, 30).await;
    wait_until(20, "the watcher's first poll", || async {
        watch_state(&env.js)
            .await
            .is_some_and(|s| s["last_poll"].is_string())
    })
    .await;
    let agent = env.start_agent("tax");
    let i05 = I05.parse().unwrap();
    for round in 0..3 {
        env.sim
            .commit_changes(ChangeSpec::new(80).interface(i05).kind(ChangeKind::Update))
            .unwrap();
        // Slow answers keep the window open: the kill lands after the window was written
        // down and before it was finished.
        env.sim
            .set_faults(provider_sim::FaultsUpdate {
                latency_ms: Some(1500),
                ..Default::default()
            })
            .unwrap();
        wait_until(20, "a window pending", || async {
            watch_state(&env.js)
                .await
                .is_some_and(|s| !s["pending"].is_null())
        })
        .await;
        let pending = watch_state(&env.js).await.unwrap()["pending"].clone();
        relay.kill9();
        env.sim
            .set_faults(provider_sim::FaultsUpdate {
                latency_ms: Some(0),
                ..Default::default()
            })
            .unwrap();
        // Changes while the relay is down are read after the restart.
        env.sim
            .commit_changes(
                ChangeSpec::new(30)
                    .interface(i05)
                    .kind(ChangeKind::Retroactive),
            )
            .unwrap();
        relay.start();
        wait_ready(&url, 30).await;
        // The restarted relay (a new lease holder once the dead one's lease expired) finishes
        // exactly the window the killed one wrote down.
        wait_until(
            30,
            &format!("round {round}: the pending window finished"),
            || async {
                watch_state(&env.js)
                    .await
                    .is_some_and(|s| s["pending"].is_null() || s["pending"] != pending)
            },
        )
        .await;
    }
    wait_for_cursor_past(&env.js, env.sim.now()).await;
    let changes = env.sim.changes();
    let notices = stored_notices(&env.js).await;
    assert_each_change_announced_once(&visible(&changes), &notices);
    let expected: BTreeSet<(String, u64)> = visible(&changes)
        .iter()
        .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
        .collect();
    wait_until(60, "every change in the sink", || async {
        env.sink_rows("tax").is_superset(&expected)
    })
    .await;
    agent.stop().await;
    relay.terminate();
}

#[tokio::test]
async fn switch_to_native_notices_at_until_announces_each_change_once() {
    // H: a moment in the near future. Before it the watcher announces; from it on the
    // provider's own notices (which it sends all along) are published.
    let until = Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let setup = Setup {
        subscribers: &["tax"],
        interval: "200ms",
        until: Some(until),
        enforce_maintenance: false,
    };
    let env = WatchEnv::start(&setup, |relay| NoticeTarget::Relay {
        url: relay.to_owned(),
        token: TOKEN.into(),
    })
    .await;
    let (relay_stop, relay) = env.run_relay().await;
    let agent = env.start_agent("tax");
    let i05 = I05.parse().unwrap();
    let mut rounds = 0;
    while env.sim.now() < until + jiff::SignedDuration::from_secs(2) {
        env.sim
            .commit_changes(ChangeSpec::new(15).interface(i05).kind(ChangeKind::Update))
            .unwrap();
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(rounds >= 15);
    let changes = env.sim.changes();
    let (before, after): (Vec<_>, Vec<_>) = visible(&changes)
        .into_iter()
        .partition(|c| ts(&c.updated_at) < until);
    assert!(!before.is_empty() && !after.is_empty());
    wait_until(30, "the watcher handed over", || async {
        watch_state(&env.js).await.is_some_and(|s| {
            s["pending"].is_null()
                && s["cursor"]
                    .as_str()
                    .and_then(|c| c.parse::<Timestamp>().ok())
                    == Some(until)
        })
    })
    .await;
    wait_until(30, "every native notice delivered to the relay", || async {
        let c = env.sim.counters();
        c.notices_delivered >= c.changes_committed
    })
    .await;
    let native_ids: BTreeSet<_> = env.sim.notices().iter().map(|n| n.id).collect();
    let stored = stored_notices(&env.js).await;
    let (native, watched): (Vec<Notice>, Vec<Notice>) =
        stored.into_iter().partition(|n| native_ids.contains(&n.id));
    assert!(
        watched.iter().all(|n| n.data.updated_at.instant() < until),
        "the watcher announces only changes before until"
    );
    assert!(
        native.iter().all(|n| n.data.updated_at.instant() >= until),
        "native notices of changes before until are covered by the watcher, not published"
    );
    assert_eq!(
        native.len(),
        after.len(),
        "every change from until on is published natively, once"
    );
    assert_each_change_announced_once(&before, &watched);
    let expected: BTreeSet<(String, u64)> = visible(&changes)
        .iter()
        .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
        .collect();
    wait_until(60, "every change in the sink", || async {
        env.sink_rows("tax").is_superset(&expected)
    })
    .await;
    agent.stop().await;
    relay_stop.cancel();
    relay.await.unwrap();
}

#[tokio::test]
async fn the_romaji_dialect_is_watched_through_capped_answers_at_whole_seconds() {
    watch_romaji_capped("").await;
}

#[tokio::test]
async fn capped_answers_ordered_by_time_are_continued_by_the_watcher() {
    // The profile says the rows come ascending by update timestamp (as the simulator sends
    // them): capped answers are continued from their newest row, each change still announced
    // once.
    watch_romaji_capped("rows_order = \"updated_at\"\n").await;
}

/// The romaji dialect watched through capped answers, the profile with `extra` keys.
async fn watch_romaji_capped(extra: &str) {
    // The provider's second dialect: split date/time bounds at whole seconds with an
    // inclusive TO, the version in the path, romaji item names, rows under /kekka/meisai and
    // answers capped at 7 rows with their counts. The watcher reads it through
    // [providers.watch.api] alone; every change becomes a notice, none twice.
    let setup = Setup {
        subscribers: &["tax"],
        // Windows of about 2 s hold more rows than the cap: their answers are capped.
        interval: "2s",
        until: None,
        enforce_maintenance: false,
    };
    let api = format!(
        "[providers.watch.api]\n{}{extra}",
        provider_sim::Dialect::Romaji.profile_toml()
    );
    let env = WatchEnv::start_with(
        &setup,
        |_| NoticeTarget::None,
        |c| {
            c.dialect = provider_sim::Dialect::Romaji;
            c.answer_cap = Some(7);
        },
        &api,
    )
    .await;
    let (relay_stop, relay) = env.run_relay().await;
    wait_until(20, "the watcher's first poll", || async {
        watch_state(&env.js)
            .await
            .is_some_and(|s| s["last_poll"].is_string())
    })
    .await;
    // Three changes a second (each also moves the addressee's previous row to that second):
    // at most 6 rows in any second, within the cap, for 6 seconds, so windows and their
    // capped answers are split at whole seconds.
    let i05 = I05.parse().unwrap();
    for _ in 0..6 {
        env.sim
            .commit_changes(ChangeSpec::new(3).interface(i05).kind(ChangeKind::Update))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1050)).await;
    }
    let changes = env.sim.changes();
    assert_eq!(changes.len(), 18);
    wait_for_cursor_past(&env.js, ts(&changes.last().unwrap().updated_at)).await;
    let notices = stored_notices(&env.js).await;
    assert_each_change_announced_once(&visible(&changes), &notices);
    assert!(
        notices
            .iter()
            .all(|n| n.data.interface_version.to_string() == "1.0")
    );
    let data = data_requests(&env.sim);
    assert!(
        data.iter().any(|r| r.rows == Some(7)),
        "some answer reached the cap: {data:#?}"
    );
    for r in &data {
        assert_eq!(r.path, "/api/1.0/001o05-00", "{r:?}");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.rows.unwrap_or(0) <= 7, "{r:?}");
        let q = r.query.as_deref().unwrap_or_default();
        assert!(
            q.contains("koshin_ymd_from=") && q.contains("koshin_time_to="),
            "{r:?}"
        );
    }
    // The watcher's window ends at whole seconds (its cursor), as the provider's bounds are.
    let cursor: Timestamp = watch_state(&env.js).await.unwrap()["cursor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cursor.subsec_nanosecond(), 0, "cursor {cursor}");
    relay_stop.cancel();
    relay.await.unwrap();
}
