//! The stalled-consumer watchdog (`[watchdog] stalled_after_secs`, subscriber-kit's
//! `watchdog` module): how JetStream counts nak'ed notices (observed on a real server), a
//! provider outage that keeps every notice unfinished fires the metric and the alert and
//! clears when deliveries resume, and a notice deliberately parked with a nak delay (not
//! covered yet) is no stall while its redelivery is in the future.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use shirase_subscriber_kit::alert::Alert;
use shirase_subscriber_kit::metrics::{CodeLabels, ProviderLabels};
use shirase_tests::harness::NatsServer;
use shirase_tests::provider_sim::FaultsUpdate;

use crate::agent_support::*;

fn stalled(agent: &RunningAgent) -> i64 {
    agent
        .metrics
        .consumer_stalled
        .get_or_create(&ProviderLabels {
            provider: "001".into(),
        })
        .get()
}

fn stall_alerts(agent: &RunningAgent) -> u64 {
    agent
        .metrics
        .alerts
        .get_or_create(&CodeLabels {
            code: "consumer_stalled".into(),
        })
        .get()
}

/// Where JetStream counts a notice nak'ed with a delay: in `num_ack_pending` (not in
/// `num_pending`) until the delay is over, and then still there until it is delivered again.
/// The watchdog's notion of "pending" rests on this.
#[tokio::test]
async fn a_notice_nakd_with_a_delay_counts_as_ack_pending_not_pending() {
    let nats = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "W".into(),
            subjects: vec!["w.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut c: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("d".into()),
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..3 {
        js.publish(format!("w.{i}"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let counts = |i: &consumer::Info| (i.num_pending, i.num_ack_pending as u64);
    assert_eq!(counts(c.info().await.unwrap()), (3, 0));
    let mut b = c.fetch().max_messages(1).messages().await.unwrap();
    let m = b.next().await.unwrap().unwrap();
    assert_eq!(
        counts(c.info().await.unwrap()),
        (2, 1),
        "delivered, not acked"
    );
    m.ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
        .await
        .unwrap();
    // The nak is a plain publish: a request after it is answered after it was processed.
    c.info().await.unwrap();
    assert_eq!(
        counts(c.info().await.unwrap()),
        (2, 1),
        "nak'ed with a delay: still ack pending"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        counts(c.info().await.unwrap()),
        (2, 1),
        "delay over, not fetched yet: still ack pending"
    );
    let mut b = c.fetch().max_messages(1).messages().await.unwrap();
    let again = b.next().await.unwrap().unwrap();
    assert_eq!(
        again.info().unwrap().delivered,
        2,
        "the nak'ed notice comes first when due"
    );
    // A double ack returns once the server applied it (a plain ack is processed by the consumer
    // asynchronously, so an info request right after it could still see it pending: a CI run did).
    again.double_ack().await.unwrap();
    assert_eq!(counts(c.info().await.unwrap()), (2, 0));
}

#[tokio::test]
async fn an_outage_fires_the_watchdog_and_recovery_clears_it() {
    let env = Env::start(|_| {}).await;
    env.sim
        .set_faults(FaultsUpdate {
            outage: Some(true),
            ..Default::default()
        })
        .unwrap();
    env.commit_updates(20);
    wait_notices_published(&env).await;
    let client = async_nats::connect(env.nats.url()).await.unwrap();
    let mut alerts = client.subscribe("shirase.alert.>").await.unwrap();
    let cfg = "[batch]\nsize = 50\nmax_wait = \"200ms\"\n[retry]\nbase = \"100ms\"\nmax = \"300ms\"\n[watchdog]\nstalled_after = \"2s\"\n";
    let started = tokio::time::Instant::now();
    let agent = RunningAgent::start(env.agent_config(cfg, ""));

    // Every pull fails and every notice is nak'ed and fetched again and again: deliveries
    // from JetStream go on, but nothing is finished.
    wait_until(20, "the watchdog metric", || async { stalled(&agent) == 1 }).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "fired before stalled_after_secs: {:?}",
        started.elapsed()
    );
    assert!(
        agent.pulls_of("transient") >= 3,
        "the notices kept coming back and failing"
    );
    let alert = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = alerts.next().await.unwrap();
            let a: Alert = serde_json::from_slice(&m.payload).unwrap();
            if a.code == "consumer_stalled" {
                return (m.subject.to_string(), a);
            }
        }
    })
    .await
    .expect("a consumer_stalled alert");
    assert_eq!(alert.0, "shirase.alert.warning.agent.tax");
    let a = alert.1;
    assert_eq!(a.subscriber, "tax");
    assert_eq!(a.provider.as_deref(), Some("001"));
    assert!(
        a.message.starts_with("20 notices unfinished on tax_001 ("),
        "{}",
        a.message
    );
    assert!(
        a.message.contains("but none finished for "),
        "{}",
        a.message
    );
    // The counter moves once JetStream stored the alert, just after subscribers got it.
    wait_until(10, "the alert counted", || async {
        stall_alerts(&agent) >= 1
    })
    .await;
    assert_eq!(env.sink_rows().len(), 0);

    env.sim
        .set_faults(FaultsUpdate {
            outage: Some(false),
            ..Default::default()
        })
        .unwrap();
    wait_until(20, "delivered after the outage", || async {
        env.unfinished().await == 0
    })
    .await;
    wait_until(10, "the watchdog cleared", || async {
        stalled(&agent) == 0
    })
    .await;
    assert!(
        env.expected_rows()
            .iter()
            .all(|k| env.sink_rows().contains_key(k))
    );
    assert_eq!(
        stall_alerts(&agent),
        1,
        "raised once for the whole outage (de-duplicated)"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_notice_parked_until_it_is_covered_is_no_stall() {
    let env = Env::start(|_| {}).await;
    // The API reads a replica 2.5 s behind: the first pull does not cover the notices, they are
    // nak'ed for 4 s (counted as ack pending), longer than the 1 s stall threshold.
    env.sim
        .set_faults(FaultsUpdate {
            replica_lag_ms: Some(2_500),
            ..Default::default()
        })
        .unwrap();
    let cfg = "[batch]\nmax_wait = \"200ms\"\n[coverage]\nuncovered_retry_delay = \"4s\"\n[watchdog]\nstalled_after = \"1s\"\n";
    let agent = RunningAgent::start(env.agent_config(cfg, ""));
    env.commit_updates(3);
    wait_notices_published(&env).await;
    let parked_at = tokio::time::Instant::now();
    let mut unfinished_for = Duration::ZERO;
    let deadline = parked_at + Duration::from_secs(20);
    loop {
        assert_eq!(
            stalled(&agent),
            0,
            "stall reported while the notices wait for their redelivery"
        );
        if env.unfinished().await == 0 {
            break;
        }
        unfinished_for = parked_at.elapsed();
        assert!(tokio::time::Instant::now() < deadline, "never covered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        agent.metrics.iface(&agent.metrics.uncovered, "001", IFACE) >= 3,
        "the notices were parked uncovered"
    );
    assert!(
        unfinished_for >= Duration::from_secs(3),
        "unfinished for only {unfinished_for:?}: the watchdog had no chance to misfire"
    );
    assert_eq!(stall_alerts(&agent), 0);
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 3);
    agent.stop().await;
}
