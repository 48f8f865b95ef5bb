//! The agent's HTTP towards providers and sinks: redirects are never followed (a 307 would
//! re-send the token, the query with addressee numbers or the rows elsewhere), a 3xx is an error
//! naming the provider or `sink.url`; a private CA given as `ca_file` is trusted, and without it
//! the same server is refused. (`http://` without `insecure_http` is refused by the
//! configuration: unit tests in `shirase-subscriber-kit`'s `config::providers`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shirase_pull::{CaFile, Limiter, Outcome, PullClient, PullClientConfig, PullRequest};
use shirase_subscriber_kit::sink::{Delivery, HttpSink, Sink, SinkErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::security_nats_tls::write_pki;

/// A server counting its connections and answering nothing useful.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .await;
        }
    });
    (format!("http://{addr}"), hits)
}

/// A server answering every request `307` to `target`.
async fn redirecting_server(target: String) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn delivery() -> Delivery {
    Delivery {
        interface: "001o05-00".parse().unwrap(),
        provider: "001".parse().unwrap(),
        pulled_at: jiff::Timestamp::now(),
        records: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_an_error_naming_the_provider_or_the_sink_and_is_never_followed() {
    let (elsewhere, hits) = counting_server().await;
    let redirect = redirecting_server(elsewhere).await;

    // The token endpoint redirects: the pull ends as an error naming the provider.
    let cfg = PullClientConfig {
        base_url: redirect.clone(),
        token_url: format!("{redirect}/oauth/token"),
        client_id: "tax".into(),
        client_secret_file: "/nonexistent".into(),
        client_secret_field: "providers[0].client_secret_file".into(),
        api: Default::default(),
        interfaces: Default::default(),
        municipality: Some("131016".into()),
        timeout: Duration::from_secs(10),
        provider: "provider 001".into(),
        ca_file: None,
    };
    let client =
        PullClient::with_secret(cfg, b"secret".to_vec(), Arc::new(Limiter::new(1, 100.0))).unwrap();
    let req = PullRequest {
        interface: "001o05-00".parse().unwrap(),
        from: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)),
        to: Some(jiff::Timestamp::now()),
        keys: vec![],
    };
    match client.pull(&req).await {
        Outcome::Connect(m) => {
            assert!(
                m.starts_with("provider 001: the token endpoint answered 307"),
                "{m}"
            );
            assert!(m.contains("not followed"), "{m}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }

    // The sink redirects: a refused delivery naming sink.url.
    let sink = HttpSink::new(format!("{redirect}/import"), Duration::from_secs(10)).unwrap();
    let e = sink.deliver(&delivery()).await.unwrap_err();
    assert_eq!(e.kind(), SinkErrorKind::Refused);
    assert!(e.to_string().contains("sink.url answered 307"), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_in_ca_file_is_trusted_and_without_it_the_server_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    write_pki(&pki);
    let tls = shirase_service::https::ServerTls {
        cert_file: pki.join("server.pem"),
        key_file: pki.join("server-key.pem"),
        cert_field: "cert",
        key_field: "key",
    }
    .load()
    .unwrap();
    let app = axum::Router::new().route("/import", axum::routing::post(|| async { "ok" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/import",
        l.local_addr().unwrap().port()
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(shirase_service::https::serve(
        l,
        app,
        Some(tls),
        stop.clone(),
    ));

    let ca = CaFile {
        path: pki.join("ca.pem"),
        field: "sink.ca_file".into(),
    };
    let trusting = HttpSink::with_ca(url.clone(), Duration::from_secs(10), Some(&ca)).unwrap();
    trusting.deliver(&delivery()).await.unwrap();
    let plain = HttpSink::new(url, Duration::from_secs(10)).unwrap();
    let e = plain.deliver(&delivery()).await.unwrap_err();
    assert_eq!(e.kind(), SinkErrorKind::Io, "{e}");

    // An unusable CA file is an error naming its field.
    let bad = CaFile {
        path: tmp.path().join("missing.pem"),
        field: "providers[0].ca_file".into(),
    };
    let e = shirase_pull::http_client(Duration::from_secs(1), Some(&bad)).unwrap_err();
    assert!(e.to_string().starts_with("providers[0].ca_file "), "{e}");
    stop.cancel();
    server.await.unwrap().unwrap();
}
