//! `deploy/dev/demo.sh`, the README's first command: its loss check can fail (fast, no stack),
//! and a short non-interactive run ends with a summary where every change reached every
//! subscriber, after an outage and a maintenance window really happened (slow: the whole stack on
//! the demo's fixed 127.0.0.1 ports, with the debug binaries cargo built).

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shirase_tests::harness::workspace_root;

fn scenario_py() -> PathBuf {
    workspace_root().join("deploy/dev/demo/scenario.py")
}

fn change(iface: &str, atena: &str, history: u64, kind: &str, seq: u64, id: &str) -> Value {
    json!({"interface_id": iface, "atena_no": atena, "history_no": history, "updated_at": "2026-11-25T10:15:30.000001+09:00",
           "kind": kind, "sequence": seq, "notice_id": id})
}

fn row_line(iface: &str, atena: &str, history: u64) -> String {
    json!({"interface_id": iface, "provider": &iface[..3], "pulled_at": "2026-11-25T10:15:31+09:00", "kind": "row",
           "row": {"atena_no": atena, "history_no": history, "latest": true}})
    .to_string()
}

fn verify(dir: &Path, changes: &Value) -> (i32, String) {
    let file = dir.join("changes.json");
    std::fs::write(&file, changes.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(scenario_py())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--verify-only",
            file.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The summary's loss check: a row missing from one subscriber's sink is reported with its
/// sequence and fails the run; a row created and cancelled before any pull counts as delivered
/// through its delete's tombstone.
#[test]
fn demo_loss_check_fails_on_a_missing_row_and_accepts_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("tax")).unwrap();
    std::fs::create_dir_all(d.join("delinquency")).unwrap();
    let changes = json!([
        change(
            "001o05-00",
            "000000000000001",
            2,
            "update",
            1,
            "0192f0c1-0000-7000-8000-000000000001"
        ),
        change(
            "001o05-00",
            "000000000000002",
            5,
            "retroactive",
            2,
            "0192f0c1-0000-7000-8000-000000000002"
        ),
        // Created, then cancelled before anyone pulled it.
        change(
            "001o05-00",
            "000000000000003",
            4,
            "update",
            3,
            "0192f0c1-0000-7000-8000-000000000003"
        ),
        change(
            "001o05-00",
            "000000000000003",
            4,
            "delete",
            4,
            "0192f0c1-0000-7000-8000-000000000004"
        ),
        change(
            "010o01-00",
            "000000000000009",
            1,
            "update",
            1,
            "0192f0c1-0000-7000-8000-000000000005"
        ),
    ]);
    let tomb = json!({"interface_id": "001o05-00", "provider": "001", "pulled_at": "2026-11-25T10:15:31+09:00",
                      "kind": "tombstone", "notice_id": "0192f0c1-0000-7000-8000-000000000004",
                      "atena_no": ["000000000000003"], "updated_at": "2026-11-25T10:15:30+09:00", "change": "delete"});
    let full = [
        row_line("001o05-00", "000000000000001", 2),
        row_line("001o05-00", "000000000000002", 5),
        tomb.to_string(),
    ]
    .join("\n");
    std::fs::write(d.join("tax/001o05-00.jsonl"), format!("{full}\n")).unwrap();
    std::fs::write(
        d.join("delinquency/010o01-00.jsonl"),
        format!("{}\n", row_line("010o01-00", "000000000000009", 1)),
    )
    .unwrap();
    // Delinquency misses the retroactive row (sequence 2); a partial last line is skipped.
    let partial = [
        row_line("001o05-00", "000000000000001", 2),
        tomb.to_string(),
        "{\"interface_id\": \"001o0".into(),
    ]
    .join("\n");
    std::fs::write(d.join("delinquency/001o05-00.jsonl"), partial).unwrap();

    let (code, out) = verify(d, &changes);
    assert_eq!(code, 1, "a missing row fails the check:\n{out}");
    assert!(
        out.contains("tax 001o05-00: 4 of 4 delivered, missing sequences []"),
        "{out}"
    );
    assert!(
        out.contains("delinquency 001o05-00: 3 of 4 delivered, missing sequences [2]"),
        "{out}"
    );
    assert!(
        out.contains("delinquency 010o01-00: 1 of 1 delivered"),
        "{out}"
    );

    std::fs::write(d.join("delinquency/001o05-00.jsonl"), format!("{full}\n")).unwrap();
    let (code, out) = verify(d, &changes);
    assert_eq!(code, 0, "complete sinks pass:\n{out}");
    assert!(
        out.contains("delinquency 001o05-00: 4 of 4 delivered, missing sequences []"),
        "{out}"
    );
}

