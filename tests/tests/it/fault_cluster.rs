//! Faults on the production shape (3-node JetStream cluster, R3 streams, relay and agent
//! binaries, provider-sim POSTing through the relay) while changes are committed continuously.
//! After each fault: every notice the relay answered 202 for is in the stream and consumed,
//! every committed change reaches the sink, and relay and agent recover by themselves. Each test
//! prints its figures (`--nocapture`): notices sent/acked, duplicates, max delivery gap,
//! recovery time; duplicates are bounded by the batches the fault interrupted (see
//! `ClusterEnv::finish`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use crate::fault_support::{ClusterEnv, LogLevels};

/// Let changes flow for a while before the fault.
const WARMUP: Duration = Duration::from_secs(2);
/// How long a killed or paused node stays down.
const OUTAGE: Duration = Duration::from_secs(4);

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    // The harness waits for health with a blocking sleep; keep the runtime's other tasks
    // (publisher, sampler, provider-sim) running meanwhile.
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: 3-node cluster, kill -9 of the stream leader with a 4 s outage"]
async fn kill9_stream_leader_then_restart_loses_nothing() {
    let mut env = ClusterEnv::start(LogLevels::default()).await;
    tokio::time::sleep(WARMUP).await;
    let leader = env.leader().await;
    let fault_at = Instant::now();
    env.cluster.nodes[leader].kill();
    tokio::time::sleep(OUTAGE).await;
    blocking(|| env.cluster.nodes[leader].start_again()).unwrap();
    let restored_at = Instant::now();
    let new_leader = env.leader().await;
    println!(
        "stream leader was {}, now {}",
        env.cluster.nodes[leader].name(),
        env.cluster.nodes[new_leader].name()
    );
    let f = env
        .finish("kill -9 stream leader", fault_at, restored_at, 0)
        .await;
    assert_eq!(f.acked, f.sent, "the relay took every notice in the end");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: 3-node cluster, relay and agent processes killed -9 mid-batch; waits for ack_wait (5 s)"]
async fn kill9_relay_and_agent_mid_batch_then_restart_loses_nothing() {
    let mut env = ClusterEnv::start(LogLevels::default()).await;
    tokio::time::sleep(WARMUP).await;
    let fault_at = Instant::now();
    // Both at once while the simulator is POSTing and the agent has notices in hand.
    env.relay.kill9();
    env.agent.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.relay.start();
    env.agent.start();
    let restored_at = Instant::now();
    let f = env
        .finish("kill -9 relay + agent", fault_at, restored_at, 1)
        .await;
    assert_eq!(f.acked, f.sent);
    assert!(
        f.retries > 0,
        "the simulator had to re-send while the relay was down"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: 3-node cluster, all nodes stopped gracefully at once and restarted"]
async fn all_nodes_stopped_at_once_then_restarted_loses_nothing() {
    let mut env = ClusterEnv::start(LogLevels::default()).await;
    tokio::time::sleep(WARMUP).await;
    let fault_at = Instant::now();
    blocking(|| env.cluster.restart_all()).unwrap();
    let restored_at = Instant::now();
    let f = env
        .finish("stop all 3 nodes, restart", fault_at, restored_at, 0)
        .await;
    assert_eq!(f.acked, f.sent);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: 3-node cluster, the stream leader paused (SIGSTOP) for 4 s as a network partition"]
async fn paused_leader_node_then_resumed_loses_nothing() {
    let mut env = ClusterEnv::start(LogLevels::default()).await;
    tokio::time::sleep(WARMUP).await;
    let leader = env.leader().await;
    let fault_at = Instant::now();
    env.cluster.nodes[leader].pause();
    tokio::time::sleep(OUTAGE).await;
    env.cluster.nodes[leader].resume();
    let restored_at = Instant::now();
    let f = env
        .finish("SIGSTOP stream leader 4 s", fault_at, restored_at, 0)
        .await;
    assert_eq!(f.acked, f.sent);
    env.shutdown().await;
}
