//! docs/production.md, executed. Its ` ```sh runbook=NAME ` blocks are run in document order
//! with bash, on one machine: three nats-server nodes on three loopback addresses (same ports,
//! as on three hosts), two relays, one agent, provider-sim as the provider. The test replaces
//! only what one machine cannot share with real hosts: the site values (block `site`), and the
//! host names, ports and `/etc` paths in the files the runbook generates (each host's
//! directory is "installed" by rewriting them). It does the unmarked blocks' work itself
//! (starting nodes, relays and the agent) and checks a notice delivered, a backup, a restore
//! into a fresh cluster, and that the agent continues from the restored state.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use shirase_proto::ChangeKind;
use shirase_tests::harness::{free_port, nats_server_bin, workspace_root};
use shirase_tests::provider_sim::{self, ChangeSpec, ProviderSim, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::agent_support::{sink_lines, wait_until};
use crate::fault_support::{Proc, built_binary};

/// The marked blocks, in the order the page has them and the test runs them.
const BLOCKS: [&str; 13] = [
    "site",
    "pki",
    "identities",
    "relay-config",
    "relay-check",
    "nats-config",
    "cluster-check",
    "provision",
    "relays-ready",
    "agent-config",
    "agent-probe",
    "backup",
    "restore",
];
/// The variables block `site` exports; the test gives each a value of its own.
const SITE_VARS: [&str; 9] = [
    "SHIRASE_STAGE",
    "SHIRASE_REPO",
    "NATS_HOSTS",
    "NATS_CLIENT_PORT",
    "NATS_ROUTE_PORT",
    "NATS_MONITOR_PORT",
    "RELAY_HTTP_NAMES",
    "RELAY_URL",
    "BACKUP_ROOT",
];
const I05: &str = "001o05-00";
/// The template's host names of the three nodes and the port it uses.
const TEMPLATE_NODES: [&str; 3] = [
    "nats-1.shirase.example.lg.jp:4222",
    "nats-2.shirase.example.lg.jp:4222",
    "nats-3.shirase.example.lg.jp:4222",
];

/// ` ```sh runbook=NAME ` blocks of `doc`: (name, text).
fn runbook_blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if current.is_none() {
            if let Some(name) = line.strip_prefix("```sh runbook=") {
                current = Some((name.trim().to_owned(), String::new()));
            }
        } else if line.starts_with("```") {
            out.push(current.take().unwrap());
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    assert!(current.is_none(), "an unterminated runbook block");
    out
}

/// The names `export NAME=...` lines of a block set.
fn exported(block: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in block.lines().filter(|l| l.starts_with("export ")) {
        for word in line["export ".len()..].split_whitespace() {
            if let Some((name, _)) = word.split_once('=')
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

fn rewrite(path: &Path, map: &[(String, String)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in map {
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
}

fn mapped(text: &str, map: &[(String, String)]) -> String {
    map.iter()
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

struct Site {
    tmp: tempfile::TempDir,
    stage: PathBuf,
    hosts: [String; 3],
    client_port: u16,
    relay_ports: [u16; 2],
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        // Three loopback addresses of a network no other test uses: three "hosts".
        let net: u8 = 100 + rand::random::<u8>() % 150;
        let sub: u8 = rand::random();
        let hosts = [1, 2, 3].map(|i| format!("127.{net}.{sub}.{i}"));
        let (client_port, route_port, monitor_port) = (
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
        );
        let relay_ports = [free_port().unwrap(), free_port().unwrap()];
        let stage = tmp.path().join("stage");
        let bins = built_binary("shirase-relay").parent().unwrap().to_owned();
        let nats_dir = nats_server_bin().unwrap().parent().unwrap().to_owned();
        let path = format!(
            "{}:{}:{}",
            bins.display(),
            nats_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = vec![
            ("SHIRASE_STAGE".into(), stage.display().to_string()),
            (
                "SHIRASE_REPO".into(),
                workspace_root().display().to_string(),
            ),
            ("NATS_HOSTS".into(), hosts.join(" ")),
            ("NATS_CLIENT_PORT".into(), client_port.to_string()),
            ("NATS_ROUTE_PORT".into(), route_port.to_string()),
            ("NATS_MONITOR_PORT".into(), monitor_port.to_string()),
            ("RELAY_HTTP_NAMES".into(), "IP:127.0.0.1".into()),
            (
                "RELAY_URL".into(),
                format!("https://127.0.0.1:{}", relay_ports[0]),
            ),
            (
                "BACKUP_ROOT".into(),
                tmp.path().join("backups").display().to_string(),
            ),
            ("PATH".into(), path),
        ];
        let log = tmp.path().join("runbook.log");
        Site {
            tmp,
            stage,
            hosts,
            client_port,
            relay_ports,
            env,
            log,
        }
    }

    /// Run one block with bash (after `map`), failing the test with its output on a non-zero
    /// exit; returns its stdout.
    fn run(&self, blocks: &[(String, String)], name: &str, map: &[(String, String)]) -> String {
        let (_, text) = blocks.iter().find(|(n, _)| n == name).unwrap();
        let started = Instant::now();
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(mapped(text, map))
            .current_dir(self.tmp.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("SHIRASE_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        use std::io::Write;
        writeln!(
            log,
            "== block {name} ({:.1} s)\n{stdout}{stderr}",
            started.elapsed().as_secs_f64()
        )
        .unwrap();
        assert!(
            out.status.success(),
            "runbook block {name} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        stdout
    }

    /// The template's node addresses → this machine's.
    fn node_map(&self) -> Vec<(String, String)> {
        TEMPLATE_NODES
            .iter()
            .zip(&self.hosts)
            .map(|(t, h)| ((*t).to_owned(), format!("{h}:{}", self.client_port)))
            .collect()
    }

    /// What a relay host's installation differs in.
    fn relay_map(&self) -> Vec<(String, String)> {
        let mut m = self.node_map();
        m.push((
            "/etc/shirase/".into(),
            format!("{}/relay/", self.stage.display()),
        ));
        m.push(("[\"24:00-27:00\"]".into(), "[]".into()));
        m.push((
            "https://chat.shirase.example.lg.jp/hooks/shirase".into(),
            "http://127.0.0.1:9/hooks/shirase".into(),
        ));
        m
    }

    /// What the agent host's installation differs in.
    fn agent_map(&self, sim: &SimHandle, http_port: u16) -> Vec<(String, String)> {
        let mut m = self.node_map();
        m.extend([
            (
                "/etc/shirase/".to_owned(),
                format!("{}/agent-tax/", self.stage.display()),
            ),
            (
                "/var/lib/shirase-agent/tax".to_owned(),
                self.sink().display().to_string(),
            ),
            (
                "https://juki.example.lg.jp/oauth/token".to_owned(),
                sim.token_url().to_owned(),
            ),
            // The simulator speaks plain HTTP on loopback: the test's only departure from
            // the template's transport rules.
            (
                "\"https://juki.example.lg.jp/api\"".to_owned(),
                format!("\"{}\"\ninsecure_http = true", sim.base_url()),
            ),
            ("0.0.0.0:9464".to_owned(), format!("127.0.0.1:{http_port}")),
            ("[\"24:00-27:00\"]".to_owned(), "[]".to_owned()),
        ]);
        m
    }

    fn sink(&self) -> PathBuf {
        self.tmp.path().join("sink")
    }

    /// Install node `i` (1-based) from its staged directory and start it; `store` is emptied
    /// first when `fresh`.
    fn start_node(&self, i: usize, fresh: bool) -> Proc {
        let dir = self.stage.join(format!("nats-{i}"));
        let store = self.tmp.path().join(format!("store-{i}"));
        if fresh && store.exists() {
            std::fs::remove_dir_all(&store).unwrap();
        }
        let map = vec![
            ("/etc/nats/".to_owned(), format!("{}/", dir.display())),
            (
                "/var/lib/nats/jetstream".to_owned(),
                store.display().to_string(),
            ),
        ];
        let conf = dir.join("host.conf");
        std::fs::copy(dir.join("nats.conf"), &conf).unwrap();
        rewrite(&conf, &map);
        let c = conf.display().to_string();
        Proc::spawn(
            &nats_server_bin().unwrap(),
            &["-c", &c],
            &[],
            self.tmp.path().join(format!("nats-{i}.log")),
        )
    }

    fn start_relay(&self, n: usize) -> Proc {
        let conf = self.stage.join("relay/relay.toml").display().to_string();
        let listen = format!("127.0.0.1:{}", self.relay_ports[n]);
        Proc::spawn(
            &built_binary("shirase-relay"),
            &["serve", "--config", &conf],
            &[("SHIRASE_HTTP__LISTEN", &listen), ("SHIRASE_LOG", "info")],
            self.tmp.path().join(format!("relay-{}.log", n + 1)),
        )
    }

    fn start_agent(&self) -> Proc {
        let conf = self
            .stage
            .join("agent-tax/agent-tax.toml")
            .display()
            .to_string();
        Proc::spawn(
            &built_binary("shirase-agent"),
            &["--config", &conf],
            &[("RUST_LOG", "info")],
            self.tmp.path().join("agent.log"),
        )
    }

    fn https(&self) -> reqwest::Client {
        let ca = std::fs::read(self.stage.join("pki/ca.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    async fn wait_relays_ready(&self) {
        let http = self.https();
        for port in self.relay_ports {
            let url = format!("https://127.0.0.1:{port}/readyz");
            wait_until(60, &format!("{url} answers 200"), || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            })
            .await;
        }
    }

    /// Commit one change at the provider and POST its notice through relay `n` over HTTPS
    /// with provider 001's token; returns the notice's addressee number.
    async fn notify(&self, sim: &SimHandle, n: usize) -> String {
        let before = sim.notices().len();
        sim.commit_changes(
            ChangeSpec::new(1)
                .interface(I05.parse().unwrap())
                .kind(ChangeKind::Update),
        )
        .unwrap();
        let notices = sim.notices();
        assert_eq!(notices.len(), before + 1, "one change, one notice");
        let notice = serde_json::to_value(&notices[before]).unwrap();
        let token = std::fs::read_to_string(self.stage.join("tokens/provider-001.token")).unwrap();
        let r = self
            .https()
            .post(format!(
                "https://127.0.0.1:{}/v1/notices",
                self.relay_ports[n]
            ))
            .bearer_auth(token.trim())
            .json(&notice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
        notice["data"]["keys"]["atena_no"][0]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Rows in the agent's sink for one addressee number.
    fn rows_of(&self, atena_no: &str) -> usize {
        sink_lines(&self.sink(), I05)
            .iter()
            .filter(|l| l["kind"] == "row" && l["row"]["atena_no"] == atena_no)
            .count()
    }

    /// The relay identity's JetStream view of the cluster (TLS, nkey), from the installed
    /// relay.toml.
    async fn jetstream(&self) -> jetstream::Context {
        let c = shirase_relay::Config::load(Some(&self.stage.join("relay/relay.toml"))).unwrap();
        jetstream::new(shirase_relay::connection::connect(&c.nats).await.unwrap())
    }
}

/// Subscriber tax's checkpoint of 001o05-00 (KV shirase_checkpoints).
async fn checkpoint_of(js: &jetstream::Context) -> jiff::Timestamp {
    let kv = js.get_key_value("shirase_checkpoints").await.unwrap();
    let v = kv.get("tax.131016.001o05-00").await.unwrap().unwrap();
    let cp: serde_json::Value = serde_json::from_slice(&v).unwrap();
    cp["updated_at"].as_str().unwrap().parse().unwrap()
}

async fn consumer_info(js: &jetstream::Context) -> jetstream::consumer::Info {
    let mut c: jetstream::consumer::PullConsumer = js
        .get_stream("SHIRASE_NOTICES")
        .await
        .unwrap()
        .get_consumer("tax_001")
        .await
        .unwrap();
    c.info().await.unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_runbook_runs_from_nothing_to_a_restored_cluster() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let doc = std::fs::read_to_string(workspace_root().join("docs/production.md")).unwrap();
    let blocks = runbook_blocks(&doc);
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names, BLOCKS,
        "docs/production.md's runbook blocks changed: run every new one here"
    );
    let site_vars: BTreeSet<String> = SITE_VARS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(exported(&blocks[0].1), site_vars, "block site's variables");

    let site = Site::new();
    let none: Vec<(String, String)> = Vec::new();
    for b in ["pki", "identities", "relay-config"] {
        site.run(&blocks, b, &none);
    }
    // The site edit of relay.toml: this machine's hosts, ports and paths.
    rewrite(&site.stage.join("relay/relay.toml"), &site.relay_map());
    let check = site.run(&blocks, "relay-check", &none);
    assert!(check.contains("ok: municipality 131016"), "{check}");
    let auth = std::fs::read_to_string(site.stage.join("auth.conf")).unwrap();
    let keys = std::fs::read_to_string(site.stage.join("public-keys.env")).unwrap();
    for line in keys.lines() {
        let key = line.split_once('=').unwrap().1;
        assert!(auth.contains(key), "auth.conf lacks {line}");
    }
    site.run(&blocks, "nats-config", &none);
    let mut nodes: Vec<Proc> = (1..=3).map(|i| site.start_node(i, true)).collect();
    let health = site.run(&blocks, "cluster-check", &none);
    assert_eq!(health.matches("\"status\":\"ok\"").count(), 3, "{health}");
    let plan = site.run(&blocks, "provision", &none);
    assert!(plan.contains("SHIRASE_AUDIT"), "{plan}");
    let js = site.jetstream().await;
    let mut notices = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    let info = notices.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.cluster.as_ref().unwrap().replicas.len(), 2);

    let mut relays = [site.start_relay(0), site.start_relay(1)];
    site.wait_relays_ready().await;
    let status = site.run(&blocks, "relays-ready", &none);
    assert!(status.contains("tax"), "{status}");

    let secret = "runbook-pull-client-secret";
    let sim_stop = CancellationToken::new();
    let sc = provider_sim::Config::for_business("001".parse().unwrap())
        .with_client("shirase-tax", secret);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = ProviderSim::start(sc, l, sim_stop.clone()).await.unwrap();
    site.run(&blocks, "agent-config", &none);
    let agent_map = site.agent_map(&sim, free_port().unwrap());
    rewrite(&site.stage.join("agent-tax/agent-tax.toml"), &agent_map);
    std::fs::write(
        site.stage.join("agent-tax/pull-001.secret"),
        format!("{secret}\n"),
    )
    .unwrap();
    site.run(&blocks, "agent-probe", &agent_map);
    let mut agent = site.start_agent();

    let first = site.notify(&sim, 0).await;
    wait_until(60, "the first notice's rows reach the sink", || async {
        site.rows_of(&first) > 0
    })
    .await;
    wait_until(30, "tax_001 acked the first notice", || async {
        consumer_info(&js).await.ack_floor.stream_sequence == 1
    })
    .await;
    let first_rows = site.rows_of(&first);
    let checkpoint = checkpoint_of(&js).await;
    let backup = site.run(&blocks, "backup", &site.relay_map());
    assert!(
        backup.contains("SHIRASE_NOTICES: saved 1 message(s), 1 consumer(s)"),
        "{backup}"
    );
    assert!(backup.contains("backup complete: 6 stream(s)"), "{backup}");

    // The site is lost: every process stops, three empty nodes start.
    agent.terminate();
    for r in &mut relays {
        r.terminate();
    }
    drop(notices);
    drop(js);
    for n in &mut nodes {
        n.kill9();
    }
    let mut nodes: Vec<Proc> = (1..=3).map(|i| site.start_node(i, true)).collect();
    site.run(&blocks, "cluster-check", &none);
    let restore = site.run(&blocks, "restore", &site.relay_map());
    assert!(
        restore.contains("restore complete: 6 stream(s)"),
        "{restore}"
    );
    assert!(restore.contains("no changes"), "{restore}");

    let js = site.jetstream().await;
    let restored = consumer_info(&js).await;
    assert_eq!(restored.ack_floor.stream_sequence, 1);
    for r in &mut relays {
        r.start();
    }
    site.wait_relays_ready().await;
    agent.start();
    let second = site.notify(&sim, 1).await;
    wait_until(60, "the second notice's rows reach the sink", || async {
        site.rows_of(&second) > 0
    })
    .await;
    wait_until(30, "tax_001 acked the second notice", || async {
        consumer_info(&js).await.ack_floor.stream_sequence == 2
    })
    .await;
    let end = consumer_info(&js).await;
    // The restored consumer delivered the second notice only: the first, which the agent had
    // acked before the backup, never again.
    assert_eq!(end.delivered.stream_sequence, 2);
    assert_eq!(end.num_redelivered, 0);
    assert_eq!(
        end.delivered.consumer_sequence, 2,
        "two notices, two deliveries"
    );
    // Rows come again only where the agent's next window starts: at the checkpoint itself
    // (its FROM is inclusive, a row committed later with the same timestamp must not be
    // missed), once at most; nothing older.
    assert!(
        checkpoint_of(&js).await > checkpoint,
        "the checkpoint moved on"
    );
    let mut copies: std::collections::BTreeMap<String, (jiff::Timestamp, usize)> =
        std::collections::BTreeMap::new();
    for l in sink_lines(&site.sink(), I05) {
        if l["kind"] == "row" {
            let at: jiff::Timestamp = l["row"]["updated_at"].as_str().unwrap().parse().unwrap();
            copies.entry(l["row"].to_string()).or_insert((at, 0)).1 += 1;
        }
    }
    let again: Vec<_> = copies.values().filter(|(_, n)| *n > 1).collect();
    assert!(
        again.iter().all(|(at, n)| *at == checkpoint && *n == 2),
        "rows delivered again that the checkpoint {checkpoint} covers: {again:?}"
    );
    assert!(site.rows_of(&first) <= 2 * first_rows);
    assert!(agent.running() && relays.iter_mut().all(|r| r.running()));
    sim_stop.cancel();
    for n in &mut nodes {
        n.terminate();
    }
    eprintln!(
        "runbook: every block ran in {:.1} s (log: {})",
        started.elapsed().as_secs_f64(),
        site.log.display()
    );
}

#[test]
fn the_runbook_blocks_are_found_with_their_names() {
    let doc = "text\n```sh runbook=one\necho 1\n```\n```sh\nnot run\n```\n```sh runbook=two\nexport A=1 B_C=2\n```\n";
    let blocks = runbook_blocks(doc);
    assert_eq!(
        blocks,
        vec![
            ("one".to_owned(), "echo 1\n".to_owned()),
            ("two".to_owned(), "export A=1 B_C=2\n".to_owned())
        ]
    );
    assert_eq!(
        exported(&blocks[1].1),
        ["A", "B_C"].iter().map(|s| (*s).to_owned()).collect()
    );
}

#[test]
fn the_japanese_checklist_shows_the_commands_the_test_runs() {
    let root = workspace_root();
    let en = std::fs::read_to_string(root.join("docs/production.md")).unwrap();
    let ja = std::fs::read_to_string(root.join("docs/ja/production.md")).unwrap();
    let blocks = runbook_blocks(&en);
    assert_eq!(blocks.len(), BLOCKS.len());
    for (name, text) in &blocks {
        assert!(
            ja.contains(&format!("```sh\n{text}```")),
            "docs/ja/production.md lacks block {name} of docs/production.md, word for word"
        );
    }
    for term in [
        "提供側",
        "利用側",
        "連携ID",
        "版数",
        "宛名番号",
        "休日開庁日",
        "休日閉庁日",
    ] {
        assert!(
            ja.contains(term),
            "docs/ja/production.md does not use {term}"
        );
    }
}
