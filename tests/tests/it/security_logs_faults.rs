//! No personal data in the agent's logs on the failure paths: the agent binary at TRACE runs
//! through the provider's faults (503 E0503, maintenance E0900, client timeouts, E0004 with
//! bisection, keyed pulls whose query holds addressee numbers) until everything is delivered,
//! then every line it wrote is searched for every addressee number (宛名番号) it pulled and
//! for the query parameter that carries them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Stdio};

use shirase_tests::provider_sim::FaultsUpdate;

use crate::agent_support::*;
use crate::fault_support::built_binary;

fn seen(env: &Env, code: &str) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.code.as_deref() == Some(code))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_the_agent_through_provider_faults_hold_no_addressee_number() {
    let env = Env::start(|c| {
        c.row_threshold = 30;
        c.maintenance_retry_after = std::time::Duration::from_secs(1);
    })
    .await;
    env.sim
        .set_faults(FaultsUpdate {
            error_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    env.commit_updates(80);
    wait_notices_published(&env).await;

    let toml = env
        .agent_toml(
            "[retry]\nbase = \"100ms\"\nmax = \"300ms\"\n[coverage]\nuncovered_retry_delay = \"200ms\"\n",
            "timeout = \"1s\"",
        )
        .replace(
            &format!("id = \"{IFACE}\"\nversion = \"1.0\"\n"),
            &format!("id = \"{IFACE}\"\nversion = \"1.0\"\nkeyed_pull_max_keys = 100\n"),
        );
    assert!(toml.contains("keyed_pull_max_keys = 100"));
    let config = env.dir.path().join("agent.toml");
    std::fs::write(&config, toml).unwrap();
    let log_path = env.dir.path().join("agent.log");
    let err_path = env.dir.path().join("agent.err");
    let mut child = Command::new(built_binary("shirase-agent"))
        .arg("--config")
        .arg(&config)
        .env("SHIRASE_LOG", "trace")
        .env_remove("RUST_LOG")
        .env_remove("SHIRASE_AGENT_CONFIG")
        .stdin(Stdio::null())
        // The log goes to stdout; stderr would hold a start-up error.
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();

    wait_until(30, "503 E0503 answers", || async {
        seen(&env, "E0503") >= 2
    })
    .await;
    env.sim
        .set_faults(FaultsUpdate {
            error_rate: Some(0.0),
            maintenance: Some(true),
            ..Default::default()
        })
        .unwrap();
    wait_until(30, "maintenance answers", || async {
        seen(&env, "E0900") >= 1
    })
    .await;
    env.sim
        .set_faults(FaultsUpdate {
            maintenance: Some(false),
            latency_ms: Some(2_500),
            ..Default::default()
        })
        .unwrap();
    wait_until(
        40,
        "a request the agent gave up on (1 s timeout)",
        || async {
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .contains("client timeout (no answer within providers.timeout)")
        },
    )
    .await;
    env.sim
        .set_faults(FaultsUpdate {
            latency_ms: Some(0),
            ..Default::default()
        })
        .unwrap();
    wait_until(90, "everything delivered", || async {
        env.unfinished().await == 0
            && env
                .expected_rows()
                .iter()
                .all(|k| env.sink_rows().contains_key(k))
    })
    .await;
    assert!(
        seen(&env, "E0004") >= 1,
        "no E0004: the bisection path did not run"
    );
    let _ = child.kill();
    let _ = child.wait();

    let log =
        std::fs::read_to_string(&log_path).unwrap() + &std::fs::read_to_string(&err_path).unwrap();
    // The insecure_http warning, once.
    assert_eq!(
        log.matches("insecure_http = true: http:// is allowed")
            .count(),
        1
    );
    assert!(
        log.contains("TRACE"),
        "the agent did not log at trace level"
    );
    assert!(
        log.lines().count() > 100,
        "too little logged to prove anything"
    );
    let numbers: std::collections::BTreeSet<String> = env
        .sim
        .changes()
        .iter()
        .map(|c| c.atena_no.to_string())
        .collect();
    assert!(numbers.len() >= 50, "{}", numbers.len());
    for (i, line) in log.lines().enumerate() {
        for n in &numbers {
            assert!(
                !line.contains(n.as_str()),
                "line {} holds addressee number {n}: {line}",
                i + 1
            );
        }
        assert!(
            !line.contains("atena_no="),
            "line {} holds a query string: {line}",
            i + 1
        );
    }
}
