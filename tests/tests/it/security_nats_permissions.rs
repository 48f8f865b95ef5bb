//! What the generated NATS authorization (`shirase-relay provision --emit-nats-auth`) refuses,
//! beyond `relay_nats_auth` (which shows each role doing its own work): a provider cannot read
//! or create consumers nor listen to notices; a subscriber cannot read another subscriber's
//! checkpoint, listen to replay subjects, read another's dead letters, or make itself a consumer
//! over the whole stream. Each refusal is checked against a witness that the data is there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use shirase_tests::harness::{Config as ServerConfig, NatsServer};

use crate::relay_support::{dev_config, notice};

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

/// Whether a core subscription of `client` on `subject` receives anything while `publisher`
/// publishes on each of `to` (three rounds, 500 ms each, so a slow subscription set-up cannot
/// pass for a refusal).
async fn hears(
    client: &async_nats::Client,
    subject: &str,
    publisher: &async_nats::Client,
    to: &[&str],
) -> bool {
    let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    for _ in 0..3 {
        for t in to {
            publisher
                .publish((*t).to_owned(), "x".into())
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(500), sub.next())
            .await
            .is_ok_and(|m| m.is_some())
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_permissions_refuse_reading_what_is_not_yours() {
    let (relay_id, p001, tax, delinquency) = (ident(), ident(), ident(), ident());
    let mut config = dev_config("nats://127.0.0.1:4222");
    config.relay_nkey = Some(relay_id.public.clone());
    config.providers[0].nats_nkey = Some(p001.public.clone());
    config.subscribers[0].nats_nkey = Some(tax.public.clone());
    config.subscribers[1].nats_nkey = Some(delinquency.public.clone());
    assert_eq!(
        (
            config.subscribers[0].id.as_str(),
            config.subscribers[1].id.as_str()
        ),
        ("tax", "delinquency")
    );
    let auth = shirase_relay::nats_auth::emit(&config).unwrap();
    let server = NatsServer::start_with(ServerConfig {
        extra: auth,
        ..ServerConfig::default()
    })
    .unwrap();
    let url = server.url();
    config.nats.urls = vec![url.clone()];
    let admin_client = connect(&url, &relay_id, relay_inbox()).await;
    let admin = js_short(admin_client.clone());
    shirase_relay::provision::provision(&admin, &shirase_relay::topology::desired(&config), false)
        .await
        .unwrap();

    // Witnesses: a stored notice, a checkpoint and a dead letter of delinquency's.
    shirase_proto::publish::publish(&admin, &notice("001o05-00", 1))
        .await
        .unwrap();
    let akv = admin.get_key_value("shirase_checkpoints").await.unwrap();
    akv.put(
        "delinquency.131016.001o05-00",
        "2026-01-01T00:00:00+09:00".into(),
    )
    .await
    .unwrap();
    assert!(
        akv.get("delinquency.131016.001o05-00")
            .await
            .unwrap()
            .is_some()
    );

    // The listening probe works where it is allowed (tax's own inbox).
    let tclient = connect(&url, &tax, subscriber_inbox("tax")).await;
    let heard = hears(
        &tclient,
        "_INBOX_subscriber_tax.probe",
        &admin_client,
        &["_INBOX_subscriber_tax.probe"],
    )
    .await;
    assert!(heard, "the probe hears an allowed subject");

    // Provider 001: no consumer info, no consumer creation, no listening to notices.
    let pclient = connect(&url, &p001, provider_inbox("001")).await;
    let pjs = js_short(pclient.clone());
    assert!(
        pjs.get_stream("SHIRASE_NOTICES").await.is_err(),
        "a provider read the stream's info"
    );
    let praw = tokio::time::timeout(
        Duration::from_secs(2),
        pclient.request("$JS.API.CONSUMER.INFO.SHIRASE_NOTICES.tax_001", "".into()),
    )
    .await;
    assert!(
        !matches!(praw, Ok(Ok(ref m)) if String::from_utf8_lossy(&m.payload).contains("\"config\"")),
        "a provider read a consumer"
    );
    let pcreate = tokio::time::timeout(
        Duration::from_secs(2),
        pclient.request(
            "$JS.API.CONSUMER.CREATE.SHIRASE_NOTICES",
            "{\"stream_name\":\"SHIRASE_NOTICES\",\"config\":{}}".into(),
        ),
    )
    .await;
    assert!(
        !matches!(pcreate, Ok(Ok(ref m)) if String::from_utf8_lossy(&m.payload).contains("\"name\"")),
        "a provider created a consumer"
    );
    let heard = hears(
        &pclient,
        "shirase.notice.>",
        &admin_client,
        &["shirase.notice.131016.010.010o01-00"],
    )
    .await;
    assert!(!heard, "a provider listened to notices");

    // Subscriber tax: another subscriber's checkpoint is unreadable...
    let tjs = js_short(tclient.clone());
    let tkv = tjs.get_key_value("shirase_checkpoints").await.unwrap();
    assert!(
        !matches!(tkv.get("delinquency.131016.001o05-00").await, Ok(Some(_))),
        "tax read delinquency's checkpoint"
    );
    // ...replay subjects (the relay re-delivers on shirase.replay.<subscriber>...) are not heard...
    for subject in [
        "shirase.replay.>",
        "shirase.replay.delinquency.>",
        "shirase.replay.tax.>",
    ] {
        let heard = hears(
            &tclient,
            subject,
            &admin_client,
            &[
                "shirase.replay.delinquency.131016.001.001o05-00",
                "shirase.replay.tax.131016.001.001o05-00",
            ],
        )
        .await;
        assert!(!heard, "tax listened to {subject}");
    }
    // ...nor another's dead letters...
    let heard = hears(
        &tclient,
        "shirase.dlq.delinquency.>",
        &admin_client,
        &["shirase.dlq.delinquency.131016.001.001o05-00"],
    )
    .await;
    assert!(!heard, "tax listened to delinquency's dead letters");
    // ...and it cannot make itself a consumer over the whole stream (which would read every
    // subscriber's notices).
    let ts = tjs.get_stream("SHIRASE_NOTICES").await.unwrap();
    let created = ts
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await;
    assert!(created.is_err(), "tax created its own consumer");
    let c = admin
        .get_stream("SHIRASE_NOTICES")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .consumer_count;
    assert_eq!(
        c,
        shirase_relay::topology::desired(&config).consumers.len(),
        "no consumer was added"
    );
}
