//! The agent end to end: provider-sim commits changes and publishes notices, the agent pulls
//! and delivers every change to the file sink, tombstones deletes, and acks everything.

use std::collections::BTreeSet;

use shirase_proto::ChangeKind;
use shirase_tests::provider_sim::ChangeSpec;

use crate::agent_support::*;

#[tokio::test]
async fn every_committed_change_reaches_the_sink() {
    let env = Env::start(|_| {}).await;
    let agent = RunningAgent::start(env.agent_config("", ""));
    // Three rounds so that later pulls start from a stored checkpoint.
    for round in 0..3 {
        let kind = if round == 1 {
            ChangeKind::Retroactive
        } else {
            ChangeKind::Update
        };
        env.sim
            .commit_changes(ChangeSpec::new(100).interface(iface()).kind(kind))
            .unwrap();
        wait_notices_published(&env).await;
        wait_until(30, "round delivered", || async {
            env.unfinished().await == 0
        })
        .await;
    }
    let expected = env.expected_rows();
    assert_eq!(expected.len(), 300);
    let got: BTreeSet<(String, u64)> = env.sink_rows().into_keys().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} changes never reached the sink, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    // The checkpoint is the newest DB timestamp received, not the wall clock.
    let newest = env
        .sim
        .changes()
        .iter()
        .map(|c| {
            c.updated_at
                .parse::<shirase_proto::OffsetTimestamp>()
                .unwrap()
                .instant()
        })
        .max()
        .unwrap();
    assert_eq!(env.checkpoint().await, Some(newest));
    // Every line carries its context.
    let l = &env.sink_lines()[0];
    assert_eq!(l["interface_id"], IFACE);
    assert_eq!(l["provider"], "001");
    assert!(l["pulled_at"].as_str().unwrap().ends_with("+09:00"));
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 300);
    agent.stop().await;
}

#[tokio::test]
async fn delete_notice_becomes_a_tombstone() {
    let env = Env::start(|_| {}).await;
    let atena = env.sim.atena_numbers()[3];
    env.sim
        .commit_changes(
            ChangeSpec::new(1)
                .interface(iface())
                .kind(ChangeKind::Update)
                .atena_no(atena),
        )
        .unwrap();
    let del = env
        .sim
        .commit_changes(
            ChangeSpec::new(1)
                .interface(iface())
                .kind(ChangeKind::Delete)
                .atena_no(atena),
        )
        .unwrap();
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config("", ""));
    wait_until(30, "all acked", || async { env.unfinished().await == 0 }).await;
    let tombs: Vec<_> = env
        .sink_lines()
        .into_iter()
        .filter(|l| l["kind"] == "tombstone")
        .collect();
    assert_eq!(tombs.len(), 1, "{tombs:?}");
    assert_eq!(tombs[0]["notice_id"], del[0].notice_id.to_string());
    assert_eq!(tombs[0]["atena_no"][0], atena.to_string());
    assert_eq!(tombs[0]["updated_at"], del[0].updated_at);
    assert_eq!(tombs[0]["change"], "delete");
    agent.stop().await;
}
