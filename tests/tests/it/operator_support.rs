//! Shared helpers of the operator tests: calling the operator API as the dev operator or
//! viewer, reading the audit stream, consumer backlogs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::Value;
use shirase_tests::harness::workspace_root;

/// A dev token from deploy/dev/credentials.
pub fn dev_token(file: &str) -> String {
    std::fs::read_to_string(workspace_root().join("deploy/dev/credentials").join(file))
        .unwrap()
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_owned()
}

/// The operator API of a relay at `base`.
pub struct Ops {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Ops {
    pub fn operator(base: &str) -> Ops {
        Self::with(base, dev_token("operator.token"))
    }
    pub fn viewer(base: &str) -> Ops {
        Self::with(base, dev_token("operator-viewer.token"))
    }
    pub fn with(base: &str, token: String) -> Ops {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Ops {
            base: base.to_owned(),
            token,
            http,
        }
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    /// `shirase-relay resync` of `subscriber`'s `interface` to `to`: asserts 200, returns the
    /// answer (`from`, `to`, `revision`).
    pub async fn resync(&self, subscriber: &str, interface: &str, to: jiff::Timestamp) -> Value {
        let (s, r) = self
            .post(
                "/v1/ops/resync",
                serde_json::json!({ "subscriber": subscriber, "interface": interface, "to": to.to_string() }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        r
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

/// Every record of SHIRASE_AUDIT.
pub async fn audit_records(js: &jetstream::Context) -> Vec<Value> {
    read_all(js, "SHIRASE_AUDIT", None)
        .await
        .into_iter()
        .map(|(_, _, v)| serde_json::from_slice(&v).unwrap())
        .collect()
}

/// Every message of `stream` (optionally one filter) as (subject, Nats-Msg-Id, payload).
pub async fn read_all(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<&str>,
) -> Vec<(String, String, bytes::Bytes)> {
    let mut s = js.get_stream(stream).await.unwrap();
    let info = s.info().await.unwrap();
    if info.state.messages == 0 {
        return Vec::new();
    }
    let c = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            filter_subject: filter.unwrap_or("").to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = c
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((m.subject.to_string(), id, m.payload.clone()));
    }
    out
}

/// Pending (undelivered) notices of a durable consumer.
pub async fn pending(js: &jetstream::Context, name: &str) -> u64 {
    let mut c: consumer::PullConsumer = js
        .get_consumer_from_stream(name, "SHIRASE_NOTICES")
        .await
        .unwrap();
    c.info().await.unwrap().num_pending
}
