//! Quotas: provisioning gives every stream and bucket its `max_bytes` from `[stream]`, a full
//! dead-letter stream refuses (never drops older dead letters), and under the generated NATS
//! authorization a subscriber may publish only its own alert and dead-letter subjects, so it can
//! neither forge another subscriber's alert nor fill another's dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use async_nats::jetstream::{self, stream::DiscardPolicy};
use shirase_proto::record::Alert;
use shirase_tests::harness::NatsServer;

use crate::relay_support::dev_config;
use crate::security_nats_inbox::{cluster, connect, js_short};

/// An alert body naming `subscriber`, as an agent writes it.
fn alert_body(subscriber: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "severity": "critical", "component": "agent", "code": "provider_unreachable",
        "message": "m", "subscriber": subscriber, "provider": "001", "interface_id": null,
        "time": "2026-11-25T10:30:00+09:00"
    }))
    .unwrap()
}

/// Publish and wait for the PubAck: `true` when JetStream stored it.
async fn stored(js: &jetstream::Context, subject: &str, body: Vec<u8>) -> bool {
    match js.publish(subject.to_owned(), body.into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_publishes_only_its_own_alerts_and_dead_letters() {
    let c = cluster();
    let url = c.server.url();
    let admin = js_short(c.provisioned_admin().await);
    let (tax_client, _) = connect(&url, &c.tax, Some("_INBOX_subscriber_tax".to_owned())).await;
    let tax = js_short(tax_client);

    // Its own alert is stored, even with another subscriber's name in the body...
    assert!(
        stored(
            &tax,
            "shirase.alert.critical.agent.tax",
            alert_body("delinquency")
        )
        .await
    );
    // ...but an alert on another subscriber's subject, or as the relay, is refused.
    for forged in [
        "shirase.alert.critical.agent.delinquency",
        "shirase.alert.critical.relay",
        "shirase.alert.critical.agent",
    ] {
        assert!(
            !stored(&tax, forged, alert_body("delinquency")).await,
            "{forged} was accepted"
        );
    }
    // Dead letters: its own subject only.
    let dl = b"{}".to_vec();
    assert!(stored(&tax, "shirase.dlq.tax.131016.001.001o05-00", dl.clone()).await);
    assert!(!stored(&tax, "shirase.dlq.delinquency.131016.001.001o05-00", dl).await);

    // What the server holds: tax's alert and tax's dead letter, nothing else; the notifier
    // reads the alert as tax's whatever its body says.
    let mut alerts = admin.get_stream("SHIRASE_ALERTS").await.unwrap();
    assert_eq!(alerts.info().await.unwrap().state.messages, 1);
    let m = alerts.get_raw_message(1).await.unwrap();
    assert_eq!(m.subject.as_str(), "shirase.alert.critical.agent.tax");
    let a = Alert::from_stored(&m.subject, &m.payload).unwrap();
    assert_eq!(a.subscriber, "tax");
    let mut dlq = admin.get_stream("SHIRASE_DLQ").await.unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 1);
    assert_eq!(
        dlq.get_raw_message(1).await.unwrap().subject.as_str(),
        "shirase.dlq.tax.131016.001.001o05-00"
    );
}

#[tokio::test]
async fn provisioning_bounds_every_stream_and_bucket_and_a_full_dead_letter_stream_refuses() {
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    // The defaults of relay.default.toml.
    assert_eq!(
        config.stream.quotas,
        shirase_relay::config::Quotas {
            notices: 2 << 30,
            dlq: 512 << 20,
            alerts: 128 << 20,
            audit: 512 << 20,
            checkpoints: 64 << 20,
            leases: 1 << 20,
        }
    );
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let desired = shirase_relay::topology::desired(&config);
    shirase_relay::provision::provision(&js, &desired, false)
        .await
        .unwrap();
    let max_bytes = async |name: &str| {
        let mut s = js.get_stream(name).await.unwrap();
        let i = s.info().await.unwrap();
        (i.config.max_bytes, i.config.discard)
    };
    assert_eq!(
        max_bytes("SHIRASE_NOTICES").await,
        (2 << 30, DiscardPolicy::Old)
    );
    assert_eq!(
        max_bytes("SHIRASE_DLQ").await,
        (512 << 20, DiscardPolicy::New)
    );
    assert_eq!(
        max_bytes("SHIRASE_ALERTS").await,
        (128 << 20, DiscardPolicy::Old)
    );
    assert_eq!(
        max_bytes("SHIRASE_AUDIT").await,
        (512 << 20, DiscardPolicy::Old)
    );
    assert_eq!(max_bytes("KV_shirase_checkpoints").await.0, 64 << 20);
    assert_eq!(max_bytes("KV_shirase_leases").await.0, 1 << 20);

    // A smaller dead-letter quota is applied in place by the next provisioning.
    config.stream.quotas.dlq = 1 << 20;
    let desired = shirase_relay::topology::desired(&config);
    let plan = shirase_relay::provision::provision(&js, &desired, false)
        .await
        .unwrap();
    let text = plan.to_string();
    assert!(
        text.contains("~ stream SHIRASE_DLQ (update)") && text.contains("max_bytes"),
        "{text}"
    );
    assert_eq!(
        max_bytes("SHIRASE_DLQ").await,
        (1 << 20, DiscardPolicy::New)
    );

    // 64 KiB dead letters: the sixteenth fills 1 MiB, the next ones are refused and the first
    // one is still there.
    let body = vec![b'x'; 64 << 10];
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..20 {
        let subject = "shirase.dlq.tax.131016.001.001o05-00";
        match js
            .publish(subject, body.clone().into())
            .await
            .unwrap()
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(
                    e.to_string().to_lowercase().contains("maximum bytes"),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(
        (accepted, refused),
        (15, 5),
        "1 MiB holds 15 messages of 64 KiB plus headers"
    );
    let mut dlq = js.get_stream("SHIRASE_DLQ").await.unwrap();
    let state = dlq.info().await.unwrap().state.clone();
    assert_eq!((state.first_sequence, state.messages), (1, 15));
    assert!(state.bytes <= 1 << 20);
}
