//! The agent's sweep with a real nats-server and provider-sim: changes the
//! provider committed without publishing any notice arrive through the scheduled sweep; a
//! sequence gap in the notices (1, 2, 5) is counted and triggers an immediate sweep once the
//! missing ones stay missing for `sweep.gap_grace`, and a notice re-sent after later ones
//! within it is no gap; while the
//! checkpoint stands still, each sweep starts where the previous one left off instead of
//! re-reading the same overlap; after a backlog read long after its rows (the maintenance
//! window's), no sweep reads those rows again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shirase_tests::provider_sim::NoticeTarget;

use crate::agent_support::{Env, IFACE, RunningAgent, iface, wait_notices_published, wait_until};

/// A simulator that publishes no notice, after `n` updates of the test interface.
async fn silent_changes(n: usize) -> Env {
    let env = Env::start(|c| c.notice_target = NoticeTarget::None).await;
    env.commit_updates(n);
    env
}

#[tokio::test]
async fn changes_without_notices_arrive_through_the_scheduled_sweep() {
    let env = silent_changes(15).await;
    assert_eq!(
        env.sim.counters().notices_delivered,
        0,
        "no notice was published"
    );
    let agent = RunningAgent::start(env.agent_config("[sweep]\ninterval = \"1s\"\n", ""));
    wait_until(20, "every change delivered by the sweep", || async {
        let rows = env.sink_rows();
        env.expected_rows().iter().all(|k| rows.contains_key(k))
    })
    .await;
    // The sink sees the rows before the sweep finishes (checkpoint, then the counter).
    wait_until(20, "the sweep counted", || async {
        agent.metrics.iface(&agent.metrics.sweeps, "001", IFACE) >= 1
    })
    .await;
    assert!(
        env.checkpoint().await.is_some(),
        "the sweep stored the checkpoint"
    );
    assert_eq!(env.unfinished().await, 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_sequence_gap_triggers_an_immediate_sweep_and_the_missing_changes_arrive() {
    let env = silent_changes(5).await;
    let notices = env.sim.notices();
    assert_eq!(
        notices.iter().map(|n| n.sequence.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // No scheduled sweep: only the gap can start one, once 3 and 4 are missing for 1 s.
    let agent = RunningAgent::start(
        env.agent_config("[sweep]\ninterval = \"0s\"\ngap_grace = \"1s\"\n", ""),
    );
    for n in notices.iter().filter(|n| [1, 2, 5].contains(&n.sequence.0)) {
        shirase_proto::publish::publish(&env.js, n).await.unwrap();
    }
    wait_until(20, "the gap's sweep and every change delivered", || async {
        let rows = env.sink_rows();
        agent.metrics.iface(&agent.metrics.sweeps, "001", IFACE) >= 1
            && env.expected_rows().iter().all(|k| rows.contains_key(k))
    })
    .await;
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.sequence_gaps, "001", IFACE),
        2,
        "3 and 4 are missing"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_notice_re_sent_after_later_ones_within_the_grace_is_no_gap() {
    let env = silent_changes(5).await;
    let notices = env.sim.notices();
    let agent = RunningAgent::start(
        env.agent_config("[sweep]\ninterval = \"0s\"\ngap_grace = \"4s\"\n", ""),
    );
    // The provider's POST of 3 was refused and re-sent after 4 and 5.
    for n in notices.iter().filter(|n| n.sequence.0 != 3) {
        shirase_proto::publish::publish(&env.js, n).await.unwrap();
    }
    wait_until(20, "1, 2, 4 and 5 acked (3 found missing)", || async {
        env.unfinished().await == 0
    })
    .await;
    let found_missing = std::time::Instant::now();
    let three = notices.iter().find(|n| n.sequence.0 == 3).unwrap();
    shirase_proto::publish::publish(&env.js, three)
        .await
        .unwrap();
    wait_until(20, "3 acked", || async { env.unfinished().await == 0 }).await;
    assert!(
        found_missing.elapsed() < std::time::Duration::from_secs(4),
        "3 arrived within the grace"
    );
    // Past the grace (it runs from before `found_missing`): nothing is due any more.
    tokio::time::sleep_until((found_missing + std::time::Duration::from_secs(5)).into()).await;
    let m = &agent.metrics;
    assert_eq!(m.iface(&m.sequence_gaps, "001", IFACE), 0, "no gap counted");
    assert_eq!(m.iface(&m.sweeps, "001", IFACE), 0, "no sweep");
    let rows = env.sink_rows();
    assert!(env.expected_rows().iter().all(|k| rows.contains_key(k)));
    agent.stop().await;
}

#[tokio::test]
async fn sweeps_over_a_still_checkpoint_do_not_read_the_same_rows_again() {
    let env = silent_changes(15).await;
    // Overlap 2 s, a sweep every second; no new change, so the checkpoint stays at the
    // newest of the 15 rows. Re-reading the overlap below the checkpoint would deliver
    // every row at every sweep.
    let agent = RunningAgent::start(
        env.agent_config("[sweep]\ninterval = \"1s\"\n[pull]\noverlap = \"2s\"\n", ""),
    );
    wait_until(30, "eight sweeps", || async {
        agent.metrics.iface(&agent.metrics.sweeps, "001", IFACE) >= 8
    })
    .await;
    let sweeps = agent.metrics.iface(&agent.metrics.sweeps, "001", IFACE);
    let rows = env.sink_rows();
    let missing: Vec<_> = env
        .expected_rows()
        .into_iter()
        .filter(|k| !rows.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "not delivered by the sweeps: {missing:?}"
    );
    let most = rows.values().copied().max().unwrap();
    // The first sweep (no checkpoint) and the one after it (FROM the overlap below the
    // checkpoint) read the rows; from the third on, FROM is just past the checkpoint (the
    // previous sweep read the overlap below it), so no row is read again.
    assert!(
        most <= 2,
        "a row was delivered {most} times by {sweeps} sweeps: {rows:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_backlog_read_long_after_its_rows_is_not_read_again_by_the_sweeps() {
    // 20 updates whose rows carry a timestamp 30 s old (a night's backlog, read after the
    // window), their notices waiting on the consumer.
    let env = Env::start(|_| {}).await;
    env.sim
        .commit_changes(
            shirase_tests::provider_sim::ChangeSpec::new(20)
                .interface(iface())
                .kind(shirase_proto::ChangeKind::Update)
                .late_by(std::time::Duration::from_secs(30)),
        )
        .unwrap();
    wait_notices_published(&env).await;
    // Overlap 2 s, a sweep every second. The backlog pull started more than the overlap after
    // every row's timestamp, so its record proves them all read: the sweeps start above them.
    // Without that, the first sweep re-reads the overlap below the checkpoint: every row.
    let agent = RunningAgent::start(
        env.agent_config("[sweep]\ninterval = \"1s\"\n[pull]\noverlap = \"2s\"\n", ""),
    );
    wait_until(30, "every change delivered and four sweeps", || async {
        let rows = env.sink_rows();
        env.expected_rows().iter().all(|k| rows.contains_key(k))
            && agent.metrics.iface(&agent.metrics.sweeps, "001", IFACE) >= 4
    })
    .await;
    let rows = env.sink_rows();
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "rows delivered more than once: {twice:?} (of {})",
        rows.len()
    );
    assert_eq!(rows.len(), 40, "20 updates, two row versions each");
    agent.stop().await;
}
