//! Shared setup of the relay tests: a real nats-server, the dev topology provisioned, the relay
//! serving on 127.0.0.1 port 0 in-process, and a reqwest client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::Value;
use shirase_proto::{
    ChangeKind, InterfaceId, InterfaceVersion, MunicipalityCode, Notice, OffsetTimestamp, Sequence,
};
use shirase_relay::Config;
use shirase_tests::harness::{NatsServer, workspace_root};
use tokio_util::sync::CancellationToken;

/// The dev topology's token of provider 001.
pub fn token_001() -> String {
    std::fs::read_to_string(workspace_root().join("deploy/dev/credentials/provider-001.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The dev topology's token of provider 010.
pub fn token_010() -> String {
    std::fs::read_to_string(workspace_root().join("deploy/dev/credentials/provider-010.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The dev topology (deploy/dev/relay.toml) pointed at `nats_url`, listening on port 0.
pub fn dev_config(nats_url: &str) -> Config {
    let mut c = Config::load(Some(&workspace_root().join("deploy/dev/relay.toml"))).unwrap();
    c.nats.urls = vec![nats_url.to_owned()];
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.nats.publish_timeout = Duration::from_secs(2);
    c.nats.publish_attempts = 3;
    c.http.retry_after = Duration::from_secs(1);
    c
}

/// A notice of `interface` in municipality 131016.
pub fn notice(interface: &str, seq: u64) -> Notice {
    notice_in("131016", interface, seq)
}

/// A notice of `interface` in `municipality`.
pub fn notice_in(municipality: &str, interface: &str, seq: u64) -> Notice {
    let m: MunicipalityCode = municipality.parse().unwrap();
    let i: InterfaceId = interface.parse().unwrap();
    let v: InterfaceVersion = "1.0".parse().unwrap();
    let at = OffsetTimestamp::from_instant_jst(jiff::Timestamp::now());
    Notice::new(m, i, v, Sequence(seq), at, ChangeKind::Update, None)
}

/// JSON value of a notice.
pub fn json(n: &Notice) -> Value {
    serde_json::to_value(n).unwrap()
}

/// Provision the topology of `config` on the server.
pub async fn provision(config: &Config) -> jetstream::Context {
    let client = async_nats::connect(&config.nats.urls[0]).await.unwrap();
    let js = jetstream::new(client);
    let desired = shirase_relay::topology::desired(config);
    shirase_relay::provision::provision(&js, &desired, false)
        .await
        .unwrap();
    js
}

/// A relay serving in-process.
pub struct TestRelay {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Stops the relay.
    pub shutdown: CancellationToken,
    /// The serve task.
    pub task: tokio::task::JoinHandle<Result<(), shirase_relay::serve::ServeError>>,
}

impl TestRelay {
    /// Start `config` on 127.0.0.1:0.
    pub async fn start(config: Config) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(shirase_relay::run(config, listener, shutdown.clone()));
        // A fresh connection per request: after refusing an oversized body the server closes
        // the connection, and a pooled client racing that close fails the *next* request with
        // `IncompleteMessage` (seen once in CI under load).
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let r = Self {
            base,
            http,
            shutdown,
            task,
        };
        r.wait_ready().await;
        r
    }

    /// Poll /readyz until 200 (deadline 20 s).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .map(|r| r.status().as_u16() == 200);
            if ok.unwrap_or(false) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "relay did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POST raw bytes with a token and content type.
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, HashMap<String, String>, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/notices", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    /// POST a JSON value as provider `token`.
    pub async fn post(&self, token: &str, body: &Value) -> (u16, HashMap<String, String>, Value) {
        self.post_raw(
            Some(token),
            "application/json",
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// The relay's `/metrics` text (OpenMetrics).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stop and wait for the serve task.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Every message in SHIRASE_NOTICES as (Nats-Msg-Id, subject, sequence).
pub async fn read_stream(js: &jetstream::Context) -> Vec<(String, String, u64)> {
    let mut stream = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    let total = stream.info().await.unwrap().state.messages as usize;
    if total == 0 {
        return Vec::new();
    }
    let c = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::with_capacity(total);
    let mut msgs = c
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .unwrap();
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let seq = m.info().unwrap().stream_sequence;
        out.push((id, m.subject.to_string(), seq));
    }
    out
}

/// Start a nats-server, provision the dev topology, start the relay.
pub async fn setup() -> (NatsServer, jetstream::Context, TestRelay) {
    let server = NatsServer::start().unwrap();
    let config = dev_config(&server.url());
    let js = provision(&config).await;
    let relay = TestRelay::start(config).await;
    (server, js, relay)
}
