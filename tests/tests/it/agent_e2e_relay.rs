//! End to end through the real relay: provider-sim commits changes and POSTs every notice to
//! `shirase-relay` (in-process `run`, HTTP on 127.0.0.1:0, bearer token configured by its
//! sha256), the relay publishes into a JetStream provisioned by `shirase_relay::provision`,
//! and two agents (`tax`, `delinquency`), both reading 001o05-00, pull and deliver into their
//! own file sinks. Nobody subscribes to 001o06-00: its notices are stored but reach no sink.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::Value;
use shirase_proto::ChangeKind;
use shirase_tests::harness::NatsServer;
use shirase_tests::provider_sim::{
    self, ChangeSpec, CommittedChange, NoticeTarget, ProviderSim, SimHandle,
};
use tokio_util::sync::CancellationToken;

use crate::agent_support::{RunningAgent, sink_lines, wait_until};

const I05: &str = "001o05-00";
const I06: &str = "001o06-00";
/// The provider's relay credential (test only). The relay is configured with its sha256 only.
const TOKEN: &str = "test-only-relay-token-provider-001";
const SUBSCRIBERS: [&str; 2] = ["tax", "delinquency"];

fn relay_toml(nats: &str) -> String {
    let digest = hex::encode(shirase_relay::config::token_digest(TOKEN));
    format!(
        r#"
municipality_code = "131016"
[http]
listen = "127.0.0.1:0"
[nats]
urls = ["{nats}"]
publish_timeout = "2s"
[stream]
replicas = 1
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
[[interfaces]]
id = "{I06}"
version = "1.0"
provider = "001"
[[subscribers]]
id = "tax"
interfaces = ["{I05}"]
ack_wait = "10s"
[[subscribers]]
id = "delinquency"
interfaces = ["{I05}"]
ack_wait = "10s"
"#
    )
}

/// Agent config of subscriber `sub` (file sink under `dir/<sub>/sink`, secret `dir/<sub>/secret`).
pub(crate) fn agent_toml(sub: &str, nats: &str, sim: &SimHandle, dir: &std::path::Path) -> String {
    format!(
        r#"
subscriber = "{sub}"
municipality = "131016"
[batch]
size = 200
max_wait = "200ms"
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
client_id = "{sub}-agent"
client_secret_file = "{secret}"
rate_per_sec = 200.0
enforce_maintenance = false
[[providers.interfaces]]
id = "{I05}"
version = "1.0"
"#,
        sink = dir.join(sub).join("sink").display(),
        base = sim.base_url(),
        token = sim.token_url(),
        secret = dir.join(sub).join("secret").display(),
    )
}

/// The simulator's client secret of `<sub>-agent`.
pub(crate) fn secret_of(sub: &str) -> String {
    format!("dev-only-secret-{sub}")
}

/// `name{provider="001"} value` from the relay's OpenMetrics text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("provider=\"001\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn unfinished(js: &jetstream::Context, sub: &str) -> u64 {
    let mut c: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(format!("{sub}_001"), shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    let i = c.info().await.unwrap();
    i.num_pending + i.num_ack_pending as u64
}

/// Rows of a sink as (atena_no, history_no) → the DB timestamps (`updated_at`) they carried.
fn sink_rows(lines: &[Value]) -> BTreeMap<(String, u64), BTreeSet<String>> {
    let mut m: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["kind"] == "row") {
        let r = &l["row"];
        m.entry((
            r["atena_no"].as_str().unwrap().to_owned(),
            r["history_no"].as_u64().unwrap(),
        ))
        .or_default()
        .insert(r["updated_at"].as_str().unwrap().to_owned());
    }
    m
}