const DEMO_PORTS: [u16; 7] = [4222, 8222, 8080, 9001, 9010, 9464, 9465];

fn port_in_use(p: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], p).into(), Duration::from_millis(200)).is_ok()
}

#[test]
#[ignore = "slow: runs deploy/dev/demo.sh --quick end to end (about a minute)"]
fn demo_quick_run_delivers_every_change_and_stops_cleanly() {
    let busy: Vec<u16> = DEMO_PORTS.into_iter().filter(|p| port_in_use(*p)).collect();
    assert!(
        busy.is_empty(),
        "the demo's ports {busy:?} are taken on 127.0.0.1 (a demo left running?)"
    );
    // The debug binaries in target/debug; deploy/dev/test.sh builds them all
    // (cargo build --workspace --all-targets) before the tests run.
    let bin_dir = crate::fault_support::built_binary("provider-sim")
        .parent()
        .unwrap()
        .to_path_buf();
    for b in ["shirase-relay", "shirase-agent"] {
        assert!(
            bin_dir.join(b).is_file(),
            "{} is missing: build it first with `cargo build --workspace --bins` (deploy/dev/test.sh does)",
            bin_dir.join(b).display()
        );
    }
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(workspace_root().join("deploy/dev/demo.sh"))
        .args([
            "--quick",
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo.sh starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            // SIGTERM: the script's trap stops the whole stack.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!("demo.sh did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = reader.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        status.success(),
        "demo.sh exited with {status}\nstdout:\n{out}\nstderr:\n{err}"
    );

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(data.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["lost"], 0, "{summary:#}");
    // File integration: the tax provider's nightly file reached delinquency's sink unchanged.
    let files = &summary["files"];
    assert_eq!(files["written"], 1, "{summary:#}");
    assert_eq!(files["delivered"], 1, "{summary:#}");
    assert_eq!(files["missing"], 0, "{summary:#}");
    for (sub, iface) in [
        ("tax", "001o05-00"),
        ("delinquency", "001o05-00"),
        ("delinquency", "010o01-00"),
    ] {
        let s = &summary["subscribers"][sub][iface];
        let made = summary["interfaces"][iface]["changes"].as_u64().unwrap();
        assert!(made >= 20, "{iface}: the scenario made only {made} changes");
        assert_eq!(s["changes"].as_u64(), Some(made), "{sub} {iface}: {s}");
        assert_eq!(s["delivered"].as_u64(), Some(made), "{sub} {iface}: {s}");
        assert_eq!(s["missing"], 0, "{sub} {iface}: {s}");
        // The sink file really holds at least one line per change.
        let lines = std::fs::read_to_string(data.path().join(sub).join(format!("{iface}.jsonl")))
            .unwrap()
            .lines()
            .count() as u64;
        assert!(
            lines >= made,
            "{sub} {iface}: {lines} sink lines for {made} changes"
        );
        // An update makes up to two row versions visible (its row and the predecessor whose
        // latest flag flips); a delete one and a tombstone.
        let versions = s["row_versions"].as_u64().unwrap();
        assert!(
            (made..=2 * made).contains(&versions),
            "{sub} {iface}: {versions} row versions for {made} changes"
        );
    }
    let kinds = &summary["interfaces"]["001o05-00"]["by_kind"];
    assert!(
        kinds["retroactive"].as_u64().unwrap() >= 2 && kinds["delete"].as_u64().unwrap() >= 1,
        "{kinds}"
    );
    // The outage and the maintenance window really turned requests away.
    assert!(
        summary["provider_counters"]["010"]["error"]
            .as_u64()
            .unwrap()
            > 0,
        "{summary:#}"
    );
    assert!(
        summary["provider_counters"]["001"]["maintenance"]
            .as_u64()
            .unwrap()
            > 0,
        "{summary:#}"
    );
    // The printed view: a live line per second and the verdict.
    let live = out
        .lines()
        .filter(|l| l.contains("] notices in 001:"))
        .count();
    assert!(live >= 20, "only {live} live lines:\n{out}");
    assert!(out.contains("RESULT: nothing was lost."), "{out}");
    // No orphans: every port is free again once the script returned.
    let busy: Vec<u16> = DEMO_PORTS.into_iter().filter(|p| port_in_use(*p)).collect();
    assert!(
        busy.is_empty(),
        "still listening after the demo exited: {busy:?}"
    );
}

/// The README's Rust snippets, compiled here; `readme_snippets_are_the_compiled_ones` keeps the
/// README's text equal to this module's.
#[allow(dead_code)]
// Kept as the README shows it (one signature a line), which rustfmt would re-wrap.
#[rustfmt::skip]
mod readme {
    // README: "Directly over NATS"
    use shirase_proto::{ChangeKind, Notice, Sequence};

    async fn notify(js: &async_nats::jetstream::Context, seq: u64, updated_at: &str) -> anyhow::Result<()> {
        let notice = Notice::new(
            "131016".parse()?,    // municipality code
            "001o05-00".parse()?, // interface id (連携ID)
            "1.0".parse()?,       // interface version (版数)
            Sequence(seq),
            updated_at.parse()?,  // the DB update timestamp, e.g. "2026-11-25T10:15:30.123+09:00"
            ChangeKind::Update,
            None,                 // or Some(keys) with the 宛名番号 concerned
        );
        // Nats-Msg-Id = "<business id>:<notice id>"; waits for the PubAck. On an error, publish the same notice again.
        let ack = shirase_proto::publish::publish(js, &notice).await?;
        println!("stored at stream sequence {} (duplicate: {})", ack.sequence, ack.duplicate);
        Ok(())
    }

    // README: "Embedding the kit"
    use std::sync::{Arc, Mutex};

    use futures::future::BoxFuture;
    use shirase_subscriber_kit::sink::{Delivery, Record, Sink, SinkError, SinkErrorKind};
    use shirase_subscriber_kit::{Agent, Config};
    use tokio_util::sync::CancellationToken;

    /// Stands for the consumer system's staging table.
    #[derive(Debug, Default)]
    pub(super) struct StagingTable(pub(super) Mutex<Vec<serde_json::Value>>);

    impl Sink for StagingTable {
        fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                let mut table = self.0.lock().map_err(|_| SinkError::new(SinkErrorKind::Io, "staging table poisoned"))?;
                for r in &d.records {
                    match r {
                        // Upsert by (atena_no, history_no); `raw` is the row as the PULL API sent it.
                        Record::Row(row) => table.push(row.raw.clone()),
                        // The newest history row of these addressees was deleted at the provider.
                        Record::Tombstone { atena_no, .. } => table.push(serde_json::json!({ "deleted": atena_no })),
                    }
                }
                // Return Ok only once the data is durable: the agent then stores the checkpoint and
                // acks the notices. An Err makes it pull the same window again later.
                Ok(())
            })
        }
    }

    async fn run_agent(path: &std::path::Path, shutdown: CancellationToken) -> anyhow::Result<()> {
        let config = Config::load(Some(path))?;
        Agent::with_sink(config, Arc::new(StagingTable::default())).run(None, shutdown).await?;
        Ok(())
    }
}

