//! The relay's `[nats]` identity and TLS settings against a real nats-server that requires TLS
//! (certificates generated here with rcgen) and nkey users: the right CA and seed connect and
//! serve; an untrusted certificate, a wrong seed or a plain-text server are refused with an error
//! naming the settings to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use shirase_relay::connection::{self, ConnectError};
use shirase_tests::harness::{Config as ServerConfig, NatsServer};
use tokio_util::sync::CancellationToken;

use crate::relay_support::{TestRelay, dev_config, json, notice, read_stream, token_001};

/// A CA and a server certificate for 127.0.0.1/localhost signed by it, as PEM files in `dir`:
/// `ca.pem`, `server.pem`, `server-key.pem`.
pub fn write_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Shirase test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut server =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "nats");
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), server_key.serialize_pem()).unwrap();
}

/// The nats-server `tls { }` block for the PKI in `dir`.
pub fn tls_block(dir: &Path) -> String {
    format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  timeout: 2\n}}\n",
        dir.join("server.pem").display().to_string(),
        dir.join("server-key.pem").display().to_string(),
        dir.join("ca.pem").display().to_string(),
    )
}

struct Fixture {
    server: NatsServer,
    tmp: tempfile::TempDir,
    relay_seed: PathBuf,
}

/// A TLS-only server whose one user is the relay's nkey.
fn tls_server_with_relay_user() -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    write_pki(&tmp.path().join("pki"));
    let kp = nkeys::KeyPair::new_user();
    let relay_seed = tmp.path().join("relay.nk");
    std::fs::write(&relay_seed, format!("{}\n", kp.seed().unwrap())).unwrap();
    let extra = format!(
        "{}authorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n",
        tls_block(&tmp.path().join("pki")),
        kp.public_key()
    );
    let server = NatsServer::start_with(ServerConfig {
        extra,
        ..ServerConfig::default()
    })
    .unwrap();
    Fixture {
        server,
        tmp,
        relay_seed,
    }
}

fn relay_config(f: &Fixture) -> shirase_relay::Config {
    let mut c = dev_config(&f.server.url());
    c.nats.nkey_seed_file = Some(f.relay_seed.clone());
    c.nats.tls_ca_file = Some(f.tmp.path().join("pki/ca.pem"));
    c.nats.tls_required = true;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_connects_over_tls_with_its_nkey_provisions_and_serves() {
    let f = tls_server_with_relay_user();
    let config = relay_config(&f);
    let client = connection::connect(&config.nats).await.unwrap();
    assert!(
        client.server_info().tls_required,
        "the server really requires TLS"
    );
    let js = async_nats::jetstream::new(client);
    shirase_relay::provision::provision(&js, &shirase_relay::topology::desired(&config), false)
        .await
        .unwrap();

    let relay = TestRelay::start(config).await;
    let n = notice("001o05-00", 7);
    let (status, _, body) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(status, 202, "{body}");
    let stored = read_stream(&js).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, format!("001:{}", n.id));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_refused_and_the_relay_stops_naming_the_tls_settings() {
    let f = tls_server_with_relay_user();
    let other = f.tmp.path().join("other-pki");
    write_pki(&other);
    let mut config = relay_config(&f);
    config.nats.tls_ca_file = Some(other.join("ca.pem"));

    let err = connection::connect(&config.nats).await.unwrap_err();
    assert!(matches!(err, ConnectError::Refused { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("nats.tls_ca_file"), "{msg}");

    // Serving: the relay does not sit there retrying a certificate it will never trust.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = shirase_relay::run(config, listener, CancellationToken::new());
    let res = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the relay stopped by itself");
    let msg = res.unwrap_err().to_string();
    assert!(msg.contains("nats.tls_ca_file"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ca_means_system_roots_which_do_not_trust_a_private_ca() {
    let f = tls_server_with_relay_user();
    let mut config = relay_config(&f);
    config.nats.tls_ca_file = None;
    let err = connection::connect(&config.nats).await.unwrap_err();
    assert!(matches!(err, ConnectError::Refused { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_nkey_seed_is_refused_naming_the_seed_setting() {
    let f = tls_server_with_relay_user();
    let wrong = f.tmp.path().join("wrong.nk");
    std::fs::write(&wrong, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let mut config = relay_config(&f);
    config.nats.nkey_seed_file = Some(wrong);
    let err = connection::connect(&config.nats).await.unwrap_err();
    assert!(matches!(err, ConnectError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("nats.nkey_seed_file"), "{err}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let res = tokio::time::timeout(
        Duration::from_secs(15),
        shirase_relay::run(config, listener, CancellationToken::new()),
    )
    .await
    .expect("the relay stopped by itself");
    assert!(res.unwrap_err().to_string().contains("nats.nkey_seed_file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_a_plain_text_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.nats.tls_required = true;
    let err = connection::connect(&config.nats).await.unwrap_err();
    assert!(matches!(err, ConnectError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("nats.tls_required"), "{err}");
}

#[test]
fn tls_settings_are_validated_naming_the_field() {
    let base = std::fs::read_to_string(
        shirase_tests::harness::workspace_root().join("deploy/dev/relay.toml"),
    )
    .unwrap();
    let with_nats = |extra: &str| base.replacen("[nats]\n", &format!("[nats]\n{extra}\n"), 1);
    assert!(
        base.contains("[nats]\n"),
        "the dev topology has a [nats] table"
    );
    let root = shirase_tests::harness::workspace_root().join("deploy/dev");
    let field = |extra: &str| -> Vec<String> {
        shirase_relay::Config::from_toml_str(&with_nats(extra), Some(&root))
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.path)
            .collect()
    };
    assert_eq!(
        field("tls_cert_file = \"relay.pem\""),
        ["nats.tls_key_file"]
    );
    assert_eq!(
        field("tls_key_file = \"relay-key.pem\""),
        ["nats.tls_key_file"]
    );
    assert_eq!(
        field("credentials_file = \"a.creds\"\nnkey_seed_file = \"a.nk\""),
        ["nats.nkey_seed_file"]
    );
    let ok = shirase_relay::Config::from_toml_str(
        &with_nats("tls_ca_file = \"tls/ca.pem\"\ntls_required = true"),
        Some(&root),
    )
    .unwrap();
    assert_eq!(
        ok.nats.tls_ca_file.as_deref(),
        Some(root.join("tls/ca.pem").as_path()),
        "relative to the config file"
    );
    assert!(ok.nats.tls_required);
}

#[tokio::test]
async fn a_missing_tls_file_is_named() {
    let mut config = dev_config("nats://127.0.0.1:4222");
    config.nats.tls_ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
    let err = connection::connect(&config.nats).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "nats.tls_ca_file: file /nonexistent/ca.pem does not exist or is not a file"
    );
}
