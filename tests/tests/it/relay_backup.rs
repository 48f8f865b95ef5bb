//! `backup` / `restore` (JetStream snapshot and restore over NATS) against real nats-servers:
//! every stream and bucket comes back with its messages, consumers keep their positions, and
//! the refusals (existing stream, missing stream, non-empty directory, another municipality)
//! change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use shirase_relay::backup::{self, BackupError, MANIFEST};
use shirase_relay::provision::provision;
use shirase_relay::topology::desired;
use shirase_tests::harness::NatsServer;

use crate::relay_support::dev_config;

const NOTICE_SUBJECT: &str = "shirase.notice.131016.001.001o05-00";

async fn connect(server: &NatsServer) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(server.url()).await.unwrap();
    (client.clone(), jetstream::new(client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_and_bucket_comes_back_with_its_consumer_positions() {
    let old = NatsServer::start().unwrap();
    let config = dev_config(&old.url());
    let (client, js) = connect(&old).await;
    provision(&js, &desired(&config), false).await.unwrap();
    for i in 0..5 {
        js.publish(NOTICE_SUBJECT, format!("notice {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for (subject, body) in [
        ("shirase.dlq.tax.131016.001.001o05-00", "dead letter"),
        ("shirase.alert.warning.agent", "alert"),
        ("shirase.audit.replay", "audit"),
    ] {
        js.publish(subject, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let kv = js.get_key_value("shirase_checkpoints").await.unwrap();
    kv.put("tax.131016.001o05-00", "checkpoint".into())
        .await
        .unwrap();
    // tax_001 acks the first three notices.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("SHIRASE_NOTICES")
        .await
        .unwrap()
        .get_consumer("tax_001")
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(3).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("b");
    let mut out = Vec::new();
    let streams = backup::stream_names(&config);
    assert_eq!(
        streams,
        [
            "SHIRASE_NOTICES",
            "SHIRASE_DLQ",
            "SHIRASE_ALERTS",
            "SHIRASE_AUDIT",
            "KV_shirase_checkpoints",
            "KV_shirase_leases"
        ]
    );
    let manifest = backup::backup(&client, &js, "131016", &streams, &out_dir, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("SHIRASE_NOTICES: saved 5 message(s), 3 consumer(s)"),
        "{text}"
    );
    assert!(text.contains("backup complete: 6 stream(s)"), "{text}");
    let counts: Vec<(String, u64)> = manifest
        .streams
        .iter()
        .map(|s| (s.name.clone(), s.messages))
        .collect();
    assert_eq!(
        counts,
        [
            ("SHIRASE_NOTICES".into(), 5),
            ("SHIRASE_DLQ".into(), 1),
            ("SHIRASE_ALERTS".into(), 1),
            ("SHIRASE_AUDIT".into(), 1),
            ("KV_shirase_checkpoints".into(), 1),
            ("KV_shirase_leases".into(), 0)
        ]
    );
    assert_eq!(
        backup::read_manifest(&out_dir).unwrap().streams,
        manifest.streams
    );

    // A second backup into the same directory is refused.
    let again = backup::backup(&client, &js, "131016", &streams, &out_dir, &mut Vec::new()).await;
    assert!(
        matches!(again, Err(BackupError::OutNotEmpty { .. })),
        "{again:?}"
    );
    drop(old);

    let fresh = NatsServer::start().unwrap();
    let (client, js) = connect(&fresh).await;
    let other = backup::restore(&client, &js, "271004", &out_dir, &[], &mut Vec::new()).await;
    assert!(
        matches!(other, Err(BackupError::OtherMunicipality { .. })),
        "{other:?}"
    );
    let mut out = Vec::new();
    let restored = backup::restore(&client, &js, "131016", &out_dir, &[], &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(restored.len(), 6, "{text}");
    assert!(text.contains("restore complete: 6 stream(s)"), "{text}");
    for (name, messages) in &counts {
        let mut s = js.get_stream(name).await.unwrap();
        assert_eq!(s.info().await.unwrap().state.messages, *messages, "{name}");
    }
    let kv = js.get_key_value("shirase_checkpoints").await.unwrap();
    assert_eq!(
        kv.get("tax.131016.001o05-00").await.unwrap().unwrap(),
        "checkpoint".as_bytes()
    );
    // The consumer resumes after the acked notices: the fourth comes next, the third never again.
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("SHIRASE_NOTICES")
        .await
        .unwrap()
        .get_consumer("tax_001")
        .await
        .unwrap();
    assert_eq!(consumer.info().await.unwrap().ack_floor.stream_sequence, 3);
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"notice 3");
    m.ack_with(AckKind::Ack).await.unwrap();
    // Provisioning the restored state finds nothing to change.
    let plan = provision(&js, &desired(&config), false).await.unwrap();
    assert!(plan.is_noop(), "{plan}");

    // A stream deleted by mistake comes back alone; a name the backup lacks is refused.
    js.delete_stream("SHIRASE_AUDIT").await.unwrap();
    let only = ["SHIRASE_AUDIT".to_owned()];
    let one = backup::restore(&client, &js, "131016", &out_dir, &only, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].messages, 1);
    let unknown = ["SHIRASE_NOPE".to_owned()];
    let r = backup::restore(&client, &js, "131016", &out_dir, &unknown, &mut Vec::new()).await;
    assert!(matches!(r, Err(BackupError::NotInBackup { .. })), "{r:?}");

    // Restoring over existing streams is refused before anything is sent.
    let twice = backup::restore(&client, &js, "131016", &out_dir, &[], &mut Vec::new()).await;
    assert!(
        matches!(&twice, Err(BackupError::Exists { stream }) if stream == "SHIRASE_NOTICES"),
        "{twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_an_unprovisioned_cluster_names_the_missing_stream_and_writes_nothing() {
    let server = NatsServer::start().unwrap();
    let config = dev_config(&server.url());
    let (client, js) = connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("b");
    let r = backup::backup(
        &client,
        &js,
        "131016",
        &backup::stream_names(&config),
        &out_dir,
        &mut Vec::new(),
    )
    .await;
    let err = r.unwrap_err();
    assert!(
        matches!(&err, BackupError::Missing { stream } if stream == "SHIRASE_NOTICES"),
        "{err:?}"
    );
    assert!(err.to_string().contains("shirase-relay provision"), "{err}");
    assert!(!out_dir.exists());
    // A directory without a manifest is not a backup.
    std::fs::create_dir_all(&out_dir).unwrap();
    let r = backup::restore(&client, &js, "131016", &out_dir, &[], &mut Vec::new()).await;
    assert!(
        matches!(&r, Err(BackupError::Io { path, .. }) if path.ends_with(MANIFEST)),
        "{r:?}"
    );
}