/// Every line of each ```rust block of README.md appears, in order, in the `readme` module
/// above (so the README shows code that compiles), and the README's staging-table sink
/// stores rows and tombstones.
#[tokio::test]
async fn readme_snippets_are_the_compiled_ones() {
    use shirase_subscriber_kit::sink::{Delivery, Record, Sink};

    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let this = include_str!("demo_script.rs");
    let module: Vec<&str> = this[this.find("mod readme {").unwrap()..]
        .lines()
        .map(str::trim)
        .collect();
    let blocks: Vec<&str> = readme
        .split("```rust\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(
        blocks.len(),
        2,
        "README.md has {} rust blocks; add new ones to the readme module",
        blocks.len()
    );
    for block in blocks {
        let mut at = 0;
        for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let pos = module[at..].iter().position(|m| {
                *m == line.replace("pub(super) ", "").as_str()
                    || m.replace("pub(super) ", "") == line
            });
            let Some(pos) = pos else {
                panic!("README.md line not in the compiled snippet (or out of order): {line}")
            };
            at += pos + 1;
        }
    }

    let table = readme::StagingTable::default();
    let row = shirase_subscriber_kit::pull_client::Row {
        atena_no: Some("000000000000001".into()),
        history_no: Some(2),
        updated_at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        raw: json!({"atena_no": "000000000000001", "history_no": 2}),
    };
    let delivery = Delivery {
        interface: "001o05-00".parse().unwrap(),
        provider: "001".parse().unwrap(),
        pulled_at: jiff::Timestamp::from_second(1_800_000_001).unwrap(),
        records: vec![
            Record::Row(row),
            Record::Tombstone {
                notice_id: "0192f0c1-0000-7000-8000-000000000004".into(),
                atena_no: vec!["000000000000003".into()],
                updated_at: "2026-11-25T10:15:30+09:00".parse().unwrap(),
            },
        ],
    };
    table.deliver(&delivery).await.unwrap();
    let stored = table.0.lock().unwrap().clone();
    assert_eq!(
        stored,
        vec![
            json!({"atena_no": "000000000000001", "history_no": 2}),
            json!({"deleted": ["000000000000003"]})
        ]
    );
}
