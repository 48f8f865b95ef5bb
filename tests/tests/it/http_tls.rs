//! HTTPS on the relay's and the agent's HTTP listeners (`http.tls_cert_file` /
//! `http.tls_key_file`), with a CA and server certificate generated here by rcgen: a client
//! trusting the CA gets its notice stored, one trusting another CA fails the handshake, plain
//! HTTP on the HTTPS port is never answered 202, the operator client works with `--ca-file`,
//! the agent serves /healthz and /metrics over HTTPS, and half or broken settings are refused
//! with an error naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shirase_relay::operator::client::{Client, ClientErrorKind};
use shirase_relay::serve::ServeError;
use shirase_service::https::{ServerTls, TlsFileErrorKind};
use shirase_tests::harness::{NatsServer, workspace_root};
use tokio_util::sync::CancellationToken;

use crate::agent_support::{Env, wait_until};
use crate::relay_support::{
    TestRelay, dev_config, json, notice, provision, read_stream, token_001,
};
use crate::security_nats_tls::write_pki;

/// The listener settings for the PKI written by `write_pki(dir)`.
fn server_tls(dir: &Path) -> ServerTls {
    ServerTls {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server-key.pem"),
        cert_field: "http.tls_cert_file",
        key_field: "http.tls_key_file",
    }
}

/// A reqwest client trusting the CA in `ca_pem` (and nothing else added).
fn client_trusting(ca_pem: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The whole source chain of an error, for asserting on the TLS cause.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(x) = s {
        out.push_str(" / ");
        out.push_str(&x.to_string());
        s = x.source();
    }
    out
}

/// The relay serving HTTPS on 127.0.0.1:0 with the PKI in `pki`, ready.
async fn https_relay(nats_url: &str, pki: &Path) -> (TestRelay, std::net::SocketAddr) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = dev_config(nats_url);
    config.http.tls = Some(server_tls(pki));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(shirase_relay::run(config, listener, shutdown.clone()));
    let relay = TestRelay {
        base: format!("https://{addr}"),
        http: client_trusting(&pki.join("ca.pem")),
        shutdown,
        task,
    };
    relay.wait_ready().await;
    (relay, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_https_stores_a_notice_and_refuses_untrusted_and_plain_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    write_pki(&pki);
    let other_pki = tmp.path().join("other");
    write_pki(&other_pki);
    let server = NatsServer::start().unwrap();
    let js = provision(&dev_config(&server.url())).await;
    let (relay, addr) = https_relay(&server.url(), &pki).await;

    // (a) A client trusting the test CA: 202, and the notice is in the stream once.
    let n = notice("001o05-00", 1);
    let (status, _, body) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], n.id.to_string());
    assert_eq!(body["stream_seq"], 1);
    assert_eq!(body["duplicate"], false);
    let stored = read_stream(&js).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, format!("001:{}", n.id));
    assert_eq!(stored[0].1, "shirase.notice.131016.001.001o05-00");

    // (b) A client trusting another CA fails the handshake on the certificate.
    let e = client_trusting(&other_pki.join("ca.pem"))
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .expect_err("a certificate from an untrusted CA must be refused");
    assert!(e.is_connect(), "{e:?}");
    let why = chain(&e);
    assert!(
        why.contains("certificate"),
        "not a certificate error: {why}"
    );

    // (c) Plain HTTP to the HTTPS port is not an HTTP exchange: never a 202, nothing stored.
    let n2 = notice("001o05-00", 2);
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .post(format!("http://{addr}/v1/notices"))
        .bearer_auth(token_001())
        .json(&json(&n2))
        .send()
        .await;
    if let Ok(r) = &plain {
        assert_ne!(r.status().as_u16(), 202, "plain HTTP was accepted");
    }
    assert_eq!(
        read_stream(&js).await.len(),
        1,
        "plain HTTP stored a notice"
    );

    // The operator client reaches an HTTPS relay with --ca-file, and not without it.
    let token = workspace_root().join("deploy/dev/credentials/operator.token");
    let ca = pki.join("ca.pem");
    let ops = Client::new(&relay.base, &token, Some(&ca)).unwrap();
    let status = ops.get("/v1/ops/status", &[]).await.unwrap();
    assert_eq!(status["municipality"], "131016", "{status}");
    let e = Client::new(&relay.base, &token, None)
        .unwrap()
        .get("/v1/ops/status", &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ClientErrorKind::Transport, "{e}");
    let e = Client::new(&relay.base, &token, Some(&tmp.path().join("missing.pem"))).unwrap_err();
    assert_eq!(e.kind(), ClientErrorKind::Ca);
    assert!(e.message.contains("--ca-file"), "{}", e.message);

    // Graceful shutdown still returns Ok with TLS in the path.
    tokio::time::timeout(Duration::from_secs(30), relay.stop())
        .await
        .expect("the HTTPS relay stops within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_https_files_are_checked_when_serving_and_named_in_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    write_pki(&pki);
    // NATS is never reached: the files are checked first.
    let run_with = |tls: ServerTls| async move {
        let mut config = dev_config("nats://127.0.0.1:1");
        config.http.tls = Some(tls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            shirase_relay::run(config, listener, CancellationToken::new()),
        )
        .await
        .expect("a bad certificate stops serve at once")
    };

    let missing: PathBuf = tmp.path().join("nope-key.pem");
    let mut tls = server_tls(&pki);
    tls.key_file = missing.clone();
    match run_with(tls).await {
        Err(ServeError::Tls(e)) => {
            assert_eq!(e.kind(), TlsFileErrorKind::Read);
            assert_eq!(e.field, "http.tls_key_file");
            assert_eq!(e.path, missing);
            assert!(e.to_string().contains("nope-key.pem"), "{e}");
        }
        other => panic!("expected a key file error, got {other:?}"),
    }

    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let mut tls = server_tls(&pki);
    tls.cert_file = garbage.clone();
    match run_with(tls).await {
        Err(ServeError::Tls(e)) => {
            assert_eq!(e.kind(), TlsFileErrorKind::Invalid);
            assert_eq!(e.field, "http.tls_cert_file");
            assert_eq!(e.path, garbage);
        }
        other => panic!("expected a certificate file error, got {other:?}"),
    }

    // A key that does not belong to the certificate (another PKI's) names the key field.
    let other = tmp.path().join("other");
    write_pki(&other);
    let mut tls = server_tls(&pki);
    tls.key_file = other.join("server-key.pem");
    match run_with(tls).await {
        Err(ServeError::Tls(e)) => assert_eq!(e.field, "http.tls_key_file", "{e}"),
        other => panic!("expected a key mismatch error, got {other:?}"),
    }
}

