//! Personal data stays out of the logs: an end-to-end run (provider-sim → relay binary → NATS →
//! agent binary → file sink) with both binaries logging at TRACE, then a scan of everything they
//! wrote for the rows' contents (the simulator's fake names, addresses, dates of birth) and for
//! addressee numbers (宛名番号) beyond their last 4 digits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::Value;

use crate::fault_support::{ClusterEnv, I05, LogLevels};

/// Every string (and number rendered as text) in a row's `record`, long enough to be telling.
fn record_values(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.chars().count() >= 4 => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| record_values(x, out)),
        Value::Object(m) => m.values().for_each(|x| record_values(x, out)),
        _ => {}
    }
}

/// Maximal runs of ASCII digits in `text`.
fn digit_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_logs_of_an_end_to_end_run_hold_no_row_contents_and_no_full_addressee_numbers() {
    let levels = LogLevels {
        relay: "trace",
        agent: "trace",
    };
    let mut env = ClusterEnv::start_with(levels, 3, 200).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let now = Instant::now();
    let f = env.finish("trace-level log scan run", now, now, 0).await;
    assert!(f.changes >= 20, "the run moved data: {f}");

    let relay_log = std::fs::read_to_string(&env.relay.log).unwrap();
    let agent_log = std::fs::read_to_string(&env.agent.log).unwrap();
    // The logs are really at TRACE (else the scan proves little).
    assert!(
        agent_log.contains("TRACE"),
        "agent log is not at trace level"
    );
    assert!(
        relay_log.contains("TRACE"),
        "relay log is not at trace level"
    );

    // What the sink received is exactly what must not be in a log.
    let rows = crate::fault_support::rows(&crate::agent_support::sink_lines(
        &env.dir.path().join("sink"),
        I05,
    ))
    .into_iter()
    .cloned()
    .collect::<Vec<_>>();
    assert!(!rows.is_empty());
    let mut secrets = BTreeSet::new();
    for r in &rows {
        record_values(&r["record"], &mut secrets);
    }
    // Values that are not personal data and legitimately appear (interface ids, flags...).
    secrets
        .retain(|s| s != I05 && !["true", "false", "update", "retroactive"].contains(&s.as_str()));
    assert!(
        secrets.len() >= 20,
        "the records carry telling values: {}",
        secrets.len()
    );
    let atena: BTreeSet<String> = env
        .sim
        .changes()
        .iter()
        .map(|c| c.atena_no.to_string())
        .collect();
    assert_eq!(atena.iter().map(String::len).max(), Some(15));

    for (who, log) in [("relay", &relay_log), ("agent", &agent_log)] {
        let leaked: Vec<&String> = secrets
            .iter()
            .filter(|s| log.contains(s.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "{who}'s trace log holds {} row values, e.g. {:?}",
            leaked.len(),
            leaked.first()
        );
        // A masked number keeps only its last 4 digits. A leak shows more: look for every run of
        // 10 or more digits that ends an addressee number (the full 15 digits included; shorter
        // runs would also match timestamps and counters by chance).
        let unmasked: Vec<&str> = digit_runs(log)
            .filter(|r| r.len() >= 10 && atena.iter().any(|a| a.ends_with(r)))
            .collect();
        if let Some(r) = unmasked.first() {
            let line = log.lines().find(|l| l.contains(r)).unwrap_or_default();
            panic!(
                "{who}'s trace log holds {} addressee numbers, e.g. in: {}",
                unmasked.len(),
                &line[..line.len().min(400)]
            );
        }
    }
    println!(
        "log scan: relay {} bytes, agent {} bytes, {} row values and {} addressee numbers absent",
        relay_log.len(),
        agent_log.len(),
        secrets.len(),
        atena.len()
    );
    env.shutdown().await;
}
