//! Two agent replicas sharing one durable consumer deliver everything, and the checkpoint only
//! ever moves forward (compare-and-set conflicts resolved by keeping the larger value).

use futures::StreamExt;
use shirase_proto::{ChangeKind, OffsetTimestamp};
use shirase_tests::provider_sim::ChangeSpec;

use crate::agent_support::*;

const CFG: &str = "[batch]\nsize = 20\nmax_wait_ms = 100\n";

#[tokio::test]
async fn two_replicas_share_a_consumer_without_corrupting_the_checkpoint() {
    let env = Env::start(|_| {}).await;
    let one = RunningAgent::start(env.agent_config(CFG, ""));
    let two = RunningAgent::start(env.agent_config(CFG, ""));
    for _ in 0..10 {
        env.sim
            .commit_changes(
                ChangeSpec::new(40)
                    .interface(iface())
                    .kind(ChangeKind::Update),
            )
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    wait_notices_published(&env).await;
    wait_until(60, "all acked", || async { env.unfinished().await == 0 }).await;
    let got = env.sink_rows();
    let expected = env.expected_rows();
    assert_eq!(expected.len(), 400);
    assert!(
        expected.iter().all(|k| got.contains_key(k)),
        "every change delivered"
    );
    let (a1, a2) = (
        one.metrics.iface(&one.metrics.acked, "001", IFACE),
        two.metrics.iface(&two.metrics.acked, "001", IFACE),
    );
    assert!(a1 + a2 >= 400, "acked {a1} + {a2}");
    // The checkpoint's history never goes backwards and ends at the newest change.
    let kv = env
        .js
        .get_key_value(shirase_proto::subject::CHECKPOINT_BUCKET)
        .await
        .unwrap();
    let mut hist = kv.history(format!("tax.131016.{IFACE}")).await.unwrap();
    let mut values = Vec::new();
    while let Some(e) = hist.next().await {
        let e = e.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&e.value).unwrap();
        values.push(
            v["updated_at"]
                .as_str()
                .unwrap()
                .parse::<OffsetTimestamp>()
                .unwrap()
                .instant(),
        );
    }
    assert!(!values.is_empty());
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "checkpoint history must strictly increase: {values:?}"
    );
    let newest = env
        .sim
        .changes()
        .iter()
        .map(|c| c.updated_at.parse::<OffsetTimestamp>().unwrap().instant())
        .max()
        .unwrap();
    assert_eq!(*values.last().unwrap(), newest);
    println!(
        "replicas: acked {a1} + {a2}, checkpoint writes {}",
        values.len()
    );
    one.stop().await;
    two.stop().await;
}
