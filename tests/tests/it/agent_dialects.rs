//! The agent and its `probe` command against both dialects of provider-sim: Shirase's own
//! (docs/pull-api.md) and the romaji one (split date/time bounds at whole seconds, inclusive
//! TO, romaji item names, rows under `/kekka/meisai`, the version in the path, answers capped
//! with counts), configured through `[providers.api]` only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use shirase_proto::{ChangeKind, OffsetTimestamp};
use shirase_tests::provider_sim::{AnswerOrder, ChangeSpec, ClockMode, Dialect};

use crate::agent_support::*;

fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .skip(1)
        .map(|d| d.join(format!("shirase-agent{}", std::env::consts::EXE_SUFFIX)))
        .find(|p| p.is_file())
        .expect("shirase-agent built next to the test binary (cargo build --workspace --bins)")
}

fn romaji_api() -> String {
    format!("[providers.api]\n{}", Dialect::Romaji.profile_toml())
}

async fn romaji_env(cap: usize) -> Env {
    Env::start(|c| {
        c.dialect = Dialect::Romaji;
        c.answer_cap = Some(cap);
    })
    .await
}

/// Run `shirase-agent probe --config <file>`; (exit status, stdout lines).
fn probe(env: &Env, provider_extra: &str) -> (i32, Vec<String>) {
    let file = env.dir.path().join("probe.toml");
    std::fs::write(&file, env.agent_toml("", provider_extra)).unwrap();
    // The simulator runs on this test's runtime: wait for the child on a blocking thread.
    let out = tokio::task::block_in_place(|| {
        Command::new(agent_binary())
            .arg("probe")
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines = text.lines().map(str::to_owned).collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn has(lines: &[String], prefix: &str) -> bool {
    lines.iter().any(|l| l.starts_with(prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_accepts_the_standard_dialect_with_the_default_profile() {
    let env = Env::start(|_| {}).await;
    env.commit_updates(5);
    let (code, lines) = probe(&env, "");
    assert_eq!(code, 0, "{lines:#?}");
    for want in [
        "ok   001 token: ",
        "ok   001 001o05-00 window: GET /api/001o05-00 ",
        "ok   001 001o05-00 rows: ",
        "ok   001 001o05-00 malformed_bound: a malformed updated_from was answered 400 E0001",
        "ok   001 001o05-00 to: TO is exclusive",
        "info 001 001o05-00 too_many: not observed: ",
    ] {
        assert!(has(&lines, want), "{want} missing from {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_accepts_the_romaji_dialect_with_its_profile() {
    let env = romaji_env(3).await;
    env.commit_updates(10);
    let (code, lines) = probe(&env, &romaji_api());
    assert_eq!(code, 0, "{lines:#?}");
    for want in [
        "ok   001 001o05-00 window: GET /api/1.0/001o05-00 ",
        "ok   001 001o05-00 precision: DB update timestamps at whole seconds",
        "ok   001 001o05-00 to: TO is inclusive",
    ] {
        assert!(has(&lines, want), "{want} missing from {lines:#?}");
    }
    assert!(
        lines.iter().any(|l| l.contains("capped at 3 of")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_the_keys_of_a_wrong_profile() {
    let env = romaji_env(1000).await;
    env.commit_updates(3);
    // The default profile: wrong path.
    let (code, lines) = probe(&env, "");
    assert_eq!(code, 1, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l
            .starts_with("FAIL 001 001o05-00 window: GET /api/001o05-00: 404 E0001")
            && l.ends_with("→ change providers[001].api.path")),
        "{lines:#?}"
    );
    // Right path and bounds, but rows read from the wrong pointer.
    let wrong_rows = romaji_api().replace("/kekka/meisai", "/rows");
    let (code, lines) = probe(&env, &wrong_rows);
    assert_eq!(code, 1, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FAIL 001 001o05-00 window: ")
                && l.ends_with("→ change providers[001].api.rows")),
        "{lines:#?}"
    );
    // An exclusive TO where the provider's is inclusive.
    let wrong_to = romaji_api().replace("to_inclusive = true", "to_inclusive = false");
    let (code, lines) = probe(&env, &wrong_to);
    assert_eq!(code, 1, "{lines:#?}");
    assert!(
        has(
            &lines,
            "FAIL 001 001o05-00 to: TO behaves inclusive, the profile says exclusive → change providers[001].api.to_inclusive = true"
        ),
        "{lines:#?}"
    );
}

/// The romaji sink rows as (atena_bango, rireki_bango).
fn romaji_sink_rows(env: &Env) -> BTreeSet<(String, u64)> {
    env.sink_lines()
        .iter()
        .filter(|l| l["kind"] == "row")
        .map(|l: &Value| {
            let r = &l["row"];
            (
                r["atena_bango"].as_str().unwrap().to_owned(),
                r["rireki_bango"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_agent_drains_the_romaji_dialect_through_capped_answers() {
    // Answers capped at 7 rows: every window is read to the end by splitting it. A change
    // also moves the addressee's previous row to its second, so 3 changes a second keep any
    // one second within the cap (a second holding more than the cap is not split further).
    let env = romaji_env(7).await;
    let agent = RunningAgent::start(env.agent_config("", &romaji_api()));
    for _ in 0..8 {
        env.commit_updates(3);
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    }
    wait_notices_published(&env).await;
    wait_until(60, "all delivered", || async {
        env.unfinished().await == 0
    })
    .await;
    let expected = env.expected_rows();
    assert_eq!(expected.len(), 24);
    let got = romaji_sink_rows(&env);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} rows missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 24);
    // Whole-second DB timestamps: the checkpoint is the newest one received.
    let cp = env.checkpoint().await.unwrap();
    assert_eq!(cp.subsec_nanosecond(), 0);
    agent.stop().await;
}

/// What draining a capped provider took ([`drain_capped`]).
#[derive(Debug)]
struct Drained {
    /// Data requests the provider received.
    requests: usize,
    /// Answers holding the cap's 7 rows (capped, or exactly 7 matching).
    at_cap: usize,
    /// Rows the sink received.
    sink_rows: usize,
    /// Data requests by addressee numbers.
    keyed: usize,
}

/// Whole seconds of `per_second[i]` changes each, committed before the agent starts (each
/// change also moves the addressee's previous row to its second: 3 changes make 6 rows),
/// drained through answers capped at 7 rows in the provider's `order`, the agent's profile
/// saying `rows_order`. Asserts nothing is missing, nothing dead-lettered, and every row
/// reached the sink once.
async fn drain_capped(order: AnswerOrder, rows_order: &str, per_second: &[usize]) -> Drained {
    let start = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 60).unwrap();
    let env = Env::start(|c| {
        c.dialect = Dialect::Romaji;
        c.answer_cap = Some(7);
        c.answer_order = order;
        c.clock = ClockMode::Manual(start);
    })
    .await;
    for n in per_second {
        env.commit_updates(*n);
        env.sim.advance_clock(std::time::Duration::from_secs(1));
    }
    wait_notices_published(&env).await;
    let api = format!("{}rows_order = \"{rows_order}\"\n", romaji_api());
    let agent = RunningAgent::start(env.agent_config("", &api));
    wait_until(60, "all delivered", || async {
        env.unfinished().await == 0
    })
    .await;
    let expected = env.expected_rows();
    let changes: usize = per_second.iter().sum();
    assert_eq!(expected.len(), changes);
    let got = romaji_sink_rows(&env);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{rows_order}: {missing:?} missing");
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    assert_eq!(
        agent.metrics.iface(&agent.metrics.acked, "001", IFACE),
        changes as u64
    );
    // Each row of the provider's table changed since `start`, as it stands, in the sink; no
    // row version (addressee, history, update timestamp) delivered twice.
    let table: BTreeSet<(String, u64)> = env
        .sim
        .rows(&iface())
        .unwrap()
        .iter()
        .filter(|r| r.updated_at.parse::<OffsetTimestamp>().unwrap().instant() >= start)
        .map(|r| (r.atena_no.to_string(), u64::from(r.history_no)))
        .collect();
    assert_eq!(table.len(), 2 * changes);
    let missing = table.difference(&got).count();
    assert_eq!(missing, 0, "{rows_order}: rows of the table missing");
    let mut versions = std::collections::BTreeMap::new();
    for l in env.sink_lines().iter().filter(|l| l["kind"] == "row") {
        let r = &l["row"];
        let v = (
            r["atena_bango"].to_string(),
            r["rireki_bango"].to_string(),
            r["koshin_ymd"].to_string(),
            r["koshin_time"].to_string(),
        );
        *versions.entry(v).or_insert(0usize) += 1;
    }
    let sink_rows: usize = versions.values().sum();
    let twice = versions.values().filter(|n| **n > 1).count();
    assert_eq!(
        twice, 0,
        "{rows_order}: {twice} rows delivered more than once"
    );
    // The checkpoint is the newest second committed, never past rows not received.
    assert_eq!(
        env.checkpoint().await,
        Some(start + jiff::SignedDuration::from_secs(per_second.len() as i64 - 1))
    );
    let data = data_requests(&env);
    let at_cap = data
        .iter()
        .filter(|r| r.rows.is_some_and(|n| n == 7))
        .count();
    let keyed = data
        .iter()
        .filter(|r| {
            r.query
                .as_deref()
                .is_some_and(|q| q.contains("atena_bango="))
        })
        .count();
    agent.stop().await;
    Drained {
        keyed,
        requests: data.len(),
        at_cap,
        sink_rows,
    }
}

#[tokio::test]
async fn capped_answers_ordered_by_time_are_continued_in_fewer_requests_than_split() {
    // The same table, answers ascending by update timestamp: read by continuing from the
    // newest row received, then by splitting (the profile promising no order).
    let continued = drain_capped(AnswerOrder::UpdatedAt, "updated_at", &[3; 10]).await;
    let split = drain_capped(AnswerOrder::UpdatedAt, "unspecified", &[3; 10]).await;
    println!("capped answers, 60 rows over 10 s, cap 7: continued={continued:?} split={split:?}");
    assert_eq!(continued.sink_rows, split.sink_rows);
    // 60 rows at 7 an answer take at least 9 answers; each continuation starts inside the
    // second of the previous answer's newest row, so it advances by 6 or 7 rows less the rows
    // read again: 10 to 15 requests. Splitting discards every capped answer and halves the
    // window until each piece holds at most 7 rows.
    assert!(
        (9..=15).contains(&continued.requests),
        "continued: {continued:?}"
    );
    assert!(
        continued.requests < split.requests,
        "continued {continued:?} split {split:?}"
    );
    assert!(split.at_cap >= 5, "split: {split:?}");
}

#[tokio::test]
async fn capped_answers_ordered_by_key_drain_by_splitting() {
    // Answers ascending by addressee number: a capped answer's newest row is newer than rows
    // it left out. With rows_order = "unspecified" the agent splits, and nothing is missing.
    let split = drain_capped(AnswerOrder::Key, "unspecified", &[3; 10]).await;
    println!("capped answers ordered by key, 60 rows over 10 s, cap 7: split={split:?}");
    assert!(split.at_cap >= 1, "{split:?}");
}

#[tokio::test]
async fn a_continuation_stuck_in_a_second_over_the_cap_falls_back_to_splitting() {
    // The third second holds 5 changes, 10 rows: more than the cap of 7. The continuation
    // that reaches it cannot move FROM; the rest is split, that second cannot be, and the agent
    // reads it by the addressee numbers of its notices, as for a refused second.
    let d = drain_capped(AnswerOrder::UpdatedAt, "updated_at", &[3, 3, 5, 3, 3]).await;
    println!("capped answers, a second of 10 rows, cap 7, continued: {d:?}");
    assert_eq!(d.sink_rows, 34);
    assert!(d.keyed >= 1, "{d:?}");
}

#[tokio::test]
async fn a_profile_mismatch_is_retried_never_acked_or_dead_lettered() {
    let env = romaji_env(1000).await;
    env.commit_updates(4);
    wait_notices_published(&env).await;
    let wrong_rows = romaji_api().replace("/kekka/meisai", "/rows");
    let agent = RunningAgent::start(
        env.agent_config("[retry]\nbase = \"50ms\"\nmax = \"200ms\"\n", &wrong_rows),
    );
    wait_until(20, "profile mismatches seen", || async {
        agent.pulls_of("profile_mismatch") >= 2
    })
    .await;
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 0);
    assert_eq!(env.unfinished().await, 4);
    agent.stop().await;
}

#[tokio::test]
async fn a_burst_of_one_second_over_the_threshold_is_read_by_its_keys() {
    burst_of_one_second("").await;
}

#[tokio::test]
async fn a_burst_of_one_second_across_batches_is_read_by_its_keys() {
    // Batches of 25: the first reads the second by its 25 notices' keys; the later ones find
    // their notices at the checkpoint, not read by that pull, and read them by keys too
    // (narrow pulls).
    burst_of_one_second("[batch]\nsize = 25\n").await;
}

async fn burst_of_one_second(extra: &str) {
    // Whole-second DB timestamps on a frozen DB clock: all 120 commits share one second, and
    // each also moves the addressee's previous row to it, so that second alone holds far more
    // rows than the provider's threshold of 50 (answers capped at 7 besides). Bisection
    // cannot go below a second: the agent reads that second by the addressee numbers its
    // notices name, 20 keys a request (pull.max_notices_per_window), split further by the
    // capped answers.
    let second = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 30).unwrap();
    let env = Env::start(|c| {
        c.dialect = Dialect::Romaji;
        c.answer_cap = Some(7);
        c.row_threshold = 50;
        c.clock = ClockMode::Manual(second);
    })
    .await;
    env.commit_updates(120);
    wait_notices_published(&env).await;
    let in_second = env
        .sim
        .rows(&iface())
        .unwrap()
        .iter()
        .filter(|r| r.updated_at.parse::<OffsetTimestamp>().unwrap().instant() == second)
        .count();
    assert!(in_second > 120, "{in_second} rows in the burst's second");
    let agent = RunningAgent::start(env.agent_config(
        &format!("{extra}[pull]\nmax_notices_per_window = 20\n"),
        &romaji_api(),
    ));
    wait_until(60, "all delivered", || async {
        env.unfinished().await == 0
    })
    .await;
    let expected = env.expected_rows();
    let got = romaji_sink_rows(&env);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} of {} rows missing",
        missing.len(),
        expected.len()
    );
    let dead = agent
        .metrics
        .iface(&agent.metrics.dead_lettered, "001", IFACE);
    assert_eq!(dead, 0, "nothing dead-lettered");
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 120);
    if !extra.is_empty() {
        let batches = agent.metrics.iface(&agent.metrics.batches, "001", IFACE);
        assert!(
            batches >= 5,
            "120 notices in batches of 25: {batches} batches"
        );
    }
    // The window met the threshold; the second was then read by keys, every answer within
    // the cap, no keyed request refused.
    assert!(agent.pulls_of("too_many") >= 1);
    let data = data_requests(&env);
    let keyed: Vec<_> = data
        .iter()
        .filter(|r| {
            r.query
                .as_deref()
                .is_some_and(|q| q.contains("atena_bango="))
        })
        .collect();
    assert!(!keyed.is_empty(), "no keyed request in {data:#?}");
    println!(
        "one-second burst: notices=120 rows_in_second={in_second} threshold=50 cap=7 requests={} keyed={} too_many={} batches={}",
        data.len(),
        keyed.len(),
        agent.pulls_of("too_many"),
        agent.metrics.iface(&agent.metrics.batches, "001", IFACE)
    );
    for r in &keyed {
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.rows.unwrap_or(0) <= 7, "{r:?}");
        assert!(
            r.query
                .as_deref()
                .is_some_and(|q| q.contains("koshin_time_from=")),
            "keyed requests stay inside the second: {r:?}"
        );
    }
    let cp = env.checkpoint().await.unwrap();
    assert_eq!(cp, second, "the checkpoint is the burst's second");
    // Later changes: the next window starts at the checkpoint, inside the burst's second,
    // which is refused again. No notice in hand names it and it lies at the checkpoint: it is
    // skipped (read before), and the window goes on to the new rows.
    // Three changes: six rows in their second, within the cap of 7.
    env.sim.advance_clock(std::time::Duration::from_secs(3));
    let before = data_requests(&env).len();
    env.commit_updates(3);
    wait_notices_published(&env).await;
    wait_until(30, "the later changes delivered", || async {
        env.unfinished().await == 0
    })
    .await;
    let missing: Vec<_> = env
        .expected_rows()
        .difference(&romaji_sink_rows(&env))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 123);
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    let later: Vec<_> = data_requests(&env).into_iter().skip(before).collect();
    assert!(
        later.iter().all(|r| !r
            .query
            .as_deref()
            .unwrap_or_default()
            .contains("atena_bango=")),
        "the burst's second is not read again by keys: {later:#?}"
    );
    assert_eq!(
        env.checkpoint().await.unwrap(),
        second + jiff::SignedDuration::from_secs(3)
    );
    agent.stop().await;
}

fn data_requests(env: &Env) -> Vec<shirase_tests::provider_sim::RequestLogEntry> {
    env.sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .collect()
}

#[tokio::test]
async fn a_notice_of_another_version_is_counted_and_pulled_from_the_configured_one() {
    // The romaji provider serves version 1.0 under /api/1.0/...; two notices name version 2.0
    // (a provider announcing its next version's API while the subscriber still reads 1.0).
    let env = romaji_env(1000).await;
    let changes = env
        .sim
        .commit_changes(
            ChangeSpec::new(3)
                .interface(iface())
                .kind(ChangeKind::Update),
        )
        .unwrap();
    wait_notices_published(&env).await;
    for (i, c) in changes.iter().take(2).enumerate() {
        let n = shirase_proto::Notice::new(
            "131016".parse().unwrap(),
            iface(),
            "2.0".parse().unwrap(),
            shirase_proto::Sequence(4 + i as u64),
            c.updated_at.parse().unwrap(),
            ChangeKind::Update,
            Some(shirase_proto::Keys {
                atena_no: vec![c.atena_no],
            }),
        );
        shirase_proto::publish::publish(&env.js, &n).await.unwrap();
    }
    let agent = RunningAgent::start(env.agent_config("", &romaji_api()));
    wait_until(30, "all delivered", || async {
        env.unfinished().await == 0
    })
    .await;
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 5);
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.version_mismatch, "001", IFACE),
        2
    );
    let text = agent.metrics.encode();
    assert!(
        text.contains(
            "shirase_agent_version_mismatch_total{provider=\"001\",interface=\"001o05-00\"} 2"
        ),
        "{text}"
    );
    let data = data_requests(&env);
    assert!(!data.is_empty());
    assert!(
        data.iter()
            .all(|r| r.path == "/api/1.0/001o05-00" && r.status == 200),
        "{data:#?}"
    );
    let missing: Vec<_> = env
        .expected_rows()
        .difference(&romaji_sink_rows(&env))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    agent.stop().await;
}

#[test]
fn an_invalid_profile_stops_the_agent_at_startup_naming_each_field() {
    // Nothing is contacted: the configuration is refused before NATS or the provider.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s\n").unwrap();
    let toml = format!(
        r#"
subscriber = "tax"
municipality = "131016"
[nats]
urls = ["nats://127.0.0.1:1"]
[sink]
kind = "file"
dir = "{sink}"
[[providers]]
business_id = "001"
pull_api_base_url = "http://127.0.0.1:1"
token_url = "http://127.0.0.1:1/oauth/token"
client_id = "tax-agent"
client_secret_file = "{secret}"
[providers.api]
path = "/api/{{version}}/{{interface}}"
from = {{ date = "koshin_ymd_from", time = "koshin_time_from" }}
to = {{ date = "koshin_ymd_to" }}
time_format = "%H%M"
rows = "kekka/meisai"
row_key = "atena_bango"
[[providers.interfaces]]
id = "001o05-00"
version = ""
"#,
        sink = dir.path().join("sink").display(),
        secret = dir.path().join("secret").display(),
    );
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, toml).unwrap();
    for args in [vec![], vec!["probe"]] {
        let out = Command::new(agent_binary())
            .args(&args)
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for want in [
            "providers[0].api.row_key",
            "providers[0].api.rows",
            "providers[0].api.to.time",
            "providers[0].api.time_format",
            "providers[0].api.path",
            "providers[0].interfaces[0].version",
        ] {
            assert!(err.contains(want), "{args:?}: {want} missing from {err}");
        }
        assert!(
            !dir.path().join("sink").exists(),
            "the agent did not start (no sink created)"
        );
    }
}
