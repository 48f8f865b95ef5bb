//! Inbox isolation under the generated NATS authorization (`shirase-relay provision
//! --emit-nats-auth`): every identity replies under its own inbox prefix and may subscribe there
//! only, so subscriber `tax` cannot receive what `delinquency` or the relay receive (the notices
//! a pull consumer delivers, JetStream API answers, PubAcks): each attempt is refused by the
//! server with a permissions violation, while every identity still does its own work, end to
//! end through the relay and the agents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_nats::{Event, ServerError};
use futures::StreamExt;
use shirase_tests::harness::{Config as ServerConfig, NatsServer};
use tokio::sync::mpsc;

use crate::relay_support::{dev_config, notice};

pub(crate) struct Id {
    pub(crate) seed: String,
    pub(crate) public: String,
}

fn ident() -> Id {
    let kp = nkeys::KeyPair::new_user();
    Id {
        seed: kp.seed().unwrap(),
        public: kp.public_key(),
    }
}

/// A client of `id` replying under `inbox` (`None`: the library's shared `_INBOX`), and the
/// errors the server sends it (permission violations).
pub(crate) async fn connect(
    url: &str,
    id: &Id,
    inbox: Option<String>,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut opts =
        async_nats::ConnectOptions::with_nkey(id.seed.clone()).event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(ServerError::Other(m)) = e {
                    let _ = tx.send(m);
                }
            }
        });
    if let Some(p) = inbox {
        opts = opts.custom_inbox_prefix(p);
    }
    (opts.connect(url).await.unwrap(), rx)
}

pub(crate) fn js_short(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client)
}

/// Wait (at most 5 s) for the server's permissions violation of a subscription to `subject`.
async fn refused(errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    let want = format!("permissions violation for subscription to \"{subject}\"");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = tokio::time::timeout_at(deadline, errors.recv())
            .await
            .unwrap_or_else(|_| panic!("no permissions violation for {subject}"))
            .unwrap();
        if m.to_lowercase().contains(&want.to_lowercase()) {
            return;
        }
    }
}

/// The topology of deploy/dev/relay.toml with an identity for the relay, both providers and
/// both subscribers, and the server running its generated authorization.
pub(crate) struct Cluster {
    pub(crate) server: NatsServer,
    pub(crate) config: shirase_relay::Config,
    pub(crate) relay: Id,
    pub(crate) p001: Id,
    pub(crate) tax: Id,
    pub(crate) delinquency: Id,
}

impl Cluster {
    /// The relay's identity, on its own inbox, after provisioning the streams and consumers.
    pub(crate) async fn provisioned_admin(&self) -> async_nats::Client {
        let (admin_client, _) = connect(
            &self.server.url(),
            &self.relay,
            Some(shirase_proto::subject::relay_inbox_prefix()),
        )
        .await;
        shirase_relay::provision::provision(
            &js_short(admin_client.clone()),
            &shirase_relay::topology::desired(&self.config),
            false,
        )
        .await
        .unwrap();
        admin_client
    }
}

pub(crate) fn cluster() -> Cluster {
    let (relay, p001, p010, tax, delinquency) = (ident(), ident(), ident(), ident(), ident());
    let mut config = dev_config("nats://127.0.0.1:4222");
    config.relay_nkey = Some(relay.public.clone());
    config.providers[0].nats_nkey = Some(p001.public.clone());
    config.providers[1].nats_nkey = Some(p010.public.clone());
    config.subscribers[0].nats_nkey = Some(tax.public.clone());
    config.subscribers[1].nats_nkey = Some(delinquency.public.clone());
    assert_eq!(
        (
            config.providers[0].business_id.to_string(),
            config.subscribers[0].id.as_str(),
            config.subscribers[1].id.as_str()
        ),
        ("001".to_owned(), "tax", "delinquency")
    );
    let auth = shirase_relay::nats_auth::emit(&config).unwrap();
    assert!(!auth.contains("\"_INBOX.>\""), "{auth}");
    let server = NatsServer::start_with(ServerConfig {
        extra: auth,
        ..ServerConfig::default()
    })
    .unwrap();
    config.nats.urls = vec![server.url()];
    Cluster {
        server,
        config,
        relay,
        p001,
        tax,
        delinquency,
    }
}

