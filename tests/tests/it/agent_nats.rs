//! The agent's NATS side: production connection options (nkey identity) and re-binding after
//! the server restarts or the consumer is deleted and provisioned again.

use std::time::Duration;

use shirase_subscriber_kit::{Agent, AgentErrorKind};
use shirase_tests::harness::{Config as NatsConfig, NatsServer};
use tokio_util::sync::CancellationToken;

use crate::agent_support::*;

async fn delivered(env: &Env) -> bool {
    env.unfinished().await == 0
        && env
            .expected_rows()
            .iter()
            .all(|k| env.sink_rows().contains_key(k))
}

#[tokio::test]
async fn nkey_identity_connects_and_a_wrong_seed_is_refused_with_a_clear_error() {
    let tax = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    // The agent's user is an nkey; everything else (provisioning, the simulator's publisher)
    // connects without credentials as `admin`.
    let extra = format!(
        "authorization {{ users = [ {{ user: admin, password: admin }}, {{ nkey: \"{}\" }} ] }}\nno_auth_user: admin\n",
        tax.public_key()
    );
    let nats = NatsServer::start_with(NatsConfig {
        extra,
        ..Default::default()
    })
    .unwrap();
    let env = Env::start_on(nats, |_| {}).await;
    let good = env.dir.path().join("tax.nk");
    let bad = env.dir.path().join("stranger.nk");
    std::fs::write(&good, format!("{}\n", tax.seed().unwrap())).unwrap();
    std::fs::write(&bad, stranger.seed().unwrap()).unwrap();
    let with_seed = |f: &std::path::Path| {
        let toml = env.agent_toml("", "").replace(
            "[nats]\n",
            &format!("[nats]\nnkey_seed_file = \"{}\"\n", f.display()),
        );
        shirase_subscriber_kit::Config::from_toml_str(&toml).unwrap()
    };

    // A seed the server does not know: run() fails fast, naming the setting to check.
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        Agent::new(with_seed(&bad))
            .unwrap()
            .run(None, CancellationToken::new()),
    )
    .await
    .expect("a refused identity stops the agent instead of retrying forever")
    .unwrap_err();
    assert_eq!(err.kind(), AgentErrorKind::Nats);
    let m = err.to_string();
    assert!(
        m.contains("refused this agent's identity") && m.contains("nats.nkey_seed_file"),
        "{m}"
    );

    // The right seed: connected and delivering.
    env.commit_updates(10);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(with_seed(&good));
    wait_until(30, "delivered with the nkey identity", || delivered(&env)).await;
    agent.stop().await;
}

#[test]
fn nats_settings_are_validated_naming_the_field() {
    let base = "subscriber = \"tax\"\nmunicipality = \"131016\"\n[sink]\nkind = \"file\"\ndir = \"/tmp/x\"\n[[providers]]\nbusiness_id = \"001\"\npull_api_base_url = \"http://127.0.0.1:1\"\ntoken_url = \"http://127.0.0.1:1/oauth/token\"\ninsecure_http = true\nclient_id = \"c\"\nclient_secret_file = \"/tmp/s\"\n[[providers.interfaces]]\nid = \"001o05-00\"\nversion = \"1.0\"\n";
    let f = tempfile::NamedTempFile::new().unwrap();
    let p = f.path().display();
    let field = |nats: &str| match shirase_subscriber_kit::Config::from_toml_str(&format!(
        "{base}\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]\n{nats}\n"
    )) {
        // Every problem is listed; these cases have exactly one.
        Err(e) if e.problems.len() == 1 => e.problems[0].path.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(&format!(
            "credentials_file = \"{p}\"\nnkey_seed_file = \"{p}\""
        )),
        "nats.nkey_seed_file"
    );
    assert_eq!(
        field("nkey_seed_file = \"/nonexistent/seed.nk\""),
        "nats.nkey_seed_file"
    );
    assert_eq!(
        field("tls_ca_file = \"/nonexistent/ca.pem\""),
        "nats.tls_ca_file"
    );
    assert_eq!(
        field(&format!("tls_cert_file = \"{p}\"")),
        "nats.tls_key_file"
    );
}

#[tokio::test]
async fn keeps_delivering_after_the_nats_server_restarts() {
    let mut env = Env::start(|_| {}).await;
    let agent =
        RunningAgent::start(env.agent_config("[retry]\nbase = \"100ms\"\nmax = \"1s\"\n", ""));
    env.commit_updates(10);
    wait_notices_published(&env).await;
    wait_until(30, "first round", || delivered(&env)).await;
    env.nats.restart().unwrap();
    env.commit_updates(10);
    wait_notices_published(&env).await;
    wait_until(60, "second round after the restart", || delivered(&env)).await;
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 20);
    agent.stop().await;
}

#[tokio::test]
async fn waits_for_a_deleted_consumer_without_creating_it_then_delivers() {
    let env = Env::start(|_| {}).await;
    let agent =
        RunningAgent::start(env.agent_config("[retry]\nbase = \"100ms\"\nmax = \"400ms\"\n", ""));
    env.commit_updates(5);
    wait_notices_published(&env).await;
    wait_until(30, "first round", || delivered(&env)).await;

    let stream = env
        .js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    stream.delete_consumer("tax_001").await.unwrap();
    let client = async_nats::connect(env.nats.url()).await.unwrap();
    let mut alerts = client.subscribe("shirase.alert.>").await.unwrap();
    // The agent notices on its next idle check, then retries with backoff: the 10th failed
    // attempt raises `consumer_missing` (100 ms doubling, capped at 400 ms: ~3 s).
    let alert = tokio::time::timeout(Duration::from_secs(20), async {
        use futures::StreamExt;
        loop {
            let m = alerts.next().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            if v["code"] == "consumer_missing" {
                return v;
            }
        }
    })
    .await
    .expect("an alert says the consumer is missing");
    assert!(
        alert["message"].as_str().unwrap().contains("tax_001"),
        "{alert}"
    );
    assert!(
        env.js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                "tax_001",
                shirase_proto::subject::NOTICE_STREAM
            )
            .await
            .is_err(),
        "the agent never creates the consumer"
    );

    // Provisioned again (deliver policy new: the next notices), the agent re-binds.
    provision(&env.nats.url()).await;
    env.commit_updates(5);
    wait_notices_published(&env).await;
    wait_until(30, "delivered after re-provisioning", || delivered(&env)).await;
    let rebinds = agent
        .metrics
        .resubscribes
        .get_or_create(&shirase_subscriber_kit::metrics::ProviderLabels {
            provider: "001".into(),
        })
        .get();
    assert!(rebinds >= 1, "the re-binding is counted");
    agent.stop().await;
}
