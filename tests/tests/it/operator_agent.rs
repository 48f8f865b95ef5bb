//! Operator actions end to end with a real agent and provider-sim: a resync makes the agent
//! re-pull from the given time, and a dead-lettered notice is redriven and delivered once its
//! cause is fixed. Both actions land in the audit stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use serde_json::{Value, json};

use crate::agent_support::*;
use crate::operator_support::*;
use crate::relay_support::{TestRelay, dev_config};

async fn all_delivered(env: &Env) -> bool {
    env.unfinished().await == 0
        && env
            .expected_rows()
            .iter()
            .all(|k| env.sink_rows().contains_key(k))
}

fn updated_from(query: &str) -> Option<jiff::Timestamp> {
    let v = query
        .split('&')
        .find_map(|p| p.strip_prefix("updated_from="))?;
    v.replace("%3A", ":").replace("%2B", "+").parse().ok()
}

#[tokio::test]
async fn resync_makes_the_agent_re_pull_from_the_given_time() {
    let env = Env::start(|_| {}).await;
    let relay = TestRelay::start(dev_config(&env.nats.url())).await;
    let ops = Ops::operator(&relay.base);
    let agent = RunningAgent::start(env.agent_config("", ""));
    env.commit_updates(5);
    wait_notices_published(&env).await;
    wait_until(30, "first round delivered", || all_delivered(&env)).await;
    let cp = env.checkpoint().await.expect("a checkpoint after delivery");

    let to = cp - jiff::SignedDuration::from_hours(6);
    // Before the resync: the agent re-reads at once after it (an immediate sweep).
    let seen = env.sim.requests().len();
    let r = ops.resync("tax", IFACE, to).await;
    assert_eq!(
        r["from"]
            .as_str()
            .unwrap()
            .parse::<shirase_proto::OffsetTimestamp>()
            .unwrap()
            .instant(),
        cp
    );
    assert_eq!(
        r["to"]
            .as_str()
            .unwrap()
            .parse::<shirase_proto::OffsetTimestamp>()
            .unwrap()
            .instant(),
        to
    );

    env.commit_updates(1);
    wait_notices_published(&env).await;
    wait_until(30, "second round delivered", || all_delivered(&env)).await;
    let froms: Vec<jiff::Timestamp> = env.sim.requests()[seen..]
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .filter_map(|r| r.query.as_deref().and_then(updated_from))
        .collect();
    assert!(!froms.is_empty(), "the agent pulled after the resync");
    assert!(
        froms.iter().any(|f| *f <= to),
        "a pull re-read from the resync time {to}: {froms:?}"
    );
    wait_until(10, "checkpoint advanced again", || async {
        env.checkpoint().await.is_some_and(|c| c > to)
    })
    .await;

    let audit = audit_records(&env.js).await;
    assert!(
        audit.iter().any(|a| a["action"] == "resync"
            && a["result"] == "ok"
            && a["parameters"]["to"] == to.to_string()),
        "{audit:?}"
    );
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_dead_letter_is_redriven_and_delivered_after_its_cause_is_fixed() {
    let env = Env::start(|_| {}).await;
    let relay = TestRelay::start(dev_config(&env.nats.url())).await;
    let ops = Ops::operator(&relay.base);
    env.commit_updates(2);
    wait_notices_published(&env).await;
    // The cause: a parameter name this provider does not know → 400 E0001 → dead letter.
    let bad =
        RunningAgent::start(env.agent_config("", "[providers.api]\nto = \"updated_until\"\n"));
    wait_until(20, "dead-lettered", || async {
        bad.metrics.iface(&bad.metrics.dead_lettered, "001", IFACE) == 2
    })
    .await;
    bad.stop().await;

    let (s, list) = Ops::viewer(&relay.base)
        .get("/v1/ops/dlq?subscriber=tax")
        .await;
    assert_eq!(s, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    for e in &list {
        assert_eq!(
            (
                e["http_status"].as_u64(),
                e["code"].as_str(),
                e["attempts"].as_u64()
            ),
            (Some(400), Some("E0001"), Some(1)),
            "{e}"
        );
        assert_eq!(e["interface"], IFACE);
        assert!(e["first_failure"].is_string() && e["last_failure"].is_string());
    }
    let (s, one) = Ops::viewer(&relay.base)
        .get(&format!("/v1/ops/dlq/{}", list[0]["seq"]))
        .await;
    assert_eq!(s, 200);
    assert!(
        one["body"]["message"]
            .as_str()
            .unwrap()
            .contains("updated_until"),
        "{one}"
    );
    let (s, _) = Ops::viewer(&relay.base)
        .post("/v1/ops/dlq/redrive", json!({ "subscriber": "tax" }))
        .await;
    assert_eq!(s, 403, "a viewer cannot redrive");

    // The cause is fixed (the agent's configuration); nothing arrives until the redrive.
    let good = RunningAgent::start(env.agent_config("", ""));
    assert!(env.sink_rows().is_empty());
    let (s, r) = ops
        .post("/v1/ops/dlq/redrive", json!({ "subscriber": "tax" }))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["matched"].as_u64(),
            r["redriven"].as_u64(),
            r["deleted"].as_u64()
        ),
        (Some(2), Some(2), Some(2)),
        "{r}"
    );
    wait_until(30, "redriven notices delivered", || all_delivered(&env)).await;
    let rows = env.sink_rows();
    assert!(
        env.expected_rows().iter().all(|k| rows.contains_key(k)),
        "every changed row reached the sink: {rows:?}"
    );
    let (_, list) = ops.get("/v1/ops/dlq").await;
    assert_eq!(list, json!([]), "the DLQ is empty after the redrive");
    assert_eq!(
        good.metrics
            .iface(&good.metrics.dead_lettered, "001", IFACE),
        0
    );

    let audit = audit_records(&env.js).await;
    let actions: Vec<(String, String)> = audit
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("dlq-redrive".to_owned(), "denied".to_owned()),
            ("dlq-redrive".to_owned(), "ok".to_owned())
        ]
    );
    assert_eq!(audit[1]["detail"]["seqs"].as_array().map(Vec::len), Some(2));
    assert_eq!(audit[1]["actor"], Value::String("dev-operator".into()));
    good.stop().await;
    relay.stop().await;
}