#[test]
fn half_https_settings_are_config_errors_naming_the_missing_field() {
    // Relay: deploy/dev/relay.toml with a certificate but no key.
    let dev = workspace_root().join("deploy/dev");
    let text = std::fs::read_to_string(dev.join("relay.toml")).unwrap();
    assert!(text.contains("[http]\n"));
    let half = text.replacen("[http]\n", "[http]\ntls_cert_file = \"tls/relay.pem\"\n", 1);
    let e = shirase_relay::Config::from_toml_str(&half, Some(&dev)).unwrap_err();
    let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["http.tls_key_file"], "{e}");
    assert!(e.to_string().contains("http.tls_key_file"), "{e}");
    let both = text.replacen(
        "[http]\n",
        "[http]\ntls_cert_file = \"tls/relay.pem\"\ntls_key_file = \"/abs/relay-key.pem\"\n",
        1,
    );
    let c = shirase_relay::Config::from_toml_str(&both, Some(&dev)).unwrap();
    let tls = c.http.tls.unwrap();
    assert_eq!(
        tls.cert_file,
        dev.join("tls/relay.pem"),
        "relative to the config"
    );
    assert_eq!(tls.key_file, Path::new("/abs/relay-key.pem"));

    // Agent: the same rule on its [http] section.
    let agent = r#"
subscriber = "tax"
municipality = "131016"
[nats]
urls = ["nats://127.0.0.1:4222"]
[http]
listen = "127.0.0.1:0"
tls_cert_file = "/etc/shirase/tls/agent.pem"
[sink]
kind = "file"
dir = "/tmp/sink"
"#;
    let e = shirase_subscriber_kit::Config::from_toml_str(agent).unwrap_err();
    assert!(e.names("http.tls_key_file"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_healthz_and_metrics_over_https() {
    let env = Env::start(|_| {}).await;
    let pki = env.dir.path().join("pki");
    write_pki(&pki);
    let mut cfg = env.agent_config("", "");
    cfg.http.tls = Some(shirase_service::https::ServerTls {
        cert_file: pki.join("server.pem"),
        key_file: pki.join("server-key.pem"),
        cert_field: "http.tls_cert_file",
        key_field: "http.tls_key_file",
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        shirase_subscriber_kit::Agent::new(cfg)
            .unwrap()
            .run(Some(listener), stop.clone()),
    );
    let https = client_trusting(&pki.join("ca.pem"));

    wait_until(30, "agent /healthz says ok over HTTPS", || async {
        match https.get(format!("https://{addr}/healthz")).send().await {
            Ok(r) => r.status() == 200 && r.text().await.unwrap_or_default() == "ok",
            Err(_) => false,
        }
    })
    .await;
    // The agent's own registry, with its configured provider (maintenance not enforced here).
    // /healthz answers as soon as the listener serves; the provider's worker sets its gauges
    // when it starts, a moment later.
    let gauge = "shirase_agent_in_maintenance{provider=\"001\"} 0";
    wait_until(
        30,
        "the provider's gauge in /metrics over HTTPS",
        || async {
            match https.get(format!("https://{addr}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default().contains(gauge),
                Err(_) => false,
            }
        },
    )
    .await;
    let r = https
        .get(format!("https://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let body = r.text().await.unwrap();
    assert!(body.contains(gauge), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    // Plain HTTP on the HTTPS port gets no metrics.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await;
    if let Ok(r) = plain {
        assert_ne!(r.status().as_u16(), 200, "plain HTTP got the metrics");
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("agent stops within 30 s")
        .unwrap()
        .unwrap();
}