/// One message fetched from consumer `name` by `js` (the fetch replies to its client's inbox).
async fn fetch_one(js: &jetstream::Context, name: &str) -> jetstream::Message {
    let s = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    let c: consumer::PullConsumer = s.get_consumer(name).await.unwrap();
    let mut batch = c
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(3))
        .messages()
        .await
        .unwrap();
    batch.next().await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_receives_replies_only_under_its_own_inbox() {
    let c = cluster();
    let url = c.server.url();
    let admin_client = c.provisioned_admin().await;
    let admin = js_short(admin_client.clone());

    // Provider 001 with the publisher helper's options (its own inbox): the PubAck arrives.
    let b001 = "001".parse().unwrap();
    let pclient = shirase_proto::publish::connect_options(&b001)
        .nkey(c.p001.seed.clone())
        .connect(&url)
        .await
        .unwrap();
    let n = notice("001o05-00", 1);
    let ack = shirase_proto::publish::publish(&js_short(pclient), &n)
        .await
        .unwrap();
    assert_eq!((ack.sequence, ack.duplicate), (1, false));
    // The same identity on the library's shared `_INBOX` may not read its own PubAck there (the
    // notice is stored; its answer cannot be delivered).
    let (shared, _) = connect(&url, &c.p001, None).await;
    assert!(
        shirase_proto::publish::publish(&js_short(shared), &notice("001o05-00", 2))
            .await
            .is_err(),
        "a reply under the shared _INBOX was delivered"
    );

    // The spy: subscriber tax tries to listen to everybody else's replies; the server refuses
    // every one of those subscriptions.
    let (spy, mut spy_errors) = connect(
        &url,
        &c.tax,
        Some(shirase_proto::subject::subscriber_inbox_prefix(
            &"tax".parse().unwrap(),
        )),
    )
    .await;
    let mut taps = Vec::new();
    for subject in [
        "_INBOX_subscriber_delinquency.>",
        "_INBOX_relay.>",
        "_INBOX_provider_001.>",
        "_INBOX.>",
        ">",
    ] {
        taps.push((subject, spy.subscribe(subject).await.unwrap()));
        spy.flush().await.unwrap();
        refused(&mut spy_errors, subject).await;
    }

    // Delinquency fetches the notice from its own consumer, the relay reads the stream (a
    // JetStream API answer and a direct get, both replies to its inbox)...
    let (dclient, _) = connect(
        &url,
        &c.delinquency,
        Some(shirase_proto::subject::subscriber_inbox_prefix(
            &"delinquency".parse().unwrap(),
        )),
    )
    .await;
    let m = fetch_one(&js_short(dclient), "delinquency_001").await;
    assert_eq!(m.subject.as_str(), "shirase.notice.131016.001.001o05-00");
    m.ack().await.unwrap();
    let mut s = admin.get_stream("SHIRASE_NOTICES").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 2);
    assert_eq!(
        s.get_raw_message(1).await.unwrap().subject.as_str(),
        "shirase.notice.131016.001.001o05-00"
    );
    // ...and tax, on its own inbox, fetches its own copy...
    let m = fetch_one(&js_short(spy.clone()), "tax_001").await;
    assert_eq!(m.subject.as_str(), "shirase.notice.131016.001.001o05-00");
    m.ack().await.unwrap();
    // ...while none of the refused taps received any of those replies.
    for (subject, mut tap) in taps {
        let got = tokio::time::timeout(Duration::from_millis(200), tap.next()).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "tax received a message on {subject}"
        );
    }
    // The taps were not silently dropped errors of another kind: tax's own inbox is heard. The
    // client's flush does not wait for the server to register the subscription, so the probe is
    // published again until it arrives (at most 25 rounds of 200 ms).
    let mut own = spy.subscribe("_INBOX_subscriber_tax.probe").await.unwrap();
    spy.flush().await.unwrap();
    let mut heard = None;
    for _ in 0..25 {
        admin_client
            .publish("_INBOX_subscriber_tax.probe", "x".into())
            .await
            .unwrap();
        admin_client.flush().await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), own.next()).await {
            heard = Some(m);
            break;
        }
    }
    let heard = heard.expect("tax's own inbox never heard the probe");
    assert_eq!(heard.payload.as_ref(), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_agents_deliver_end_to_end_with_their_own_inboxes_only() {
    use crate::agent_e2e_relay::{agent_toml, secret_of};
    use crate::agent_support::{RunningAgent, sink_lines, wait_until};
    use shirase_tests::provider_sim::{self, ChangeSpec, NoticeTarget, ProviderSim};
    use tokio_util::sync::CancellationToken;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c = cluster();
    let url = c.server.url();
    let dir = tempfile::tempdir().unwrap();
    let seed_file = |name: &str, id: &Id| {
        let p = dir.path().join(format!("{name}.nk"));
        std::fs::write(&p, &id.seed).unwrap();
        p
    };
    // The relay provisions and serves as its own identity, with its default inbox prefix.
    c.config.nats.nkey_seed_file = Some(seed_file("relay", &c.relay));
    assert_eq!(c.config.nats.inbox_prefix, "_INBOX_relay");
    let admin = js_short(
        shirase_relay::connection::connect(&c.config.nats)
            .await
            .unwrap(),
    );
    shirase_relay::provision::provision(
        &admin,
        &shirase_relay::topology::desired(&c.config),
        false,
    )
    .await
    .unwrap();
    let relay_stop = CancellationToken::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", l.local_addr().unwrap());
    let relay = tokio::spawn(shirase_relay::run(c.config.clone(), l, relay_stop.clone()));

    let mut sc = provider_sim::Config::for_business("001".parse().unwrap());
    for s in ["tax", "delinquency"] {
        sc = sc.with_client(format!("{s}-agent"), secret_of(s));
    }
    sc.population = 100;
    sc.notice_target = NoticeTarget::Relay {
        url: relay_url,
        token: crate::relay_support::token_001().into(),
    };
    let sim_stop = CancellationToken::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = ProviderSim::start(sc, l, sim_stop.clone()).await.unwrap();

    // Both agents with their own nkeys and the default (derived) inbox prefix.
    let mut agents = Vec::new();
    for (s, id) in [("tax", &c.tax), ("delinquency", &c.delinquency)] {
        std::fs::create_dir_all(dir.path().join(s)).unwrap();
        std::fs::write(dir.path().join(s).join("secret"), secret_of(s)).unwrap();
        let seed = seed_file(s, id);
        let toml = agent_toml(s, &url, &sim, dir.path()).replacen(
            "[nats]\n",
            &format!("[nats]\nnkey_seed_file = \"{}\"\n", seed.display()),
            1,
        );
        let cfg = shirase_subscriber_kit::Config::from_toml_str(&toml).unwrap();
        assert_eq!(cfg.nats.inbox_prefix, None, "the default is derived");
        agents.push(RunningAgent::start(cfg));
    }
    // A tax spy on delinquency's inbox is refused before anything flows.
    let (spy, mut spy_errors) =
        connect(&url, &c.tax, Some("_INBOX_subscriber_tax".to_owned())).await;
    let mut tap = spy
        .subscribe("_INBOX_subscriber_delinquency.>")
        .await
        .unwrap();
    spy.flush().await.unwrap();
    refused(&mut spy_errors, "_INBOX_subscriber_delinquency.>").await;

    sim.commit_changes(ChangeSpec::new(40).interface("001o05-00".parse().unwrap()))
        .unwrap();
    for s in ["tax", "delinquency"] {
        let sink = dir.path().join(s).join("sink");
        wait_until(60, &format!("{s} delivered all 40 rows"), || {
            let sink = sink.clone();
            async move {
                sink_lines(&sink, "001o05-00")
                    .iter()
                    .filter(|l| l["kind"] == "row")
                    .count()
                    >= 40
            }
        })
        .await;
    }
    // Delinquency's agent received 40 rows' worth of notices through its inbox; the tap heard none.
    assert!(
        !matches!(
            tokio::time::timeout(Duration::from_millis(200), tap.next()).await,
            Ok(Some(_))
        ),
        "tax received a message under delinquency's inbox"
    );

    for a in agents {
        a.stop().await;
    }
    sim_stop.cancel();
    relay_stop.cancel();
    relay.await.unwrap().unwrap();
}
