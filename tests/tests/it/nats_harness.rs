//! The harness itself and the JetStream behaviour everything else relies on: durability across
//! a restart, de-duplication by `Nats-Msg-Id`, and an R3 stream surviving the loss of a node.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use shirase_proto::publish::publish;
use shirase_proto::{ChangeKind, InterfaceId, InterfaceVersion, Notice, OffsetTimestamp, Sequence};
use shirase_tests::harness::{NatsCluster, NatsServer};

fn notice(seq: u64) -> Notice {
    Notice::new(
        "131016".parse().unwrap(),
        "001o05-00".parse::<InterfaceId>().unwrap(),
        "1.0".parse::<InterfaceVersion>().unwrap(),
        Sequence(seq),
        "2026-11-25T10:15:30+09:00"
            .parse::<OffsetTimestamp>()
            .unwrap(),
        ChangeKind::Update,
        None,
    )
}

fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: shirase_proto::subject::NOTICE_STREAM.into(),
        subjects: vec!["shirase.notice.>".into(), "shirase.replay.>".into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(2 * 3600),
        ..Default::default()
    }
}

async fn connect(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    jetstream::new(client)
}

#[tokio::test]
async fn published_notice_survives_server_restart() {
    let mut server = NatsServer::start_with(shirase_tests::harness::Config {
        sync_always: true,
        ..Default::default()
    })
    .unwrap();
    let js = connect(&server.url()).await;
    js.create_stream(stream_config(1)).await.unwrap();
    let n = notice(1);
    let ack = publish(&js, &n).await.unwrap();
    assert_eq!(ack.sequence, 1);
    assert!(!ack.duplicate);
    drop(js);

    server.restart().unwrap();

    let js = connect(&server.url()).await;
    let mut s = js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 1);
    let msg = s.get_raw_message(1).await.unwrap();
    assert_eq!(msg.subject.as_str(), "shirase.notice.131016.001.001o05-00");
    let back: Notice = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(back, n);
    assert_eq!(
        msg.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("001:{}", n.id).as_str())
    );
}

#[tokio::test]
async fn same_notice_id_is_stored_once() {
    let server = NatsServer::start().unwrap();
    let js = connect(&server.url()).await;
    js.create_stream(stream_config(1)).await.unwrap();
    let n = notice(7);
    let first = publish(&js, &n).await.unwrap();
    let second = publish(&js, &n).await.unwrap();
    let other = publish(&js, &notice(8)).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate, "re-sent id must be reported as duplicate");
    assert_eq!(
        second.sequence, first.sequence,
        "duplicate ack names the first copy"
    );
    assert_eq!(other.sequence, 2);
    let mut s = js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn harness_reports_a_missing_binary_clearly() {
    let err = shirase_tests::harness::HarnessError::BinaryNotFound.to_string();
    assert!(err.contains("install-nats-server.sh"), "{err}");
    assert!(err.contains("NATS_SERVER_BIN"), "{err}");
}

/// Publish with retries while a leader election may be running; returns the ack's sequence.
async fn publish_retrying(js: &jetstream::Context, n: &Notice, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        match publish(js, n).await {
            Ok(ack) => return ack.sequence,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("retrying publish: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish did not succeed within {within:?}: {e}"),
        }
    }
}

#[tokio::test]
#[ignore = "slow: 3-node cluster"]
async fn r3_stream_keeps_accepting_after_leader_is_killed() {
    let mut cluster = NatsCluster::start(3).unwrap();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.urls())
        .await
        .unwrap();
    let js = jetstream::new(client);
    // Stream creation needs the meta leader; retry while it is being elected.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match js.create_stream(stream_config(3)).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("stream create retry: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("could not create R3 stream: {e}"),
        }
    };
    let info = s.info().await.unwrap();
    let cl = info.cluster.clone().expect("cluster info");
    let leader = cl.leader.clone().expect("stream has a leader");
    assert_eq!(cl.replicas.len(), 2, "R3: a leader and two replicas");

    let mut published = 0u64;
    for i in 0..50 {
        publish_retrying(&js, &notice(i), Duration::from_secs(30)).await;
        published += 1;
    }
    let idx = cluster.index_of(&leader).expect("leader is one of ours");
    cluster.nodes[idx].kill();

    for i in 50..100 {
        publish_retrying(&js, &notice(i), Duration::from_secs(30)).await;
        published += 1;
    }
    let info = loop {
        match s.info().await {
            Ok(i) => break i.clone(),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(
        info.state.messages, published,
        "every acked publish is stored exactly once"
    );
    let new_leader = info.cluster.and_then(|c| c.leader).expect("a new leader");
    assert_ne!(new_leader, leader, "leadership moved off the killed node");

    cluster.nodes[idx].start_again().unwrap();
    assert!(cluster.nodes[idx].healthz());
}

#[test]
fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ports: Vec<u16> = (0..500)
        .map(|_| shirase_tests::harness::free_port().unwrap())
        .collect();
    let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 500, "a port was handed out twice");
    if low >= 12_000 {
        assert!(
            ports.iter().all(|p| (10_000..low).contains(p)),
            "ports {ports:?} must lie below {low}"
        );
    }
}
