//! `provision` against a real nats-server: creates everything, is idempotent, dry-run changes
//! nothing, updates in place, refuses fields JetStream cannot change.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use shirase_relay::provision::{Change, ProvisionErrorKind, Resource, plan, provision};
use shirase_relay::topology::desired;
use shirase_tests::harness::NatsServer;

use crate::relay_support::dev_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_creates_the_topology_then_finds_nothing_to_do() {
    let server = NatsServer::start().unwrap();
    let config = dev_config(&server.url());
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let want = desired(&config);

    let dry = provision(&js, &want, true).await.unwrap();
    assert!(
        dry.items.iter().all(|i| i.change == Change::Create),
        "{dry}"
    );
    // Streams: notices, DLQ, alerts, audit; 3 consumers; buckets: checkpoints, leases.
    assert_eq!(dry.items.len(), 4 + 3 + 2, "{dry}");
    assert!(
        js.get_stream("SHIRASE_NOTICES").await.is_err(),
        "dry run must change nothing"
    );

    let first = provision(&js, &want, false).await.unwrap();
    assert!(!first.is_noop());
    let second = provision(&js, &want, false).await.unwrap();
    assert!(second.is_noop(), "{second}");
    assert!(second.to_string().contains("no changes"), "{second}");

    let mut s = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.config.max_age, Duration::from_secs(14 * 86_400));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(7_200));
    assert_eq!(info.config.storage, stream::StorageType::File);
    let c = s.consumer_info("delinquency_001").await.unwrap();
    let mut f = c.config.filter_subjects.clone();
    f.sort();
    assert_eq!(
        f,
        vec![
            "shirase.notice.131016.001.001o05-00",
            "shirase.replay.delinquency.131016.001.001o05-00"
        ]
    );
    let c = s.consumer_info("delinquency_010").await.unwrap();
    assert!(
        c.config
            .filter_subjects
            .contains(&"shirase.notice.131016.010.010o01-00".to_owned())
    );
    assert!(
        s.consumer_info("tax_010").await.is_err(),
        "tax reads nothing of provider 010"
    );
    assert!(js.get_key_value("shirase_checkpoints").await.is_ok());
    assert!(js.get_stream("SHIRASE_DLQ").await.is_ok());
    assert!(js.get_stream("SHIRASE_ALERTS").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_topology_shows_a_diff_and_updates_in_place() {
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    provision(&js, &desired(&config), false).await.unwrap();

    config.stream.max_age = Duration::from_secs(7 * 86_400);
    let tax = config
        .subscribers
        .iter_mut()
        .find(|s| s.id.as_str() == "tax")
        .unwrap();
    tax.interfaces.push("001o06-00".parse().unwrap());
    tax.max_ack_pending = 50;
    let want = desired(&config);
    let dry = provision(&js, &want, true).await.unwrap();
    let text = dry.to_string();
    assert!(text.contains("~ stream SHIRASE_NOTICES (update)"), "{text}");
    assert!(text.contains("max_age: 14d -> 7d"), "{text}");
    assert!(
        text.contains("~ consumer SHIRASE_NOTICES/tax_001 (update)"),
        "{text}"
    );
    assert!(text.contains("max_ack_pending: 1000 -> 50"), "{text}");
    assert!(text.contains("filter_subjects"), "{text}");
    // Still the old values after the dry run.
    let after_dry = plan(&js, &want).await.unwrap();
    assert_eq!(after_dry, dry);

    provision(&js, &want, false).await.unwrap();
    assert!(plan(&js, &want).await.unwrap().is_noop());
    let s = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    assert_eq!(
        s.cached_info().config.max_age,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(
        s.consumer_info("tax_001")
            .await
            .unwrap()
            .config
            .max_ack_pending,
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_jetstream_cannot_change_is_reported_and_nothing_changes() {
    let server = NatsServer::start().unwrap();
    let config = dev_config(&server.url());
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    // Someone created the notice stream in memory by hand.
    let mut by_hand = shirase_relay::topology::notice_stream(&config);
    by_hand.storage = stream::StorageType::Memory;
    by_hand.max_age = Duration::from_secs(3600);
    by_hand.duplicate_window = Duration::from_secs(60);
    js.create_stream(by_hand).await.unwrap();

    let err = provision(&js, &desired(&config), false).await.unwrap_err();
    assert_eq!(err.kind(), ProvisionErrorKind::Unchangeable);
    let msg = err.to_string();
    assert!(
        msg.contains("stream SHIRASE_NOTICES: storage is Memory"),
        "{msg}"
    );
    assert!(
        !msg.contains("max_age"),
        "only unchangeable fields are errors: {msg}"
    );
    let s = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    assert_eq!(
        s.cached_info().config.max_age,
        Duration::from_secs(3600),
        "nothing may change"
    );
    assert!(
        js.get_stream("SHIRASE_DLQ").await.is_err(),
        "nothing may be created either"
    );
    let p = plan(&js, &desired(&config)).await.unwrap();
    let refused = p.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, &Resource::Stream("SHIRASE_NOTICES".into()));
    assert_eq!(refused[0].1.field, "storage");
}
