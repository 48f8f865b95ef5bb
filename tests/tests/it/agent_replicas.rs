//! Two agent replicas sharing one durable consumer deliver everything, and the checkpoint only
//! ever moves forward (compare-and-set conflicts resolved by keeping the larger value).

use futures::StreamExt;
use shirase_proto::OffsetTimestamp;

use crate::agent_support::*;

const CFG: &str = "[batch]\nsize = 20\nmax_wait = \"100ms\"\n";

#[tokio::test]
async fn two_replicas_share_a_consumer_without_corrupting_the_checkpoint() {
    let env = Env::start(|_| {}).await;
    let one = RunningAgent::start(env.agent_config(CFG, ""));
    let two = RunningAgent::start(env.agent_config(CFG, ""));
    for _ in 0..10 {
        env.commit_updates(40);
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
    // Each replica sees part of the notices: the sequences the other one took are no gap
    // (a gap would sweep the overlap at once, on every batch).
    let gaps = |a: &RunningAgent| a.metrics.iface(&a.metrics.sequence_gaps, "001", IFACE);
    let sweeps = |a: &RunningAgent| a.metrics.iface(&a.metrics.sweeps, "001", IFACE);
    assert_eq!(
        (gaps(&one), gaps(&two), sweeps(&one), sweeps(&two)),
        (0, 0, 0, 0),
        "no sequence gap and no sweep with two replicas on one consumer (acked {a1} + {a2})"
    );
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

/// The agent stores a checkpoint naming the revision it read at the start of the batch (one
/// round trip instead of two). A stale read must never overwrite what changed since: a larger
/// value another replica stored stays, and after an operator's reset (key deleted) the new
/// value is written on top of the reset, not refused forever; an operator's resync written
/// meanwhile is kept, whether the batch read a checkpoint (the rewind is below it) or found
/// none (the resync's record describes no pull).
#[tokio::test]
async fn advancing_from_a_stale_read_keeps_a_larger_value_follows_a_reset_and_keeps_a_resync() {
    use async_nats::jetstream;
    use shirase_subscriber_kit::checkpoint::Checkpoints;

    let nats = shirase_tests::harness::NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: shirase_proto::subject::CHECKPOINT_BUCKET.into(),
            history: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let cps = Checkpoints::new(
        kv.clone(),
        "tax".parse().unwrap(),
        "131016".parse().unwrap(),
    );
    let i = iface();
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();

    // Nothing stored yet: the hint says "absent", so the first store is a create.
    let r0 = cps.read(&i).await.unwrap();
    assert_eq!((r0.current.clone(), r0.revision), (None, None));
    let stored = cps
        .advance_from(&i, t("2026-11-26T01:00:00Z"), Some(r0))
        .await
        .unwrap();
    assert_eq!(stored, t("2026-11-26T01:00:00Z"));

    // Another replica moves it further after our read: our store is refused, re-read, and the
    // larger value is kept.
    let stale = cps.read(&i).await.unwrap();
    assert_eq!(
        stale.current.as_ref().map(|c| c.updated_at),
        Some(t("2026-11-26T01:00:00Z"))
    );
    cps.advance(&i, t("2026-11-26T03:00:00Z")).await.unwrap();
    let kept = cps
        .advance_from(&i, t("2026-11-26T02:00:00Z"), Some(stale))
        .await
        .unwrap();
    assert_eq!(kept, t("2026-11-26T03:00:00Z"));
    assert_eq!(
        cps.get(&i).await.unwrap().map(|c| c.updated_at),
        Some(t("2026-11-26T03:00:00Z"))
    );

    // An operator resets the checkpoint (deletes the key) after our read: the stale revision
    // is refused, the reset is seen, and the value we pulled up to is stored on top of it.
    let stale = cps.read(&i).await.unwrap();
    kv.delete(cps.key(&i)).await.unwrap();
    let after_reset = cps
        .advance_from(&i, t("2026-11-26T02:30:00Z"), Some(stale))
        .await
        .unwrap();
    assert_eq!(after_reset, t("2026-11-26T02:30:00Z"));
    assert_eq!(
        cps.get(&i).await.unwrap().map(|c| c.updated_at),
        Some(t("2026-11-26T02:30:00Z"))
    );

    // An operator's resync rewinds it (a smaller value) while a batch that read it before is
    // still working: the batch's store keeps the rewind instead of writing over it, so the
    // re-read the operator asked for happens.
    let stale = cps.read(&i).await.unwrap();
    let rewound = shirase_subscriber_kit::checkpoint::Stored::jst(
        t("2026-11-26T00:10:00Z"),
        jiff::Timestamp::now(),
    );
    kv.put(cps.key(&i), serde_json::to_vec(&rewound).unwrap().into())
        .await
        .unwrap();
    let kept = cps
        .advance_from(&i, t("2026-11-26T04:00:00Z"), Some(stale))
        .await
        .unwrap();
    assert_eq!(kept, t("2026-11-26T00:10:00Z"));
    assert_eq!(
        cps.get(&i).await.unwrap().map(|c| c.updated_at),
        Some(t("2026-11-26T00:10:00Z"))
    );

    // A batch that started with no checkpoint stored keeps one that no pull describes, written
    // meanwhile: only an operator's resync writes such a record...
    kv.delete(cps.key(&i)).await.unwrap();
    let empty = cps.read(&i).await.unwrap();
    assert!(empty.current.is_none());
    kv.put(cps.key(&i), serde_json::to_vec(&rewound).unwrap().into())
        .await
        .unwrap();
    let kept = cps
        .advance_from(&i, t("2026-11-26T04:00:00Z"), Some(empty))
        .await
        .unwrap();
    assert_eq!(kept, t("2026-11-26T00:10:00Z"));
    // ...while another replica's checkpoint, which describes its pull, is passed as usual.
    kv.delete(cps.key(&i)).await.unwrap();
    let empty = cps.read(&i).await.unwrap();
    let pull = shirase_subscriber_kit::coalesce::LastRead {
        at: t("2026-11-26T00:30:00Z"),
        from: t("2026-11-26T00:00:00Z"),
    };
    cps.advance_read(&i, t("2026-11-26T00:20:00Z"), Some(pull), None)
        .await
        .unwrap();
    let passed = cps
        .advance_from(&i, t("2026-11-26T04:00:00Z"), Some(empty))
        .await
        .unwrap();
    assert_eq!(passed, t("2026-11-26T04:00:00Z"));

    // A batch read the key; a resync (its count one higher) rewound it; another replica then
    // moved the rewound value past what the batch read. The batch keeps the key: the rows the
    // consumer lost between the rewind point and the other replica's value are being re-read.
    let stale = cps.read(&i).await.unwrap();
    assert_eq!(stale.current.as_ref().map(|c| c.resyncs), Some(0));
    let resync = shirase_subscriber_kit::checkpoint::Stored::jst(
        t("2026-11-26T00:10:00Z"),
        jiff::Timestamp::now(),
    )
    .with_resyncs(1);
    kv.put(cps.key(&i), serde_json::to_vec(&resync).unwrap().into())
        .await
        .unwrap();
    cps.advance_read(&i, t("2026-11-26T05:00:00Z"), Some(pull), None)
        .await
        .unwrap();
    let after = cps.get(&i).await.unwrap().unwrap();
    assert_eq!(
        (after.updated_at, after.resyncs),
        (t("2026-11-26T05:00:00Z"), 1),
        "agents copy the count"
    );
    let kept = cps
        .advance_from(&i, t("2026-11-26T06:00:00Z"), Some(stale))
        .await
        .unwrap();
    assert_eq!(kept, t("2026-11-26T05:00:00Z"));
}

/// The same compare-and-set race on a 3-node cluster with an R3 bucket, as in production: a
/// clustered server refuses a stale revision with its own error code (10164, "wrong last
/// sequence"), not the single server's (10071). It is still a conflict to re-read, never a
/// failed store: otherwise every race between two replicas fails a batch, which is then
/// delivered and pulled again (found in the fault soak's agent logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 3-node cluster"]
async fn on_a_cluster_a_stale_compare_and_set_rereads_and_keeps_the_larger_value() {
    use async_nats::jetstream;
    use shirase_subscriber_kit::checkpoint::Checkpoints;

    let cluster =
        tokio::task::spawn_blocking(|| shirase_tests::harness::NatsCluster::start(3).unwrap())
            .await
            .unwrap();
    let addrs: Vec<async_nats::ServerAddr> =
        cluster.urls().iter().map(|u| u.parse().unwrap()).collect();
    let js = jetstream::new(async_nats::connect(addrs).await.unwrap());
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: shirase_proto::subject::CHECKPOINT_BUCKET.into(),
            history: 5,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let cps = Checkpoints::new(kv, "tax".parse().unwrap(), "131016".parse().unwrap());
    let i = iface();
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    cps.advance(&i, t("2026-11-26T01:00:00Z")).await.unwrap();
    let stale = cps.read(&i).await.unwrap();
    cps.advance(&i, t("2026-11-26T03:00:00Z")).await.unwrap();
    let kept = cps
        .advance_from(&i, t("2026-11-26T02:00:00Z"), Some(stale))
        .await
        .unwrap();
    assert_eq!(kept, t("2026-11-26T03:00:00Z"));
    // Replicas racing: many stores from the same read at once. The server refuses all but
    // one while the first is still being proposed; each refused one re-reads and stores its
    // value or keeps a larger one. None fails.
    let base = cps.read(&i).await.unwrap();
    let mut tasks = Vec::new();
    for k in 0..24i64 {
        let (cps, base) = (cps.clone(), base.clone());
        let to = t("2026-11-26T04:00:00Z") + jiff::SignedDuration::from_secs(k);
        tasks.push(tokio::spawn(async move {
            cps.advance_from(&i, to, Some(base)).await
        }));
    }
    for task in tasks {
        let got = task.await.unwrap();
        assert!(got.is_ok(), "a racing store failed: {got:?}");
    }
    assert_eq!(
        cps.get(&i).await.unwrap().map(|c| c.updated_at),
        Some(t("2026-11-26T04:00:23Z"))
    );
}
