//! The PULL API's failure classes as the agent meets them (docs/pull-api.md): 503 JSON →
//! retry; bare 503 (provider timeout) → split the window, bounded, then dead letter; E0004 →
//! bisect; 401 → one token refresh; 400 → dead letter + alert; maintenance → wait; a lagging
//! replica → the notice stays unacked until covered.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use shirase_proto::ChangeKind;
use shirase_tests::provider_sim::{ChangeSpec, FaultsUpdate, Outcome};

use crate::agent_support::*;

const FAST_RETRY: &str = "[retry]\nbase = \"100ms\"\nmax = \"500ms\"\n[coverage]\nuncovered_retry_delay = \"200ms\"\nuncovered_alert_after = 3\n";

async fn all_delivered(env: &Env) -> bool {
    env.unfinished().await == 0
        && env
            .expected_rows()
            .iter()
            .all(|k| env.sink_rows().contains_key(k))
}

#[tokio::test]
async fn transient_503_is_retried_until_it_succeeds() {
    let env = Env::start(|_| {}).await;
    env.sim
        .set_faults(FaultsUpdate {
            error_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    env.commit_updates(20);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config(FAST_RETRY, ""));
    wait_until(20, "two 503 answers", || async {
        agent.pulls_of("transient") >= 2
    })
    .await;
    assert_eq!(
        env.sink_rows().len(),
        0,
        "nothing delivered while the provider fails"
    );
    assert!(
        env.unfinished().await > 0,
        "nothing acked while the provider fails"
    );
    env.sim
        .set_faults(FaultsUpdate {
            error_rate: Some(0.0),
            ..Default::default()
        })
        .unwrap();
    wait_until(30, "delivered after recovery", || all_delivered(&env)).await;
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    agent.stop().await;
}

#[tokio::test]
async fn too_many_rows_bisects_the_window() {
    let env = Env::start(|c| c.row_threshold = 30).await;
    env.commit_updates(200);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config(FAST_RETRY, ""));
    wait_until(30, "delivered", || all_delivered(&env)).await;
    let c = env.sim.counters();
    assert!(c.too_many >= 1, "E0004 was answered");
    assert_eq!(agent.pulls_of("too_many"), c.too_many);
    // Every successful answer respected the threshold, and the halves tile the window.
    for r in env
        .sim
        .requests()
        .iter()
        .filter(|r| r.outcome == Outcome::Ok && r.path.starts_with("/api/"))
    {
        assert!(r.rows.unwrap() <= 30, "{r:?}");
    }
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    agent.stop().await;
}

#[tokio::test]
async fn bare_503_timeout_splits_the_window_then_dead_letters_at_max_depth() {
    let env = Env::start(|c| c.provider_timeout = Duration::from_millis(200)).await;
    env.sim
        .set_faults(FaultsUpdate {
            latency_ms: Some(1_000),
            ..Default::default()
        })
        .unwrap();
    env.commit_updates(3);
    wait_notices_published(&env).await;
    let client = async_nats::connect(env.nats.url()).await.unwrap();
    let mut alerts = client.subscribe("shirase.alert.>").await.unwrap();
    let agent = RunningAgent::start(env.agent_config(
        &format!("{FAST_RETRY}[pull]\nbisect_max_depth = 2\noverlap = \"10m\"\n"),
        "",
    ));
    wait_until(30, "notices dead-lettered", || async {
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE)
            == 3
    })
    .await;
    // depth 0, 1, 2: each split halves the window; the third timeout exhausts the depth.
    let timeouts: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.outcome == Outcome::Timeout)
        .collect();
    assert_eq!(timeouts.len(), 3, "{timeouts:?}");
    assert_eq!(agent.pulls_of("timeout_split"), 3);
    // Each retry asks a strictly smaller window inside the previous one.
    let window = |q: &str| {
        let get = |k: &str| {
            let v = q
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap();
            let v = v.replace("%3A", ":").replace("%2B", "+");
            v.parse::<jiff::Timestamp>().unwrap()
        };
        (get("updated_from"), get("updated_to"))
    };
    let w: Vec<_> = timeouts
        .iter()
        .map(|r| window(r.query.as_deref().unwrap()))
        .collect();
    for p in w.windows(2) {
        let ((f0, t0), (f1, t1)) = (p[0], p[1]);
        assert!(f0 <= f1 && t1 <= t0 && (f0, t0) != (f1, t1), "{w:?}");
    }
    let alert = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = alerts.next().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            if v["code"] == "bisect_exhausted" {
                return (m.subject.to_string(), v);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(alert.0, "shirase.alert.warning.agent.tax");
    let js = jetstream::new(client);
    let mut dlq = js
        .get_stream(shirase_proto::subject::DLQ_STREAM)
        .await
        .unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 3);
    let m = dlq.get_raw_message(1).await.unwrap();
    assert_eq!(
        m.subject.as_str(),
        format!("shirase.dlq.tax.131016.001.{IFACE}")
    );
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("bisection depth 2 exhausted"),
        "{v}"
    );
    assert_eq!(v["http_status"], 503);
    assert_eq!(env.unfinished().await, 0, "terminated, not left pending");
    agent.stop().await;
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_pull_succeeds() {
    let env = Env::start(|_| {}).await;
    let agent = RunningAgent::start(env.agent_config(FAST_RETRY, ""));
    env.commit_updates(5);
    wait_notices_published(&env).await;
    wait_until(20, "first round", || all_delivered(&env)).await;
    assert_eq!(
        env.sim.counters().token_issued,
        1,
        "the token is cached between pulls"
    );
    env.sim.expire_tokens();
    env.commit_updates(5);
    wait_notices_published(&env).await;
    wait_until(20, "second round", || all_delivered(&env)).await;
    let c = env.sim.counters();
    assert_eq!(c.unauthorized, 1, "one 401");
    assert_eq!(c.token_issued, 2, "one refresh");
    assert_eq!(
        agent.pulls_of("unauthorized"),
        0,
        "the refresh made the pull succeed"
    );
    agent.stop().await;
}

