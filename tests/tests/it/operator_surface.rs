//! The operator surface on its own address (`[ops] listen`): ingest's listener serves only
//! `POST /v1/notices`, health and readiness; the operator API, the status page and `/metrics`
//! answer on the ops listener only. The gauges that need JetStream reads are collected by the
//! refresh timer: many scrapes make no collection (counted by
//! `shirase_relay_status_collections_total`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use shirase_tests::harness::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::relay_support::{dev_config, json, notice, provision, token_001};

/// The value of a sample line `name value` in an OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_surface_listens_on_its_own_address_and_scrapes_read_no_jetstream() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    // Longer than the test: the only timer collection is the one at start.
    config.ops.metrics_refresh = Duration::from_secs(600);
    provision(&config).await;
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_base = format!("http://{}", ingest.local_addr().unwrap());
    let ops_base = format!("http://{}", ops.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(shirase_relay::serve::run_with_ops(
        config,
        ingest,
        Some(ops),
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(format!("{ingest_base}/readyz")).await.0 != 200 {
        assert!(Instant::now() < deadline, "relay not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Ingest's address: notices, health, readiness; nothing of the operator surface.
    let r = http
        .post(format!("{ingest_base}/v1/notices"))
        .bearer_auth(token_001())
        .json(&json(&notice("001o05-00", 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    for path in ["/metrics", "/status", "/v1/ops/status"] {
        assert_eq!(
            get(format!("{ingest_base}{path}")).await.0,
            404,
            "{path} on http.listen"
        );
    }
    // The ops address: the operator surface and health; no ingest.
    assert_eq!(get(format!("{ops_base}/status")).await.0, 200);
    assert_eq!(
        get(format!("{ops_base}/v1/ops/status")).await.0,
        401,
        "needs a token"
    );
    assert_eq!(get(format!("{ops_base}/healthz")).await.0, 200);
    let r = http
        .post(format!("{ops_base}/v1/notices"))
        .bearer_auth(token_001())
        .json(&json(&notice("001o05-00", 2)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "ingest on ops.listen");

    // The start-up collection fills the gauges (a consumer's pending count is there).
    let name = "shirase_relay_status_collections_total";
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let (s, text) = get(format!("{ops_base}/metrics")).await;
        assert_eq!(s, 200);
        if sample(&text, name) == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "no collection at start: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        first.contains("shirase_relay_consumer_pending{subscriber=\"tax\",provider=\"001\"}"),
        "{first}"
    );
    // Fifty scrapes: still one collection.
    for _ in 0..50 {
        let (s, text) = get(format!("{ops_base}/metrics")).await;
        assert_eq!(s, 200);
        assert_eq!(sample(&text, name), Some(1.0), "a scrape collected");
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