#[tokio::test]
async fn every_change_reaches_both_subscribers_through_the_relay() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start().unwrap();
    let rc = shirase_relay::Config::from_toml_str(&relay_toml(&nats.url()), None).unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    shirase_relay::provision::provision(&js, &shirase_relay::topology::desired(&rc), false)
        .await
        .unwrap();
    let relay_stop = CancellationToken::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", l.local_addr().unwrap());
    let relay = tokio::spawn(shirase_relay::run(rc, l, relay_stop.clone()));

    let mut sc = provider_sim::Config::for_business("001".parse().unwrap());
    for s in SUBSCRIBERS {
        sc = sc.with_client(format!("{s}-agent"), secret_of(s));
    }
    sc.population = 500;
    sc.notice_target = NoticeTarget::Relay {
        url: relay_url.clone(),
        token: TOKEN.into(),
    };
    let sim_stop = CancellationToken::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = ProviderSim::start(sc, l, sim_stop.clone()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    for s in SUBSCRIBERS {
        std::fs::create_dir_all(dir.path().join(s)).unwrap();
        std::fs::write(dir.path().join(s).join("secret"), secret_of(s)).unwrap();
        let cfg = shirase_subscriber_kit::Config::from_toml_str(&agent_toml(
            s,
            &nats.url(),
            &sim,
            dir.path(),
        ))
        .unwrap();
        agents.push(RunningAgent::start(cfg));
    }

    // Rounds, each drained before the next: a delete must not hit a row whose creation was not
    // pulled yet (a pull cannot return a deleted row; that case is the tombstone's job).
    let i05 = I05.parse().unwrap();
    let i06 = I06.parse().unwrap();
    let rounds: [&[(shirase_proto::InterfaceId, ChangeKind, usize)]; 4] = [
        &[
            (i05, ChangeKind::Update, 300),
            (i06, ChangeKind::Update, 60),
        ],
        &[
            (i05, ChangeKind::Retroactive, 100),
            (i06, ChangeKind::Retroactive, 20),
        ],
        &[(i05, ChangeKind::Delete, 25), (i06, ChangeKind::Delete, 10)],
        &[
            (i05, ChangeKind::Update, 150),
            (i06, ChangeKind::Update, 20),
        ],
    ];
    for round in rounds {
        for &(i, kind, n) in round {
            sim.commit_changes(ChangeSpec::new(n).interface(i).kind(kind))
                .unwrap();
        }
        wait_until(60, "the relay accepted every notice", || async {
            let c = sim.counters();
            c.notices_delivered >= c.changes_committed
        })
        .await;
        for s in SUBSCRIBERS {
            wait_until(60, &format!("consumer {s}_001 drained"), || async {
                unfinished(&js, s).await == 0
            })
            .await;
        }
    }

    let changes = sim.changes();
    let c05: Vec<&CommittedChange> = changes.iter().filter(|c| c.interface_id == i05).collect();
    assert_eq!(c05.len(), 575);
    assert_eq!(changes.len(), 575 + 110);
    let expected: BTreeSet<(String, u64)> = c05
        .iter()
        .filter(|c| c.kind != ChangeKind::Delete)
        .map(|c| (c.atena_no.to_string(), u64::from(c.history_no)))
        .collect();
    assert_eq!(expected.len(), 550);
    // A commit also rewrites the addressee's neighbouring row (the previous latest row loses
    // its latest flag; a delete promotes the one before), with the commit's timestamp: those
    // rows are legitimately in the sink too, and nothing else is.
    let commit_ts: BTreeSet<(String, String)> = c05
        .iter()
        .map(|c| (c.atena_no.to_string(), c.updated_at.clone()))
        .collect();
    let expected_tombs: BTreeSet<(String, String, String)> = c05
        .iter()
        .filter(|c| c.kind == ChangeKind::Delete)
        .map(|c| {
            (
                c.notice_id.to_string(),
                c.atena_no.to_string(),
                c.updated_at.clone(),
            )
        })
        .collect();
    assert_eq!(expected_tombs.len(), 25);

    for s in SUBSCRIBERS {
        let sink = dir.path().join(s).join("sink");
        let lines = sink_lines(&sink, I05);
        let rows = sink_rows(&lines);
        let got: BTreeSet<(String, u64)> = rows.keys().cloned().collect();
        let missing: Vec<_> = expected.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "{s}: {} changes never reached the sink, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        for ((atena, h), stamps) in &rows {
            if expected.contains(&(atena.clone(), *h)) {
                continue;
            }
            assert!(
                stamps
                    .iter()
                    .all(|ts| commit_ts.contains(&(atena.clone(), ts.clone()))),
                "{s}: row ({atena}, {h}) at {stamps:?} is neither a committed change nor rewritten by one"
            );
        }
        let tombs: BTreeSet<(String, String, String)> = lines
            .iter()
            .filter(|l| l["kind"] == "tombstone")
            .map(|l| {
                assert_eq!(l["interface_id"], I05);
                assert_eq!(l["change"], "delete");
                (
                    l["notice_id"].as_str().unwrap().to_owned(),
                    l["atena_no"][0].as_str().unwrap().to_owned(),
                    l["updated_at"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(tombs, expected_tombs, "{s}: tombstones");
        assert!(
            lines
                .iter()
                .all(|l| l["interface_id"] == I05 && l["provider"] == "001"),
            "{s}: foreign lines"
        );
        // Nobody subscribes to 001o06-00: no sink file for it, and no notice of it was handed out.
        assert!(
            !sink.join(format!("{I06}.jsonl")).exists(),
            "{s}: 001o06-00 reached a sink"
        );
        let a = &agents[SUBSCRIBERS.iter().position(|x| *x == s).unwrap()];
        assert_eq!(
            a.metrics.iface(&a.metrics.notices_received, "001", I06),
            0,
            "{s}: received 001o06-00 notices"
        );
        assert_eq!(
            a.metrics.iface(&a.metrics.acked, "001", I05),
            575,
            "{s}: acked"
        );
    }

    // The 001o06-00 notices did go through the relay into the stream.
    let stream = js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    let subject06 = format!("shirase.notice.131016.001.{I06}");
    let info = stream
        .info_with_subjects(&subject06)
        .await
        .unwrap()
        .next()
        .await;
    assert_eq!(
        info.map(|r| r.unwrap().1),
        Some(110),
        "001o06-00 notices in the stream"
    );

    // The relay answered 202 for exactly the notices the simulator emitted, once each.
    let text = reqwest::get(format!("{relay_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let c = sim.counters();
    assert_eq!(sim.notices().len() as u64, c.changes_committed);
    assert_eq!(
        metric(&text, "shirase_relay_notices_accepted_total"),
        sim.notices().len() as u64,
        "relay 202s vs sim notices"
    );
    assert_eq!(metric(&text, "shirase_relay_notices_duplicate_total"), 0);
    assert_eq!(c.notices_delivered, c.changes_committed);
    assert_eq!(c.notices_duplicate, 0);

    for a in agents {
        a.stop().await;
    }
    sim_stop.cancel();
    relay_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
