//! HTTP ingest against a real nats-server: acceptance, dedup, batches, bad input, auth, 403s,
//! 503 while JetStream is down, health/readiness/metrics, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use serde_json::{Value, json};

use crate::relay_support::{
    TestRelay, dev_config, json, notice, notice_in, provision, read_stream, setup, token_001,
    token_010,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_notice_is_stored_once_and_a_resend_is_a_duplicate() {
    let (_server, js, relay) = setup().await;
    let n = notice("001o05-00", 1);
    let (status, _, body) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], n.id.to_string());
    assert_eq!(body["stream_seq"], 1);
    assert_eq!(body["duplicate"], false);

    let (status, _, body) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["stream_seq"], 1);
    assert_eq!(body["duplicate"], true);

    let stored = read_stream(&js).await;
    assert_eq!(stored.len(), 1);
    // The de-duplication key is the provider's business id and the notice id.
    assert_eq!(stored[0].0, format!("001:{}", n.id));
    assert_eq!(stored[0].1, "shirase.notice.131016.001.001o05-00");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_gets_207_with_per_item_results_and_valid_items_are_published() {
    let (_server, js, relay) = setup().await;
    let ok1 = notice("001o05-00", 1);
    let ok2 = notice("001o06-00", 2);
    let mut invalid = json(&notice("001o05-00", 3));
    invalid["data"]["provider"] = json!("1");
    let other = notice("010o01-00", 4);
    let batch = json!([json(&ok1), invalid, json(&other), json(&ok2)]);
    let (status, headers, body) = relay.post(&token_001(), &batch).await;
    assert_eq!(status, 207, "{body}");
    assert!(!headers.contains_key("retry-after"));
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![202, 422, 403, 202]);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 2);
    assert_eq!(body["failed"], 0);
    let r = &body["results"];
    assert_eq!(r[0]["id"], ok1.id.to_string());
    assert_eq!(r[1]["error"]["code"], "invalid_notice");
    let paths: Vec<&str> = r[1]["error"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().all(|p| p.starts_with("/1")), "{paths:?}");
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/1/data/provider") || *p == "/1"),
        "{paths:?}"
    );
    assert_eq!(r[2]["error"]["code"], "wrong_provider");
    assert_eq!(r[2]["id"], other.id.to_string());

    let ids: Vec<String> = read_stream(&js).await.into_iter().map(|m| m.0).collect();
    assert_eq!(
        ids,
        vec![format!("001:{}", ok1.id), format!("001:{}", ok2.id)]
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_batches_get_202_or_422() {
    // Per-notice pipelined publishing (the atomic path has its own test).
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.nats.atomic_batches = false;
    let js = provision(&config).await;
    let relay = TestRelay::start(config).await;
    // A full batch (1,000) is stored in the order given: an agent sees a provider's sequence
    // numbers in order, so a batch boundary never looks like a sequence gap.
    let all: Vec<Value> = (0..1000).map(|i| json(&notice("001o05-00", i))).collect();
    let (status, _, body) = relay.post(&token_001(), &Value::Array(all)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1000);
    let seqs: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stream_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());

    let bad = json!([{"specversion": "1.0"}, {"id": "x"}]);
    let (status, _, body) = relay.post(&token_001(), &bad).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rejected"], 2);
    assert_eq!(read_stream(&js).await.len(), 1000);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_the_right_status_and_the_relay_keeps_serving() {
    let (_server, js, relay) = setup().await;
    let t = token_001();

    let (s, _, b) = relay
        .post_raw(Some(&t), "application/json", b"{\"id\": ".to_vec())
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("malformed")),
        "{b}"
    );
    assert_eq!(b["error"]["violations"][0]["rule"], "syntax");

    let (s, _, b) = relay
        .post_raw(
            Some(&t),
            "text/plain",
            serde_json::to_vec(&json(&notice("001o05-00", 1))).unwrap(),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{b}"
    );

    let huge = vec![b' '; 5 * 1024 * 1024];
    let (s, _, b) = relay.post_raw(Some(&t), "application/json", huge).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{b}"
    );

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (s, _, b) = relay
        .post_raw(Some(&t), "application/json", deep.into_bytes())
        .await;
    assert_eq!(s, 400, "{b}");

    let mut utf8 = serde_json::to_vec(&json(&notice("001o05-00", 1))).unwrap();
    let pos = utf8.windows(6).position(|w| w == b"update").unwrap();
    utf8[pos] = 0xff;
    let (s, _, b) = relay.post_raw(Some(&t), "application/json", utf8).await;
    assert_eq!(s, 400, "{b}");

    let mut missing = json(&notice("001o05-00", 1));
    missing["data"]
        .as_object_mut()
        .unwrap()
        .remove("updated_at");
    missing["data"]["municipality_code"] = json!("131017");
    let (s, _, b) = relay.post(&t, &missing).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("invalid_notice")),
        "{b}"
    );
    assert!(!b["error"]["violations"].as_array().unwrap().is_empty());

    let (s, _, b) = relay.post(&t, &json!(42)).await;
    assert_eq!(s, 422, "{b}");
    let (s, _, b) = relay.post(&t, &json!([])).await;
    assert_eq!(s, 422, "{b}");
    let too_many: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let (s, _, b) = relay.post(&t, &Value::Array(too_many)).await;
    assert_eq!(s, 413, "{b}");

    // Personal data anywhere is refused with its path.
    let mut pd = json(&notice("001o05-00", 1));
    pd["data"]["interface_version"] = json!("123456789018");
    let (s, _, b) = relay.post(&t, &pd).await;
    assert_eq!(s, 422, "{b}");
    let v = b["error"]["violations"].as_array().unwrap();
    assert!(
        v.iter()
            .any(|v| v["rule"] == "personal_data" && v["path"] == "/data/interface_version"),
        "{b}"
    );

    assert!(
        read_stream(&js).await.is_empty(),
        "nothing may be published from bad input"
    );
    let (s, _, b) = relay.post(&t, &json(&notice("001o05-00", 9))).await;
    assert_eq!(s, 202, "relay must keep serving: {b}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_get_401() {
    let (_server, js, relay) = setup().await;
    let body = serde_json::to_vec(&json(&notice("001o05-00", 1))).unwrap();
    for token in [None, Some("not-a-real-token-at-all-000000")] {
        let (s, h, b) = relay
            .post_raw(token, "application/json", body.clone())
            .await;
        assert_eq!(s, 401, "{b}");
        assert_eq!(b["error"]["code"], "unauthenticated");
        assert!(h.get("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let resp = relay
        .http
        .post(format!("{}/v1/notices", relay.base))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(read_stream(&js).await.is_empty());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_notices_get_403_naming_the_reason() {
    let (_server, js, relay) = setup().await;
    let cases = [
        (token_001(), notice("010o01-00", 1), "wrong_provider"),
        (token_010(), notice("001o05-00", 1), "wrong_provider"),
        (
            token_001(),
            notice_in("011002", "001o05-00", 1),
            "wrong_municipality",
        ),
        (token_001(), notice("001o07-00", 1), "unknown_interface"),
    ];
    for (token, n, code) in cases {
        let (s, _, b) = relay.post(&token, &json(&n)).await;
        assert_eq!(s, 403, "{b}");
        assert_eq!(b["error"]["code"], code, "{b}");
    }
    let mut v2 = json(&notice("001o05-00", 1));
    v2["data"]["interface_version"] = json!("2.0");
    let (s, _, b) = relay.post(&token_001(), &v2).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("unknown_interface_version")),
        "{b}"
    );
    assert!(read_stream(&js).await.is_empty());
    // Provider 010 may publish its own interface.
    let (s, _, b) = relay
        .post(&token_010(), &json(&notice("010o01-00", 1)))
        .await;
    assert_eq!(s, 202, "{b}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let (mut server, _js, relay) = setup().await;
    let get = |path: &str| relay.http.get(format!("{}{path}", relay.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    let n = notice("001o05-00", 1);
    relay.post(&token_001(), &json(&n)).await;
    relay.post(&token_001(), &json(&n)).await;
    relay
        .post_raw(None, "application/json", b"{}".to_vec())
        .await;
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        text.contains("shirase_relay_notices_accepted_total{provider=\"001\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("shirase_relay_notices_duplicate_total{provider=\"001\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shirase_relay_notices_rejected_total{reason=\"unauthenticated\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shirase_relay_publish_duration_seconds_count 2"),
        "{text}"
    );
    assert!(text.contains("shirase_relay_publish_in_flight 0"), "{text}");

    server.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get("/readyz").await.unwrap().status().as_u16() != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz stayed 200 with NATS down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_down_gives_503_and_a_resend_after_recovery_is_stored_once() {
    let (mut server, _js, relay) = setup().await;
    server.stop();
    let n = notice("001o05-00", 1);
    let (s, h, b) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"]["code"], "unavailable");
    assert_eq!(h.get("retry-after").map(String::as_str), Some("1"));
    let batch = json!([json(&notice("001o05-00", 2)), json(&notice("001o05-00", 3))]);
    let (s, h, b) = relay.post(&token_001(), &batch).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["failed"], 2);
    assert!(h.contains_key("retry-after"));

    server.start_again().unwrap();
    relay.wait_ready().await;
    let (s, _, b) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(s, 202, "{b}");
    let (s, _, b) = relay.post(&token_001(), &batch).await;
    assert_eq!(s, 202, "{b}");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stored = read_stream(&js).await;
    let mut ids: Vec<String> = stored.into_iter().map(|m| m.0).collect();
    ids.sort();
    let mut want = vec![
        format!("001:{}", n.id),
        format!("001:{}", batch[0]["id"].as_str().unwrap()),
        format!("001:{}", batch[1]["id"].as_str().unwrap()),
    ];
    want.sort();
    assert_eq!(ids, want, "each notice exactly once");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_publishes() {
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.nats.publish_timeout = Duration::from_secs(10);
    let js = provision(&config).await;
    let relay = TestRelay::start(config).await;
    server.pause();
    let batch = Value::Array((0..20).map(|i| json(&notice("001o05-00", i))).collect());
    let url = format!("{}/v1/notices", relay.base);
    let req = relay
        .http
        .post(url)
        .bearer_auth(token_001())
        .json(&batch)
        .send();
    let pending = tokio::spawn(req);
    // Wait until the relay is holding publishes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = relay.metrics_text().await;
        if text.contains("shirase_relay_publish_in_flight 20") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes never in flight: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.shutdown.cancel();
    server.resume();
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    relay.task.await.unwrap().unwrap();
    assert_eq!(read_stream(&js).await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_batches_keep_per_notice_dedup() {
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.nats.atomic_batches = true;
    let js = provision(&config).await;
    assert!(
        js.get_stream("SHIRASE_NOTICES")
            .await
            .unwrap()
            .cached_info()
            .config
            .allow_atomic_publish
    );
    let relay = TestRelay::start(config).await;

    let first: Vec<Value> = (0..10).map(|i| json(&notice("001o05-00", i))).collect();
    let (s, _, b) = relay.post(&token_001(), &Value::Array(first.clone())).await;
    assert_eq!(s, 202, "{b}");
    let seqs: Vec<u64> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stream_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    // The sequences the relay derived from the batch PubAck are the real ones.
    let stored = read_stream(&js).await;
    for (item, (id, _, seq)) in first.iter().zip(&stored) {
        assert_eq!(&format!("001:{}", item["id"].as_str().unwrap()), id);
        assert_eq!(
            b["results"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == item["id"])
                .unwrap()["stream_seq"],
            *seq
        );
    }

    // Two new notices around an already stored one: JetStream refuses the atomic batch, the
    // relay falls back to per-notice publishing.
    let fresh: Vec<Value> = (10..12).map(|i| json(&notice("001o05-00", i))).collect();
    let mixed = json!([fresh[0], first[3], fresh[1]]);
    let (s, _, b) = relay.post(&token_001(), &mixed).await;
    assert_eq!(s, 202, "{b}");
    let r = b["results"].as_array().unwrap();
    assert_eq!(r[0]["duplicate"], false);
    assert_eq!(r[1]["duplicate"], true);
    assert_eq!(r[1]["stream_seq"], 4);
    assert_eq!(r[2]["duplicate"], false);
    assert_eq!(b["duplicates"], 1);
    let ids: Vec<String> = read_stream(&js).await.into_iter().map(|m| m.0).collect();
    assert_eq!(ids.len(), 12, "each id exactly once");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_timeout_gives_503_and_the_resend_is_stored_once() {
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.nats.publish_timeout = Duration::from_millis(500);
    config.nats.publish_attempts = 2;
    let js = provision(&config).await;
    let relay = TestRelay::start(config).await;
    // A frozen server keeps its sockets: publishes are sent but never acknowledged.
    server.pause();
    let n = notice("001o05-00", 1);
    let (s, h, b) = relay.post(&token_001(), &json(&n)).await;
    server.resume();
    assert_eq!(s, 503, "{b}");
    assert_eq!(h.get("retry-after").map(String::as_str), Some("1"));
    // The frozen server may still store the unacknowledged publishes once it runs again; the
    // re-send is then a duplicate. Either way the notice is stored exactly once.
    let (s, _, b) = relay.post(&token_001(), &json(&n)).await;
    assert_eq!(s, 202, "{b}");
    let ids: Vec<String> = read_stream(&js).await.into_iter().map(|m| m.0).collect();
    assert_eq!(ids, vec![format!("001:{}", n.id)]);
    let text = relay.metrics_text().await;
    assert!(
        text.contains("shirase_relay_publish_retries_total 1"),
        "{text}"
    );
    assert!(
        text.contains("shirase_relay_notices_rejected_total{reason=\"unavailable\"} 1"),
        "{text}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_are_stored_as_the_bytes_received_and_a_member_named_twice_is_refused() {
    let (_server, js, relay) = setup().await;
    let a = notice("001o05-00", 1);
    let b = notice("001o06-00", 2);
    // Pretty-printed, members in another order than the relay's encoding: stored as sent.
    let pretty = serde_json::to_string_pretty(&json(&a)).unwrap();
    let mut reordered = serde_json::Map::new();
    let v = json(&b);
    for (k, val) in v.as_object().unwrap().iter().rev() {
        reordered.insert(k.clone(), val.clone());
    }
    let compact = serde_json::to_string(&Value::Object(reordered)).unwrap();
    let body = format!("[{pretty},\n  {compact}]");
    let (status, _, r) = relay
        .post_raw(Some(&token_001()), "application/json", body.into_bytes())
        .await;
    assert_eq!(status, 202, "{r}");
    let stream = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    let second = stream.get_raw_message(2).await.unwrap();
    assert_eq!(std::str::from_utf8(&first.payload).unwrap(), pretty);
    assert_eq!(std::str::from_utf8(&second.payload).unwrap(), compact);
    assert_ne!(compact.as_bytes(), b.to_json().as_slice(), "not re-encoded");
    // The stored bytes are the validated notice.
    let back: shirase_proto::Notice = serde_json::from_slice(&second.payload).unwrap();
    assert_eq!(back, b);

    // A member named twice: which value counts would depend on the reader; refused.
    let c = serde_json::to_string(&json(&notice("001o05-00", 3))).unwrap();
    let twice = c.replacen(
        "\"sequence\":",
        "\"sequence\":\"00000000000000000009\",\"sequence\":",
        1,
    );
    let (status, _, r) = relay
        .post_raw(Some(&token_001()), "application/json", twice.into_bytes())
        .await;
    assert_eq!(status, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"sequence\" appears twice"),
        "{r}"
    );
    assert_eq!(read_stream(&js).await.len(), 2);
    relay.stop().await;
}
