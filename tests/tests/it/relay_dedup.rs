//! De-duplication is per provider: JetStream's key (`Nats-Msg-Id`) is `<business id>:<notice
//! id>`, so one provider's notice id cannot make another provider's notice look like a
//! duplicate (and be dropped), while a re-send by the same provider is still stored once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;

use crate::relay_support::{json, notice, read_stream, setup, token_001, token_010};

/// The notice ids consumer `name` delivers (one fetch, acked).
async fn delivered_ids(js: &async_nats::jetstream::Context, name: &str) -> Vec<String> {
    let c: PullConsumer = js
        .get_consumer_from_stream(name, "SHIRASE_NOTICES")
        .await
        .unwrap();
    let mut batch = c
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        out.push(v["id"].as_str().unwrap().to_owned());
        m.ack().await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_notice_id_from_two_providers_is_two_notices() {
    let (_server, js, relay) = setup().await;
    let n001 = notice("001o05-00", 1);
    let mut n010 = notice("010o01-00", 1);
    n010.id = n001.id;
    let id = n001.id.to_string();

    let (s, _, b) = relay.post(&token_001(), &json(&n001)).await;
    assert_eq!((s, b["duplicate"].as_bool()), (202, Some(false)), "{b}");
    // Provider 010 sends the same id: stored, not a duplicate of 001's.
    let (s, _, b) = relay.post(&token_010(), &json(&n010)).await;
    assert_eq!((s, b["duplicate"].as_bool()), (202, Some(false)), "{b}");
    assert_eq!(b["stream_seq"], 2);
    // Provider 001's re-send (and a relay-side retry: the same headers) is still a duplicate.
    let (s, _, b) = relay.post(&token_001(), &json(&n001)).await;
    assert_eq!((s, b["duplicate"].as_bool()), (202, Some(true)), "{b}");
    assert_eq!(b["stream_seq"], 1);
    let again = shirase_proto::publish::publish(&js, &n010).await.unwrap();
    assert_eq!((again.sequence, again.duplicate), (2, true));

    let stored: Vec<(String, String)> = read_stream(&js)
        .await
        .into_iter()
        .map(|(key, subject, _)| (key, subject))
        .collect();
    assert_eq!(
        stored,
        vec![
            (
                format!("001:{id}"),
                "shirase.notice.131016.001.001o05-00".to_owned()
            ),
            (
                format!("010:{id}"),
                "shirase.notice.131016.010.010o01-00".to_owned()
            ),
        ]
    );
    // Subscriber delinquency reads both providers: each consumer delivers its provider's notice.
    assert_eq!(
        delivered_ids(&js, "delinquency_001").await,
        vec![id.clone()]
    );
    assert_eq!(delivered_ids(&js, "delinquency_010").await, vec![id]);
    relay.stop().await;
}
