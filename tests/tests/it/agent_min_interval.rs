//! `min_interval` on an interface, with a real nats-server, provider-sim and the agent
//! in-process: notices arriving one after another are held until the oldest is that old, then
//! pulled with one request; the notices delivered again afterwards are covered by it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use tokio::time::Instant;

use crate::agent_support::*;

#[tokio::test]
async fn notices_within_min_interval_share_one_pull() {
    let env = Env::start(|_| {}).await;
    let toml = env.agent_toml(
        "[batch]\nmax_wait = \"100ms\"\n[sweep]\ninterval = \"0s\"\n",
        "",
    ) + "min_interval = \"3s\"\n";
    let cfg = shirase_subscriber_kit::Config::from_toml_str(&toml).unwrap();
    assert_eq!(
        cfg.providers[0].interfaces[0].min_interval,
        Some(Duration::from_secs(3))
    );
    let agent = RunningAgent::start(cfg);
    let t0 = Instant::now();
    for _ in 0..5 {
        env.commit_updates(1);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let expected = env.expected_rows();
    let mut first_row = None;
    while t0.elapsed() < Duration::from_secs(20) {
        let got = env.sink_rows();
        if first_row.is_none() && !got.is_empty() {
            first_row = Some(t0.elapsed());
        }
        if expected.iter().all(|k| got.contains_key(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_row = first_row.expect("rows reached the sink");
    assert!(
        expected.iter().all(|k| env.sink_rows().contains_key(k)),
        "every change reached the sink"
    );
    // Held until the oldest notice was 3 s old (its store time is after the first commit).
    assert!(
        first_row >= Duration::from_millis(2_900),
        "first row after {first_row:?}: held for min_interval"
    );
    wait_until(20, "every notice acked", || async {
        env.unfinished().await == 0
    })
    .await;
    assert_eq!(agent.pulls(), 1, "one pull for the five notices");
    let sink = env.sink_rows();
    assert!(
        expected.iter().all(|k| sink.get(k) == Some(&1)),
        "each row delivered once: {sink:?}"
    );
    agent.stop().await;
}
