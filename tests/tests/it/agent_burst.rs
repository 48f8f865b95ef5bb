//! Coalescing under a burst: 10,000 notices for one interface cost a handful of PULL requests.
//!
//! The bound. The simulator commits the 10,000 changes (within a few milliseconds) before the
//! agent starts; its row threshold is T = 1,000, so the first window pull cannot return them
//! at once and is bisected. The first batch (1,000 notices: batch.size, and max_ack_pending
//! of the dev topology) tells the agent where its changes are, so splits there follow the
//! notices' median: about 2·⌈log2(1,000·r / T)⌉ requests, r ≈ 2 rows per change (the latest
//! flag flip moves the previous history row too). The other 9,000 changes lie in the tail
//! [newest known notice, now), which is halved by time: one failed request plus one (empty)
//! half per level until a piece is about the burst's few-ms span (log2(seconds / ms) ≈ 10–12
//! levels), then ≈ 2·9,000·r / T more. Together ≈ 2·12 + 2·20 + 2·4 ≈ 70–100 requests, all
//! in the first batch: the checkpoint then sits at the newest change, and the other nine
//! batches are "already covered" (no request). Asserted: ≤ 150 requests for 10,000 notices
//! (1.5 %), against 10,000 without coalescing. With a threshold above the burst's row count
//! it is exactly one request.

use shirase_proto::ChangeKind;
use shirase_tests::provider_sim::ChangeSpec;

use crate::agent_support::*;

#[tokio::test]
#[ignore = "slow: publishes 10,000 notices through JetStream (~10 s)"]
async fn burst_of_10k_notices_needs_a_handful_of_pulls() {
    let env = Env::start(|c| c.row_threshold = 1_000).await;
    for _ in 0..10 {
        env.sim.commit_changes(ChangeSpec::new(1_000).interface(iface()).kind(ChangeKind::Update)).unwrap();
    }
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config("", ""));
    wait_until(120, "10,000 notices acked", || async { env.unfinished().await == 0 }).await;
    let pulls = agent.pulls();
    let expected = env.expected_rows();
    let got = env.sink_rows();
    let missing = expected.iter().filter(|k| !got.contains_key(*k)).count();
    let ratio = pulls as f64 / 10_000.0;
    println!(
        "burst: notices=10000 pulls={pulls} (data={} too_many={}) pulls_per_notice={ratio:.4} rows_delivered={}",
        agent.pulls_of("data"),
        agent.pulls_of("too_many"),
        got.values().sum::<usize>()
    );
    assert_eq!(missing, 0, "every change of the burst reaches the sink");
    assert!(pulls <= 150, "10,000 notices took {pulls} pulls");
    assert!(agent.pulls_of("too_many") >= 1, "10,000 rows exceed the threshold of 1,000: the window was bisected");
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 10_000);
    agent.stop().await;
}