#[tokio::test]
async fn permanent_400_goes_to_the_dlq_with_the_response() {
    let env = Env::start(|_| {}).await;
    env.commit_updates(2);
    wait_notices_published(&env).await;
    // A parameter name this provider does not know: 400 E0001 naming it.
    let agent = RunningAgent::start(
        env.agent_config(FAST_RETRY, "[providers.api]\nto = \"updated_until\"\n"),
    );
    wait_until(20, "dead-lettered", || async {
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE)
            == 2
    })
    .await;
    assert_eq!(env.unfinished().await, 0);
    let mut dlq = env
        .js
        .get_stream(shirase_proto::subject::DLQ_STREAM)
        .await
        .unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 2);
    let v: serde_json::Value =
        serde_json::from_slice(&dlq.get_raw_message(1).await.unwrap().payload).unwrap();
    assert_eq!(v["http_status"], 400);
    assert_eq!(v["code"], "E0001");
    assert!(
        v["message"].as_str().unwrap().contains("updated_until"),
        "{v}"
    );
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["subscriber"], "tax");
    let ids: Vec<String> = env
        .sim
        .changes()
        .iter()
        .map(|c| c.notice_id.to_string())
        .collect();
    assert!(ids.contains(&v["notice"]["id"].as_str().unwrap().to_owned()));
    assert_eq!(env.sink_rows().len(), 0);
    assert_eq!(env.checkpoint().await, None, "no checkpoint without data");
    agent.stop().await;
}

#[tokio::test]
async fn maintenance_answer_pauses_the_provider_then_delivers() {
    let env = Env::start(|c| c.maintenance_retry_after = Duration::from_secs(1)).await;
    env.sim
        .set_faults(FaultsUpdate {
            maintenance: Some(true),
            ..Default::default()
        })
        .unwrap();
    env.commit_updates(5);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config(FAST_RETRY, ""));
    wait_until(20, "a maintenance answer", || async {
        env.sim.counters().maintenance >= 1
    })
    .await;
    let seen = env.sim.counters().maintenance;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        env.sim.counters().maintenance,
        seen,
        "no request during the announced Retry-After"
    );
    env.sim
        .set_faults(FaultsUpdate {
            maintenance: Some(false),
            ..Default::default()
        })
        .unwrap();
    wait_until(20, "delivered", || all_delivered(&env)).await;
    agent.stop().await;
}

#[tokio::test]
async fn uncovered_notice_is_retried_not_acked_until_the_replica_catches_up() {
    let env = Env::start(|_| {}).await;
    env.sim
        .set_faults(FaultsUpdate {
            replica_lag_ms: Some(2_500),
            ..Default::default()
        })
        .unwrap();
    let agent = RunningAgent::start(env.agent_config(FAST_RETRY, ""));
    let changes = env
        .sim
        .commit_changes(
            ChangeSpec::new(3)
                .interface(iface())
                .kind(ChangeKind::Update),
        )
        .unwrap();
    wait_notices_published(&env).await;
    wait_until(10, "an uncovered notice", || async {
        agent.metrics.iface(&agent.metrics.uncovered, "001", IFACE) >= 1
    })
    .await;
    assert!(
        env.unfinished().await > 0,
        "an uncovered notice is not acked"
    );
    wait_until(20, "covered after the lag", || all_delivered(&env)).await;
    let got = env.sink_rows();
    for c in &changes {
        assert!(got.contains_key(&(c.atena_no.to_string(), u64::from(c.history_no))));
    }
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 3);
    agent.stop().await;
}
