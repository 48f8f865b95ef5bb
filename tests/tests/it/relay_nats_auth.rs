//! The NATS authorization generated from the topology, loaded by a real nats-server: providers
//! publish only their own subjects, subscribers use only their own consumers and checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use shirase_tests::harness::{Config as ServerConfig, NatsServer};

use crate::relay_support::{dev_config, json, notice};

struct Id {
    seed: String,
    public: String,
}

fn ident() -> Id {
    let kp = nkeys::KeyPair::new_user();
    Id {
        seed: kp.seed().unwrap(),
        public: kp.public_key(),
    }
}

/// Connect as `id`, replying under `inbox` (the identity's own prefix: the generated
/// authorization lets it subscribe there only).
async fn connect(url: &str, id: &Id, inbox: String) -> async_nats::Client {
    async_nats::ConnectOptions::with_nkey(id.seed.clone())
        .custom_inbox_prefix(inbox)
        .connect(url)
        .await
        .unwrap()
}

fn relay_inbox() -> String {
    shirase_proto::subject::relay_inbox_prefix()
}
fn provider_inbox(b: &str) -> String {
    shirase_proto::subject::provider_inbox_prefix(&b.parse().unwrap())
}
fn subscriber_inbox(s: &str) -> String {
    shirase_proto::subject::subscriber_inbox_prefix(&s.parse().unwrap())
}

fn js_short(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_permissions_confine_providers_and_subscribers() {
    let (relay_id, p001, p010, tax, delinquency) = (ident(), ident(), ident(), ident(), ident());
    // The configuration is built for a placeholder URL; the server's port is known after start.
    let mut config = dev_config("nats://127.0.0.1:4222");
    config.relay_nkey = Some(relay_id.public.clone());
    config.providers[0].nats_nkey = Some(p001.public.clone());
    config.providers[1].nats_nkey = Some(p010.public.clone());
    config.subscribers[0].nats_nkey = Some(tax.public.clone());
    config.subscribers[1].nats_nkey = Some(delinquency.public.clone());
    let auth = shirase_relay::nats_auth::emit(&config).unwrap();
    assert!(auth.contains(&p001.public));

    let server = NatsServer::start_with(ServerConfig {
        extra: auth,
        ..ServerConfig::default()
    })
    .unwrap();
    let url = server.url();
    config.nats.urls = vec![url.clone()];

    // Anonymous clients are refused outright.
    assert!(
        async_nats::ConnectOptions::new()
            .max_reconnects(1)
            .connect(&url)
            .await
            .is_err()
    );

    let admin = js_short(connect(&url, &relay_id, relay_inbox()).await);
    shirase_relay::provision::provision(&admin, &shirase_relay::topology::desired(&config), false)
        .await
        .unwrap();

    // Provider 001 may publish its own interface...
    let pjs = js_short(connect(&url, &p001, provider_inbox("001")).await);
    let own = notice("001o05-00", 1);
    let ack = shirase_proto::publish::publish(&pjs, &own).await.unwrap();
    assert_eq!(ack.sequence, 1);
    // ...but not provider 010's, nor a replay subject.
    let foreign = notice("010o01-00", 1);
    assert!(
        shirase_proto::publish::publish(&pjs, &foreign)
            .await
            .is_err()
    );
    let replay = pjs
        .publish(
            "shirase.replay.tax.131016.001.001o05-00",
            serde_json::to_vec(&json(&own)).unwrap().into(),
        )
        .await;
    let replay_acked = match replay {
        Ok(f) => f.await.is_ok(),
        Err(_) => false,
    };
    assert!(!replay_acked, "a provider must not publish replays");
    // Provider 010 can publish its own.
    let p10 = js_short(connect(&url, &p010, provider_inbox("010")).await);
    shirase_proto::publish::publish(&p10, &foreign)
        .await
        .unwrap();
    let mut s = admin.get_stream("SHIRASE_NOTICES").await.unwrap();
    assert_eq!(
        s.info().await.unwrap().state.messages,
        2,
        "only the two permitted publishes were stored"
    );

    // Subscriber tax fetches from its own consumer...
    let tjs = js_short(connect(&url, &tax, subscriber_inbox("tax")).await);
    let ts = tjs.get_stream("SHIRASE_NOTICES").await.unwrap();
    let own_consumer: consumer::PullConsumer = ts.get_consumer("tax_001").await.unwrap();
    let mut batch = own_consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(m.subject.as_str(), "shirase.notice.131016.001.001o05-00");
    m.ack().await.unwrap();
    // ...but cannot even look at delinquency's, nor pull from it with a raw request.
    assert!(
        ts.get_consumer::<consumer::pull::Config>("delinquency_001")
            .await
            .is_err()
    );
    let tclient = connect(&url, &tax, subscriber_inbox("tax")).await;
    let raw = tokio::time::timeout(
        Duration::from_secs(2),
        tclient.request(
            "$JS.API.CONSUMER.MSG.NEXT.SHIRASE_NOTICES.delinquency_001",
            "{\"batch\":1,\"expires\":1000000000}".into(),
        ),
    )
    .await;
    assert!(
        !matches!(raw, Ok(Ok(ref m)) if m.headers.is_none()),
        "a message from another subscriber's consumer was delivered"
    );
    let d = admin
        .get_stream("SHIRASE_NOTICES")
        .await
        .unwrap()
        .consumer_info("delinquency_001")
        .await
        .unwrap();
    assert_eq!(
        d.delivered.stream_sequence, 0,
        "delinquency's consumer delivered nothing"
    );

    // Checkpoints: its own keys only.
    let kv = tjs.get_key_value("shirase_checkpoints").await.unwrap();
    kv.put("tax.131016.001o05-00", "2026-01-01T00:00:00+09:00".into())
        .await
        .unwrap();
    assert!(
        kv.put("delinquency.131016.001o05-00", "x".into())
            .await
            .is_err()
    );
    assert!(kv.get("tax.131016.001o05-00").await.unwrap().is_some());
}
