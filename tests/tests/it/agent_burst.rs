//! Coalescing under a burst: 10,000 notices for one interface cost a handful of PULL requests.
//!
//! The bound. The simulator commits the 10,000 changes (each at its own microsecond, within
//! a few milliseconds) before the agent starts; its row threshold is T = 1,000 rows. The agent
//! fetches batches of 500 notices (the default batch.size, equal to
//! `pull.max_notices_per_window`) and plans each batch's windows from the notices in hand: the
//! FROM–TO range is cut at notice timestamps so that each window holds at most 500 notices
//! (one change can bring 2 rows: its new row and the previous latest row it demotes, so 500
//! notices are at most 1,000 rows = T); a batch of 500 is one window, one PULL call. While more notices are pending, the last window stops
//! just past the newest notice in hand, so no request meets rows the batch knows nothing
//! about. A batch chains from the checkpoint, so it does not re-read the earlier batches'
//! rows. That is ceil(10,000 / 500) = 20 window requests (the last batch, with nothing more
//! pending, reads ahead up to now: at most 2 more);
//! the fallback (E0004 → bisection, 2 more requests per refusal) should not be needed but a
//! few are tolerated: asserted ≤ 25 requests and ≤ 2 E0004 answers, against 10,000 requests
//! without coalescing and ~100 with blind bisection.

use crate::agent_support::*;

/// The burst both tests use: 10,000 updates for one interface, committed in 10 transactions.
fn commit_10k_updates(env: &Env) {
    for _ in 0..10 {
        env.commit_updates(1_000);
    }
}

#[tokio::test]
#[ignore = "slow: publishes 10,000 notices through JetStream (~10 s)"]
async fn burst_of_10k_notices_needs_a_handful_of_pulls() {
    let env = Env::start(|c| c.row_threshold = 1_000).await;
    commit_10k_updates(&env);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config("", ""));
    wait_until(120, "10,000 notices acked", || async {
        env.unfinished().await == 0
    })
    .await;
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
    let rows_per_request: Vec<usize> = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| r.rows.unwrap_or(0))
        .collect();
    println!("burst: rows per request {rows_per_request:?}");
    assert_eq!(missing, 0, "every change of the burst reaches the sink");
    assert!(
        pulls <= 25,
        "10,000 notices took {pulls} pulls (bound: ceil(10,000 / 500) = 20 + fallback)"
    );
    assert!(
        pulls >= 20,
        "10,000 notices at ≤ 1,000 rows per answer need at least 20 requests, got {pulls}"
    );
    assert!(
        agent.pulls_of("too_many") <= 2,
        "windows planned from the notices should not draw E0004: {}",
        agent.pulls_of("too_many")
    );
    // Every answer respected the threshold: the planned windows were small enough.
    for r in env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
    {
        assert!(r.rows.unwrap_or(0) <= 1_000, "{r:?}");
    }
    assert_eq!(
        agent.metrics.iface(&agent.metrics.acked, "001", IFACE),
        10_000
    );
    // One PULL call per batch window: 20 batches of 500, E0004 fallbacks aside.
    let batches = agent.metrics.iface(&agent.metrics.batches, "001", IFACE);
    assert!(
        (20..=25).contains(&batches),
        "10,000 notices in batches of 500: {batches} batches"
    );
    // The last batch, with nothing more pending, reads ahead of its newest notice up to now;
    // cut by the density of the rows just read, that empty stretch costs up to two requests.
    assert!(
        pulls - 2 * agent.pulls_of("too_many") <= batches + 2,
        "{pulls} pulls ({} E0004) for {batches} batch windows",
        agent.pulls_of("too_many")
    );
    agent.stop().await;
}

/// The same burst while its notices are still being published (the simulator publishes them
/// one by one, the agent drains them as they come, in batches of a few notices). A window of a
/// caught-up batch reaches "now", so it also reads the rows whose notices are still on their way,
/// and the batches that bring those notices find them covered without a request. Pieces that
/// read ahead are cut by the density of the rows the pull (or the one just before) met, so few
/// of them draw E0004. Measured: 45–62 requests (18–27 E0004: the simulator's burst is ten
/// clusters with empty stretches between them, and a piece after an empty one is asked whole)
/// for 10,000 notices in ~900–1,600 batches; before the density cuts 55–71 (27–35 E0004);
/// stopping windows at the newest notice in hand instead (tried) made it 995 requests.
#[tokio::test]
#[ignore = "slow: publishes 10,000 notices through JetStream while the agent drains (~10 s)"]
async fn burst_drained_while_published_reads_ahead_of_its_notices() {
    let env = Env::start(|c| c.row_threshold = 1_000).await;
    let agent = RunningAgent::start(env.agent_config("", ""));
    commit_10k_updates(&env);
    wait_notices_published(&env).await;
    wait_until(120, "10,000 notices acked", || async {
        env.unfinished().await == 0
    })
    .await;
    let got = env.sink_rows();
    let missing = env
        .expected_rows()
        .iter()
        .filter(|k| !got.contains_key(*k))
        .count();
    assert_eq!(missing, 0, "every change of the burst reaches the sink");
    let batches = agent.metrics.iface(&agent.metrics.batches, "001", IFACE);
    let (pulls, refused) = (agent.pulls(), agent.pulls_of("too_many"));
    println!("burst while published: batches={batches} pulls={pulls} too_many={refused}");
    assert!(
        pulls <= 100,
        "{pulls} requests ({refused} E0004) for 10,000 notices in {batches} batches"
    );
    assert!(
        pulls < batches,
        "reading ahead should leave most batches without a request: {pulls} requests, {batches} batches"
    );
    agent.stop().await;
}
